"""fit() against a plain tch loop and PyTorch eager, in one run, alternating A/B/C per round,
medians over rounds (DESIGN §5: the machine is noisy). Targets: fit >= 0.95x plain tch and
>= 1.3x PyTorch on the MLP.

  python benches/fit_throughput.py --bench-bin PATH [--python PATH_TO_TORCH_PYTHON] [--rounds N]
"""

import argparse
import json
import os
import statistics
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(line)["samples_per_second"] for line in out.splitlines() if line.startswith("{")]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bench-bin", required=True)
    parser.add_argument("--python", help="a Python with the full torch 2.13 installed")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()

    for model in ("mlp", "cnn"):
        rates = {"fit": [], "plain": [], "pytorch": []}
        for _ in range(args.rounds):
            rates["fit"] += run([args.bench_bin, "fit", model, str(args.epochs)])
            rates["plain"] += run([args.bench_bin, "plain", model, str(args.epochs)])
            if args.python:
                rates["pytorch"] += run([args.python, os.path.join(HERE, "pytorch_eager.py"), model, str(args.epochs)])
        med = {k: statistics.median(v) for k, v in rates.items() if v}
        print(f"\n{model.upper()} (batch 128, Adam, 2 threads): median samples/s over {args.rounds} rounds")
        for k, v in med.items():
            print(f"  {k:8} {v:10.0f}")
        print(f"  fit / plain tch = {med['fit'] / med['plain']:.3f}   (target >= 0.95)")
        if "pytorch" in med:
            print(f"  fit / PyTorch   = {med['fit'] / med['pytorch']:.3f}   (target >= 1.3 on the MLP)")


if __name__ == "__main__":
    main()
