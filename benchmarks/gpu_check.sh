#!/usr/bin/env bash
# One command for a GPU machine that already has torch (2.4-2.13) and no internet: install nasp
# without its dependencies, run the CUDA tests, time one search iteration of NASP, DARTS and
# DARTS-2nd on the GPU with and without bf16 autocast for the weight step, measure the
# evaluation network's throughput and the data-parallel scaling, and print a summary.
#
#   bash benchmarks/gpu_check.sh            # everything; logs and JSON in gpu-check/
#   OUT=/tmp/gc STEPS=5 bash benchmarks/gpu_check.sh
#   DEVICE=cpu STEPS=1 SMALL="--channels 4 --layers 3 --batch-size 8 --size 16" \
#     bash benchmarks/gpu_check.sh          # a dry run of the script itself on a CPU
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check}
STEPS=${STEPS:-5}
DEVICE=${DEVICE:-cuda}
SMALL=${SMALL:-}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

# nasp itself, without touching the installed torch; a checkout on PYTHONPATH if pip cannot
python -m pip install -q --no-deps --no-build-isolation -e . >"$OUT/pip.log" 2>&1 \
  || export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
python - "$DEVICE" <<'EOF' || exit 1
import sys, torch
if sys.argv[1] == "cuda" and not torch.cuda.is_available():
    sys.exit("no CUDA GPU visible: this check is for a GPU machine")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
      + (f"{torch.cuda.device_count()} x {torch.cuda.get_device_name()}"
         if torch.cuda.is_available() else "no GPU (a dry run)"))
EOF

status=0
echo "== CUDA tests"
if python -c "import pytest" 2>/dev/null; then
  python -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT/tests.log" || status=1
else
  python tests/test_cuda.py 2>&1 | tee "$OUT/tests.log" || status=1
fi

echo "== search iteration, paper size (C=16, 8 cells, batch 64, 3x32x32), fp32 weight step"
python benchmarks/step_time.py --device "$DEVICE" --steps "$STEPS" --warmup 2 $SMALL \
  --json "$OUT/step_time_fp32.json" 2>&1 | tee "$OUT/step_time_fp32.log" || status=1
echo "== the same with bf16 autocast for the weight step (architecture gradient in fp32)"
python benchmarks/step_time.py --device "$DEVICE" --steps "$STEPS" --warmup 2 --amp $SMALL \
  --json "$OUT/step_time_bf16.json" 2>&1 | tee "$OUT/step_time_bf16.log" || status=1
echo "== recurrent cells (PTB-size supernet)"
python benchmarks/step_time.py --device "$DEVICE" --task lm --steps "$STEPS" --warmup 2 \
  ${SMALL:+--batch-size 8} --json "$OUT/step_time_lm.json" 2>&1 | tee "$OUT/step_time_lm.log" || status=1

echo "== evaluation network throughput (DARTS_V2, 20 cells, C=36, batch 96)"
python benchmarks/throughput.py --device "$DEVICE" --steps "$STEPS" --warmup 2 \
  ${SMALL:+--layers 5 --channels 8} 2>&1 \
  | tee "$OUT/throughput.log" || status=1

gpus=$(python -c "import torch; print(torch.cuda.device_count())")
if [ "$DEVICE" = cuda ] && [ "$gpus" -ge 2 ]; then
  echo "== data-parallel scaling, 1 and 2 GPUs (NCCL)"
  python benchmarks/scaling.py --device cuda --worlds 1,2 --steps "$STEPS" 2>&1 \
    | tee "$OUT/scaling.log" || status=1
fi

echo "== summary"
python - "$OUT" <<'EOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
for name in ("step_time_fp32", "step_time_bf16", "step_time_lm"):
    p = out / f"{name}.json"
    if not p.exists():
        print(f"{name}: missing"); continue
    rows = json.loads(p.read_text())["results"]
    t = {k: v["total"] for k, v in rows.items() if isinstance(v, dict) and "total" in v}
    if "nasp" in t:
        ratios = ", ".join(f"{k}/nasp x{v / t['nasp']:.2f}" for k, v in t.items() if k != "nasp")
        print(f"{name}: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in t.items())
              + f"; {ratios}")
EOF
tail -n 4 "$OUT/throughput.log"
exit $status
