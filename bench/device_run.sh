#!/usr/bin/env bash
# The GPU work of the CuPy issue, in one or two device calls.
#
#   bash bench/device_run.sh tests     # the whole test suite (CuPy tests included), kernel bandwidths, launches per step
#   bash bench/device_run.sh mnist     # the MNIST harness with every contestant (and the roofline)
#   bash bench/device_run.sh sweep     # the sweep: xpnet's GPU steps against eager and compiled PyTorch and jax-gpu
#   bash bench/device_run.sh precision # matmul_precision highest/tf32/bf16 against compiled PyTorch and JAX at the
#                                      # matching setting, 10 epochs each: time and accuracy per precision
#   bash bench/device_run.sh step      # the captured step (at most 9 minutes): the GPU tests, time per kernel
#                                      # (bench.launches: the fused products staged both ways, the persistent
#                                      # step at 1 and 2 blocks per multiprocessor, the epoch step, cuBLAS in
#                                      # the graph; the persistent step phase by phase, and its grid barrier alone)
#   bash bench/device_run.sh reference # the reference task, 10 epochs, for every captured step (xpnet's
#                                      # products, cuBLAS's, the fused plan, the persistent step, the epoch
#                                      # step) against the strongest peers (at most 9 minutes)
#   bash bench/device_run.sh large-batches  # paired rounds of the captured steps (xpnet's products, cuBLAS's,
#                                      # the fused plan, as one launch per step and per epoch) at batch 1024
#                                      # to 4096 (60 runs; at most 9 minutes),
#                                      # for GRAPH_AUTO_MAX_ELEMENTS
#   bash bench/device_run.sh autotune  # torch.compile "max-autotune" against xpnet, 10 epochs (it compiled for
#                                      # more than 150 s on the H100: this stage allows 450 s)
#   bash bench/device_run.sh accuracy  # test accuracy after 10 epochs over 5 seeds (bench.accuracy): xpnet at each
#                                      # matmul_precision against eager PyTorch at the matching setting (at most 9 minutes;
#                                      # the report is rewritten after every seed, so a cut-short run keeps what it finished)
#   bash bench/device_run.sh all       # both (about 12 minutes on an H100 machine: over one 10-minute call)
#   bash bench/device_run.sh quick     # a short smoke run of everything
#
# The device image has CuPy, Numba, NumPy, PyTorch, scikit-learn, pytest, hypothesis, tqdm and
# matplotlib, but not array-api-compat, array-api-strict, pooch or platformdirs: carry them as
# wheels. Once, on the development machine, from the repository root:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
#       array-api-compat==1.16.0 array-api-strict==2.6.1 pooch==1.9.0 platformdirs==4.14.7
# Then the device call (carry: [".whl"]):   bash bench/device_run.sh tests
# Results land in $OUT (the device tool brings them back) or bench/out/device. A stage cut short by its
# timeout keeps what it measured: bench.launches rewrites its report after every measurement, and
# bench.mnist keeps its runs so far in mnist.partial.json until its report is written. The
# persistent and epoch steps run last in each stage: if their tests hang in `step` (a grid barrier
# that never opens), leave them out of the later stages' contestants.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out/device}
mkdir -p "$OUT"
STAGE=${1:-all}
PY=${PYTHON:-python3}

if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1

{ nvidia-smi || echo "no nvidia-smi"; } > "$OUT/nvidia-smi.txt" 2>&1
$PY -m xpnet.cli info > "$OUT/xpnet-info.txt" 2>&1

if [ "$STAGE" = tests ] || [ "$STAGE" = all ] || [ "$STAGE" = quick ]; then
  echo "== tests (the whole suite; CuPy tests run where a GPU is usable)"
  SELECT=(); [ "$STAGE" = quick ] && SELECT=(-m gpu)
  $PY -m pytest -q -rs -p no:cacheprovider -n 8 "${SELECT[@]}" tests > "$OUT/pytest.log" 2>&1
  tail -12 "$OUT/pytest.log"
  echo "== kernels"
  $PY -m bench.kernels --no-cpu $([ "$STAGE" = quick ] && echo --quick) --out "$OUT" 2>&1 | grep -E "gpu|copy" | tail -12
  echo "== launches per step"
  $PY -m bench.launches --out "$OUT" 2>&1 | grep -v -i warn | tail -8
fi
if [ "$STAGE" = mnist ] || [ "$STAGE" = all ] || [ "$STAGE" = quick ]; then
  echo "== MNIST harness"
  if [ "$STAGE" = quick ]; then
    $PY -m bench.mnist --quick --contestants all --out "$OUT" 2>/dev/null | tail -15
  else
    $PY -m bench.mnist --timeout 300 --out "$OUT" 2>/dev/null | tail -25
  fi
fi
if [ "$STAGE" = sweep ]; then
  echo "== sweep (GPU contestants; torch-cuda-autotune compiles for minutes per point, so it is left to --sweep-contestants)"
  mkdir -p "$OUT/sweep"
  $PY -m bench.mnist --contestants xpnet-cupy-fused,xpnet-cupy-fused-step,xpnet-cupy-persistent-step,xpnet-cupy-epoch-step,xpnet-cupy-cublas-graph,torch-cuda,torch-cuda-compiled,torch-cuda-graphed,jax-gpu,jax-gpu-scan --sweep \
    --timeout 300 --out "$OUT/sweep" 2>/dev/null | tail -25
fi
if [ "$STAGE" = accuracy ]; then
  echo "== accuracy over seeds: each matmul_precision against PyTorch at the matching setting"
  mkdir -p "$OUT/accuracy"
  timeout 540 $PY -m bench.accuracy --seeds 5 --epochs 10 --timeout 120 --out "$OUT/accuracy" \
    --contestants xpnet-cupy-fused,xpnet-cupy-tf32,xpnet-cupy-bf16,torch-cuda,torch-cuda-tf32,torch-cuda-bf16 \
    --pairs xpnet-cupy-fused:torch-cuda,xpnet-cupy-tf32:torch-cuda-tf32,xpnet-cupy-bf16:torch-cuda-bf16 \
    2>/dev/null | tail -16
fi
if [ "$STAGE" = step ]; then
  # the persistent and epoch steps' tests apart, last: a grid barrier that never opened hangs its test
  # until the timeout, and would otherwise cost the log of every other GPU test
  echo "== GPU tests"
  timeout 200 $PY -m pytest -q -rs -p no:cacheprovider -n 6 -m gpu -k "not persistent and not epoch" tests \
    > "$OUT/pytest_gpu.log" 2>&1
  tail -4 "$OUT/pytest_gpu.log"
  echo "== GPU tests of the persistent and epoch steps"
  timeout 120 $PY -m pytest -q -rs -p no:cacheprovider -n 6 -m gpu -k "persistent or epoch" tests \
    > "$OUT/pytest_gpu_persistent.log" 2>&1
  tail -4 "$OUT/pytest_gpu_persistent.log"
  echo "== launches and time per kernel"
  timeout 220 $PY -m bench.launches --out "$OUT" 2>&1 | grep -v -i warn | head -42
fi
if [ "$STAGE" = reference ]; then
  echo "== reference task, 10 epochs: the captured steps (xpnet's products, cuBLAS's, the fused plan, as one launch per step and per epoch) against the strongest peers"
  mkdir -p "$OUT/reference"
  timeout 540 $PY -m bench.mnist --epochs 10 --timeout 200 --out "$OUT/reference" \
    --contestants xpnet-cupy-fused,xpnet-cupy-cublas-graph,xpnet-cupy-fused-step,jax-gpu-scan,torch-cuda,torch-cuda-compiled,torch-cuda-graphed,xpnet-cupy-persistent-step,xpnet-cupy-epoch-step \
    2>/dev/null | tail -12
fi
if [ "$STAGE" = large-batches ]; then
  echo "== paired rounds at large batches: the default step against the fused plan and cuBLAS in the graph"
  mkdir -p "$OUT/large-batches"
  timeout 540 $PY -m bench.mnist --epochs 2 --rounds 3 --contestants xpnet-cupy-fused,xpnet-cupy-fused-step,xpnet-cupy-persistent-step,xpnet-cupy-epoch-step,xpnet-cupy-cublas-graph \
    --sweep --sweep-batch-sizes 1024,2048,4096 --sweep-hidden 256,128 \
    --sweep-contestants xpnet-cupy-fused,xpnet-cupy-fused-step,xpnet-cupy-persistent-step,xpnet-cupy-epoch-step,xpnet-cupy-cublas-graph --timeout 60 --out "$OUT/large-batches" \
    2>/dev/null | tail -12
fi
if [ "$STAGE" = autotune ]; then
  echo "== torch.compile max-autotune, 10 epochs"
  mkdir -p "$OUT/autotune"
  timeout 540 $PY -m bench.mnist --epochs 10 --timeout 450 --contestants xpnet-cupy-fused,torch-cuda-autotune \
    --out "$OUT/autotune" 2>/dev/null | tail -8
fi
if [ "$STAGE" = precision ]; then
  echo "== matmul_precision: xpnet and its peers at each setting, 10 epochs"
  mkdir -p "$OUT/precision"
  $PY -m bench.mnist --contestants precision --epochs 10 --timeout 300 --out "$OUT/precision" 2>/dev/null | tail -25
fi
ls "$OUT"
