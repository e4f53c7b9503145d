#!/usr/bin/env bash
# What a session lent a GPU machine runs first, in ONE device call (the lease is 15 minutes, start included):
#   bash benchmarks/gpu_session.sh       from the repo root, with .whl/ carried (docs/performance.md says which wheels)
# Each step writes its own files under $OUT (or ./gpu_out) and gets at most what is left of DEADLINE_S seconds, so a
# step cut off by the limit loses only itself. Steps, most valuable first:
#   1. the gpu-marked tests; 2. benchmarks/gpu_check.py per setting; 3. two outer steps of the tiny recipe on CUDA.
set -u
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
DEADLINE_S=${DEADLINE_S:-430}
export PYTHONUNBUFFERED=1
left() { local l=$((DEADLINE_S - SECONDS)); local cap=$1; echo $(( l < cap ? (l > 5 ? l : 5) : cap )); }
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
else
  export PYTHONPATH=$PWD
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/card.txt"
python3 -c "import sys, torch, transformers, peft; import importlib.util as u
print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers',
      transformers.__version__, 'peft', peft.__version__, 'bitsandbytes', u.find_spec('bitsandbytes') is not None)" \
  2>&1 | tee -a "$OUT/card.txt"
echo "== 1. pytest -m gpu (t=${SECONDS}s)"
timeout "$(left 110)" python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$OUT/pytest_gpu.log"
for s in ${SETTINGS:-math-t4 math-24gb}; do
  echo "== 2. gpu_check $s (t=${SECONDS}s)"
  timeout "$(left 150)" python3 benchmarks/gpu_check.py --settings "$s" --out "$OUT/gpu_check_$s.json" 2>&1 \
    | grep -v "Writing model shards\|it/s\]" | tee "$OUT/gpu_check_$s.log"
done
echo "== 3. tiny recipe on CUDA, 2 outer steps (t=${SECONDS}s)"
timeout "$(left 120)" python3 -m soarlite run --recipe tiny -q --out /tmp/tiny_cuda device=cuda outer.steps=2 \
  2>&1 | tail -40 | tee "$OUT/tiny_cuda.log"
cp /tmp/tiny_cuda/summary.json "$OUT/tiny_cuda_summary.json" 2>/dev/null
echo "== done (t=${SECONDS}s)"
