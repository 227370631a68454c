"""Kernel latency benchmark: torchbook side by side with ipykernel (and evcxr_jupyter when its
kernelspec is installed), measured in one run, alternating kernels, medians over N runs.

  start     process start -> first kernel_info_reply
  1 + 1     round trip of a trivial cell (execute_request -> idle), in a warm kernel
  10k lines a cell printing 10,000 lines: time to idle and number of stream messages

Run with `make bench`.
"""

import argparse
import statistics
import time

import jupyter_client
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

CELLS = {
    "torchbook": ("1 + 1", 'for i in 0..10000 { println!("line {i}"); }'),
    "evcxr": ("1 + 1", 'for i in 0..10000 { println!("line {i}"); }'),
    "python3": ("1 + 1", "for i in range(10000): print(f'line {i}')"),
}


def start(kernel_name):
    t0 = time.perf_counter()
    km = jupyter_client.KernelManager(kernel_name=kernel_name)
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.kernel_info()
    kc.get_shell_msg(timeout=60)
    return time.perf_counter() - t0, km, kc


def run_cell(kc, code):
    t0 = time.perf_counter()
    msg_id = kc.execute(code)
    streams = 0
    while True:
        msg = kc.get_iopub_msg(timeout=300)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            streams += 1
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    kc.get_shell_msg(timeout=60)
    return time.perf_counter() - t0, streams


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--torchbook-kernel", default="torchbook")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    kernels = {"torchbook": args.torchbook_kernel, "ipykernel": "python3"}
    specs = KernelSpecManager().find_kernel_specs()
    if "rust" in specs:
        kernels["evcxr_jupyter"] = "rust"
    cells = {
        "torchbook": CELLS["torchbook"],
        "ipykernel": CELLS["python3"],
        "evcxr_jupyter": CELLS["evcxr"],
    }

    starts = {k: [] for k in kernels}
    for _ in range(args.runs):
        for label, name in kernels.items():  # alternate kernels run by run
            elapsed, km, kc = start(name)
            starts[label].append(elapsed)
            kc.stop_channels()
            km.shutdown_kernel(now=True)

    trivial = {k: [] for k in kernels}
    lines = {}
    for label, name in kernels.items():
        _, km, kc = start(name)
        trivial_code, lines_code = cells[label]
        run_cell(kc, trivial_code)  # warm-up: the first cell waits for the engine
        for _ in range(args.runs):
            trivial[label].append(run_cell(kc, trivial_code)[0])
        lines[label] = [run_cell(kc, lines_code) for _ in range(5)]
        kc.stop_channels()
        km.shutdown_kernel(now=True)

    ms = lambda xs: f"{statistics.median(xs) * 1000:8.1f} ms"

    def overhead(k):
        # The cost of the output itself: the 10,000-line cell less a trivial cell's round trip.
        extra = statistics.median([t for t, _ in lines[k]]) - statistics.median(trivial[k])
        return f"{extra * 1000:8.1f} ms"
    print(f"\n{'figure (median)':32}" + "".join(f"{k:>18}" for k in kernels))
    print(f"{'start -> kernel_info_reply':32}" + "".join(f"{ms(starts[k]):>18}" for k in kernels))
    print(f"{'trivial cell 1 + 1':32}" + "".join(f"{ms(trivial[k]):>18}" for k in kernels))
    print(
        f"{'print 10,000 lines':32}"
        + "".join(f"{ms([t for t, _ in lines[k]]):>18}" for k in kernels)
    )
    print(
        f"{'  minus the 1 + 1 cell':32}"
        + "".join(
            f"{overhead(k):>18}" for k in kernels
        )
    )
    print(
        f"{'  stream messages':32}"
        + "".join(f"{statistics.median([s for _, s in lines[k]]):>18.0f}" for k in kernels)
    )
    # First tch cell of a fresh kernel, prelude cache already built: from process start.
    tch_cell = "let t = Tensor::randn(&[3, 3], (Kind::Float, Device::Cpu)); t.sum(Kind::Float)"
    firsts = []
    for _ in range(max(3, args.runs // 4)):
        t0 = time.perf_counter()
        km = jupyter_client.KernelManager(kernel_name=args.torchbook_kernel)
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        run_cell(kc, tch_cell)
        firsts.append(time.perf_counter() - t0)
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    print(f"{'first tch cell, fresh kernel':32}{ms(firsts):>18}")

    print(f"\n{args.runs} runs each; targets: start <= 500 ms, 10,000 lines <= 150 ms in <= 20 messages")


if __name__ == "__main__":
    main()
