#!/usr/bin/env bash
# What a session lent a GPU machine runs, in ONE device call (the lease is 15 minutes, start included):
#   DEADLINE_S=420 bash benchmarks/gpu_session.sh     from the repo root, with .whl/ carried (docs/performance.md
#                                                     says which wheels and how)
# Each step writes its own files under $OUT (or ./gpu_out) and gets at most what is left of DEADLINE_S seconds, so a
# step cut off by the limit loses only itself; benchmarks/gpu_check.py also rewrites its JSON after every part.
# Steps, most wanted first, with the time each took on the H200 of 2026-11-26, second session, DEADLINE_S=430
# (benchmarks/results/2026-11-26-h200-b/, docs/performance.md):
#   0. wheels and versions, and the steps' start-ups                                 ~37 s in all
#   1. gpu_check math-t4, then math-24gb, at NEW_TOKENS (128) new tokens (a random model never stops, so every
#      rollout runs to the limit; the planner gets the same --set): model written and loaded ~20 s, the mixed-adapter
#      call 45.1 s (math-t4: 256 rollouts; 37.4 s in the first session) / 54.0 s (math-24gb: 512 rollouts), one
#      student's update 3.0 s / 6.0 s, a teacher micro-batch <1 s, pre-flight (1 inner step, 32 tokens)
#      12.2 s / 13.7 s                                                                83 s + 96 s (cap 130 s each)
#      TIMINGS=1 adds, last in each setting, one call per student and every student's update:
#      +71 s (math-t4: 44.4 + 26.7, first session) and ~+95-120 s (math-24gb, planner: 44 + 50 s, its mixed call ran
#      27% over the planner): then DEADLINE_S=600 is needed
#   2. pytest -m gpu (28.4 s; 25.9 s in the first session)                            ~30 s
#   3. two outer steps of the tiny recipe on CUDA (53 s; 46 s in the first session)   ~55 s
# In all 297.7 s of the 430 (run-to-run spread on the same card ~20%): the rest is margin. The recipe's own 384
# tokens is a second call: gpu_check.py --settings math-t4 --set inner.max_new_tokens=384 outer.max_new_tokens=384
# (168 s; the mixed call 123.7 s).
set -u
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
DEADLINE_S=${DEADLINE_S:-420}
NEW_TOKENS=${NEW_TOKENS:-128}
CHECK_CAP=${CHECK_CAP:-$([ -n "${TIMINGS:-}" ] && echo 240 || echo 130)}  # seconds per gpu_check setting at most
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
for s in ${SETTINGS:-math-t4 math-24gb}; do
  echo "== 1. gpu_check $s, $NEW_TOKENS new tokens (t=${SECONDS}s)"
  timeout "$(left "$CHECK_CAP")" python3 benchmarks/gpu_check.py --settings "$s" --out "$OUT/gpu_check_$s.json" \
    --set "inner.max_new_tokens=$NEW_TOKENS" "outer.max_new_tokens=$NEW_TOKENS" ${TIMINGS:+--timings} 2>&1 \
    | grep --line-buffered -v "Writing model shards\|it/s\]" | tee "$OUT/gpu_check_$s.log"
done
echo "== 2. pytest -m gpu (t=${SECONDS}s)"
timeout "$(left 60)" python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$OUT/pytest_gpu.log"
echo "== 3. tiny recipe on CUDA, 2 outer steps (t=${SECONDS}s)"
timeout "$(left 90)" python3 -m soarlite run --recipe tiny -q --out /tmp/tiny_cuda device=cuda outer.steps=2 \
  2>&1 | tail -40 | tee "$OUT/tiny_cuda.log"
cp /tmp/tiny_cuda/summary.json "$OUT/tiny_cuda_summary.json" 2>/dev/null
echo "== done (t=${SECONDS}s)"
