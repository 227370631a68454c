"""Time to accuracy (`make bench-apps`): the image classifier of 02-image-classification and the
text classifier of 04-text-classification, trained by torchbook's `fit`
(runtime/examples/time_to_accuracy.rs) and by PyTorch eager (pytorch_apps.py) on the same
exported tensors, with the same architecture, batch size, optimizer, schedule and 2 threads,
alternating in one run. Reports, per task, the median over runs of the seconds until the
held-out accuracy first reaches the notebook's target, and of the final accuracy.
Target: torchbook <= 0.8x PyTorch's time.

  python benches/time_to_accuracy.py --bench-bin PATH --python TORCH_PYTHON [--runs N] [--out JSON]
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
# Held-out accuracy each notebook promises (tests/python/test_notebooks.py), and epochs to train.
TASKS = {"image": (0.98, 20), "text": (0.90, 15)}


def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def reached(epochs, target):
    """Seconds at the first epoch whose held-out accuracy reaches `target`, or None."""
    return next((e["seconds"] for e in epochs if e["accuracy"] >= target), None)


def median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bench-bin", required=True)
    parser.add_argument("--python", required=True, help="a Python with the full torch 2.13 installed")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tasks", default="image,text")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks.split(","):
            target, epochs = TASKS[task]
            exported = os.path.join(tmp, task)
            subprocess.run([args.bench_bin, "export", task, exported], check=True)
            runs = {"torchbook": [], "pytorch": []}
            for seed in range(args.runs):
                # Alternate which goes first, so drift in the machine's speed hits both alike.
                order = ["torchbook", "pytorch"] if seed % 2 == 0 else ["pytorch", "torchbook"]
                for name in order:
                    if name == "torchbook":
                        epochs_log = run([args.bench_bin, "run", task, str(epochs), str(seed)])
                    else:
                        epochs_log = run([args.python, os.path.join(HERE, "pytorch_apps.py"), task, str(epochs), str(seed), exported])
                    runs[name].append(epochs_log)
                    t = reached(epochs_log, target)
                    print(f"{task} seed {seed} {name:9}: target {target:.0%} "
                          f"{'at %.1f s' % t if t is not None else 'not reached'}, final {epochs_log[-1]['accuracy']:.4f}, "
                          f"{epochs_log[-1]['seconds']:.1f} s for {len(epochs_log)} epochs", flush=True)
            summary = {}
            for name, logs in runs.items():
                times = [reached(log, target) for log in logs]
                summary[name] = {
                    "median_seconds_to_target": median_or_none(times),
                    "reached": sum(t is not None for t in times),
                    "median_final_accuracy": statistics.median(log[-1]["accuracy"] for log in logs),
                    "median_seconds_per_epoch": statistics.median(log[-1]["seconds"] / len(log) for log in logs),
                }
            results[task] = {"target": target, "runs": args.runs, **summary}

    print(f"\nTime to accuracy, medians over {args.runs} runs (2 threads each, alternating):")
    print(f"{'task':6} {'target':>6} | {'torchbook s':>11} {'PyTorch s':>9} {'ratio':>6} | {'final acc tb':>12} {'final acc pt':>12} | {'s/epoch tb':>10} {'s/epoch pt':>10}")
    for task, r in results.items():
        tb, pt = r["torchbook"], r["pytorch"]
        a, b = tb["median_seconds_to_target"], pt["median_seconds_to_target"]
        ratio = f"{a / b:.2f}" if a and b else "n/a"
        fmt = lambda v: f"{v:.1f}" if v is not None else "never"
        print(f"{task:6} {r['target']:>6.0%} | {fmt(a):>11} {fmt(b):>9} {ratio:>6} | {tb['median_final_accuracy']:>12.4f} {pt['median_final_accuracy']:>12.4f} | "
              f"{tb['median_seconds_per_epoch']:>10.2f} {pt['median_seconds_per_epoch']:>10.2f}")
        r["ratio"] = a / b if a and b else None
    print("target: torchbook <= 0.8x PyTorch's time to the target accuracy")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
