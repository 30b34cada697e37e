"""Input checks shared by the network and the estimators.

Every check runs before any parameter or optimizer state changes, and each
error names the argument and says what was expected.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np


def check_positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def float_dtype_name(value: Any, name: str = "dtype") -> str:
    """``"float32"`` or ``"float64"`` for those names or anything NumPy reads as them (``np.float32``,
    ``np.dtype("float64")``, ``"f4"``); anything else is refused, naming ``name``."""
    try:
        resolved = None if value is None or isinstance(value, bool) else np.dtype(value).name
    except TypeError:
        resolved = None
    if resolved not in ("float32", "float64"):
        raise ValueError(f"{name} must be 'float32' or 'float64' (or NumPy's float32, float64), got {value!r}")
    return resolved


def check_flag(name: str, value: Any, *, none_allowed: bool = False) -> bool | None:
    """``value`` as True or False (a NumPy bool, 0 or 1 too), or None where ``none_allowed``:
    a string such as ``"no"`` is refused rather than taken as true."""
    if value is None and none_allowed:
        return None
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, numbers.Integral) and value in (0, 1)):
        return bool(value)
    raise ValueError(f"{name} must be {'True, False or None' if none_allowed else 'True or False'}, "
                     f"got {type(value).__name__} {value!r}")


def check_seed(name: str, value: Any) -> Any:
    """``value`` if NumPy's ``default_rng`` takes it (None, an int >= 0, a sequence of them, a
    ``Generator`` or ``RandomState``, which the fit then draws from), else an error naming ``name``."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be None, an integer >= 0 or a NumPy random generator, got bool {value!r}")
    try:
        np.random.default_rng(value)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name} must be None, an integer >= 0 or a NumPy random generator, "
                        f"got {type(value).__name__} {value!r} ({exc})") from None
    return value


def check_features(X: Any, backend: Any, dtype: Any, n_features: int | None = None, name: str = "X") -> Any:
    """``X`` as a finite 2-D float array ``(n_samples, n_features)`` on ``backend``."""
    if X is None:
        raise TypeError(f"{name} must be an array of shape (n_samples, n_features), got None")
    if isinstance(X, (list, tuple)):
        try:
            X = np.asarray(X)
        except ValueError as exc:  # ragged nested lists
            raise ValueError(f"{name} must be a rectangular array of numbers ({exc})") from None
    if isinstance(X, np.ndarray) and X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric, got dtype {X.dtype}")
    arr = backend.asarray(X, name=name)
    xp = backend.xp
    if not xp.isdtype(arr.dtype, ("bool", "integral", "real floating")):
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 2:
        hint = " (reshape a single feature with X.reshape(-1, 1))" if arr.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {tuple(arr.shape)}{hint}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has 0 samples")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features but the model expects {n_features}")
    return cast_finite(arr, dtype, xp, name)


def cast_finite(arr: Any, dtype: Any, xp: Any, name: str, remedy: str = "scale the data or use dtype='float64'") -> Any:
    """``arr`` (an array of namespace ``xp``) as ``dtype``, refused if it holds NaN or infinity,
    or values that overflow ``dtype`` (named as such, with ``remedy``)."""
    source = arr
    with np.errstate(over="ignore"):  # an overflow is reported below, by name
        arr = xp.astype(arr, dtype, copy=False) if arr.dtype != dtype else arr
    if not bool(xp.all(xp.isfinite(arr))):
        if source is not arr and xp.isdtype(source.dtype, "real floating") and bool(xp.all(xp.isfinite(source))):
            largest = float(xp.max(xp.abs(source)))
            dtype_name = getattr(dtype, "__name__", None) or str(dtype).rsplit(".", 1)[-1]
            raise ValueError(f"{name} holds values too large for {dtype_name} (largest magnitude {largest:.3g}): they "
                             f"overflow to infinity when converted; {remedy}")
        raise ValueError(f"{name} contains NaN or infinity")
    return arr


def check_same_length(X: Any, y: Any, names: tuple[str, str] = ("X", "y")) -> None:
    n_x = X.shape[0]
    n_y = len(y) if isinstance(y, (list, tuple)) else (y.shape[0] if getattr(y, "ndim", 0) else None)
    if n_y is None:
        raise ValueError(f"{names[1]} must be an array with one entry per sample, got a scalar")
    if n_x != n_y:
        raise ValueError(f"{names[0]} has {n_x} samples but {names[1]} has {n_y}: lengths must match")
