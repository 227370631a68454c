#!/usr/bin/env bash
# The GPU check kit's entry point (gpu/README.md): runs gpu_check against this machine's torch
# (LIBTORCH, else /opt/torch/.venv's, else the torch of $KIT_PYTHON), with the torch wheel's
# lib/ and the nvidia-* wheels' lib folders beside it on LD_LIBRARY_PATH. Results go to
# $OUT/gpu_check.json (printed at the end too), the log to $OUT/gpu_check.log.
# Arguments pass to gpu_check (e.g. --quick). Exit status: gpu_check's.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-$HERE/out}
mkdir -p "$OUT"
LOG=$OUT/gpu_check.log
JSON=$OUT/gpu_check.json
: >"$LOG"

if [ -z "${LIBTORCH:-}" ]; then
  for candidate in /opt/torch/.venv/lib/python3*/site-packages/torch; do
    [ -e "$candidate/lib/libtorch_cpu.so" ] && LIBTORCH=$candidate && break
  done
fi
if [ -z "${LIBTORCH:-}" ]; then
  PY=${KIT_PYTHON:-python3}
  LIBTORCH=$("$PY" -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>>"$LOG") || LIBTORCH=
fi
if [ -z "$LIBTORCH" ] || [ ! -e "$LIBTORCH/lib/libtorch_cpu.so" ]; then
  echo "run.sh: no libtorch found: set LIBTORCH to a torch package folder (one with lib/libtorch_cpu.so)" | tee -a "$LOG"
  echo '{"ok": false, "error": "run.sh: no libtorch found (set LIBTORCH)"}' >"$JSON"
  exit 2
fi
SITE=$(dirname "$LIBTORCH")
LIBS=$LIBTORCH/lib
for d in "$SITE"/nvidia/*/lib; do
  [ -d "$d" ] && LIBS=$LIBS:$d
done
export LIBTORCH
export LD_LIBRARY_PATH=$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

{
  echo "== gpu_check kit, $(date -u +%FT%TZ), $(uname -srm), $(nproc) CPUs"
  echo "LIBTORCH=$LIBTORCH"
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  [ -e "$SITE/torch/version.py" ] && grep -E "^(__version__|cuda)" "$SITE/torch/version.py"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  echo "-- libraries gpu_check cannot find (none is good):"
  ldd "$HERE/gpu_check" | grep "not found"
  echo "--"
} >>"$LOG" 2>&1

rm -f "$JSON"
started=$(date +%s)
timeout "${GPU_CHECK_TIMEOUT:-240}" "$HERE/gpu_check" --out "$JSON" "$@" >>"$LOG" 2>&1
rc=$?
echo "== gpu_check exited $rc after $(( $(date +%s) - started )) s" >>"$LOG"
if [ ! -s "$JSON" ]; then
  printf '{"ok": false, "error": "gpu_check exited %s without results (124: timed out); see gpu_check.log"}\n' "$rc" >"$JSON"
  tail -n 40 "$LOG"
fi
cat "$JSON"
grep "^gpu_check: " "$LOG" | grep -v '\.\.\.$'
exit $rc
