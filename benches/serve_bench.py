"""`make bench-serve`: torchbook serve against a minimal Python baseline (torch.jit.load behind
ThreadingHTTPServer, benches/serve_baseline.py) serving the same exported model, in one run.

1. Exports the quickstart MLP trained on MNIST digits in float32, float16 and bfloat16
   (serve/examples/bench_model.rs) and checks each file in PyTorch: `torch.jit.load` gives the
   model's own outputs (float32: max |difference| < 1e-5; 16 bits: same accuracy within one
   point), with file size, accuracy and latency per precision.
2. Starts both services on the float32 file, checks both answer what the model computes, then
   measures requests/s and p50/p99 latency at 1, 8 and 64 concurrent keep-alive clients
   (serve/examples/serve_load.rs), alternating the order per round, medians over rounds.

  python benches/serve_bench.py --serve-bin PATH --examples-dir DIR [--rounds N] [--seconds S]
"""

import argparse
import json
import os
import re
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings

import torch

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENTS = (1, 8, 64)


def load_raw(path, dtype, shape):
    with open(path, "rb") as f:
        return torch.frombuffer(bytearray(f.read()), dtype=dtype).reshape(shape)


def check_exports(out_dir):
    x = load_raw(os.path.join(out_dir, "test_x.f32"), torch.float32, (-1, 1, 28, 28))
    y = load_raw(os.path.join(out_dir, "test_y.i64"), torch.int64, (-1,))
    expected = load_raw(os.path.join(out_dir, "expected.f32"), torch.float32, (-1, 10))
    reference_accuracy = (expected.argmax(1) == y).double().mean().item()
    rows = []
    batch = x[:64]
    for name in ("mlp", "mlp-f16", "mlp-bf16"):
        path = os.path.join(out_dir, f"{name}.pt")
        model = torch.jit.load(path)
        with torch.inference_mode():
            out = model(x)
            for _ in range(10):
                model(batch)
            times = []
            for _ in range(200):
                start = time.perf_counter()
                model(batch)
                times.append(time.perf_counter() - start)
        diff = (out.double() - expected.double()).abs().max().item()
        accuracy = (out.argmax(1) == y).double().mean().item()
        rows.append((name, os.path.getsize(path), diff, accuracy, statistics.median(times) * 1e3))
        assert out.dtype == torch.float32, f"{name}: outputs are {out.dtype}"
        if name == "mlp":
            assert diff < 1e-5, f"torch.jit.load({name}.pt) differs from the model by {diff}"
        else:
            assert abs(accuracy - reference_accuracy) <= 0.01, f"{name}: accuracy {accuracy} vs {reference_accuracy}"
    print(f"\ntorch.jit.load (PyTorch {torch.__version__}) of the exports, {len(y)} held-out MNIST digits "
          f"(model's own accuracy {reference_accuracy:.4f}):")
    print("| file | bytes | max abs diff vs model | accuracy | ms per batch of 64 (PyTorch, median of 200) |")
    print("|---|---:|---:|---:|---:|")
    for name, size, diff, accuracy, ms in rows:
        print(f"| {name}.pt | {size:,} | {diff:.2e} | {accuracy:.4f} | {ms:.3f} |")
    return x, expected


def start(cmd, env=None):
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            return proc, match.group(1)
    raise SystemExit(f"{cmd[0]} did not start:\n{''.join(seen)}")


def post_json(url, examples):
    body = json.dumps({"inputs": examples.tolist()}).encode()
    request = urllib.request.Request(url + "/v1/predict", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return torch.tensor(json.load(response)["outputs"])


def batch_stats(url):
    text = urllib.request.urlopen(url + "/metrics").read().decode()
    value = lambda name: float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))
    return value("torchbook_serve_batch_size_sum"), value("torchbook_serve_batch_size_count")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve-bin", required=True)
    parser.add_argument("--examples-dir", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1,
                        help="libtorch intra-op threads of both servers (0: libtorch's default). 1 by default: with "
                             "2 OpenMP threads on 2 busy cores, each run of the model waits for timer ticks to wake "
                             "the second thread (measured: PyTorch at 1 client 80 requests/s, 16 ms each, against "
                             "1,150/s with 1 thread)")
    args = parser.parse_args()
    load = os.path.join(args.examples_dir, "serve_load")
    load_before = " ".join(f"{v:.1f}" for v in os.getloadavg())

    with tempfile.TemporaryDirectory(prefix="tb-bench-serve-") as out_dir:
        subprocess.run([os.path.join(args.examples_dir, "bench_model"), out_dir], check=True)
        x, expected = check_exports(out_dir)
        model = os.path.join(out_dir, "mlp.pt")
        threads = ["--threads", str(args.threads)] if args.threads else []
        torchbook, tb_url = start([args.serve_bin, model, "--port", "0", "--max-batch", "64", *threads])
        baseline, py_url = start([sys.executable, os.path.join(HERE, "serve_baseline.py"), model, *threads])
        try:
            for name, url in (("torchbook serve", tb_url), ("python baseline", py_url)):
                diff = (post_json(url, x[:8]) - expected[:8]).abs().max().item()
                assert diff < 1e-5, f"{name} answers differ from the model by {diff}"
            one = x[:1]
            json_body = os.path.join(out_dir, "one.json")
            with open(json_body, "w") as f:
                json.dump({"inputs": one.tolist()}, f)
            raw_body = os.path.join(out_dir, "one.f32")
            with open(raw_body, "wb") as f:
                values = one.flatten().tolist()
                f.write(struct.pack(f"<{len(values)}f", *values))
            series = {
                "torchbook JSON": (tb_url, json_body, "application/json", []),
                "python JSON": (py_url, json_body, "application/json", []),
                "torchbook raw": (tb_url, raw_body, "application/octet-stream", ["X-Tensor-Shape: 1,1,28,28", "X-Tensor-Dtype: float32"]),
            }
            # Warm-up, not measured: TorchScript's profiling executor runs its first calls of a
            # graph slowly (≈ 20 ms each for this MLP in PyTorch) before it specialises it.
            for s, (url, body, content_type, headers) in series.items():
                subprocess.run([load, url + "/v1/predict", "8", "3", body, content_type, *headers], check=True, capture_output=True)
            results = {(s, c): [] for s in series for c in CLIENTS}
            batches = {c: [] for c in CLIENTS}
            for r in range(args.rounds):
                for c in CLIENTS:
                    order = list(series) if (r + c) % 2 == 0 else list(reversed(series))
                    for s in order:
                        url, body, content_type, headers = series[s]
                        before = batch_stats(tb_url) if s.startswith("torchbook") else None
                        out = subprocess.run([load, url + "/v1/predict", str(c), str(args.seconds), body, content_type, *headers],
                                             check=True, capture_output=True, text=True).stdout
                        result = json.loads(out)
                        assert result["errors"] == 0, f"{s} at {c} clients: {result}"
                        results[(s, c)].append(result)
                        if s == "torchbook JSON":
                            after = batch_stats(tb_url)
                            batches[c].append((after[0] - before[0]) / max(after[1] - before[1], 1))
        finally:
            for proc in (torchbook, baseline):
                proc.terminate()
                proc.wait(timeout=30)

    med = lambda s, c, key: statistics.median(r[key] for r in results[(s, c)])
    print(f"\nServing the MLP (784-256-128-10), one example per request, {args.rounds} rounds of {args.seconds:g} s "
          f"per cell, alternating; medians; libtorch threads per server: {args.threads or 'default'}. "
          f"Machine: {os.cpu_count()} CPUs, shared by servers and clients; load average before: {load_before}.")
    print("| clients | server | requests/s | p50 ms | p99 ms | mean batch |")
    print("|---:|---|---:|---:|---:|---:|")
    for c in CLIENTS:
        for s in series:
            batch = f"{statistics.median(batches[c]):.1f}" if s == "torchbook JSON" else ""
            print(f"| {c} | {s} | {med(s, c, 'rps'):,.0f} | {med(s, c, 'p50_ms'):.2f} | {med(s, c, 'p99_ms'):.2f} | {batch} |")
    print()
    for c in CLIENTS:
        rps = med("torchbook JSON", c, "rps") / med("python JSON", c, "rps")
        p99 = med("torchbook JSON", c, "p99_ms") / med("python JSON", c, "p99_ms")
        print(f"{c:3} clients: torchbook/python throughput {rps:.2f}x, p99 {p99:.2f}x" +
              ("   (target at 64: >= 3x throughput, <= 0.5x p99)" if c == 64 else ""))


if __name__ == "__main__":
    main()
