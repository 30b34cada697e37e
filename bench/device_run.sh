#!/usr/bin/env bash
# All GPU work for the CuPy issue in one device call: the whole test suite (CuPy tests
# included), the kernel bandwidths, and the MNIST harness with the sweep.
#
# The device image has CuPy, Numba, NumPy, PyTorch, scikit-learn, pytest, hypothesis, tqdm and
# matplotlib, but not array-api-compat, array-api-strict, pooch or platformdirs: carry them as
# wheels. Once, on the development machine, from the repository root:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
#       array-api-compat==1.16.0 array-api-strict==2.6.1 pooch==1.9.0 platformdirs==4.14.7
# Then the device call (carry: [".whl"]):   bash bench/device_run.sh [--quick]
# Results land in $OUT (the device tool brings them back) or bench/out/device.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out/device}
mkdir -p "$OUT"
QUICK=${1:-}
PY=${PYTHON:-python3}

if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1

{ nvidia-smi || echo "no nvidia-smi"; } > "$OUT/nvidia-smi.txt" 2>&1
$PY -m xpnet.cli info | tee "$OUT/xpnet-info.txt"

echo "== tests (the whole suite; CuPy tests run where a GPU is usable)"
$PY -m pytest -q -p no:cacheprovider tests 2>&1 | tee "$OUT/pytest.log" | tail -15

echo "== kernels"
$PY -m bench.kernels ${QUICK:+--quick} --out "$OUT" | tail -25

echo "== MNIST harness"
if [ -n "$QUICK" ]; then
  $PY -m bench.mnist --quick --out "$OUT" 2>/dev/null | tail -15
else
  $PY -m bench.mnist --sweep --out "$OUT" 2>/dev/null | tail -15
fi
ls -la "$OUT"
