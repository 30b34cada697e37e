"""Audit: xpnet's LinearRegression against the exact weighted least-squares fit on random settings.

Not a pytest module: a tool that draws random problems, fits xpnet's gradient descent and
NumPy's ``lstsq`` (the exact solution; scikit-learn's ``LinearRegression`` drops directions below
its ``tol=1e-6``, so it is not the reference here) and sorts every outcome::

    python -m tests.audits.least_squares --settings 150 --seed 0 [--float32]

Each setting draws 5 to 200 samples and 1 to 7 features, on one scale or on scales from 1e-3 to
1e4, shifted or not, one feature nearly collinear with another (noise 1e-3) or constant at times,
sample weights with zeros at times, ``standardize`` True or False, full batches or (one in five) batches of 5 to 64 rows, ``solver`` "gd" or (three in ten) "lbfgs", one or two targets with an
offset up to 1e4. It compares the predictions with the exact fit's, relative to ``y``'s spread
(1e-3; 1e-2 in float32). Outcomes, counted at the end:

- ``close`` (``close, warned`` where a ``ConvergenceWarning`` came too);
- ``warned``: far, and ``ConvergenceWarning`` said that ``max_iter`` stopped it;
- ``underdetermined``: fewer weighted samples than parameters, so the fit is not unique;
- ``below resolution``: far without a warning, where the standardised, weighted features have a
  singular value below 1e-6 of their largest: a direction whose curvature (below 1e-12) gives
  the descent no gradient to follow, and one scikit-learn's default ``tol=1e-6`` drops too. In
  float32 the bound is 1e-4: the descent stops where the gradient is at most 8 float32 epsilons
  of ``y``'s spread (about 1e-6), which leaves predictions up to that over the singular value
  off along its direction, more than the 1e-2 compared at a singular value below 1e-4;
- ``DIFF``: far without a warning (a silent non-fit), printed in full. The exit status is 1 if
  there is any.
"""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np

import xpnet

try:
    from sklearn.exceptions import ConvergenceWarning
except ImportError:  # pragma: no cover
    ConvergenceWarning = UserWarning


def _problem(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    n, d = int(rng.integers(5, 200)), int(rng.integers(1, 8))
    scales = 10.0 ** rng.uniform(-3, 4, d) if rng.random() < 0.5 else np.ones(d)
    X = rng.normal(size=(n, d)) * scales + rng.normal(size=d) * scales * 5 * (rng.random() < 0.5)
    if rng.random() < 0.2 and d > 1:
        X[:, -1] = 2 * X[:, 0] + 1e-3 * rng.normal(size=n)
    if rng.random() < 0.1:
        X[:, 0] = 3.0
    w = None
    if rng.random() < 0.3:
        w = rng.integers(0, 4, n).astype(float)
        w[0] = 1.0
    k = 1 if rng.random() < 0.7 else 2
    y = X @ (rng.normal(size=(d, k)) / scales[:, None]) + rng.normal(size=(n, k)) * 10 ** rng.uniform(-3, 1)
    y = y + rng.normal() * 10 ** rng.uniform(-2, 4)
    return X, (y[:, 0] if k == 1 else y), w


def _smallest_singular_ratio(X: np.ndarray, weights: np.ndarray) -> float:
    """The smallest singular value of the weighted, standardised features over the largest."""
    share = weights / weights.sum()
    centred = X - share @ X
    spread = np.sqrt(share @ centred**2)
    singular = np.linalg.svd(centred / np.where(spread > 0, spread, 1.0) * np.sqrt(share)[:, None], compute_uv=False)
    return float(singular[-1] / singular[0]) if singular[0] > 0 else 0.0


def audit(settings: int, seed: int, float32: bool) -> Counter:
    rng = np.random.default_rng(seed)
    outcomes: Counter = Counter()
    for s in range(settings):
        X, y, w = _problem(rng)
        standardize = bool(rng.random() < 0.7)
        dtype = "float32" if float32 or rng.random() < 0.3 else "float64"
        batch_size = int(rng.integers(5, 65)) if rng.random() < 0.2 else None
        solver = "lbfgs" if rng.random() < 0.3 else "gd"
        n, d = X.shape
        weights = np.ones(n) if w is None else w
        if np.count_nonzero(weights) <= d + 1:
            outcomes["underdetermined"] += 1
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ours = xpnet.LinearRegression(standardize=standardize, dtype=dtype, batch_size=batch_size, random_state=s,
                                          solver=solver)
            ours.fit(X.astype(dtype), y, sample_weight=w)
        warned = any(issubclass(c.category, ConvergenceWarning) for c in caught)
        A = np.c_[X, np.ones(n)]
        root = np.sqrt(weights)[:, None]
        exact, *_ = np.linalg.lstsq(A * root, y.reshape(n, -1) * root, rcond=None)
        err = float(np.max(np.abs(ours.predict(X.astype(dtype)).reshape(n, -1) - A @ exact)) / np.std(y))
        if err <= (1e-2 if dtype == "float32" else 1e-3):
            outcomes["close, warned" if warned else "close"] += 1
        elif warned:
            outcomes["warned"] += 1
        elif _smallest_singular_ratio(X, weights) < (1e-4 if dtype == "float32" else 1e-6):
            outcomes["below resolution"] += 1
        else:
            outcomes["DIFF"] += 1
            print("DIFF", dict(setting=s, n=n, d=d, standardize=standardize, dtype=dtype, weighted=w is not None,
                               batch_size=batch_size, solver=solver, error=err, n_iter=ours.n_iter_))
    return outcomes


if __name__ == "__main__":
    from . import run

    raise SystemExit(run("Audit: xpnet's LinearRegression against the exact least-squares fit on random settings.",
                         audit, "--float32", "fit every setting in float32 (else 30% of them)"))
