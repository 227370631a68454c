"""Kernel latency benchmark (`make bench-latency`): torchbook, evcxr_jupyter with tch, and
ipykernel, measured in one run, kernels alternating, medians (and min/max) over N runs.

  start               process start -> first kernel_info_reply
  first cell          process start -> result of the first tch cell (evcxr: `:dep tch` first;
                      ipykernel: `1 + 1`)
  trivial cell        `1 + 1` round trip (execute_request -> idle) in a warm session with tch loaded
  tch cell            a small tch cell after the first
  same cell again     the tch cell's code sent again unchanged
  print 10,000 lines  time to idle, and how many stream messages it took
  50 queued cells     50 `1 + 1` requests sent at once -> the last idle
  RSS                 the kernel process, torchbook's engine process (evcxr and rust-analyzer),
                      the worker process (evcxr's subprocess) and all of them, in MB

evcxr_jupyter runs in its best configuration: a persistent EVCXR_TMPDIR, so `:dep tch` compiles
tch once (the first benchmark run takes minutes) and later sessions reuse the build.
"""

import argparse
import sys
import json
import os
import pathlib
import queue
import shutil
import signal
import statistics
import tempfile
import time

import jupyter_client
import jupyter_client.kernelspec

TCH_CELL = "let t = Tensor::randn(&[3, 3], (Kind::Float, Device::Cpu)); t.sum(Kind::Float)"
EVCXR_SETUP = ':dep tch = "0.26"\nuse tch::{Tensor, Kind, Device};'
LINES = {"rust": 'for i in 0..10000 { println!("line {i}"); }', "python": "for i in range(10000): print(f'line {i}')"}


def evcxr_kernelspec(binary, home, libtorch):
    """A kernelspec for evcxr_jupyter with libtorch and a persistent EVCXR_TMPDIR. Cells are
    dylibs linked to Rust's shared std, so its folder goes on the library path too."""
    import subprocess

    sysroot = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True, check=True).stdout.strip()
    host = [l.split(": ")[1] for l in subprocess.run(["rustc", "-vV"], capture_output=True, text=True).stdout.splitlines() if l.startswith("host:")][0]
    std_lib = f"{sysroot}/lib/rustlib/{host}/lib"
    spec_dir = pathlib.Path(home) / "share/jupyter/kernels/evcxr-tch"
    spec_dir.mkdir(parents=True, exist_ok=True)
    tmpdir = pathlib.Path(home) / "tmpdir"
    tmpdir.mkdir(exist_ok=True)
    spec = {
        "argv": [binary, "--control_file", "{connection_file}"],
        "display_name": "Rust (evcxr, tch)",
        "language": "rust",
        "interrupt_mode": "message",
        "env": {
            "EVCXR_TMPDIR": str(tmpdir),
            "LIBTORCH": libtorch,
            "LD_LIBRARY_PATH": f"{libtorch}/lib:{std_lib}",
        },
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    return str(pathlib.Path(home) / "share/jupyter")


def variant_kernelspec(base, name, env):
    """A copy of the installed kernelspec `base` under `name`, with `env` added: the same kernel
    measured with one setting changed, alternating with the original in the same run."""
    spec = jupyter_client.kernelspec.KernelSpecManager().get_kernel_spec(base)
    root = pathlib.Path(tempfile.mkdtemp(prefix="torchbook-bench-spec-"))
    spec_dir = root / "kernels" / name
    spec_dir.mkdir(parents=True)
    spec_env = dict(spec.env or {}, **env)
    kernel = {"argv": spec.argv, "display_name": name, "language": spec.language, "env": spec_env,
              "interrupt_mode": spec.interrupt_mode}
    (spec_dir / "kernel.json").write_text(json.dumps(kernel, indent=1))
    return str(root)


class Session:
    def __init__(self, kernel_name):
        self.t0 = time.perf_counter()
        self.km = jupyter_client.KernelManager(kernel_name=kernel_name)
        self.km.start_kernel()
        self.kc = self.km.client()
        self.kc.start_channels()

    def wait_ready(self):
        self.kc.kernel_info()
        self.kc.get_shell_msg(timeout=120)
        ready = time.perf_counter() - self.t0
        # iopub is PUB/SUB: messages published before our subscription is live are lost, and
        # a cell's `idle` with them (a fast kernel can answer before it is). Wait until a
        # request's status comes through before timing anything on iopub.
        while True:
            msg_id = self.kc.kernel_info()
            self.kc.get_shell_msg(timeout=120)
            try:
                while self.kc.get_iopub_msg(timeout=0.5)["parent_header"].get("msg_id") != msg_id:
                    pass
                return ready
            except queue.Empty:
                continue

    def run(self, code, timeout=1800):
        t0 = time.perf_counter()
        msg_id = self.kc.execute(code)
        streams, error = self.drain(msg_id, timeout)
        self.kc.get_shell_msg(timeout=timeout)
        if error:
            raise RuntimeError(f"{code!r} failed: {error}")
        return time.perf_counter() - t0, streams

    def drain(self, msg_id, timeout):
        streams, error = 0, None
        while True:
            msg = self.kc.get_iopub_msg(timeout=timeout)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                streams += 1
            if msg["msg_type"] == "error":
                error = msg["content"]["evalue"]
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return streams, error

    def complete(self, code):
        """Time to a complete_reply with at least one match (an error if there is none)."""
        t0 = time.perf_counter()
        reply = self.kc.complete(code, len(code), reply=True, timeout=300)
        if not reply["content"].get("matches"):
            raise RuntimeError(f"no completion for {code!r}: {reply['content']}")
        return time.perf_counter() - t0

    def inspect(self, code):
        t0 = time.perf_counter()
        reply = self.kc.inspect(code, len(code), reply=True, timeout=300)
        if not reply["content"].get("found"):
            return float("nan")
        return time.perf_counter() - t0

    def queued(self, code, n):
        t0 = time.perf_counter()
        ids = [self.kc.execute(code) for _ in range(n)]
        for msg_id in ids:
            self.drain(msg_id, 600)
        for _ in ids:
            self.kc.get_shell_msg(timeout=600)
        return time.perf_counter() - t0

    def rss_mb(self):
        """(kernel, engine, worker): torchbook's kernel runs evcxr in a child `torchbook engine`,
        whose child is the worker; evcxr_jupyter's worker is its own child; ipykernel has none."""
        pid = self.km.provisioner.process.pid
        engines = [c for c in children(pid) if b"\0engine" in pathlib.Path(f"/proc/{c}/cmdline").read_bytes()]
        nan = float("nan")
        if engines:
            workers = [w for e in engines for w in children(e)]
            return rss(pid), sum(rss(e) for e in engines), sum(rss(w) for w in workers) if workers else nan
        workers = children(pid)
        return rss(pid), nan, sum(rss(w) for w in workers) if workers else nan

    def close(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def long_sessions(kernels, setup, cells, runs):
    """Two notebook-session rows of issue 15, per Rust kernel: a trivial cell after the session
    defined 50 functions and 50 structs, against a fresh session's; and `cells` small cells in
    one session, RSS growth and the last cells' time against cells 5-15."""
    results = {}
    for label, name in kernels.items():
        # One after the other: two evcxr_jupyter kernels starting at once in its persistent
        # EVCXR_TMPDIR break each other's first build.
        fresh, defined = None, None
        for which in ("fresh", "defined"):
            s = Session(name)
            s.wait_ready()
            if setup[label]:
                s.run(setup[label])
            fresh, defined = (s, defined) if which == "fresh" else (fresh, s)
        for block in range(10):
            items = "\n".join(f"fn f_{block}_{i}(x: i32) -> i32 {{ x + {i} }}\n"
                              f"#[derive(Debug, Clone)] struct S{block}x{i} {{ a: i32, b: String }}" for i in range(5))
            defined.run(items)
        times = {"fresh": [], "defined": []}
        for _ in range(runs):  # alternating
            times["fresh"].append(fresh.run("1 + 1")[0])
            times["defined"].append(defined.run("1 + 1")[0])
        fresh.close()
        defined.close()
        long = Session(name)
        long.wait_ready()
        if setup[label]:
            long.run(setup[label])
        per_cell, rss_at = [], {}
        for k in range(1, cells + 1):
            per_cell.append(long.run(f"let v{k % 50} = {k} + 1;\nv{k % 50}")[0])
            if k in (10, cells):
                rss_at[k] = sum(m for m in long.rss_mb() if m == m)
        long.close()
        early = statistics.median(per_cell[4:15])
        late = statistics.median(per_cell[-10:])
        results[label] = {
            "after 50 fns + 50 structs": statistics.median(times["defined"]),
            "  fresh session": statistics.median(times["fresh"]),
            "cells 5-15": early,
            f"last 10 of {cells} cells": late,
            "rss growth": rss_at[cells] - rss_at[10],
        }
    return results


def first_cells_with_spare(kernel_name, runs):
    """First tch cell from process start when the previous kernel left a warm spare engine, as
    when a user opens a second notebook. Returns the times and the waiting spare's RSS (MB)."""
    spare_dir = tempfile.mkdtemp(prefix="torchbook-bench-spares-")
    os.environ.update(TORCHBOOK_SPARE_ENGINE="1", TORCHBOOK_SPARE_DIR=spare_dir)

    def ready_spare():
        deadline = time.time() + 300
        while time.time() < deadline:
            for path in pathlib.Path(spare_dir).glob("*.ready"):
                text = path.read_text().strip()
                if text:
                    return int(text)
            time.sleep(0.2)
        raise RuntimeError("no spare engine became ready")

    try:
        # Each kernel stays open until the spare it starts after its first cell is warm, as
        # when a user opens the next notebook with the last one still open (a kernel shut down
        # at once may not have started its spare yet).
        previous = Session(kernel_name)  # cold; starts the first spare once its first cell is done
        previous.wait_ready()
        previous.run(TCH_CELL)
        times = []
        for _ in range(runs):
            ready_spare()
            previous.close()
            previous = Session(kernel_name)
            previous.wait_ready()
            previous.run(TCH_CELL)
            times.append(time.perf_counter() - previous.t0)
        pid = ready_spare()
        previous.close()
        memory = rss(pid) + sum(rss(c) for c in children(pid))
        os.kill(pid, signal.SIGTERM)
        return times, memory
    finally:
        os.environ["TORCHBOOK_SPARE_ENGINE"] = "0"
        del os.environ["TORCHBOOK_SPARE_DIR"]
        shutil.rmtree(spare_dir, ignore_errors=True)


def children(pid):
    found = []
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def rss(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--torchbook-kernel", default="torchbook")
    parser.add_argument("--evcxr-bin")
    parser.add_argument("--evcxr-home")
    parser.add_argument("--libtorch", default=os.environ.get("LIBTORCH", ""))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--session-cells", type=int, default=1000,
                        help="cells in the long-session row (0 leaves the long-session rows out)")
    parser.add_argument("--with-types-from-ra", action="store_true",
                        help="also measure torchbook with variable types from rust-analyzer, as before "
                             "issue 15's second session (TORCHBOOK_TYPES_FROM_RA=1, a column of its own)")
    args = parser.parse_args()

    # Spare engines (kernel/src/spare.rs) are measured on their own, at the end: here every
    # torchbook kernel starts cold, and no spare competes for the CPU during the measurements.
    os.environ["TORCHBOOK_SPARE_ENGINE"] = "0"
    kernels = {"torchbook": args.torchbook_kernel}
    setup = {"torchbook": None, "evcxr": EVCXR_SETUP, "ipykernel": None}
    if args.evcxr_bin:
        extra = evcxr_kernelspec(args.evcxr_bin, args.evcxr_home, args.libtorch)
        os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [os.environ.get("JUPYTER_PATH"), extra]))
        kernels["evcxr"] = "evcxr-tch"
        # Compile tch into evcxr's persistent folder once, outside the measurements.
        warm = Session("evcxr-tch")
        warm.wait_ready()
        print("evcxr: :dep tch (compiles tch the first time) ...", flush=True)
        print(f"evcxr: ready after {warm.run(EVCXR_SETUP)[0]:.1f} s", flush=True)
        warm.close()
    if args.with_types_from_ra:
        # evcxr's rust-analyzer types every variable, with the pruned graph and trimmed
        # library (engine/cargo_metadata.rs, engine/rust_src.rs), as before engine/annotate.rs.
        extra = variant_kernelspec(args.torchbook_kernel, "torchbook-types-ra", {"TORCHBOOK_TYPES_FROM_RA": "1"})
        os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [os.environ.get("JUPYTER_PATH"), extra]))
        kernels["tb-types-ra"] = "torchbook-types-ra"
        setup["tb-types-ra"] = None
    kernels["ipykernel"] = "python3"
    language = {"torchbook": "rust", "tb-types-ra": "rust", "evcxr": "rust", "ipykernel": "python"}
    first_code = {"torchbook": TCH_CELL, "tb-types-ra": TCH_CELL, "evcxr": EVCXR_SETUP + "\n" + TCH_CELL, "ipykernel": "1 + 1"}
    figures = {k: {} for k in kernels}

    starts = {k: [] for k in kernels}
    firsts = {k: [] for k in kernels}
    for run in range(args.runs):
        for label, name in kernels.items():  # alternating, run by run
            s = Session(name)
            starts[label].append(s.wait_ready())
            if run < max(3, args.runs // 4):
                s.run(first_code[label])
                firsts[label].append(time.perf_counter() - s.t0)
            s.close()

    sessions = {label: Session(name) for label, name in kernels.items()}
    for label, s in sessions.items():
        s.wait_ready()
        if setup[label]:
            s.run(setup[label])
        s.run("1 + 1")
    trivial = {k: [] for k in kernels}
    tch = {k: [] for k in kernels if language[k] == "rust"}
    again = {k: [] for k in tch}
    for i in range(args.runs):
        for label, s in sessions.items():
            trivial[label].append(s.run("1 + 1")[0])
            if label in tch:
                code = TCH_CELL.replace("[3, 3]", f"[3, {i + 3}]")
                tch[label].append(s.run(code)[0])
                again[label].append(s.run(code)[0])
    # Memory after the first tch cell and the ones after it, before anything asks for a
    # completion (which widens torchbook's rust-analyzer view: docs/ARCHITECTURE.md).
    memory = {k: s.rss_mb() for k, s in sessions.items()}
    completion, inspection = {}, {}
    for label, s in sessions.items():
        if label in tch:
            completion[label] = [s.complete("t.si") for _ in range(6)]
            inspection[label] = [s.inspect("t") for _ in range(5)]
    lines = {k: [s.run(LINES[language[k]]) for _ in range(5)] for k, s in sessions.items()}
    queued = {k: s.queued("1 + 1", 50) for k, s in sessions.items()}
    memory_after_completion = {k: s.rss_mb() for k, s in sessions.items()}
    for s in sessions.values():
        s.close()
    with_spare, spare_rss = first_cells_with_spare(args.torchbook_kernel, 5)
    rust = {k: v for k, v in kernels.items() if language[k] == "rust" and k != "tb-types-ra"}

    def med(xs):
        return statistics.median(xs) * 1000

    rows = [
        ("start -> kernel_info_reply", {k: med(v) for k, v in starts.items()}),
        ("first cell (tch), from start", {k: med(v) for k, v in firsts.items()}),
        ("  same, a spare engine ready", {"torchbook": med(with_spare)}),
        ("trivial cell 1 + 1, median", {k: med(v) for k, v in trivial.items()}),
        ("  min", {k: min(v) * 1000 for k, v in trivial.items()}),
        ("  max", {k: max(v) * 1000 for k, v in trivial.items()}),
        ("tch cell after the first", {k: med(v) for k, v in tch.items()}),
        ("same tch cell again", {k: med(v) for k, v in again.items()}),
        ("first completion `t.si`", {k: v[0] * 1000 for k, v in completion.items()}),
        ("  later completions, median", {k: med(v[1:]) for k, v in completion.items()}),
        ("inspect `t`, median", {k: med(v) for k, v in inspection.items()}),
        ("print 10,000 lines", {k: med([t for t, _ in v]) for k, v in lines.items()}),
        ("50 queued 1 + 1 cells", {k: v * 1000 for k, v in queued.items()}),
    ]
    header = f"{'figure (ms)':32}" + "".join(f"{k:>14}" for k in kernels)
    if "evcxr" in kernels:
        header += f"{'torchbook/evcxr':>18}"
    if "tb-types-ra" in kernels:
        header += f"{'torchbook/types-ra':>19}"
    print("\n" + header)
    for name, values in rows:
        line = f"{name:32}" + "".join(f"{values[k]:14.1f}" if k in values else f"{'-':>14}" for k in kernels)
        if "evcxr" in kernels and "evcxr" in values:
            line += f"{values['torchbook'] / values['evcxr']:18.2f}"
        if "tb-types-ra" in kernels and "tb-types-ra" in values:
            line += f"{values['torchbook'] / values['tb-types-ra']:19.2f}"
        print(line)
    print(f"{'  stream messages (10k lines)':32}" + "".join(f"{statistics.median([s for _, s in lines[k]]):14.0f}" for k in kernels))
    print(f"{'RSS kernel process (MB)':32}" + "".join(f"{memory[k][0]:14.1f}" for k in kernels))
    print(f"{'RSS engine process (MB)':32}" + "".join(f"{memory[k][1]:14.1f}" for k in kernels))
    print(f"{'RSS worker process (MB)':32}" + "".join(f"{memory[k][2]:14.1f}" for k in kernels))
    print(f"{'RSS all processes (MB)':32}" + "".join(f"{sum(m for m in memory[k] if m == m):14.1f}" for k in kernels))
    print(f"{'RSS all, after completions (MB)':32}" + "".join(f"{sum(m for m in memory_after_completion[k] if m == m):14.1f}" for k in kernels))
    print(f"{'RSS waiting spare (MB)':32}{spare_rss:14.1f}  (engine + worker, while no kernel uses it)")
    # The long-session rows take longest: the table above is out before they start.
    sys.stdout.flush()
    long = long_sessions(rust, setup, args.session_cells, args.runs) if args.session_cells else {}
    if long:
        print(f"\n{'long sessions (ms; MB)':32}" + "".join(f"{k:>14}" for k in long) + f"{'ratio in session':>20}")
        for row in next(iter(long.values())):
            values = {k: v[row] * (1 if row == "rss growth" else 1000) for k, v in long.items()}
            print(f"{row:32}" + "".join(f"{values[k]:14.1f}" for k in long))
        for k, v in long.items():
            print(f"  {k}: after-definitions / fresh {v['after 50 fns + 50 structs'] / v['  fresh session']:.2f} (target <= 1.3), "
                  f"late / early {v[f'last 10 of {args.session_cells} cells'] / v['cells 5-15']:.2f} (target <= 1.2), "
                  f"RSS growth {v['rss growth']:.0f} MB (target <= 100)")
    print(f"\n{args.runs} runs each (first cell: {len(firsts['torchbook'])}), kernels alternating; "
          "targets: trivial <= 0.3x evcxr, tch cell <= 350 ms, first tch cell <= 2.5 s, start <= 500 ms, "
          "kernel RSS <= 40 MB, 50 queued <= 50 x trivial")


if __name__ == "__main__":
    main()
