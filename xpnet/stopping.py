"""Stopping rules and learning-rate schedules: scikit-learn's MLP rules, for ``Sequential.fit``.

- :class:`NoImprovement`: stop once a loss (or score) has not improved on its best by more than
  ``tol`` for more than ``n_iter_no_change`` epochs in a row.
- :func:`scheduled_lr`: "constant", "invscaling" (``lr0 / (samples_seen + 1) ** power_t``) and
  "adaptive" (divided by 5 whenever the rule fires; the loop in :mod:`xpnet.training` applies it).
- :class:`FitState`: what a rule and a schedule carry from one ``fit`` to the next.
- :func:`validation_split`: the held-out rows for early stopping (stratified for classifiers);
  :func:`checked_split` its refusals, for a split drawn elsewhere (the MLP estimators use scikit-learn's).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from ._validation import check_flag

__all__ = ["LR_SCHEDULES", "NoImprovement", "FitState", "scheduled_lr", "check_stopping_options", "held_out_count",
           "validation_split"]

LR_SCHEDULES = ("constant", "invscaling", "adaptive")


class NoImprovement:
    """scikit-learn's MLP stopping rule. An epoch counts as no improvement when its value is
    not better than the best so far by more than ``tol`` (a loss must fall below
    ``best - tol``; a score must reach ``best + tol``); a better epoch resets the count.
    ``stop`` is True once the count *exceeds* ``n_iter_no_change`` (which may be ``inf``)."""

    def __init__(self, tol: float, n_iter_no_change: float, higher_is_better: bool = False) -> None:
        self.tol, self.patience, self.higher = tol, n_iter_no_change, higher_is_better
        self.best = -math.inf if higher_is_better else math.inf
        self.count = 0

    def update(self, value: float) -> bool:
        """Record one epoch's value; returns whether it is a new best."""
        if self.higher:
            self.count = self.count + 1 if value < self.best + self.tol else 0
            better = value > self.best
        else:
            self.count = self.count + 1 if value > self.best - self.tol else 0
            better = value < self.best
        if better:
            self.best = value
        return better

    @property
    def stop(self) -> bool:
        return self.count > self.patience


class FitState:
    """What a stopping rule and a learning-rate schedule carry from one ``fit`` to the next:
    samples seen, the schedule's initial rate, the no-improvement count and best value, and
    the best epoch's weights under early stopping. ``fit`` returns it as ``history.state``;
    pass it back (``fit(..., state=history.state)``) to continue rather than restart them,
    as scikit-learn's ``warm_start`` and ``partial_fit`` do."""

    def __init__(self) -> None:
        self.samples_seen = 0
        self.lr_init: float | None = None
        self.watch: NoImprovement | None = None
        self.best_params: list | None = None

    def __getstate__(self) -> dict:
        """The best weights pickle as host NumPy, restored onto their backend (see ``host_state``)."""
        from .backend import host_state

        return host_state(self.__dict__)


def scheduled_lr(schedule: str, lr_init: float, power_t: float, samples_seen: int) -> float:
    """The learning rate after ``samples_seen`` samples: ``lr_init`` ("constant", "adaptive"), or
    ``lr_init / (samples_seen + 1) ** power_t`` ("invscaling"), as scikit-learn sets it per epoch."""
    return lr_init / (samples_seen + 1) ** power_t if schedule == "invscaling" else lr_init


def check_stopping_options(tol, n_iter_no_change, early_stopping, validation_fraction, lr_schedule, power_t, validation_data):
    # numbers.Real and numbers.Integral take NumPy scalars too (np.float32(0.5), np.int64(3))
    if tol is not None and (isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not tol >= 0):
        raise ValueError(f"tol must be None or a number >= 0, got {tol!r}")
    if isinstance(n_iter_no_change, bool) or not isinstance(n_iter_no_change, numbers.Real) or not n_iter_no_change >= 1:
        raise ValueError(f"n_iter_no_change must be an integer >= 1 or inf, got {n_iter_no_change!r}")
    if math.isfinite(n_iter_no_change) and not float(n_iter_no_change).is_integer():
        raise ValueError(f"n_iter_no_change must be an integer >= 1 or inf, got {n_iter_no_change!r}")
    check_flag("early_stopping", early_stopping)
    if early_stopping and tol is None:
        raise ValueError("early_stopping=True stops on the validation score and needs tol (scikit-learn's default is 1e-4)")
    if early_stopping and validation_data is None:
        if isinstance(validation_fraction, bool) or not isinstance(validation_fraction, numbers.Real) \
                or not 0 < validation_fraction < 1:
            raise ValueError(f"validation_fraction must lie in (0, 1), got {validation_fraction!r}")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}")
    if isinstance(power_t, bool) or not isinstance(power_t, numbers.Real) or not math.isfinite(power_t) or power_t < 0:
        # a negative exponent would make invscaling's rate grow without bound (scikit-learn refuses it too)
        raise ValueError(f"power_t must be a finite number >= 0, got {power_t!r}")


def held_out_count(n: int, fraction: float) -> int:
    """How many of ``n`` rows early stopping holds out: ``ceil(fraction * n)``, scikit-learn's count."""
    return math.ceil(fraction * n)


def validation_split(y: np.ndarray, fraction: float, rng: Any, stratify: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(train_rows, validation_rows)``: ``ceil(fraction * n)`` rows held out (scikit-learn's
    count), drawn per class in proportion to its size when ``stratify`` (classifiers) and ``y``
    holds one class per row: labels ``(N,)``, or one 0/1 column ``(N, 1)`` (binary
    cross-entropy). Multilabel or soft targets are split at random, as scikit-learn splits
    multilabel ones. ``rng``: a NumPy ``Generator`` or ``RandomState``."""
    n = y.shape[0]
    n_val, labels = checked_split(y, fraction, stratify)
    if labels is None:
        order = rng.permutation(n)
        return np.sort(order[n_val:]), np.sort(order[:n_val])
    counts = np.bincount(labels)
    share = counts * n_val / n
    take = np.floor(share).astype(int)
    for i in np.argsort(-(share - take), kind="stable")[: n_val - take.sum()]:  # largest remainders
        take[i] += 1
    val = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[: take[c]] for c in range(counts.size)])
    mask = np.zeros(n, dtype=bool)
    mask[val] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def checked_split(y: np.ndarray, fraction: float, stratify: bool) -> tuple[int, np.ndarray | None]:
    """The held-out count of a validation split of ``y``'s rows and, where it is stratified, each
    row's class index (else None), after refusing what scikit-learn's split refuses (see
    :func:`validation_split`): no training rows, fewer than 2 held-out rows, and the two-class
    splits of :func:`check_two_class_split`."""
    n = y.shape[0]
    n_val = held_out_count(n, fraction)
    if n - n_val < 1:
        raise ValueError(f"validation_fraction={fraction} of {n} samples leaves no training rows")
    if n_val < 2:  # one row's score is noise to stop on (R^2 is not even defined): scikit-learn refuses it too
        raise ValueError(f"validation_fraction={fraction} of {n} samples holds out {n_val} row; the validation set "
                         "needs at least 2: increase validation_fraction or the size of the data")
    if stratify and y.ndim == 2:
        y = y[:, 0] if y.shape[1] == 1 and np.isin(y, (0, 1)).all() else None
    if not stratify or y is None:
        return n_val, None
    classes, labels = np.unique(y, return_inverse=True)
    if classes.size == 2:  # scikit-learn stratifies two classes (its MLP's one output unit) and refuses these
        check_two_class_split(np.bincount(labels), n - n_val, fraction)
    return n_val, labels.reshape(-1)


def check_two_class_split(counts: np.ndarray, n_train: int, fraction: float) -> None:
    """Refuse the two-class stratified splits that scikit-learn's ``train_test_split`` refuses: a
    class with one sample, or fewer training rows than classes. (Fewer held-out rows than classes
    is refused before, by :func:`checked_split`: it needs 2 of them.)"""
    if counts.min() < 2:
        raise ValueError(f"early stopping holds out rows of each class, but one of the two classes in y has only "
                         f"{counts.min()} sample; each class needs at least 2")
    if n_train < counts.size:
        raise ValueError(f"validation_fraction={fraction} of {counts.sum()} samples leaves {n_train} training row(s), "
                         f"fewer than the {counts.size} classes; the stratified split needs one row per class")
