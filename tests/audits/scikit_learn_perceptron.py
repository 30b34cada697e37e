"""Differential audit: xpnet's Perceptron against scikit-learn's on random settings.

Not a pytest module: a tool that draws random problems and options, fits both libraries with
the same ``random_state`` and sorts every outcome::

    python -m tests.audits.scikit_learn_perceptron --settings 300 --seed 0 [--reference]

Each setting draws a problem (2 to 4 classes, numeric or string labels, well or badly
separated), penalty (None, l2, l1, elasticnet) with alpha and l1_ratio, fit_intercept, eta0,
max_iter, tol, shuffle, n_iter_no_change, early stopping with validation_fraction, class
weights, sample weights (with zeros), random_state (a seed or a ``RandomState``), and a mode: one
fit, a warm start, or three ``partial_fit`` calls. It compares coef_, intercept_ (1e-9), n_iter_
and t_. Outcomes, counted at the end:

- ``equal``;
- ``both raised``: both refused the setting;
- ``l2 early stopping``: scikit-learn scores its stored vector without the shrinking scale (the
  documented difference), so the stopping epoch can differ;
- ``DIFF``: anything else, printed in full. The exit status is 1 if there is any.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import Perceptron

import xpnet

from . import run


def draw_setting(rng: np.random.Generator, trial: int) -> dict:
    """One random problem and option set."""
    n, d, k = int(rng.integers(40, 300)), int(rng.integers(2, 10)), int(rng.choice([2, 2, 3, 4]))
    X, y = make_classification(n, d, n_informative=min(d, 3), n_redundant=0, n_classes=k, n_clusters_per_class=1,
                               class_sep=float(rng.choice([0.7, 4.0])), random_state=trial)
    if rng.integers(2):
        y = np.array(["a", "b", "c", "d"])[y]
    classes = np.unique(y)
    class_weight = [None, "balanced", {classes[0]: 2.0}, {c: (i + 1) / 2 for i, c in enumerate(classes)}][int(rng.integers(4))]
    kw = dict(penalty=[None, "l2", "l1", "elasticnet"][int(rng.integers(4))], alpha=float(rng.choice([1e-4, 1e-2, 0.2])),
              l1_ratio=float(rng.choice([0.15, 0.7])), fit_intercept=bool(rng.integers(2)), eta0=float(rng.choice([1.0, 0.5])),
              max_iter=int(rng.choice([3, 50])), tol=[None, 1e-3, 0.1][int(rng.integers(3))], shuffle=bool(rng.integers(4) > 0),
              n_iter_no_change=int(rng.choice([1, 5])), early_stopping=bool(rng.integers(3) == 0),
              validation_fraction=float(rng.choice([0.1, 0.3])), class_weight=class_weight)
    seed = int(rng.integers(5))
    mode = str(rng.choice(["fit", "warm", "partial"]))
    if mode == "partial":
        kw["early_stopping"] = False
        if class_weight == "balanced":
            kw["class_weight"] = None
    sample_weight = rng.integers(0, 3, n).astype(float) if rng.integers(3) == 0 else None
    return dict(X=X, y=y, classes=classes, kw=kw, mode=mode, sample_weight=sample_weight,
                random_state=(lambda: np.random.RandomState(seed)) if rng.integers(3) == 0 else (lambda: seed))


def fit(estimator_class, kw: dict, setting: dict) -> tuple:
    X, y, sw, half = setting["X"], setting["y"], setting["sample_weight"], len(setting["y"]) // 2
    model = estimator_class(random_state=setting["random_state"](), **kw)
    try:
        if setting["mode"] == "fit":
            model.fit(X, y, sample_weight=sw)
        elif setting["mode"] == "warm":
            model.set_params(warm_start=True)
            model.fit(X[:half], y[:half])
            model.fit(X, y, sample_weight=sw)
        else:
            model.partial_fit(X[:half], y[:half], classes=setting["classes"])
            model.partial_fit(X[half:], y[half:], sample_weight=None if sw is None else sw[half:])
            model.partial_fit(X, y)
    except Exception as error:  # noqa: BLE001 - an audit records every refusal
        return ("ERR", type(error).__name__, str(error)[:100])
    return np.asarray(model.coef_), np.asarray(model.intercept_), model.n_iter_, model.t_


def audit(settings: int, seed: int, reference: bool) -> Counter:
    rng, outcomes = np.random.default_rng(seed), Counter()
    for trial in range(settings):
        setting = draw_setting(rng, trial)
        kw = setting["kw"]
        ours = fit(xpnet.Perceptron, dict(kw, fused=False) if reference else kw, setting)
        theirs = fit(Perceptron, kw, setting)
        if isinstance(ours[0], str) or isinstance(theirs[0], str):
            if isinstance(ours[0], str) and isinstance(theirs[0], str):
                outcomes["both raised"] += 1
                continue
        elif (np.allclose(ours[0], theirs[0], rtol=1e-9, atol=1e-9) and np.allclose(ours[1], theirs[1], rtol=1e-9, atol=1e-9)
              and ours[2:] == theirs[2:]):
            outcomes["equal"] += 1
            continue
        elif kw["early_stopping"] and kw["penalty"] in ("l2", "elasticnet"):
            outcomes["l2 early stopping"] += 1
            continue
        outcomes["DIFF"] += 1
        print("DIFF", trial, setting["mode"], kw, "\n  xpnet:", ours[2:] if not isinstance(ours[0], str) else ours,
              "\n  scikit-learn:", theirs[2:] if not isinstance(theirs[0], str) else theirs)
    return outcomes


if __name__ == "__main__":
    raise SystemExit(run(__doc__.splitlines()[0], audit, "--reference", "xpnet's Array-API reference epoch (default: Numba)"))
