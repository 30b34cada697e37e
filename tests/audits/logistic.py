"""Audit: xpnet's LogisticRegression against scikit-learn's, solved tightly, on random settings.

Not a pytest module: a tool that draws random problems, fits xpnet's gradient descent and
scikit-learn's lbfgs at ``tol=1e-12`` (the reference optimum of the same objective: its
``LogisticRegression(C=1 / alpha)``, behind a ``StandardScaler`` where xpnet standardises) and
sorts every outcome::

    python -m tests.audits.logistic --settings 150 --seed 0 [--float32]

Each setting draws 10 to 300 samples, 1 to 8 features and 2 to 4 classes, on one scale or on scales
from 1e-3 to 1e3, shifted or not, one feature nearly collinear with another or constant at times,
labels from a linear model of random sharpness (separable at times), sample weights with zeros at
times, ``alpha`` from 1e-3 to 1e4, ``standardize`` True or False, full batches or (one in five) batches of
5 to 64 rows, ``solver`` "gd" or (three in ten) "lbfgs". xpnet fits at ``tol=1e-6``
(``max_iter`` 20,000), where the descent's distance to the optimum is small against the
threshold: predicted probabilities within 1e-3 of the reference (1e-2 in float32). Outcomes,
counted at the end:

- ``close`` (``close, warned`` where a ``ConvergenceWarning`` came too);
- ``warned``: far, and ``ConvergenceWarning`` said that ``max_iter`` stopped it;
- ``reference unsolved``: scikit-learn's lbfgs itself did not converge, so there is no reference;
- ``refused``: xpnet raised a clear error (printed);
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
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
except ImportError:  # pragma: no cover
    raise SystemExit("this audit needs scikit-learn")


def _problem(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    n, d, k = int(rng.integers(10, 300)), int(rng.integers(1, 9)), int(rng.integers(2, 5))
    scales = 10.0 ** rng.uniform(-3, 3, d) if rng.random() < 0.5 else np.ones(d)
    Z = rng.normal(size=(n, d))
    if rng.random() < 0.2 and d > 1:
        Z[:, -1] = 2 * Z[:, 0] + 1e-3 * rng.normal(size=n)
    logits = Z @ rng.normal(size=(d, k)) * 10 ** rng.uniform(-1, 2) + rng.normal(size=k)
    y = np.argmax(logits + rng.gumbel(size=(n, k)), axis=1)
    X = Z * scales + rng.normal(size=d) * scales * 5 * (rng.random() < 0.5)
    if rng.random() < 0.1:
        X[:, 0] = 3.0
    y[:k] = np.arange(k)  # every class present
    w = None
    if rng.random() < 0.3:
        w = rng.integers(0, 4, n).astype(float)
        w[:k] = 1.0
    return X, y, w


def _reference(X: np.ndarray, y: np.ndarray, w: np.ndarray | None, alpha: float, standardize: bool):
    """scikit-learn's tight fit of the same objective, and whether its lbfgs converged."""
    model = LogisticRegression(C=1.0 / alpha, tol=1e-12, max_iter=100_000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if standardize:
            pipe = make_pipeline(StandardScaler(), model)
            pipe.fit(X, y, standardscaler__sample_weight=w, logisticregression__sample_weight=w)
            reference = pipe
        else:
            reference = model.fit(X, y, sample_weight=w)
    solved = not any(issubclass(c.category, ConvergenceWarning) for c in caught)
    return reference, solved


def audit(settings: int, seed: int, float32: bool) -> Counter:
    rng = np.random.default_rng(seed)
    outcomes: Counter = Counter()
    for s in range(settings):
        X, y, w = _problem(rng)
        alpha = float(10 ** rng.uniform(-3, 4))
        standardize = bool(rng.random() < 0.7)
        dtype = "float32" if float32 or rng.random() < 0.3 else "float64"
        batch_size = int(rng.integers(5, 65)) if rng.random() < 0.2 else None
        solver = "lbfgs" if rng.random() < 0.3 else "gd"
        setting = dict(setting=s, n=X.shape[0], d=X.shape[1], classes=int(y.max()) + 1, alpha=alpha,
                       standardize=standardize, dtype=dtype, weighted=w is not None, batch_size=batch_size,
                       solver=solver)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                ours = xpnet.LogisticRegression(alpha=alpha, standardize=standardize, dtype=dtype, tol=1e-6,
                                                max_iter=20_000, batch_size=batch_size, random_state=s, solver=solver)
                ours.fit(X.astype(dtype), y, sample_weight=w)
            except (ValueError, ArithmeticError) as error:
                outcomes["refused"] += 1
                print("refused", setting, f"{type(error).__name__}: {error}")
                continue
        warned = any(issubclass(c.category, ConvergenceWarning) for c in caught)
        reference, solved = _reference(X, y, w, alpha, standardize)
        if not solved:
            outcomes["reference unsolved"] += 1
            continue
        err = float(np.max(np.abs(ours.predict_proba(X.astype(dtype)) - reference.predict_proba(X))))
        if err <= (1e-2 if dtype == "float32" else 1e-3):
            outcomes["close, warned" if warned else "close"] += 1
        elif warned:
            outcomes["warned"] += 1
        else:
            outcomes["DIFF"] += 1
            print("DIFF", dict(setting, error=err, n_iter=ours.n_iter_))
    return outcomes


if __name__ == "__main__":
    from . import run

    raise SystemExit(run("Audit: xpnet's LogisticRegression against scikit-learn's tight fit on random settings.",
                         audit, "--float32", "fit every setting in float32 (else 30% of them)"))
