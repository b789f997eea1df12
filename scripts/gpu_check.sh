#!/usr/bin/env bash
# One KD recipe in fp32, bf16 and fp16 on a CUDA GPU: the three final metrics side by side and a
# tolerance check (accuracy within 0.02, validation loss within 0.01 of fp32; see
# benchmarks/precision_check.py). Exit status: 0 agree, 1 disagree, 2 no such device / bad usage.
#
#   scripts/gpu_check.sh                      # CUDA; writes benchmarks/results/gpu_check.{json,md}
#   scripts/gpu_check.sh --device cpu --quick # the same code on the CPU, a few seconds, writes nothing
#   scripts/gpu_check.sh --out FILE.json      # elsewhere; extra options go to precision_check.py
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"

device=cuda
out=""
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --device) [ $# -ge 2 ] || { echo "error: --device needs a value (cuda or cpu)" >&2; exit 2; }
              device="$2"; shift 2 ;;
    --out) [ $# -ge 2 ] || { echo "error: --out needs a file name" >&2; exit 2; }
           out="$2"; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) args+=("$1"); shift ;;
  esac
done
case "$device" in
  cuda) [ -n "$out" ] || out=benchmarks/results/gpu_check.json ;;
  cpu) export CUDA_VISIBLE_DEVICES="" ;;
  *) echo "error: unknown --device '$device'" >&2; echo "  fix: use --device cuda or --device cpu" >&2; exit 2 ;;
esac
[ -z "$out" ] || args+=(--out "$out")
exec "$PYTHON" benchmarks/precision_check.py --device "$device" "${args[@]}"
