#!/usr/bin/env bash
# One-command GPU check (issue 17): the CUDA-only tests and the speed figures of the product
# engine on one H100/H200, in under 8 minutes, into one JSON + markdown summary.
#
#   bash benchmarks/gpu_check.sh [--out DIR] [--smoke | --smoke-wan]
#
# Steps (each a `lipforcing bench` run through streaming/engine.py, random weights):
#   1. CUDA-only tests (pytest -m gpu): every execution option against the plain path.
#   2. wan-1.3b student at 512x512, paper's protocol: eager bf16 (student-eager), + compile,
#      + CUDA graphs, + FP8 where the GPU has it (sm89+; below, the bench records the refusal).
#   3. wan-1.3b teacher (81 frames, 50 steps, CFG 4.5) vs student: the speed-up (teacher).
#   4. wan-14b student, eager bf16 (student-large).
#   5. 1 / 2 / 4 concurrent wan-1.3b sessions (sessions: per-session FPS, latency).
# Peak memory is in every bench JSON. The summary (summary.json, summary.md) is written by
# benchmarks/gpu_summary.py from the step JSONs.
#
# Python environment, first that applies (the summary records which):
#   a. $LIPFORCING_PYTHON, if set;
#   b. ./.venv/bin/python, if it imports a CUDA build of torch;
#   c. a venv in ./.venv-gpu made with --system-site-packages over the system python3, when
#      that python3 has a CUDA torch (then only the project is installed, --no-deps, plus any
#      wheels in ./.whl: for machines without a package index, carry e.g. diffusers there);
#   d. a fresh ./.venv-gpu with torch from PyTorch's CUDA index (docs/INSTALL.md), then
#      `pip install -e ".[models,serve]"`.
# --smoke runs every step on the CPU with the tiny preset at 2 blocks and 64x64 crops (the
# regular test suite runs it: tests/bench/test_gpu_check.py), --smoke-wan the Wan presets at
# one block and 64x64 crops (a slow test: the Wan VAE and the 512-token contexts are heavy on a
# CPU), so the script and the summary are checked where no GPU is.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="benchmarks/results/gpu-check"
SMOKE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --smoke) SMOKE=1; shift ;;
    --smoke-wan) SMOKE=2; shift ;;
    *) echo "error: unknown argument $1 (use --out DIR, --smoke, --smoke-wan)" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT"
CUDA_INDEX="${LIPFORCING_TORCH_INDEX:-https://download.pytorch.org/whl/cu128}"

has_cuda_torch() {  # $1: python
  "$1" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null
}

pick_python() {
  if [ -n "${LIPFORCING_PYTHON:-}" ]; then
    PY="$LIPFORCING_PYTHON"; ENVIRONMENT="LIPFORCING_PYTHON=$PY"; return
  fi
  if [ "$SMOKE" != 0 ]; then
    PY="${PYTHON:-.venv/bin/python}"; ENVIRONMENT="smoke: $PY (CPU)"; return
  fi
  if [ -x .venv/bin/python ] && has_cuda_torch .venv/bin/python; then
    PY=.venv/bin/python; ENVIRONMENT="existing .venv with a CUDA torch"; return
  fi
  if has_cuda_torch python3; then
    [ -x .venv-gpu/bin/python ] || python3 -m venv --system-site-packages .venv-gpu
    PY=.venv-gpu/bin/python
    if ls .whl/*.whl >/dev/null 2>&1; then
      "$PY" -m pip install -q --no-index --no-deps .whl/*.whl
    fi
    "$PY" -m pip install -q --no-deps --no-build-isolation -e . \
      || "$PY" -m pip install -q --no-deps -e .
    ENVIRONMENT=".venv-gpu over the system python3's CUDA torch (project installed --no-deps)"
    return
  fi
  python3 -m venv .venv-gpu
  PY=.venv-gpu/bin/python
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q torch --index-url "$CUDA_INDEX"
  "$PY" -m pip install -q -e ".[models,serve]"
  ENVIRONMENT="fresh .venv-gpu: torch from $CUDA_INDEX, project from its pyproject"
}

pick_python
echo "gpu_check: python $PY ($ENVIRONMENT)"
echo "$ENVIRONMENT" > "$OUT/environment.txt"
LF=("$PY" -m lipforcing.cli.main)
export PYTHONUNBUFFERED=1

P13=wan-1.3b; P14=wan-14b; ALSO=(--compile)  # graphs and FP8 on top of compile
if [ "$SMOKE" != 0 ]; then
  DEV=(--device cpu --dtype fp32 --threads 1)
  RUNS=(--runs 1 --warmup 0)
  CHUNKS=2; TEACHER=(--frames 9 --teacher-steps 2); SESSIONS=1,2; SECONDS_=0.6
  TESTS=(tests/streaming/test_engine_gpu.py)
  ALSO=()  # compiling on a CPU is slow: the compile step alone checks it
  if [ "$SMOKE" = 1 ]; then
    P13=tiny; P14=tiny; SMALL=(--layers 2 --resolution 64)
  else
    SMALL=(--layers 1 --resolution 64)
  fi
else
  DEV=(--device cuda --dtype bf16)
  SMALL=()
  RUNS=(--runs 3 --warmup 1)
  CHUNKS=20; TEACHER=(--frames 81); SESSIONS=1,2,4; SECONDS_=6.0
  TESTS=(-m gpu tests)
fi

status=0
step() {  # name, then the command; a failing step is recorded, the others still run
  local name="$1"; shift
  local t0=$SECONDS
  echo "gpu_check: $name"
  if "$@" > "$OUT/$name.log" 2>&1; then
    echo "ok $((SECONDS - t0))" > "$OUT/$name.status"
  else
    echo "failed $((SECONDS - t0))" > "$OUT/$name.status"; status=1
    tail -5 "$OUT/$name.log" >&2
  fi
}

bench() {  # name, then bench arguments
  local name="$1"; shift
  step "$name" "${LF[@]}" bench --json --out "$OUT/$name.json" "${DEV[@]}" "$@"
}

step tests "$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}"
S13=(--preset "$P13" --mode student "${SMALL[@]}" "${RUNS[@]}" --chunks "$CHUNKS")
bench student-eager "${S13[@]}"
bench student-compile "${S13[@]}" --compile
bench student-graphs "${S13[@]}" "${ALSO[@]}" --cuda-graphs
bench student-fp8 "${S13[@]}" "${ALSO[@]}" --cuda-graphs --fp8
bench teacher --preset "$P13" --mode teacher "${SMALL[@]}" --runs 1 --warmup 1 "${TEACHER[@]}"
bench student-large --preset "$P14" --mode student "${SMALL[@]}" "${RUNS[@]}" --chunks "$CHUNKS"
bench sessions --preset "$P13" "${SMALL[@]}" --sessions "$SESSIONS" --session-seconds "$SECONDS_"

"$PY" benchmarks/gpu_summary.py "$OUT" || status=1
echo "gpu_check: wrote $OUT/summary.json and $OUT/summary.md"
exit $status
