"""xpnet: hand-written backpropagation over the Python Array API.

One implementation of every forward and backward formula, written against the
Array API standard, trains on NumPy (CPU) and CuPy (CUDA GPU); fused kernels
(Numba, CuPy) take over the two hot paths where they exist.

``import xpnet`` is light: CuPy, Numba, scikit-learn and matplotlib load only
when something needs them.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

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
    "History": "network",
    "NonFiniteLossError": "network",
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
