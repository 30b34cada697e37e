"""The linear seed models: ``LinearRegression`` and ``LogisticRegression`` (one Dense layer of a
:class:`~xpnet.network.Sequential`, full-batch gradient descent at a step from the loss's curvature,
on optionally standardised features) and ``Perceptron`` (a compiled epoch of the online rule)."""

from __future__ import annotations

import math
import numbers
import time
import warnings
from typing import Any, Iterator

import numpy as np

from .._validation import check_flag, check_positive_int
from ..backend import host_state
from .. import stopping, training
from ..layers import Dense
from ..network import Sequential
from ..ops import PerceptronPenalty, _device
from ..optim import SGD, _check_number
from ._base import (ConvergenceWarning, _ClassifierMixin, _Estimator, _RegressorMixin, _check_float, _labels,
                    _unchanged_if_it_raises, _weight_total, scikit_learn_draws)


class _Standardized:
    """Optional internal feature standardisation for the linear models.

    The network trains on ``(X - mean_) / scale_``; ``coef_``/``intercept_`` are
    reported for the original features, as scikit-learn's are.
    """

    def _fit_transform(self, Xd: Any, wd: Any = None) -> Any:
        """Standardise with the (``wd``-weighted) mean and standard deviation of each feature, so a
        weight of 2 standardises as the row repeated twice would (:func:`_column_moments`: float32
        features of 1e20 or 1e-30 get their spread too)."""
        xp = self.model_.backend.xp
        if not self.standardize:
            self.mean_ = self.scale_ = None
            return Xd
        self.mean_, std = _column_moments(Xd, xp, wd)
        self.scale_ = xp.where(std > 0, std, xp.ones_like(std))
        return self._transform(Xd)

    def _transform(self, Xd: Any) -> Any:
        if getattr(self, "mean_", None) is None:
            return Xd
        return (Xd - self.mean_) / self.scale_

    def _set_linear_attributes(self) -> None:
        xp = self.model_.backend.xp
        W, b = self.model_.parameters()  # (d, k), (k,)
        if self.mean_ is not None:
            W = W / xp.reshape(self.scale_, (-1, 1))
            b = b - xp.sum(W * xp.reshape(self.mean_, (-1, 1)), axis=0)
        self.coef_ = W.T
        self.intercept_ = b


def _power_of_two_scale(peak: Any, xp: Any) -> Any:
    """The power of two at or above each of ``peak`` (largest magnitudes, any shape), 1 where a
    peak is 0: dividing by it is exact and brings the values into [-1, 1]."""
    positive = peak > 0
    exponent = xp.ceil(xp.log2(xp.where(positive, peak, xp.ones_like(peak))))
    return xp.where(positive, 2.0 ** exponent, xp.ones_like(peak))


def _column_moments(A: Any, xp: Any, wd: Any = None) -> tuple[Any, Any]:
    """The (``wd``-weighted) mean and standard deviation of each column of ``A`` ``(N, d)``, each
    ``(d,)``. They are taken of each column divided by a power of two near its largest magnitude
    (exact, so the same figures where nothing overflows), so that columns whose squares overflow
    or underflow (float32 values of 1e20 or 1e-30) still get their spread."""
    unit = _power_of_two_scale(xp.max(xp.abs(A), axis=0), xp)
    Au = A / unit
    if wd is None:
        mean, std = xp.mean(Au, axis=0), xp.std(Au, axis=0)
    else:
        share = xp.reshape(wd / xp.sum(wd), (-1, 1))
        mean = xp.sum(share * Au, axis=0)
        std = xp.sqrt(xp.sum(share * (Au - mean) ** 2, axis=0))
    return mean * unit, std * unit


def _check_solver(solver: Any) -> None:
    """The linear models' ``solver``: ``"gd"`` (xpnet's gradient descent) or ``"lbfgs"``."""
    if not isinstance(solver, str) or solver not in ("gd", "lbfgs"):
        raise ValueError(f"solver must be 'gd' or 'lbfgs', got {solver!r}")


def _check_step(learning_rate_init: Any) -> None:
    """The linear models' ``learning_rate_init``: ``"auto"`` or a finite number > 0."""
    if isinstance(learning_rate_init, str):
        if learning_rate_init != "auto":
            raise ValueError(f"learning_rate_init must be 'auto' or a finite number > 0, got {learning_rate_init!r}")
        return
    _check_float("learning_rate_init", learning_rate_init, strict=True)


def _lipschitz_step(Xd: Any, xp: Any, iterations: int = 100, wd: Any = None) -> float:
    """``1 / L`` for the MSE ``1/(2N) ||X w + b - y||^2``: L is the largest eigenvalue of
    ``[X 1].T [X 1] / N``, estimated by power iteration (the safe full-batch step size). With
    sample weights ``wd`` ``(N,)``, the weighted MSE's: ``[X 1].T diag(wd) [X 1] / sum(wd)``.
    The iteration runs on ``X / s`` for a power of two ``s`` near its largest magnitude, and L is
    ``s^2`` times its figure (in Python floats), so unstandardised float32 features of 1e20 do
    not overflow ``X.T @ X``. Refused (``ValueError``) where the step is not a normal number of
    ``X``'s dtype: a descent in it would not move."""
    scale = float(_power_of_two_scale(xp.max(xp.abs(Xd)), xp))
    step = _unit_lipschitz_step(Xd / scale, xp, iterations, wd, scale * scale)
    tiny = float(xp.finfo(Xd.dtype).smallest_normal)
    if not step >= tiny:
        raise ValueError(
            f"learning_rate_init='auto' gives a step of {step:.3g}, below the smallest normal {Xd.dtype} ({tiny:.3g}): "
            f"the features (largest magnitude {float(xp.max(xp.abs(Xd))):.3g}) are too large to descend on unscaled; "
            "scale X, keep standardize=True, or use dtype='float64'")
    return step


def _unit_lipschitz_step(Xd: Any, xp: Any, iterations: int, wd: Any, squared_scale: float) -> float:
    """:func:`_lipschitz_step` for ``X = Xd * sqrt(squared_scale)``, ``Xd`` within [-1, 1]."""
    n, d = Xd.shape
    if wd is None:
        gram = (Xd.T @ Xd) * (1.0 / n)
        column_means = xp.mean(Xd, axis=0)  # the intercept column couples through the means
    else:
        share = xp.reshape(wd / xp.sum(wd), (-1, 1))
        gram = Xd.T @ (share * Xd)
        column_means = xp.sum(share * Xd, axis=0)
    v = xp.ones((d,), dtype=Xd.dtype, device=_device(Xd))
    for _ in range(iterations):
        v = gram @ v
        norm = float(xp.sqrt(xp.sum(v * v)))
        if norm == 0.0:  # X is all zeros (all-constant features, standardised): no curvature from X
            break
        v = v / norm
    largest = float(xp.sum(v * (gram @ v)))
    return 1.0 / (squared_scale * (largest + float(xp.sum(column_means * column_means))) + 1.0)


class LinearRegression(_Standardized, _RegressorMixin, _Estimator):
    """Least-squares linear regression fitted by gradient descent on the MSE.

    Gradient ``X.T @ (X w - y) / N`` (xpnet/backprop.md). Features are standardised
    internally (``standardize=True``) and the step size defaults to ``"auto"``,
    ``1/L`` for the largest curvature ``L`` of the loss, so full-batch descent
    decreases the loss at every step and converges to the least-squares solution.
    Descent stops when the largest absolute entry of the full-batch gradient is at most
    ``tol`` times ``y``'s spread (its standard deviation; never below 8 machine epsilons of the
    dtype, finer than float32 resolves a gradient), as scikit-learn's lbfgs stops on the
    gradient: a rule on the loss's progress stopped nearly collinear fits early, far from the
    least-squares fit and without a word. The rule is relative, so ``y`` in units of 1e-30 or
    of 1e20 stops where ``y`` in units of 1 does, with the same fit scaled (the descent runs on
    ``y`` divided by a power of two, so neither overflows the loss in float32 either).
    Mini-batches (``batch_size`` set) end at the same fit: they stop on the same rule, checked
    on a full-batch pass after each epoch, and once that gradient has not reached a new low for
    more than ``n_iter_no_change`` epochs (the noise floor of a constant step) the remaining
    epochs take full batches. Like any plain gradient
    descent it is slow on ill-conditioned problems (nearly collinear features, or unstandardised
    ones on other scales than the intercept): there ``ConvergenceWarning`` says that
    ``max_iter`` stopped it. Exactly collinear features (one-hot columns of every category
    beside the intercept) are fine: the descent converges in the others. ``solver="lbfgs"``
    replaces the descent by scipy's L-BFGS-B on the same full-batch objective and gradient
    (xpnet's backprop; ``learning_rate_init``, ``momentum``, ``batch_size`` and
    ``n_iter_no_change`` unused), which reaches such fits in tens of iterations; it warns where
    it stops above the gradient rule (in float32 its line search often cannot resolve the loss
    that finely).

    Attributes: ``coef_`` ``(n_targets, n_features)`` (``(n_features,)`` for one
    target), ``intercept_``, ``loss_curve_``, ``n_iter_``.
    """

    _multi_output = True
    solver = "gd"  # the class's value for an estimator pickled before the option existed

    def __init__(
        self, *, solver: str = "gd", learning_rate_init: Any = "auto", max_iter: int = 10000, tol: float = 1e-8,
        n_iter_no_change: int = 10, batch_size: Any = None, momentum: float = 0.0, standardize: bool = True,
        random_state: int | None = None, backend: Any = None, dtype: str = "float64", fused: bool | None = None,
    ) -> None:
        self.solver = solver
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.batch_size = batch_size
        self.momentum = momentum
        self.standardize = standardize
        self.random_state = random_state
        self.backend = backend
        self.dtype = dtype
        self.fused = fused

    @_unchanged_if_it_raises
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> "LinearRegression":
        """Fit by gradient descent; ``sample_weight`` ``(N,)`` (or one number) weights each sample's
        squared error (weighted least squares, scikit-learn's meaning)."""
        rule = self._stopping_rule()
        check_flag("standardize", self.standardize)
        _check_solver(self.solver)
        _check_step(self.learning_rate_init)
        Xd, y, sample_weight = self._fit_inputs(X, y, sample_weight)
        y_arr = np.asarray(y) if isinstance(y, (list, tuple)) else y
        self.n_outputs_ = 1 if getattr(y_arr, "ndim", 1) == 1 else int(y_arr.shape[1])
        model = Sequential([Dense(self.n_features_in_, self.n_outputs_, init="zeros")], loss="mse", backend=self._backend(),
                           dtype=self._dtype_name_, seed=self.random_state, fused=self.fused)
        yd = model.loss.prepare_targets(y_arr, Xd.shape[0], self.n_outputs_, model.backend, model.dtype)
        wd = None if sample_weight is None else training.check_sample_weight(sample_weight, Xd.shape[0], model.backend,
                                                                              model.dtype)
        self.model_ = model
        xp = model.backend.xp
        # The descent runs on y / unit, a power of two near y's largest magnitude (exact), and the fit
        # is scaled back: float32 targets of 1e20 or 1e-30 do not overflow or underflow the loss.
        unit = float(_power_of_two_scale(xp.max(xp.abs(yd)), xp))
        yd = yd / unit
        spread = math.sqrt(sum(float(sd) ** 2 for sd in model.backend.to_numpy(_column_moments(yd, xp, wd)[1])))
        max_iter, tol, patience = rule
        # the gradient rule, relative to y's spread (1 where y is constant), never finer than the dtype resolves
        grad_tol = max(tol, 8.0 * float(xp.finfo(yd.dtype).eps)) * (spread if spread > 0 else 1.0)
        Xt = self._fit_transform(Xd, wd)
        if self.solver == "lbfgs":
            self._run_lbfgs(model, Xt, yd, max_iter, grad_tol, wd=wd)
        else:
            lr = (_lipschitz_step(Xt, xp, wd=wd) if self.learning_rate_init == "auto" else float(self.learning_rate_init))
            optimizer = SGD(lr=lr, momentum=self.momentum)
            self._run_epochs(model, Xt, yd, optimizer, self._batch_size(Xd.shape[0]), True, max_iter, patience, grad_tol,
                             wd=wd)
        if unit != 1.0:
            model.set_parameters([p * unit for p in model.parameters()])
            self.loss_curve_ = [loss * unit * unit for loss in self.loss_curve_]
            self.best_loss_ *= unit * unit
        self._set_linear_attributes()
        if self.n_outputs_ == 1:
            self.coef_, self.intercept_ = self.coef_[0, ...], self.intercept_[0]
        return self


class LogisticRegression(_Standardized, _ClassifierMixin, _Estimator):
    """Logistic regression: one sigmoid unit with binary cross-entropy (softmax for 3+ classes).

    Trained by full-batch gradient descent with momentum on internally
    standardised features, from zero weights (so a constant feature gets coefficient 0);
    the defaults converge on small, separable problems such as iris setosa vs versicolor.
    ``alpha`` is the L2 penalty ``alpha / (2N) ||W||^2``, which is scikit-learn's ``1 / C``:
    the default ``alpha=1.0`` is its ``C=1.0``. The penalty is on the weights the model trains,
    those of the standardised features by default, so the fit is scikit-learn's
    ``make_pipeline(StandardScaler(), LogisticRegression(C=1 / alpha))`` (its coefficients
    reported for the raw features); with ``standardize=False`` it is
    ``LogisticRegression(C=1 / alpha)`` on the raw features (both tested). Without a penalty,
    separable classes have no finite optimum. The step defaults to ``"auto"``: ``1/L`` for a bound
    ``L`` on the objective's curvature (a quarter, for two classes, or half, for more, of the
    largest eigenvalue of ``[X 1].T [X 1] / N``, plus ``alpha / N``), so a strong penalty
    (``alpha=1e4``, scikit-learn's ``C=1e-4``) converges instead of diverging as a fixed step did.
    Training stops when the largest absolute entry of the full-batch gradient is at most ``tol``
    (scikit-learn's lbfgs criterion), or at ``max_iter`` with a ``ConvergenceWarning``.
    Mini-batches (``batch_size`` set) minimise the same objective and end at the same fit: each
    step carries the whole data's penalty, the gradient rule is checked on a full-batch pass after
    each epoch, and once that gradient has not reached a new low for more than
    ``n_iter_no_change`` epochs the remaining epochs take full batches. ``solver="lbfgs"`` is
    scikit-learn's solver instead: scipy's L-BFGS-B on the same objective and xpnet's gradient,
    stopped by the same rule (or it warns), for unstandardised features where descent is slow.

    Attributes: ``classes_``, ``coef_`` ``(1, n_features)`` for two classes or
    ``(n_classes, n_features)``, ``intercept_``, ``loss_curve_``, ``n_iter_``.
    """

    solver = "gd"  # the class's value for an estimator pickled before the option existed

    def __init__(
        self, *, solver: str = "gd", learning_rate_init: Any = "auto", max_iter: int = 1000, tol: float = 1e-4,
        n_iter_no_change: int = 10, alpha: float = 1.0, batch_size: Any = None, momentum: float = 0.9,
        standardize: bool = True, random_state: int | None = None, backend: Any = None,
        dtype: str = "float64", fused: bool | None = None,
    ) -> None:
        self.solver = solver
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.alpha = alpha
        self.batch_size = batch_size
        self.momentum = momentum
        self.standardize = standardize
        self.random_state = random_state
        self.backend = backend
        self.dtype = dtype
        self.fused = fused

    @_unchanged_if_it_raises
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> "LogisticRegression":
        """Fit by gradient descent; ``sample_weight`` ``(N,)`` (or one number) weights each sample's
        loss, and the L2 term is divided by the weight sum (scikit-learn's objective)."""
        max_iter, grad_tol, patience = self._stopping_rule()
        check_flag("standardize", self.standardize)
        _check_solver(self.solver)
        _check_step(self.learning_rate_init)
        alpha = _check_float("alpha", self.alpha)
        Xd, y, sample_weight = self._fit_inputs(X, y, sample_weight)
        labels = self._encode_labels(y, Xd.shape[0])
        binary = self.classes_.size == 2
        n_out = 1 if binary else int(self.classes_.size)
        model = Sequential([Dense(self.n_features_in_, n_out, init="zeros")],
                           loss="binary_cross_entropy" if binary else "softmax_cross_entropy",
                           backend=self._backend(), dtype=self._dtype_name_, seed=self.random_state, fused=self.fused, l2=alpha)
        yd = model.loss.prepare_targets(labels, Xd.shape[0], n_out, model.backend, model.dtype)
        wd = None if sample_weight is None else training.check_sample_weight(sample_weight, Xd.shape[0], model.backend,
                                                                              model.dtype)
        self.model_ = model
        Xt = self._fit_transform(Xd, wd)
        if self.solver == "lbfgs":
            self._run_lbfgs(model, Xt, yd, max_iter, grad_tol, wd=wd)
        else:
            if self.learning_rate_init == "auto":
                # the loss's Hessian in the logits is at most 1/4 (sigmoid) or 1/2 (softmax) times the identity
                xp = model.backend.xp
                curvature = (0.25 if binary else 0.5) / _lipschitz_step(Xt, xp, wd=wd)
                lr = 1.0 / (curvature + alpha / _weight_total(Xd, wd, xp))
            else:
                lr = float(self.learning_rate_init)
            optimizer = SGD(lr=lr, momentum=self.momentum)
            # every batch size stops on the full gradient (momentum overshoots the loss)
            self._run_epochs(model, Xt, yd, optimizer, self._batch_size(Xd.shape[0]), True, max_iter, patience,
                             grad_tol, wd=wd)
        self._set_linear_attributes()
        return self

    def decision_function(self, X: Any) -> Any:
        """Logits: ``(N,)`` for two classes, ``(N, n_classes)`` otherwise (NumPy for host ``X``)."""
        self._check_fitted()
        out = self.model_._outputs(self._transform(self._features(X, reset=False, method="decision_function")))
        return self._like_input(X, out[:, 0] if out.shape[1] == 1 else out)


_INT32_MAX = int(np.iinfo(np.int32).max)


def _integers(draws: Any, low: int, high: int, size: int | None = None) -> Any:
    """``draws.randint(low, high, size)`` (scikit-learn's call), or ``integers`` for a ``Generator``."""
    return (draws.integers if isinstance(draws, np.random.Generator) else draws.randint)(low, high, size)


def scikit_learn_sgd_seeds(random_state: Any, units: int, split: Any = None) -> tuple[list[int], Any]:
    """Each unit's shuffling seed, drawn as scikit-learn's SGD estimators draw it from
    ``random_state`` (sklearn/linear_model/_stochastic_gradient.py), and what ``split`` returns.
    One unit: ``fit_binary`` draws from the fit's generator ``make_dataset``'s seed, then the
    shuffle's. Several (one-vs-rest): ``_fit_multiclass`` first draws one seed per unit, and each
    unit's ``fit_binary`` draws those two from a ``RandomState`` of its own seed.

    ``split`` (early stopping) is called with what scikit-learn's validation split takes as its
    ``random_state`` (the seed itself, or the fit's generator, which it then draws from) at the
    point where scikit-learn splits: between a single unit's two draws, or before the one-vs-rest
    seeds. Returns ``(seeds, split's result or None)``."""
    draws = scikit_learn_draws(random_state)
    split_state = random_state if isinstance(random_state, numbers.Integral) else draws
    held_out = None
    if units == 1:
        _integers(draws, 1, _INT32_MAX)  # make_dataset's seed, which the epoch order does not use
        if split is not None:
            held_out = split(split_state)
        return [int(_integers(draws, 0, _INT32_MAX))], held_out
    if split is not None:
        held_out = split(split_state)
    seeds = []
    for seed in _integers(draws, 0, _INT32_MAX, units):
        unit_draws = np.random.RandomState(int(seed))
        _integers(unit_draws, 1, _INT32_MAX)
        seeds.append(int(_integers(unit_draws, 0, _INT32_MAX)))
    return seeds, held_out


def scikit_learn_sgd_orders(n: int, seed: int) -> Iterator[np.ndarray]:
    """scikit-learn's SGD epoch orders of ``n`` samples (``SequentialDataset.shuffle`` before each
    epoch): a Fisher-Yates shuffle of the previous epoch's order, its swaps drawn by scikit-learn's
    xorshift generator (``our_rand_r``) from ``seed`` anew at every epoch, so each epoch applies the
    same permutation of positions to the order before it. Yields ``(n,)`` index arrays."""
    positions = np.arange(n)
    state = seed or 1  # our_rand_r replaces a zero state with 1
    for i in range(n - 1):
        state ^= (state << 13) & 0xFFFFFFFF
        state ^= state >> 17
        state ^= (state << 5) & 0xFFFFFFFF
        j = i + (state & 0x7FFFFFFF) % (n - i)
        positions[i], positions[j] = positions[j], positions[i]
    order = np.arange(n)
    while True:
        order = order[positions]
        yield order


class Perceptron(_ClassifierMixin, _Estimator):
    """Rosenblatt's perceptron: on a mistake ``y (w.x + b) <= 0``, ``w += eta0 y x``, ``b += eta0 y``.

    Two classes use one unit with labels mapped to -1/+1; more classes train one
    unit per class (one-vs-rest), each alone, as scikit-learn's does. Each epoch is one call of
    ``ops.perceptron_epoch`` (compiled with Numba on NumPy; the Array-API reference elsewhere).
    A unit stops by scikit-learn's rule: when the epoch's objective (the summed perceptron loss
    ``max(0, -y (w.x + b))``, plus the penalty, over the samples) has not fallen below the best by
    ``tol * n_samples`` for ``n_iter_no_change`` epochs (``tol=None`` turns that off), or after
    ``max_iter`` epochs. ``shuffle=True`` visits the samples in scikit-learn's epoch orders, drawn
    from ``random_state`` as scikit-learn draws them, so with the same ``random_state`` (or
    ``shuffle=False``) the weights and ``n_iter_`` are scikit-learn's (tested). Without a penalty,
    after an epoch without mistakes the weights can no longer change, so a unit's later epochs
    are counted, not run: each has no mistakes and no loss. ``ConvergenceWarning`` when
    ``max_iter`` ends a fit with ``tol`` set, as scikit-learn.

    scikit-learn's other options, with its meaning (tested against it): ``random_state`` (default
    0, as there), ``fit_intercept``, ``class_weight`` (a dict of label to weight, or
    ``"balanced"``: ``n_samples / (n_classes * count)``; a class's weight scales its samples'
    steps, for the positive side of each one-vs-rest unit and both sides of a binary one),
    ``warm_start`` (start from the last fit's weights; other classes or features are refused),
    ``partial_fit(X, y, classes=None, sample_weight=None)`` (one epoch per call);
    ``penalty`` (None, ``"l2"``, ``"l1"``, ``"elasticnet"``) with ``alpha`` and ``l1_ratio``: each
    sample's step first shrinks the weights by ``1 - (1 - l1_ratio) eta0 alpha`` and then, for L1,
    truncates them toward zero (Tsuruoka et al.'s cumulative penalty), as scikit-learn's SGD;
    ``early_stopping`` with ``validation_fraction`` (scikit-learn's stratified split, drawn where
    it draws it; each unit stops on its accuracy over the held-out rows, which it does not train
    on, by ``tol`` and ``n_iter_no_change``; the last epoch's weights are kept, as there);
    ``verbose`` (scikit-learn's epoch lines); ``n_jobs`` is taken, and the units train one after
    another whatever it is (scikit-learn's result does not depend on it either). Weights that
    become NaN or infinite (too large an ``eta0`` for the data's scale) raise ``ValueError`` at the
    end of that epoch, as scikit-learn's SGD, and leave the estimator as it was.

    Where scikit-learn's early stopping with ``penalty="l2"`` or ``"elasticnet"`` differs: it scores
    its stored vector before the shrinking is applied (``weights.base`` in ``_plain_sgd``), where
    xpnet scores the weights themselves, so ``n_iter_`` can differ there.

    Attributes: ``classes_``, ``coef_`` ``(1 or n_classes, n_features)``,
    ``intercept_``, ``n_iter_`` (the most epochs of any unit, as scikit-learn's), ``t_``
    (``n_iter_ * n_samples + 1``, as scikit-learn's), ``errors_`` (mistakes per epoch) and
    ``loss_curve_`` (the summed perceptron loss per epoch, without the penalty), each summed over
    the units still training at that epoch.
    """

    def __init__(
        self, *, penalty: str | None = None, alpha: float = 0.0001, l1_ratio: float = 0.15,
        fit_intercept: bool = True, max_iter: int = 1000, tol: float | None = 1e-3, shuffle: bool = True,
        verbose: int = 0, eta0: float = 1.0, n_jobs: int | None = None, random_state: Any = 0,
        early_stopping: bool = False, validation_fraction: float = 0.1, n_iter_no_change: int = 5,
        class_weight: Any = None, warm_start: bool = False, backend: Any = None, dtype: str = "float64",
        fused: bool | None = None,
    ) -> None:
        self.penalty = penalty
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.shuffle = shuffle
        self.verbose = verbose
        self.eta0 = eta0
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.class_weight = class_weight
        self.warm_start = warm_start
        self.backend = backend
        self.dtype = dtype
        self.fused = fused

    @_unchanged_if_it_raises
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> "Perceptron":
        """Run the rule over ``(X, y)`` from zero weights, or from the last fit's with
        ``warm_start=True``; ``sample_weight`` ``(N,)`` (or one number) scales each sample's step,
        as scikit-learn's does."""
        max_iter = check_positive_int("max_iter", self.max_iter)
        tol = None if self.tol is None else _check_float("tol", self.tol)
        before = self._fitted_units() if check_flag("warm_start", self.warm_start) else None
        options = self._checked_options()
        Xd, y, sample_weight = self._fit_inputs(X, y, sample_weight)
        labels = self._encode_labels(y, Xd.shape[0])
        if before is not None:  # scikit-learn refuses other shapes ("Provided coef_init does not match dataset")
            classes, n_features, _ = before
            if not np.array_equal(classes, self.classes_) or n_features != self.n_features_in_:
                raise ValueError(f"warm_start can only be used where X and y are shaped as in the previous call to "
                                 f"fit: previously {n_features} features and classes {_labels(classes)}, now "
                                 f"{self.n_features_in_} features and classes {_labels(self.classes_)}")
        self._train(Xd, labels, sample_weight, options, max_iter, tol, None if before is None else before[2], t=1.0)
        if tol is not None and self.n_iter_ == max_iter:
            warnings.warn("Maximum number of iteration reached before convergence. Consider increasing max_iter "
                          "to improve the fit.", ConvergenceWarning)
        return self

    @_unchanged_if_it_raises
    def partial_fit(self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None) -> "Perceptron":
        """One epoch over ``(X, y)`` from the weights so far, as scikit-learn's ``partial_fit``:
        the first call needs ``classes`` (every label that will ever appear); ``n_iter_`` is 1 and
        ``t_`` goes on counting. ``early_stopping=True`` and ``class_weight="balanced"`` are refused on
        the first call, as scikit-learn refuses them; after a fit, the epoch holds out the validation
        rows, and "balanced" weighs the classes by their counts in this call's ``y``, as there."""
        options = self._checked_options()
        first = self._first_partial_fit(classes)
        # refused on the first call only, as scikit-learn refuses them: after a fit, an epoch holds out
        # the validation rows, and "balanced" weighs the classes by their counts in this call's y
        if first and options["early_stopping"]:
            raise ValueError("early_stopping should be False with partial_fit, on its first call (scikit-learn's rule; "
                             "after a fit, each partial_fit epoch holds out the validation rows)")
        if first and isinstance(self.class_weight, str) and self.class_weight == "balanced":
            raise ValueError("class_weight 'balanced' is not supported for partial_fit: compute the weights once "
                             "from a large enough sample of y (sklearn.utils.class_weight.compute_class_weight) "
                             "and pass them as a dict, as scikit-learn asks")
        start = None if first else self._fitted_units()[2]
        Xd, y, sample_weight = self._fit_inputs(X, y, sample_weight, reset=first)
        labels = self._encode_labels(y, Xd.shape[0], classes if first else self.classes_)
        self._train(Xd, labels, sample_weight, options, 1, None, start, t=1.0 if first else self.t_)
        return self

    def _checked_options(self) -> dict[str, Any]:
        """The training options, each checked by scikit-learn's rules (``class_weight`` checked too)."""
        cw = self.class_weight
        if not (cw is None or isinstance(cw, dict) or (isinstance(cw, str) and cw == "balanced")):
            raise ValueError(f"class_weight must be None, 'balanced' or a dict of class label to weight, got {cw!r}")
        if self.penalty not in (None, "l2", "l1", "elasticnet"):
            raise ValueError(f"penalty must be None, 'l2', 'l1' or 'elasticnet', got {self.penalty!r}")
        v = self.verbose
        if not isinstance(v, (numbers.Integral, np.bool_)) or v < 0:  # scikit-learn's: a bool or an integer >= 0
            raise ValueError(f"verbose must be True, False or an integer >= 0, got {type(v).__name__} {v!r}")
        if self.n_jobs is not None and (isinstance(self.n_jobs, bool) or not isinstance(self.n_jobs, numbers.Integral)):
            raise TypeError(f"n_jobs must be None or an integer, got {type(self.n_jobs).__name__} {self.n_jobs!r}")
        return dict(
            eta0=_check_float("eta0", self.eta0, strict=True), fit_intercept=check_flag("fit_intercept", self.fit_intercept),
            patience=check_positive_int("n_iter_no_change", self.n_iter_no_change),
            shuffle=check_flag("shuffle", self.shuffle), penalty=self.penalty, alpha=_check_float("alpha", self.alpha),
            l1_ratio=_check_number("l1_ratio", self.l1_ratio, low=0.0, high=1.0, low_open=False, high_open=False),
            early_stopping=check_flag("early_stopping", self.early_stopping),
            validation_fraction=_check_number("validation_fraction", self.validation_fraction, low=0.0, high=1.0),
            verbose=int(v))

    def _fitted_units(self) -> tuple[np.ndarray, int, tuple[np.ndarray, np.ndarray]] | None:
        """``(classes_, n_features_in_, (W (d, k), b (k,)) on the host)`` of the last fit, or None."""
        if not hasattr(self, "model_"):
            return None
        backend = self.model_.backend
        return self.classes_, self.n_features_in_, (backend.to_numpy(self.model_.W), backend.to_numpy(self.model_.b))

    def _class_factors(self, labels: np.ndarray) -> np.ndarray | None:
        """Each class's step factor ``(n_classes,)`` from ``class_weight``, as scikit-learn's
        ``compute_class_weight``: ``"balanced"`` is ``n / (n_classes * count)``; a dict's missing
        classes get 1 (every key must be a class, unless the dict names them all); None if none."""
        cw, n_classes = self.class_weight, self.classes_.size
        if cw is None:
            return None
        if isinstance(cw, str):
            counts = np.bincount(labels, minlength=n_classes)
            if not counts.all():  # a partial_fit's y (scikit-learn's compute_class_weight refuses it alike)
                raise ValueError(f"class_weight='balanced' needs every class in y; y has no "
                                 f"{_labels(self.classes_[counts == 0])[1:-1]}")
            return len(labels) / (n_classes * counts.astype(np.float64))
        classes = self.classes_.tolist()
        named = [c for c in classes if c in cw]
        if len(named) != n_classes and len(named) != len(cw):
            raise ValueError(f"class_weight names labels {sorted(set(cw) - set(named), key=str)} that are not "
                             f"classes of y ({_labels(self.classes_)})")
        return np.array([float(cw[c]) if c in cw else 1.0 for c in classes])

    @staticmethod
    def _validation_rows(split_labels: np.ndarray, fraction: float, state: Any, weights: np.ndarray | None) -> np.ndarray:
        """The held-out rows ``(N,)`` bool for early stopping: scikit-learn's ``StratifiedShuffleSplit``
        of ``split_labels`` from ``state`` (xpnet's stratified split without scikit-learn, or from a
        ``Generator``), refused where scikit-learn refuses it (an empty side, or zero weight on
        every held-out row)."""
        n = split_labels.shape[0]
        try:
            from sklearn.model_selection import StratifiedShuffleSplit
        except ImportError:  # pragma: no cover - exercised only without scikit-learn
            StratifiedShuffleSplit = None  # noqa: N806
        if StratifiedShuffleSplit is None or isinstance(state, np.random.Generator):
            train, held = stopping.validation_split(split_labels, fraction, state, stratify=True)
        else:
            splitter = StratifiedShuffleSplit(test_size=fraction, random_state=state)
            train, held = next(splitter.split(np.zeros((n, 1)), split_labels))
        if train.size == 0 or held.size == 0:
            raise ValueError(f"splitting {n} samples into a training and a validation set with validation_fraction="
                             f"{fraction} leaves one empty ({train.size} and {held.size} samples): change "
                             "validation_fraction, use more samples, or turn early_stopping off")
        if weights is not None and not np.any(weights[held] > 0):
            raise ValueError("the sample weights of the validation set are all zero: use another random_state")
        mask = np.zeros(n, dtype=bool)
        mask[held] = True
        return mask

    def _train(self, Xd: Any, labels: np.ndarray, sample_weight: Any, options: dict[str, Any], max_iter: int,
               tol: float | None, start: tuple[np.ndarray, np.ndarray] | None, t: float) -> None:
        """Train each one-vs-rest unit alone for up to ``max_iter`` epochs (from ``start``'s
        ``(W (d, k), b (k,))``, else zeros) with scikit-learn's stopping rule (``tol=None``: none),
        as scikit-learn's ``fit_binary``; set ``coef_``, ``intercept_``, ``model_`` and the epochs'
        record (``t_`` counting on from ``t``). ``options``: from :meth:`_checked_options`."""
        from ..ops import Ops

        backend = self._backend()
        n, d = Xd.shape
        weights = None if sample_weight is None else training.host_sample_weight(sample_weight, n, backend)
        xp, dtype = backend.xp, backend.dtype(self._dtype_name_)
        ops = Ops(backend, self.fused)
        k = 1 if self.classes_.size == 2 else int(self.classes_.size)
        signs = np.where(labels[:, None] == np.arange(k) + (1 if k == 1 else 0), 1.0, -1.0)
        factors = self._class_factors(labels)
        split = None
        if options["early_stopping"]:  # binary: split the unit's -1/+1 labels; one-vs-rest: the classes
            split_labels = signs[:, 0] if k == 1 else labels
            split = lambda state: self._validation_rows(split_labels, options["validation_fraction"], state, weights)  # noqa: E731
        seeds, held_out = scikit_learn_sgd_seeds(self.random_state, k, split)
        columns, runs = [], []
        for unit, seed in enumerate(seeds):  # one-vs-rest, as scikit-learn's
            Y = backend.asarray(signs[:, unit:unit + 1], dtype=dtype)
            first = np.zeros((d, 1)) if start is None else np.ascontiguousarray(start[0][:, unit:unit + 1])
            W = backend.asarray(first, dtype=dtype)  # fresh arrays: the epoch writes in place
            b = backend.asarray(np.zeros(1) if start is None else np.array(start[1][unit:unit + 1]), dtype=dtype)
            unit_weights = weights
            if factors is not None:  # scikit-learn's (positive, negative) weights: one unit, classes 1 and 0;
                pos, neg = (factors[1], factors[0]) if k == 1 else (factors[unit], 1.0)  # one-vs-rest, unit's and 1
                unit_weights = np.where(signs[:, unit] > 0, pos, neg) * (1.0 if weights is None else weights)
            penalty = None
            if options["penalty"] is not None:
                reset_below = 1e-9 if self._dtype_name_ == "float64" else 1e-6  # scikit-learn's, per dtype
                norms = [(float(np.sum(first * first)), float(np.sum(np.abs(first))))]
                penalty = PerceptronPenalty(options["penalty"], options["alpha"], options["l1_ratio"], norms,
                                            xp.zeros_like(W), reset_below)
            run = _UnitRun(backend, Xd, Y, held_out, weights, tol, options, n)
            orders = scikit_learn_sgd_orders(n, seed) if options["shuffle"] else None
            for _ in range(max_iter):
                if run.settled and penalty is None:  # the last epoch made no mistake, so W and b stay
                    stop = run.repeat()
                else:
                    order = next(orders) if orders is not None else np.arange(n)
                    if held_out is not None:
                        order = order[~held_out[order]]  # scikit-learn skips held-out rows as it meets them
                    W, b, mistakes, loss, objective = ops.perceptron_epoch(
                        Xd, Y, W, b, order, eta0=options["eta0"], weights=unit_weights,
                        fit_intercept=options["fit_intercept"], penalty=penalty)
                    if not (bool(xp.all(xp.isfinite(W))) and bool(xp.all(xp.isfinite(b)))):
                        raise ValueError(  # scikit-learn's check and words (_plain_sgd), before any attribute is set
                            f"Floating-point under-/overflow occurred at epoch #{len(run.errors) + 1}"
                            f"{'' if k == 1 else f' (unit {unit} of {k}, one per class)'}: the weights became "
                            f"NaN or infinite in {self._dtype_name_}. Scaling input data with StandardScaler or "
                            "MinMaxScaler, or a smaller eta0, might help.")
                    stop = run.record(mistakes, loss, objective, W, b, penalty)
                if stop:
                    break
            if penalty is not None:
                W = penalty.scaled(W, xp)
            columns.append((W, b))
            runs.append((run.errors, run.losses))
        self._record_epochs(runs, n, t)
        W = columns[0][0] if k == 1 else xp.concat([W for W, _ in columns], axis=1)
        b = columns[0][1] if k == 1 else xp.concat([b for _, b in columns], axis=0)
        self.coef_, self.intercept_ = W.T, b
        self.model_ = _LinearScorer(backend, W, b)

    def _record_epochs(self, runs: list[tuple[list[int], list[float]]], n_samples: int, t: float) -> None:
        """``n_iter_`` (the most epochs of any unit, as scikit-learn's), ``t_`` (``t`` plus
        ``n_iter_ * n_samples``), ``errors_`` and ``loss_curve_`` (each epoch's, summed over the
        units still training) from each unit's ``(mistakes per epoch, loss per epoch)``."""
        self.n_iter_ = max(len(errors) for errors, _ in runs)
        self.t_ = t + self.n_iter_ * n_samples
        self.errors_ = [sum(errors[e] for errors, _ in runs if e < len(errors)) for e in range(self.n_iter_)]
        self.loss_curve_ = [sum(losses[e] for _, losses in runs if e < len(losses)) for e in range(self.n_iter_)]

    def _transform(self, Xd: Any) -> Any:
        return Xd

    @property
    def predict_proba(self) -> Any:
        """Not available: the perceptron has no probabilities (``hasattr`` is False, as in scikit-learn)."""
        raise AttributeError("Perceptron has no predict_proba; use decision_function")

    @property
    def predict_log_proba(self) -> Any:
        """Not available, as :attr:`predict_proba`."""
        raise AttributeError("Perceptron has no predict_log_proba; use decision_function")

    def decision_function(self, X: Any) -> Any:
        """Scores ``X @ W + b``: ``(N,)`` for two classes, ``(N, n_classes)`` otherwise (NumPy for host ``X``)."""
        self._check_fitted()
        out = self._features(X, reset=False, method="decision_function") @ self.model_.W + self.model_.b
        return self._like_input(X, out[:, 0] if out.shape[1] == 1 else out)


class _UnitRun:
    """One perceptron unit's epochs: each one's mistakes and loss, scikit-learn's stopping rule
    over them (``_plain_sgd``: the objective per training sample or, with early stopping, the
    accuracy on the held-out rows), and its ``verbose`` lines."""

    def __init__(self, backend: Any, Xd: Any, Y: Any, held_out: np.ndarray | None, weights: np.ndarray | None,
                 tol: float | None, options: dict[str, Any], n: int) -> None:
        self.backend, self.tol, self.patience, self.verbose = backend, tol, options["patience"], options["verbose"]
        self.train_count = n if held_out is None else int(n - held_out.sum())
        self.errors: list[int] = []
        self.losses: list[float] = []
        self.stale, self.settled, self.trained, self.last_score, self.weights_line = 0, False, 0, None, ""
        self.best = -np.inf if held_out is not None else np.inf
        self.started = time.perf_counter()
        self.held_out = None
        if held_out is not None:
            rows = np.flatnonzero(held_out)
            self.held_out = (backend.xp.take(Xd, backend.asarray(rows), axis=0), backend.to_numpy(Y)[rows, 0],
                             None if weights is None else weights[rows])

    def _score(self, W: Any, b: Any) -> float:
        """Accuracy of the unit's sign on the held-out rows (weighted by their sample weights)."""
        X_val, y_val, w_val = self.held_out
        scores = self.backend.to_numpy(X_val @ W + b)[:, 0]
        return float(np.average(np.where(scores > 0, 1.0, -1.0) == y_val, weights=w_val))

    def record(self, mistakes: int, loss: float, objective: float, W: Any, b: Any,
               penalty: PerceptronPenalty | None = None) -> bool:
        """Record an epoch that ran, ending on the stored vector ``W`` ``(d, 1)`` (the weights, unless a
        ``penalty`` keeps them scaled) and ``b``; True to stop."""
        self.settled = mistakes == 0
        if penalty is not None and (self.held_out is not None or self.verbose):
            W = penalty.scaled(W, self.backend.xp)
        score = None if self.held_out is None else self._score(W, b)
        if self.verbose:  # a penalised fit prints the norm it tracks, as scikit-learn (its L1 truncation leaves it behind)
            host_W = self.backend.to_numpy(W)
            norm = np.linalg.norm(host_W) if penalty is None else np.sqrt(penalty.scalars[0][1])
            self.weights_line = (f"Norm: {norm:.2f}, NNZs: {np.count_nonzero(host_W)}, "
                                 f"Bias: {float(self.backend.to_numpy(b)[0]):.6f}")
        self.last_score = score
        return self._step(mistakes, loss, objective, score)

    def repeat(self) -> bool:
        """Count an epoch that would repeat the last one without mistakes: no loss, the same score."""
        return self._step(0, 0.0, 0.0, self.last_score)

    def _step(self, mistakes: int, loss: float, objective: float, score: float | None) -> bool:
        self.errors.append(mistakes)
        self.losses.append(loss)
        self.trained += self.train_count
        if self.verbose:  # scikit-learn's lines, printed once the epoch is over
            line = (f"{self.weights_line}, T: {self.trained}, Avg. loss: {loss / self.train_count:f}, "
                    f"Objective: {objective / self.train_count:f}")
            print(f"-- Epoch {len(self.errors)}")
            print(line if score is None else f"{line}, Validation score: {score:f}")
            print(f"Total training time: {time.perf_counter() - self.started:.2f} seconds.")
        if score is not None:
            self.stale = self.stale + 1 if self.tol is not None and score < self.best + self.tol else 0
            self.best = max(self.best, score)
        else:
            mean = objective / self.train_count
            self.stale = self.stale + 1 if self.tol is not None and mean > self.best - self.tol else 0
            self.best = min(self.best, mean)
        stop = self.stale >= self.patience
        if stop and self.verbose:
            print(f"Convergence after {len(self.errors)} epochs took {time.perf_counter() - self.started:.2f} seconds")
        return stop


class _LinearScorer:
    """The perceptron's fitted state in the shape the classifier mixin expects of ``model_``."""

    def __init__(self, backend, W, b):
        self.backend, self.W, self.b = backend, W, b

    def __getstate__(self) -> dict:
        return host_state(self.__dict__)

    def predict(self, Xd):
        xp = self.backend.xp
        scores = Xd @ self.W + self.b
        if self.W.shape[1] == 1:  # the weights' width, known even where the scores' is not (ONNX tracing)
            return xp.astype(scores[:, 0] > 0, self.backend.int_dtype)
        return xp.argmax(scores, axis=1)

    def predict_proba(self, Xd):
        raise AttributeError("Perceptron has no predict_proba; use decision_function")

