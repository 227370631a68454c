#!/usr/bin/env bash
# Runs the application notebooks on the CPU kernelspec (`torchbook`) and on the CUDA one
# (`torchbook-gpu`, from `make gpu`), and prints each notebook's wall time on both and the
# speed-up. The notebooks use Device::best(), so they are the same files. Run from the checkout
# after `make demo` and `make gpu`, on a machine with an NVIDIA GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
JUPYTER=${JUPYTER:-.venv/bin/jupyter}
export JUPYTER_PATH=${JUPYTER_PATH:-$(readlink -f .venv)/share/jupyter}
out=build/gpu
mkdir -p "$out"
printf '%-34s %10s %10s %9s\n' notebook cpu_s gpu_s speedup
for nb in examples/0[1-5]-*.ipynb; do
  declare -A seconds=()
  for kernel in torchbook torchbook-gpu; do
    start=$(date +%s.%N)
    TORCHBOOK_METRICS_DIR=$PWD/$out/$kernel "$JUPYTER" nbconvert --to notebook --execute \
      --ExecutePreprocessor.kernel_name="$kernel" --ExecutePreprocessor.timeout=1800 \
      --output-dir "$out/$kernel" "$nb" >/dev/null 2>"$out/$kernel.log" \
      || { echo "$nb failed on $kernel (see $out/$kernel.log)"; exit 1; }
    seconds[$kernel]=$(echo "$(date +%s.%N) - $start" | bc)
  done
  printf '%-34s %10.1f %10.1f %8.2fx\n' "$(basename "$nb")" "${seconds[torchbook]}" "${seconds[torchbook-gpu]}" \
    "$(echo "${seconds[torchbook]} / ${seconds[torchbook-gpu]}" | bc -l)"
done
echo "metrics: $out/torchbook/*.json (CPU) and $out/torchbook-gpu/*.json (GPU)"
