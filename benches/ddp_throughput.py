"""Data-parallel training throughput (`make bench-ddp`, issue 17): torchbook's `fit` across N
processes (runtime/examples/ddp_throughput.rs, launched here with torchrun's variables) against
PyTorch DDP (benches/pytorch_ddp.py under torchrun, gloo), N = 1, 2, 4, one intra-op thread per
process, on the MLP and CNN of `make bench-fit` (batch 128 per rank, Adam). Every round runs
each (model, N) on both sides, alternating which goes first; figures are medians over rounds of
each run's median epoch, in global samples/s (all ranks' samples over the epoch's wall time).
Scaling efficiency = samples/s at N / (N x samples/s at 1), of each side.
Target: torchbook's samples/s >= PyTorch DDP's at every N.

  python benches/ddp_throughput.py --bench-bin PATH --python TORCH_PYTHON [--rounds N]
      [--epochs E] [--sizes 1,2,4] [--models mlp,cnn] [--out JSON]
"""

import argparse
import datetime
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# Samples per epoch, all ranks together (a few seconds per epoch on one core); the example's
# and pytorch_ddp.py's defaults are the same.
SAMPLES = {"mlp": 128 * 1000, "cnn": 128 * 100}
RUN_TIMEOUT = 600


class RunFailed(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env():
    env = dict(os.environ)
    # torchrun sets it for every rank when unset (with a warning); both sides get it alike.
    env["OMP_NUM_THREADS"] = "1"
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_USE_AGENT_STORE"):
        env.pop(name, None)
    return env


def spawn(cmd, env):
    """Starts `cmd` with its stdout and stderr in temporary files (a pipe nobody reads while
    the ranks run could fill and block them)."""
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
    proc.files = (out, err)
    return proc


def wait_all(procs, what):
    """Waits for every process; when one fails, stops the others (they would wait in a
    collective until the group's timeout) and raises with every process's stderr."""
    deadline = time.monotonic() + RUN_TIMEOUT
    failed = None
    while True:
        codes = [p.poll() for p in procs]  # every process polled: a failure anywhere counts
        if all(code is not None for code in codes):
            break
        if any(code not in (None, 0) for code in codes) or time.monotonic() > deadline:
            failed = "a process failed" if time.monotonic() <= deadline else f"timed out after {RUN_TIMEOUT} s"
            for p in procs:
                if p.poll() is None:
                    p.kill()
            break
        time.sleep(0.05)
    outputs = []
    for p in procs:
        p.wait()
        texts = []
        for f in p.files:
            f.seek(0)
            texts.append(f.read().decode(errors="replace"))
            f.close()
        outputs.append(tuple(texts))
    if failed or any(p.returncode != 0 for p in procs):
        report = "\n".join(
            f"--- process {i}: exit {p.returncode}\n--- stdout:\n{out[-4000:]}\n--- stderr:\n{err[-8000:]}"
            for i, (p, (out, err)) in enumerate(zip(procs, outputs))
        )
        raise RunFailed(f"{what}: {failed or 'a process failed'}\n{report}")
    return outputs


def epochs_of(stdout, what):
    rates = [json.loads(line)["samples_per_second"] for line in stdout.splitlines() if line.startswith("{")]
    if not rates:
        raise RunFailed(f"{what}: printed no epoch:\n{stdout[-4000:]}")
    return rates


def run_torchbook(bench_bin, model, world, epochs):
    port = free_port()
    procs = []
    for rank in range(world):
        env = base_env()
        env.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), TORCHBOOK_DIST_TIMEOUT="120")
        procs.append(spawn([bench_bin, model, str(epochs), str(SAMPLES[model])], env))
    what = f"torchbook {model} N={world}"
    outputs = wait_all(procs, what)
    return epochs_of(outputs[0][0], what)


def run_pytorch(python, model, world, epochs):
    torchrun = os.path.join(os.path.dirname(python), "torchrun")
    cmd = [torchrun, "--standalone", "--nproc-per-node", str(world),
           os.path.join(HERE, "pytorch_ddp.py"), model, str(epochs), str(SAMPLES[model])]
    proc = spawn(cmd, base_env())
    what = f"PyTorch DDP {model} N={world} ({' '.join(cmd)})"
    outputs = wait_all([proc], what)
    return epochs_of(outputs[0][0], what)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bench-bin", required=True, help="the ddp_throughput example")
    parser.add_argument("--python", required=True, help="a Python with the full torch 2.13 and torchrun beside it")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per run, after one warm-up epoch")
    parser.add_argument("--sizes", default="1,2,4")
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    models = args.models.split(",")
    for model in models:
        if model not in SAMPLES:
            parser.error(f"unknown model {model!r}")
    torchrun = os.path.join(os.path.dirname(args.python), "torchrun")
    if not os.access(torchrun, os.X_OK):
        parser.error(f"no torchrun beside {args.python}")

    started = datetime.datetime.now().astimezone()
    runs = {(m, n): {"torchbook": [], "pytorch": []} for m in models for n in sizes}
    try:
        for rnd in range(args.rounds):
            for index, (model, world) in enumerate(runs):
                # Alternate which goes first (each row, round to round), so drift in the
                # machine's speed hits both alike.
                order = ["torchbook", "pytorch"] if (rnd + index) % 2 == 0 else ["pytorch", "torchbook"]
                for side in order:
                    if side == "torchbook":
                        rates = run_torchbook(args.bench_bin, model, world, args.epochs)
                    else:
                        rates = run_pytorch(args.python, model, world, args.epochs)
                    runs[(model, world)][side].append(statistics.median(rates))
                    print(f"round {rnd + 1} {model} N={world} {side:9}: "
                          f"{', '.join(f'{r:.0f}' for r in rates)} samples/s", flush=True)
    except RunFailed as e:
        print(f"\nbench-ddp: {e}", file=sys.stderr)
        sys.exit(1)

    med = {key: {side: statistics.median(v) for side, v in sides.items()} for key, sides in runs.items()}
    results = []
    for (model, world), m in med.items():
        row = {"model": model, "processes": world, "torchbook": m["torchbook"], "pytorch": m["pytorch"],
               "ratio": m["torchbook"] / m["pytorch"],
               "runs": runs[(model, world)]}
        if (model, 1) in med:
            one = med[(model, 1)]
            row["efficiency_torchbook"] = m["torchbook"] / (world * one["torchbook"])
            row["efficiency_pytorch"] = m["pytorch"] / (world * one["pytorch"])
        results.append(row)

    print(f"\nData-parallel fit, global samples/s, medians over {args.rounds} rounds "
          f"(batch 128 per rank, Adam, 1 thread per process, {os.cpu_count()} cores):")
    print(f"{'model':5} {'N':>2} | {'torchbook':>10} {'PyTorch':>10} {'ratio':>6} | {'eff. tb':>7} {'eff. pt':>7}")
    for r in results:
        eff = lambda k: f"{r[k]:.2f}" if k in r else "n/a"
        print(f"{r['model']:5} {r['processes']:>2} | {r['torchbook']:>10.0f} {r['pytorch']:>10.0f} {r['ratio']:>6.2f} | "
              f"{eff('efficiency_torchbook'):>7} {eff('efficiency_pytorch'):>7}")
    print("target: torchbook >= PyTorch DDP (ratio >= 1.00) at every N")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"started": started.isoformat(timespec="seconds"), "rounds": args.rounds, "epochs": args.epochs,
                       "samples": SAMPLES, "cores": os.cpu_count(), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
