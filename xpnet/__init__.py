"""xpnet: hand-written backpropagation over the Python Array API.

One implementation of every forward and backward formula, written against the
Array API standard, trains on NumPy (CPU) and CuPy (CUDA GPU); fused kernels
(Numba, CuPy) take over the two hot paths where they exist.

``import xpnet`` is light: CuPy, Numba, scikit-learn and matplotlib load only
when something needs them.
"""

from __future__ import annotations

import os as _os
from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# Installed, setuptools maps the repository's top-level kernels/ folder to xpnet.kernels. Run from
# a source checkout (the repository root on sys.path, as `python -m bench.mnist` has it), this
# package is the checkout's xpnet/ folder, which has no kernels/ inside; letting the import system
# also look in the checkout root makes xpnet.kernels resolve to that same top-level folder.
_checkout_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if not _os.path.isdir(_os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "kernels")) and _os.path.isfile(
    _os.path.join(_checkout_root, "kernels", "__init__.py")
):
    __path__.append(_checkout_root)  # noqa: F821 - __path__ is defined for packages

# name -> submodule that defines it; resolved on first attribute access.
_EXPORTS = {
    "Backend": "backend",
    "get_backend": "backend",
    "BackendUnavailableError": "backend",
    "BackendFallbackWarning": "backend",
    "Dense": "layers",
    "Sigmoid": "layers",
    "Tanh": "layers",
    "ReLU": "layers",
    "MSE": "losses",
    "BinaryCrossEntropy": "losses",
    "SoftmaxCrossEntropy": "losses",
    "SGD": "optim",
    "Adam": "optim",
    "Sequential": "network",
    "Callback": "callbacks",
    "DataSource": "sources",
    "History": "network",
    "NonFiniteLossError": "network",
    "ModelFileError": "network",
    "load": "network",
    "LinearRegression": "estimators",
    "LogisticRegression": "estimators",
    "Perceptron": "estimators",
    "MLPClassifier": "estimators",
    "MLPRegressor": "estimators",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'xpnet' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
