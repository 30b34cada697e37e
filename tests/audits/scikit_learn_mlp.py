"""Differential audit: xpnet's MLPClassifier/MLPRegressor against scikit-learn's on random settings.

Not a pytest module (nothing here is collected): a tool that draws random problems and options,
fits both libraries in float64 with the same ``random_state`` and sorts every outcome::

    python -m tests.audits.scikit_learn_mlp --settings 300 --seed 2 [--fused]

Each setting draws a task (binary, multiclass with numeric or string labels, multilabel, one or
three regression outputs), hidden layers, activation, solver, alpha, batch size, learning-rate
schedule, step, max_iter, shuffle, tol, momentum, early stopping, n_iter_no_change, max_fun,
sample weights (with zeros), and a mode: one fit, a warm start on more rows, or three
``partial_fit`` calls. It compares weights, biases, n_iter_, t_, loss_, best_loss_, loss_curve_,
validation scores, ConvergenceWarnings, predictions and probabilities (1e-6). A setting that parts
is put down to rounding when scikit-learn, refit on X changed by 1e-13 to 1e-11, moves as far
(within 30x). Outcomes, counted at the end:

- ``equal``;
- ``both raised``: both refused the setting;
- ``scikit-learn raised ZeroDivisionError``: a batch whose weights are all zero (xpnet trains on);
- ``xpnet refused a non-finite loss``: ``NonFiniteLossError``, where scikit-learn's loss curve
  holds NaN or inf and its fit returns as if it had trained;
- ``loss values only (saturated probabilities)``: the same weights (1e-9), other ``loss_`` or
  ``loss_curve_`` values: scikit-learn clips probabilities at eps in the log loss, xpnet does not;
- ``rounding amplified``: as above;
- ``lbfgs parted``: L-BFGS-B's line search amplifies rounding, and scikit-learn clips
  probabilities at eps in the loss value (see the README);
- ``warm early stopping, no better epoch``: the documented difference (xpnet keeps the best
  epoch's weights, scikit-learn 1.9 its last epoch's), with the same loss curve up to clipping
  (where the two part, xpnet's exact value is the larger, as above) and the same validation scores;
- ``DIFF``: anything else, printed in full. The exit status is 1 if there is any.
"""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier, MLPRegressor

import xpnet

from . import run

SCALAR_ATTRIBUTES = ("loss_", "best_loss_", "loss_curve_", "validation_scores_", "best_validation_score_")


def draw_setting(rng: np.random.Generator, trial: int) -> dict:
    """One random problem and option set: X, y, sample weights, estimator keywords and mode."""
    task = str(rng.choice(["binary", "multi", "multilabel", "reg1", "reg3"]))
    n, d = int(rng.integers(40, 160)), int(rng.integers(3, 8))
    classes = None
    if task.startswith("reg"):
        X, y = make_regression(n, d, n_targets=int(task[-1]), noise=1.0, random_state=trial)
        y = y / 50
    elif task == "multilabel":
        X = rng.normal(size=(n, d))
        y = (X[:, :3] + rng.normal(size=(n, 3)) > 0).astype(int)
        classes = np.array([0, 1, 2])
    else:
        k = 2 if task == "binary" else int(rng.integers(3, 5))
        X, y = make_classification(n, d, n_informative=2, n_redundant=0, n_classes=k,
                                   n_clusters_per_class=1, random_state=trial)
        if rng.integers(2):
            y = np.array(["a", "b", "c", "d"])[y]
        classes = np.unique(y)
    solver = str(rng.choice(["adam", "sgd", "lbfgs"], p=[0.4, 0.4, 0.2]))
    kw = dict(hidden_layer_sizes=tuple(int(v) for v in rng.integers(2, 12, size=int(rng.integers(1, 3)))),
              activation=str(rng.choice(["identity", "logistic", "tanh", "relu"])), solver=solver,
              alpha=float(rng.choice([0.0, 1e-4, 0.05])), batch_size=rng.choice(["auto", 1, 7, 32, 500]).item(),
              learning_rate=str(rng.choice(["constant", "invscaling", "adaptive"])),
              learning_rate_init=float(rng.choice([1e-3, 0.01, 0.1])), power_t=float(rng.choice([0.5, 0.25])),
              max_iter=int(rng.choice([3, 15, 40])), shuffle=bool(rng.integers(4) > 0),
              random_state=int(rng.integers(100)), tol=float(rng.choice([1e-4, 0.0, 1e-2])),
              momentum=float(rng.choice([0.9, 0.0, 0.5])), nesterovs_momentum=bool(rng.integers(2)),
              early_stopping=bool(rng.integers(3) == 0), validation_fraction=float(rng.choice([0.1, 0.25])),
              n_iter_no_change=int(rng.choice([1, 3, 10])), max_fun=int(rng.choice([15000, 30])))
    if kw["batch_size"] != "auto":
        kw["batch_size"] = int(kw["batch_size"])
    mode = str(rng.choice(["fit", "warm", "partial"], p=[0.5, 0.25, 0.25]))
    if mode == "partial" and (solver == "lbfgs" or kw["early_stopping"]):
        mode = "fit"
    sample_weight = rng.integers(0, 3, n).astype(float) if rng.integers(3) == 0 else None
    if sample_weight is not None and sample_weight.sum() == 0:
        sample_weight[0] = 1.0
    regressor = task.startswith("reg")
    return dict(task=task, X=X, y=y, sample_weight=sample_weight, classes=classes, kw=kw, mode=mode,
                estimators=(xpnet.MLPRegressor, MLPRegressor) if regressor else (xpnet.MLPClassifier, MLPClassifier))


def fit(estimator_class, kw: dict, setting: dict, X: np.ndarray) -> dict | tuple:
    """What one library's fit left: a dict of results, or ``("ERR", type, message)``."""
    y, sw, mode = setting["y"], setting["sample_weight"], setting["mode"]
    model, half = estimator_class(**kw), X.shape[0] // 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if mode == "fit":
                model.fit(X, y, sample_weight=sw)
            elif mode == "warm":
                model.set_params(warm_start=True)
                model.fit(X[:half + 5], y[:half + 5])
                model.set_params(max_iter=max(2, kw["max_iter"] // 2))
                model.fit(X, y, sample_weight=sw)
            else:
                first = {} if setting["classes"] is None else {"classes": setting["classes"]}
                model.partial_fit(X[:half], y[:half], **first)
                model.partial_fit(X[half:], y[half:], sample_weight=None if sw is None else sw[half:])
                model.partial_fit(X, y)
        except Exception as error:  # noqa: BLE001 - an audit records every refusal
            return ("ERR", type(error).__name__, str(error)[:100])
    out = dict(coefs=[np.asarray(c) for c in model.coefs_], intercepts=[np.asarray(b) for b in model.intercepts_],
               n_iter=model.n_iter_, t=model.t_, predict=np.asarray(model.predict(X)),
               warnings=sorted({w.category.__name__ for w in caught if issubclass(w.category, ConvergenceWarning)}))
    for name in SCALAR_ATTRIBUTES:
        out[name] = getattr(model, name, "missing")
    if hasattr(model, "predict_proba"):
        out["predict_proba"] = np.asarray(model.predict_proba(X))
    return out


def gap(a, b) -> float:
    """Largest absolute difference between two arrays or lists of arrays."""
    if isinstance(a, list):
        return max([gap(p, q) for p, q in zip(a, b)] + [0.0])
    return float(np.max(np.abs(np.asarray(a, float) - np.asarray(b, float)))) if np.size(a) else 0.0


def close(a, b, tol: float = 1e-6) -> bool:
    if isinstance(a, str) or isinstance(b, str) or a is None or b is None:
        return a == b if not isinstance(a, np.ndarray) else False
    if isinstance(a, list):
        return len(a) == len(b) and all(close(p, q, tol) for p, q in zip(a, b))
    a, b = np.asarray(a, float), np.asarray(b, float)
    return a.shape == b.shape and np.allclose(a, b, rtol=tol, atol=tol)


def differences(ours: dict, theirs: dict) -> list[str]:
    found = []
    for key, value in ours.items():
        if key in ("n_iter", "t", "warnings"):
            same = value == theirs[key]
        elif key == "predict" and value.dtype.kind in "OUSb":
            same = np.array_equal(value, theirs[key])
        else:
            same = close(value, theirs[key])
        if not same:
            found.append(key)
    return found


def same_up_to_clipping(ours: list, theirs: list) -> bool:
    """Loss curves equal (1e-6), or parted only where xpnet's value is the larger: scikit-learn's log
    loss clips probabilities at eps (at most 36 per sample), xpnet's log-sigmoid and log-softmax do not,
    so a saturated epoch's exact loss is above scikit-learn's and never below it."""
    a, b = np.asarray(ours, float), np.asarray(theirs, float)
    if a.shape != b.shape:
        return False
    parted = ~np.isclose(a, b, rtol=1e-6, atol=1e-6)
    return bool(np.all(a[parted] > b[parted]))


def weights_gap(a: dict, b: dict) -> float:
    return max(gap(a["coefs"], b["coefs"]), gap(a["intercepts"], b["intercepts"]))


def audit(settings: int, seed: int, fused: bool) -> Counter:
    rng, outcomes = np.random.default_rng(seed), Counter()
    for trial in range(settings):
        setting = draw_setting(rng, trial)
        ours_class, their_class = setting["estimators"]
        kw, X = setting["kw"], setting["X"]
        ours = fit(ours_class, dict(kw, fused=fused, dtype="float64"), setting, X)
        theirs = fit(their_class, kw, setting, X)
        label = f"{trial} {setting['task']} {setting['mode']} {kw} weighted={setting['sample_weight'] is not None}"
        if isinstance(ours, tuple) or isinstance(theirs, tuple):
            if isinstance(ours, tuple) and isinstance(theirs, tuple):
                outcomes["both raised"] += 1
            elif isinstance(theirs, tuple) and theirs[1] == "ZeroDivisionError":
                outcomes["scikit-learn raised ZeroDivisionError"] += 1
            elif ours[1] == "NonFiniteLossError" and not np.all(np.isfinite(theirs["loss_curve_"])):
                outcomes["xpnet refused a non-finite loss"] += 1
            else:
                outcomes["DIFF"] += 1
                print("DIFF", label, "\n  xpnet:", ours if isinstance(ours, tuple) else "fitted",
                      "\n  scikit-learn:", theirs if isinstance(theirs, tuple) else "fitted")
            continue
        found = differences(ours, theirs)
        if not found:
            outcomes["equal"] += 1
            continue
        if set(found) <= {"loss_", "best_loss_", "loss_curve_"} and weights_gap(ours, theirs) < 1e-9:
            outcomes["loss values only (saturated probabilities)"] += 1
            continue
        moved = []
        for j, scale in enumerate((1e-13, 1e-12, 1e-11)):
            nudged = X * (1 + scale * np.random.default_rng([trial, j]).standard_normal(X.shape))
            again = fit(their_class, kw, setting, nudged)
            if not isinstance(again, tuple):
                moved.append(weights_gap(theirs, again))
        if max(moved + [0.0]) > 1e-6 and weights_gap(ours, theirs) < 30 * max(moved):
            outcomes["rounding amplified"] += 1
        elif kw["solver"] == "lbfgs":
            outcomes["lbfgs parted"] += 1
        elif (setting["mode"] == "warm" and kw["early_stopping"] and same_up_to_clipping(ours["loss_curve_"], theirs["loss_curve_"])
              and close(ours["validation_scores_"], theirs["validation_scores_"])
              and len(theirs["validation_scores_"]) > theirs["n_iter"]
              and max(theirs["validation_scores_"][-theirs["n_iter"]:]) <= max(theirs["validation_scores_"][:-theirs["n_iter"]])):
            outcomes["warm early stopping, no better epoch"] += 1
        else:
            outcomes["DIFF"] += 1
            print("DIFF", label, found, f"weights gap {weights_gap(ours, theirs):.2e}")
    return outcomes


if __name__ == "__main__":
    raise SystemExit(run(__doc__.splitlines()[0], audit, "--fused", "xpnet's compiled Numba step (default: the reference path)"))
