"""``MLPClassifier`` and ``MLPRegressor``: scikit-learn's MLP options mapped onto
:class:`~xpnet.network.Sequential` and its ``fit`` (adam, sgd and its schedules, the stopping rule,
early stopping), and lbfgs through scipy's L-BFGS-B with xpnet's backprop for the gradient."""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import numpy as np

from .._validation import check_flag, check_positive_int
from ..layers import Dense, dense_stack
from .. import stopping, training
from ..callbacks import Callback
from ..network import Sequential, check_matmul_precision
from ..sources import DataSource
from ..optim import SGD, Adam, _check_number
from ._base import (ConvergenceWarning, DataConversionWarning, _ClassifierMixin, _Estimator, _RegressorMixin,
                    _check_below_one, _check_float, _labels, _sklearn_label_checks,
                    _unchanged_if_it_raises, scikit_learn_draws)


def _stochastic_solver(estimator: Any) -> bool:
    """True for ``solver="adam"`` or ``"sgd"``; else the AttributeError that hides ``partial_fit``, as
    scikit-learn hides it (``hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")`` is False there too)."""
    if estimator.solver not in ("adam", "sgd"):
        raise AttributeError(f"partial_fit is only available for stochastic optimizers; solver={estimator.solver!r} "
                             "is not")
    return True


def _available_if(check: Any) -> Any:
    """scikit-learn's ``available_if`` (a method that exists only where ``check(estimator)`` holds);
    without scikit-learn, the check runs when the method is called."""
    try:
        from sklearn.utils.metaestimators import available_if
    except ImportError:  # pragma: no cover - exercised only without scikit-learn
        import functools

        def available_if(check: Any) -> Any:
            def wrap(method: Any) -> Any:
                @functools.wraps(method)
                def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
                    check(self)
                    return method(self, *args, **kwargs)
                return checked
            return wrap
    return available_if(check)


class _SklearnLines(Callback):
    """scikit-learn's MLP ``verbose`` output: ``Iteration N, loss = ...`` (and the validation score)."""

    def __init__(self) -> None:
        self.iteration = 0  # counted per call, as n_iter_ is

    def on_epoch_end(self, epoch, logs):
        self.iteration += 1
        print(f"Iteration {self.iteration}, loss = {logs['loss']:.8f}")
        if "val_score" in logs:
            print(f"Validation score: {logs['val_score']:f}")


# Loading the Numba kernels costs a fresh process about 1 s (importing Numba, then its CPU
# target's first use), measured on the project's 2-core VM (cProfile of a cold fit; bench.coldstart
# shows the effect). They save about 8 ns per sample, unit and epoch on that machine (digits,
# 64-32-10, warm fits, best of 3: 0.18 s against 0.26 s for 50 epochs), so they repay the load
# after about 1.25e8 of those. Below that, in a process that has
# not loaded them yet, ``fused=None`` estimators run the reference path (same arithmetic, tested).
FUSED_AUTO_MIN_WORK = 1.25e8


def _fused_for_fit(fused: bool | None, backend: Any, n_samples: int, widths: list[int], epochs: int) -> bool | None:
    """``fused`` as given, or for ``None`` on NumPy, False where loading Numba would cost more than it saves."""
    import sys

    if fused is not None or not backend.is_numpy or "xpnet.kernels.numba_cpu" in sys.modules:
        return fused
    return None if n_samples * sum(widths) * epochs >= FUSED_AUTO_MIN_WORK else False


def scikit_learn_initial_weights(model: Sequential, activation: str, draws: Any = None) -> None:
    """Draw ``model``'s weights and biases from ``draws`` (default: the model's generator) as
    scikit-learn's MLP draws them (``_init_coef``): for each layer the weights, then the biases,
    each uniform in ``+-sqrt(f / (fan_in + fan_out))``, ``f = 2`` for the logistic activation, else
    6. From :func:`scikit_learn_draws`, they are scikit-learn's values. With Sequential's own choice
    (He-normal weights in front of a ReLU, zero biases) a relu MLPClassifier scored 0.896 against
    scikit-learn's 0.944 after 30 adam epochs on unscaled digits (mean of 3 seeds); with these,
    0.946 (tests/test_mlp_options.py)."""
    draws = model.rng if draws is None else draws
    factor = 2.0 if activation in ("logistic", "sigmoid") else 6.0
    arrays = []
    for layer in model.layers:
        if isinstance(layer, Dense):
            bound = math.sqrt(factor / (layer.n_in + layer.n_out))
            arrays += [draws.uniform(-bound, bound, (layer.n_in, layer.n_out)), draws.uniform(-bound, bound, layer.n_out)]
    model.set_parameters(arrays)


def _model_seed(random_state: Any) -> Any:
    """The network's own seed (its generator shuffles streamed X by chunk): ``random_state`` where it
    is a seed; for a generator object, None, since a Generator made from it would share its bits and
    move the draws scikit-learn's order needs."""
    return None if isinstance(random_state, (np.random.RandomState, np.random.Generator)) else random_state


class _ScikitLearnShuffle:
    """scikit-learn's MLP epoch order, for ``Sequential.fit(shuffle=...)``: each epoch shuffles the
    previous epoch's order (``sklearn.utils.shuffle`` of its ``sample_idx``, starting from the rows
    in order at each call), drawing ``permutation(n)`` from the fit's generator."""

    def __init__(self, draws: Any) -> None:
        self.draws, self.order = draws, None

    def __call__(self, n: int) -> np.ndarray:
        if self.order is None or self.order.shape[0] != n:
            self.order = np.arange(n)
        self.order = self.order[self.draws.permutation(n)]
        return self.order


def _scikit_learn_split(y: np.ndarray, fraction: float, draws: Any, stratify: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(train_rows, validation_rows)`` as scikit-learn's MLP splits for early stopping: its
    ``train_test_split`` from the fit's generator, stratified where ``stratify`` (a classifier
    with one output unit, as scikit-learn decides), the rows in the order it returns them. Its
    refusals come first, in :func:`xpnet.stopping.checked_split`'s words. Without scikit-learn,
    or from a ``Generator``, xpnet's own split."""
    try:
        from sklearn.model_selection import train_test_split
    except ImportError:  # pragma: no cover - exercised only without scikit-learn
        train_test_split = None
    if train_test_split is None or isinstance(draws, np.random.Generator):
        return stopping.validation_split(y, fraction, draws, stratify)
    _, labels = stopping.checked_split(y, fraction, stratify)
    return train_test_split(np.arange(y.shape[0]), test_size=fraction, random_state=draws, stratify=labels)


# What only adam and sgd record (scikit-learn's lbfgs fit has none of them)
_STOCHASTIC_ONLY = ("loss_curve_", "best_loss_", "validation_scores_", "best_validation_score_")


class _MLPBase(_Estimator):
    """Shared constructor and training for the MLP estimators: scikit-learn's options, mapped onto
    ``Sequential.fit``'s stopping rule, early stopping and learning-rate schedules. xpnet's own:
    ``backend``, ``dtype``, ``fused`` and ``matmul_precision`` ("highest", or "tf32"/"bf16" for
    tensor-core products in the captured GPU step: float32 on CuPy, adam or sgd with a constant
    learning rate, no sample weights; anything else is refused at ``fit``)."""

    _ACTIVATIONS = ("identity", "logistic", "sigmoid", "tanh", "relu")
    _SOLVERS = ("adam", "sgd", "lbfgs")
    _accepts_sparse = True

    def __init__(
        self, hidden_layer_sizes: Any = (100,), activation: str = "relu", *, solver: str = "adam",
        alpha: float = 0.0001, batch_size: Any = "auto", learning_rate: str = "constant",
        learning_rate_init: float = 0.001, power_t: float = 0.5, max_iter: int = 200, shuffle: bool = True,
        random_state: Any = None, tol: float = 1e-4, verbose: bool = False, warm_start: bool = False,
        momentum: float = 0.9, nesterovs_momentum: bool = True, early_stopping: bool = False,
        validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8,
        n_iter_no_change: Any = 10, max_fun: int = 15000,
        backend: Any = None, dtype: str | None = None, fused: bool | None = None,
        matmul_precision: str = "highest",
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.backend = backend
        self.dtype = dtype
        self.fused = fused
        self.matmul_precision = matmul_precision

    def _transform(self, Xd: Any) -> Any:
        return Xd

    def _hidden(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral):
            sizes = [sizes]
        elif isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
            raise TypeError(f"hidden_layer_sizes must be an integer or a sequence of integers (one width per hidden "
                            f"layer), got {type(sizes).__name__} {sizes!r}")
        return [check_positive_int("hidden_layer_sizes entries", s) for s in sizes]

    def _solver_options(self) -> dict:
        """Every solver's options, checked under scikit-learn's names whichever solver runs, as
        scikit-learn checks them: a bad ``beta_1`` is refused with ``solver='sgd'`` too."""
        return {
            "lr": _check_float("learning_rate_init", self.learning_rate_init, strict=True),
            "beta1": _check_below_one("beta_1", self.beta_1),
            "beta2": _check_below_one("beta_2", self.beta_2),
            "eps": _check_float("epsilon", self.epsilon, strict=True),
            "momentum": _check_number("momentum", self.momentum, low=0.0, high=1.0, low_open=False, high_open=False),
            "max_fun": check_positive_int("max_fun", self.max_fun),
        }

    def _optimizer(self):
        o = self._solver_options()
        if self.solver == "adam":
            return Adam(lr=o["lr"], beta1=o["beta1"], beta2=o["beta2"], eps=o["eps"], eps_form="scikit-learn")
        if self.solver == "sgd":
            return SGD(lr=o["lr"], momentum=o["momentum"], nesterov=bool(self.nesterovs_momentum) and o["momentum"] > 0)
        raise ValueError(f"solver must be one of {self._SOLVERS}, got {self.solver!r}")

    def _check_options(self) -> None:
        """Every option, checked before any state changes."""
        if self.activation not in self._ACTIVATIONS:
            raise ValueError(f"activation must be one of {self._ACTIVATIONS}, got {self.activation!r}")
        if self.solver not in self._SOLVERS:
            raise ValueError(f"solver must be one of {self._SOLVERS}, got {self.solver!r}")
        if self.learning_rate not in stopping.LR_SCHEDULES:
            raise ValueError(f"learning_rate must be one of {stopping.LR_SCHEDULES}, got {self.learning_rate!r}")
        _check_float("alpha", self.alpha)
        _check_float("power_t", self.power_t)  # >= 0, as scikit-learn's: a negative one makes invscaling's rate grow
        for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping"):  # "no" is not taken as true
            check_flag(name, getattr(self, name))
        check_flag("fused", self.fused, none_allowed=True)
        v = self.verbose
        if not isinstance(v, (numbers.Integral, np.bool_)) or v < 0:  # scikit-learn's: a bool or an integer >= 0
            raise ValueError(f"verbose must be True, False or an integer >= 0, got {type(v).__name__} {v!r}")
        self._batch_size(1)
        check_positive_int("max_iter", self.max_iter)
        _check_float("tol", self.tol)
        _check_below_one("validation_fraction", self.validation_fraction)  # checked even without early stopping
        check_matmul_precision(self.matmul_precision)
        self._solver_options()
        if self.solver == "lbfgs" and self.matmul_precision != "highest":
            raise ValueError(f"matmul_precision={self.matmul_precision!r} runs in the captured GPU step of the "
                             "adam and sgd solvers; solver='lbfgs' has none")
        n = self.n_iter_no_change
        if not (isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1) and n != np.inf:
            raise ValueError(f"n_iter_no_change must be an integer >= 1 or np.inf, got {n!r}")
        self._hidden()

    def _out_activation(self, loss: str) -> str:
        return {"softmax_cross_entropy": "softmax", "binary_cross_entropy": "logistic", "mse": "identity",
                "squared_error": "identity"}[loss]

    def _fit_network(self, Xd: Any, targets: Any, n_out: int, loss: str, incremental: bool = False,
                     sample_weight: Any = None) -> None:
        """Train (or, ``incremental``, one more epoch of) the network; sets the fitted attributes.
        The caller has run :meth:`_check_options`."""
        alpha = float(self.alpha)
        widths = [self.n_features_in_, *self._hidden(), n_out]
        first = not hasattr(self, "model_") or not (self.warm_start or incremental)
        if not first and (self.model_.n_features != widths[0] or self.model_.n_outputs != n_out):
            raise ValueError(f"warm start: the fitted network is {self.model_.n_features}-...-{self.model_.n_outputs}, "
                             f"this data needs {widths[0]}-...-{n_out}; fit a new estimator")
        draws = scikit_learn_draws(self.random_state)  # anew at each call, as scikit-learn's _fit
        if first:
            epochs = 1 if incremental else int(self.max_iter)
            fused = _fused_for_fit(self.fused, self._backend(), Xd.shape[0], widths, epochs)
            model = Sequential(dense_stack(widths, self.activation), loss=loss, backend=self._backend(),
                               dtype=self._dtype_name_, seed=_model_seed(self.random_state), fused=fused, l2=alpha,
                               matmul_precision=self.matmul_precision)
            scikit_learn_initial_weights(model, self.activation, draws)
            self._fit_state_ = stopping.FitState()
            for name in _STOCHASTIC_ONLY:  # nothing left from an earlier fit, nor set by lbfgs, as in scikit-learn
                self.__dict__.pop(name, None)
        else:
            model = self.model_
        yd = model.loss.prepare_targets(targets, Xd.shape[0], n_out, model.backend, model.dtype)
        if not first:  # checked: the warm-started network changes from here
            model.set_matmul_precision(self.matmul_precision)
            model.l2 = alpha
        self.model_ = model
        if self.solver == "lbfgs":
            weights = None
            if sample_weight is not None:
                weights = training.check_sample_weight(sample_weight, Xd.shape[0], model.backend, model.dtype)
            self._fit_lbfgs(model, Xd, yd, weights)
        else:
            self._fit_stochastic(model, Xd, yd, incremental, sample_weight, draws)
        params = model.parameters()
        self.coefs_, self.intercepts_ = params[0::2], params[1::2]
        self.n_layers_ = len(widths)
        self.n_outputs_ = n_out
        self.out_activation_ = self._out_activation(loss)

    def _fit_stochastic(self, model: Sequential, Xd: Any, yd: Any, incremental: bool, sample_weight: Any,
                        draws: Any) -> None:
        """adam or sgd through ``Sequential.fit``, with scikit-learn's draws from ``draws``: its
        early-stopping split, and its epoch order for in-memory X (sparse X is streamed, shuffled
        by chunk from the model's generator)."""
        if incremental and hasattr(self, "_optimizer_"):
            optimizer = self._optimizer_
        else:
            optimizer = self._optimizer_ = self._optimizer()
        early = self.early_stopping and not incremental
        schedule = self.learning_rate if self.solver == "sgd" else "constant"  # Adam ignores it, as in scikit-learn
        callbacks = [_SklearnLines()] if self.verbose else []
        validation = None
        streamed = isinstance(Xd, DataSource)
        if early:  # held out here, in scikit-learn's order; sparse X stays sparse
            stratify = model.loss.is_classifier and model.n_outputs == 1  # as scikit-learn: not for 3+ classes
            labels = model.backend.to_numpy(yd) if model.loss.is_classifier else np.zeros(Xd.shape[0])
            train_rows, val_rows = _scikit_learn_split(labels, float(self.validation_fraction), draws, stratify)
            take = lambda a, rows: model.backend.xp.take(a, model.backend.asarray(rows), axis=0)  # noqa: E731
            rows_of = (lambda rows: DataSource(Xd.data[rows])) if streamed else (lambda rows: take(Xd, rows))  # noqa: E731
            validation = (rows_of(val_rows), take(yd, val_rows))
            if sample_weight is not None:
                sw = training.host_sample_weight(sample_weight, Xd.shape[0], model.backend)
                validation, sample_weight = (*validation, sw[val_rows]), sw[train_rows]
            Xd, yd = rows_of(train_rows), take(yd, train_rows)
        n_train = Xd.shape[0]
        if isinstance(self.batch_size, numbers.Integral) and self.batch_size > n_train:  # scikit-learn's warning
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped",
                          UserWarning, stacklevel=5)  # at the caller of fit
        history = model.fit(
            Xd, yd, epochs=1 if incremental else int(self.max_iter), batch_size=self._batch_size(Xd.shape[0]),
            optimizer=optimizer, shuffle=_ScikitLearnShuffle(draws) if self.shuffle and not streamed else self.shuffle,
            callbacks=callbacks, tol=float(self.tol),
            n_iter_no_change=self.n_iter_no_change, early_stopping=early, validation_data=validation,
            validation_fraction=self.validation_fraction, lr_schedule=schedule, power_t=float(self.power_t),
            state=self._fit_state_, sample_weight=sample_weight,
        )
        state = self._fit_state_
        # a warm start after lbfgs, or one that turns early stopping on, begins these lists
        self.loss_curve_ = (getattr(self, "loss_curve_", None) or []) + list(history.loss)
        # this call's epochs, as scikit-learn >= 1.3 counts them (a warm start runs max_iter more; the loss
        # curve and t_ keep counting)
        self.n_iter_ = len(history.loss)
        self.t_ = state.samples_seen
        self.loss_ = self.loss_curve_[-1]
        if early:
            self.validation_scores_ = (getattr(self, "validation_scores_", None) or []) + list(history.val_score)
            self.best_validation_score_, self.best_loss_ = float(state.watch.best), None
        else:
            self.best_loss_ = float(state.watch.best)
            self.validation_scores_ = self.best_validation_score_ = None
        if self.verbose:
            for line in history.get("lr_changes", []):
                print(line)
            if history.stop_message:
                print(history.stop_message)
        if history.stop_message is None and not incremental:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                          "optimization hasn't converged yet.", ConvergenceWarning)

    def _fit_lbfgs(self, model: Sequential, Xd: Any, yd: Any, weights: Any = None) -> None:
        """scikit-learn's lbfgs: scipy's L-BFGS-B on the host, loss and gradient from xpnet's backprop
        on the model's device (one full-batch forward and backward per evaluation; sparse X a
        chunk at a time, see :func:`xpnet.training.full_batch_value_and_grad`)."""
        # The two paths part after some tens of iterations: the gradients differ in rounding, and
        # near-saturated probabilities give other loss values (scikit-learn clips them at eps).
        result, _ = training.minimize_lbfgs(model, Xd, yd, weights, max_iter=self.max_iter, max_fun=self.max_fun,
                                            gtol=self.tol)
        self.n_iter_ = int(result.nit)
        self.loss_ = float(result.fun)
        self.t_ = self._fit_state_.samples_seen  # lbfgs counts no samples: 0, or an earlier stochastic fit's, as in scikit-learn
        if result.status != 0:
            warnings.warn(f"lbfgs failed to converge after {self.n_iter_} iterations (status={result.status}): "
                          f"{result.message}. Increase max_iter or max_fun, or scale the data.", ConvergenceWarning)


class MLPClassifier(_ClassifierMixin, _MLPBase):
    """Multi-layer perceptron classifier with scikit-learn's parameters and attributes.

    Two classes train one logistic output unit with binary cross-entropy, more classes a
    softmax layer, and a 2-D 0/1 indicator ``y`` (multilabel) one logistic unit per label,
    as scikit-learn's MLPClassifier does, so ``coefs_`` have scikit-learn's shapes.

    Attributes: ``classes_``, ``coefs_``, ``intercepts_`` (backend arrays), ``loss_``,
    ``best_loss_``, ``loss_curve_``, ``validation_scores_``, ``best_validation_score_``, ``t_``,
    ``n_iter_``, ``n_layers_``, ``n_outputs_``, ``out_activation_``, ``n_features_in_``,
    ``model_`` (the Sequential); ``best_loss_``, ``loss_curve_``, ``validation_scores_`` and
    ``best_validation_score_`` only after adam or sgd. ``dtype=None`` (default) follows X: float32
    input trains in float32, anything else in float64.
    """

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True  # a 2-D 0/1 indicator y trains one logistic unit per label
        return tags

    def _targets(self, y: Any, n: int, classes: Any = None) -> tuple[Any, int, str]:
        """``(encoded targets, n_outputs, loss)``; sets ``classes_`` (from ``classes`` if given)."""
        y_host = self._backend().to_numpy(y) if self._backend().owns(y) else np.asarray(y)
        y_host = _sklearn_label_checks(y_host)
        if y_host.ndim == 2 and y_host.shape[1] > 1:  # multilabel indicator
            if not np.isin(y_host, (0, 1)).all():
                raise ValueError("a 2-D y must be a multilabel indicator matrix of 0s and 1s")
            self.classes_ = np.arange(y_host.shape[1])
            self._multilabel_ = True
            return y_host.astype(np.float64), int(y_host.shape[1]), "binary_cross_entropy"
        self._multilabel_ = False
        encoded = self._encode_labels(y_host, n, classes)
        if self.classes_.size == 2:
            return encoded.astype(np.float64).reshape(-1, 1), 1, "binary_cross_entropy"
        return encoded, int(self.classes_.size), "softmax_cross_entropy"

    @_unchanged_if_it_raises
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> "MLPClassifier":
        """Train on ``(X, y)``; ``sample_weight`` ``(N,)`` weights each sample's loss (scikit-learn's meaning)."""
        self._check_options()
        warm = self.warm_start and hasattr(self, "model_")
        before = (self.classes_, getattr(self, "_multilabel_", False)) if warm else None
        Xd, y, sample_weight = self._fit_inputs(X, y, sample_weight)
        targets, n_out, loss = self._targets(y, Xd.shape[0])
        if warm:  # each output unit keeps its class, and its loss
            kind = {True: "a multilabel indicator", False: "class labels"}
            if before[1] != self._multilabel_:
                raise ValueError(f"warm_start can only be used where y is of the same kind as in the previous call "
                                 f"to fit: previously {kind[before[1]]}, now {kind[self._multilabel_]}")
            if not np.array_equal(before[0], self.classes_):
                raise ValueError(f"warm_start can only be used where y has the same classes as in the previous call "
                                 f"to fit: previously {_labels(before[0])}, y has {_labels(self.classes_)}")
        self._fit_network(Xd, targets, n_out, loss, sample_weight=sample_weight)
        return self

    @_available_if(_stochastic_solver)
    @_unchanged_if_it_raises
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None, classes: Any = None) -> "MLPClassifier":
        """One epoch over ``(X, y)``, continuing from the last call. The first call needs
        ``classes`` (every label that will ever appear), as in scikit-learn."""
        first = self._first_partial_fit(classes)
        self._check_options()
        if self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        Xd, y, sample_weight = self._fit_inputs(X, y, sample_weight, reset=first)
        targets, n_out, loss = self._targets(y, Xd.shape[0], classes if first else self.classes_)
        self._fit_network(Xd, targets, n_out, loss, incremental=True, sample_weight=sample_weight)
        return self

    def _decode(self, indices: Any, on_host: bool) -> Any:
        if getattr(self, "_multilabel_", False):  # the 0/1 indicator rows (int64 on the host, as NumPy's)
            return self.model_.backend.to_numpy(indices).astype(np.int64) if on_host else indices
        return super()._decode(indices, on_host)


def _regression_loss(n_outputs: int) -> str:
    """MLPRegressor's loss: scikit-learn's squared error, its value averaged over outputs too, its
    gradient MSE's (scikit-learn's convention). For one output that is "mse", which keeps the
    compiled whole step; several outputs need "squared_error" (with "mse", loss_ was k times
    scikit-learn's for k outputs, so tol read it differently)."""
    return "mse" if n_outputs == 1 else "squared_error"


class MLPRegressor(_RegressorMixin, _MLPBase):
    """Multi-layer perceptron regressor (MSE, identity output) with scikit-learn's parameters
    and attributes (see :class:`MLPClassifier`); a 2-D ``y`` trains one output per column."""

    _multi_output = True

    def _targets(self, y: Any) -> tuple[Any, int]:
        """``y`` and its number of outputs; a column ``(n, 1)`` trains one output, with
        scikit-learn's DataConversionWarning (predictions come back ``(n,)``, as there)."""
        y_arr = np.asarray(y) if isinstance(y, (list, tuple)) else y
        ndim = getattr(y_arr, "ndim", 1)
        n_out = 1 if ndim == 1 else int(y_arr.shape[1])
        if ndim == 2 and n_out == 1:
            warnings.warn("A column-vector y was passed when a 1d array was expected. Please change the shape "
                          "of y to (n_samples, ), for example using ravel().", DataConversionWarning, stacklevel=4)
        return y_arr, n_out

    @_unchanged_if_it_raises
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> "MLPRegressor":
        """Train on ``(X, y)``; ``sample_weight`` ``(N,)`` weights each sample's loss (scikit-learn's meaning)."""
        self._check_options()
        Xd, y, sample_weight = self._fit_inputs(X, y, sample_weight)
        y_arr, n_out = self._targets(y)
        self._fit_network(Xd, y_arr, n_out, _regression_loss(n_out), sample_weight=sample_weight)
        return self

    @_available_if(_stochastic_solver)
    @_unchanged_if_it_raises
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> "MLPRegressor":
        """One epoch over ``(X, y)``, continuing from the last call."""
        self._check_options()
        if self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        first = not hasattr(self, "model_")
        Xd, y, sample_weight = self._fit_inputs(X, y, sample_weight, reset=first)
        y_arr, n_out = self._targets(y)
        self._fit_network(Xd, y_arr, n_out, _regression_loss(n_out), incremental=True, sample_weight=sample_weight)
        return self

