"""Shared fixtures: the backends every backend-parametrised test runs on.

``numpy`` and ``array_api_strict`` always run; ``cupy`` runs where CuPy imports
and ``cupy.is_available()`` says a GPU is usable, and is skipped with that
reason elsewhere.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

# CI runs the property tests on a fixed sequence of examples (reproducible); locally they explore.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

from xpnet.backend import cupy_usable, get_backend

# The benchmark harness (bench/) runs from the checkout, not installed. Import its package from
# there once, for every test file (one run alone too), and take the root off sys.path again so
# that xpnet stays the installed one; `from bench.x import ...` finds x through bench.__path__.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
try:
    importlib.import_module("bench")
finally:
    sys.path.remove(str(REPO))

GPU_OK, GPU_REASON = cupy_usable()
requires_gpu = pytest.mark.skipif(not GPU_OK, reason=f"needs a CUDA GPU: {GPU_REASON}")

BACKENDS = [
    "numpy",
    "array_api_strict",
    pytest.param("cupy", marks=[pytest.mark.gpu, requires_gpu]),
]


@pytest.fixture(params=BACKENDS)
def backend(request):
    return get_backend(request.param, strict=True)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)

