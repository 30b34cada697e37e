"""The seed models as scikit-learn-style estimators, trained by xpnet's own backprop.

Conventions follow scikit-learn: the constructor only stores its arguments;
``fit`` checks them and the data, returns ``self`` and sets attributes ending
in ``_``; ``get_params``/``set_params`` make the estimators clone-able, so they
work in ``Pipeline`` and ``cross_val_score``. When scikit-learn is installed
the estimators derive from its ``BaseEstimator`` and mixins (tags, repr,
clone); without it a minimal base with the same methods stands in.

Parameter names are scikit-learn's where they overlap, plus ``backend=``,
``dtype=`` and ``fused=``.
"""

from __future__ import annotations

import copy
import inspect
import numbers
from typing import Any

import numpy as np

from ._validation import check_features, check_positive_int, check_same_length
from .backend import get_backend, host_state
from .layers import Dense, dense_stack
from . import training
from .network import Sequential
from .ops import _device
from .optim import SGD, Adam

__all__ = ["LinearRegression", "LogisticRegression", "Perceptron", "MLPClassifier", "MLPRegressor"]

try:  # scikit-learn gives clone(), tags and the HTML repr; it is optional.
    from sklearn.base import BaseEstimator as _SkBase
    from sklearn.base import ClassifierMixin as _SkClassifier
    from sklearn.base import RegressorMixin as _SkRegressor
except ImportError:  # pragma: no cover - exercised only without scikit-learn

    class _SkBase:  # type: ignore[no-redef]
        @classmethod
        def _get_param_names(cls) -> list[str]:
            sig = inspect.signature(cls.__init__)
            return sorted(p.name for p in sig.parameters.values() if p.name != "self" and p.kind != p.VAR_KEYWORD)

        def get_params(self, deep: bool = True) -> dict:
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params: Any) -> Any:
            valid = self._get_param_names()
            for key, value in params.items():
                if key not in valid:
                    raise ValueError(f"invalid parameter {key!r} for {type(self).__name__}; valid: {valid}")
                setattr(self, key, value)
            return self

        def __repr__(self) -> str:
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
            return f"{type(self).__name__}({args})"

    class _SkClassifier:  # type: ignore[no-redef]
        _estimator_type = "classifier"

    class _SkRegressor:  # type: ignore[no-redef]
        _estimator_type = "regressor"


# ----------------------------------------------------------------------------
# Shared machinery
# ----------------------------------------------------------------------------
def _check_float(name: str, value: Any, *, minimum: float = 0.0, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum}, got {value}")
    return float(value)


class _Estimator(_SkBase):
    """Helpers shared by every xpnet estimator (not public)."""

    def __getstate__(self) -> dict:
        """Fitted arrays are pickled as host NumPy (restored onto the backend on load), the
        backend by name: estimators pickle, deep-copy and ``joblib.dump`` on every backend."""
        state = super().__getstate__() if hasattr(_SkBase, "__getstate__") else self.__dict__.copy()
        return host_state(state)

    def _backend(self):
        return get_backend(self.backend)

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise _not_fitted_error(self)

    def to_onnx(self, path: Any = None) -> Any:
        """The fitted estimator as an ONNX model (``onnx.ModelProto``), written to ``path`` if given.

        Traced through xpnet's own forward pass on ndonnx arrays (see :mod:`xpnet.export`):
        input ``X`` ``(N, n_features)``; classifiers output ``label`` (the original class labels)
        and, where the estimator has ``predict_proba``, ``probabilities``; regressors ``output``.
        Needs ``pip install "xpnet[onnx]"``.
        """
        from . import export

        self._check_fitted()
        backend = export.onnx_backend()
        twin = copy.copy(self)  # the same estimator with its fitted arrays as ndonnx constants
        if isinstance(self.model_, Sequential):
            twin.model_ = export.traced_copy(self.model_, backend)
            dtype_name = self.model_.dtype_name
        else:
            host = self.model_.backend.to_numpy
            twin.model_ = _LinearScorer(backend, backend.asarray(host(self.model_.W)), backend.asarray(host(self.model_.b)))
            dtype_name = getattr(self, "dtype", "float32")
        for name in ("mean_", "scale_"):
            if getattr(self, name, None) is not None:
                setattr(twin, name, backend.asarray(self.model_.backend.to_numpy(getattr(self, name))))
        proto = export.build_onnx(self.n_features_in_, dtype_name, lambda x: twin._onnx_outputs(twin._transform(x)))
        if path is not None:
            export.save_onnx(proto, path)
        return proto

    def _features(self, X: Any, reset: bool) -> Any:
        backend = self.model_.backend if not reset else self._backend()
        dtype = backend.dtype(getattr(self, "dtype", "float32"))
        Xd = check_features(X, backend, dtype, None if reset else self.n_features_in_)
        if reset:
            self.n_features_in_ = int(Xd.shape[1])
        return Xd

    def _stopping_rule(self) -> tuple[int, float, int]:
        """``(max_iter, tol, n_iter_no_change)``, checked; called first thing in ``fit``."""
        return (
            check_positive_int("max_iter", self.max_iter),
            _check_float("tol", self.tol),
            check_positive_int("n_iter_no_change", self.n_iter_no_change),
        )

    def _run_epochs(self, model: Sequential, Xd, yd, optimizer, batch_size: int, shuffle: bool, rule,
                    grad_tol: float | None = None) -> None:
        """Train until ``max_iter`` epochs, or until the loss has not improved on the best by
        ``tol`` for more than ``n_iter_no_change`` epochs in a row (scikit-learn's MLP rule:
        the count must *exceed* ``n_iter_no_change``), or, with ``grad_tol``, until the largest
        absolute gradient entry of a full-batch epoch is at most ``grad_tol`` (scikit-learn's
        lbfgs ``tol``)."""
        max_iter, tol, patience = rule
        best, stale = np.inf, 0
        self.loss_curve_ = []
        for _ in range(max_iter):
            batches = training.memory_batches(model, Xd, yd, batch_size, shuffle)
            logs = training.eager_epoch(model, batches, Xd.shape[0], batch_size, optimizer, ())
            model.epochs_trained += 1
            loss = logs["loss"]
            self.loss_curve_.append(loss)
            stale = stale + 1 if loss > best - tol else 0
            best = min(best, loss)
            if stale > patience:
                break
            if grad_tol is not None and batch_size >= Xd.shape[0]:
                xp = model.backend.xp
                if max(float(xp.max(xp.abs(g))) for g in model._grads()) <= grad_tol:
                    break
        self.n_iter_ = len(self.loss_curve_)
        self.best_loss_ = float(best)

    def _batch_size(self, n: int) -> int:
        bs = self.batch_size
        if bs is None:
            return n
        if bs == "auto":
            return min(200, n)
        return min(check_positive_int("batch_size", bs), n)


def _not_fitted_error(est: Any) -> Exception:
    try:
        from sklearn.exceptions import NotFittedError
    except ImportError:  # pragma: no cover
        NotFittedError = AttributeError  # noqa: N806
    return NotFittedError(f"this {type(est).__name__} is not fitted yet; call fit first")


class _ClassifierMixin(_SkClassifier):
    """Label encoding, ``predict``, ``predict_proba`` and accuracy ``score`` for classifiers."""

    def _encode_labels(self, y: Any, n_samples: int) -> np.ndarray:
        backend = self._backend()
        y_host = backend.to_numpy(y) if backend.owns(y) else np.asarray(y)
        if y_host.ndim != 1:
            if y_host.ndim == 2 and y_host.shape[1] == 1:
                y_host = y_host[:, 0]
            else:
                raise ValueError(f"y must be 1-D class labels of shape ({n_samples},), got shape {y_host.shape}")
        if y_host.dtype.kind == "f" and not np.all(np.isfinite(y_host)):
            raise ValueError("y contains NaN or infinity")
        if y_host.dtype.kind not in "biufUSO":
            raise TypeError(f"y must hold class labels (numbers or strings), got dtype {y_host.dtype}")
        self.classes_, encoded = np.unique(y_host, return_inverse=True)
        if self.classes_.size < 2:
            raise ValueError(f"y has a single class ({self.classes_[0]!r}); a classifier needs at least 2 classes")
        return encoded.astype(np.int64)

    def _decode(self, indices: Any) -> Any:
        backend = self.model_.backend
        if backend.is_numpy or self.classes_.dtype.kind not in "biuf":
            return self.classes_[backend.to_numpy(indices)]
        return backend.xp.take(backend.asarray(self.classes_), indices, axis=0)

    def predict(self, X: Any) -> Any:
        """Predicted class labels, shape ``(N,)``."""
        self._check_fitted()
        return self._decode(self.model_.predict(self._transform(self._features(X, reset=False))))

    def predict_proba(self, X: Any) -> Any:
        """Class probabilities ``(N, n_classes)``, columns in the order of ``classes_``."""
        self._check_fitted()
        proba = self.model_.predict_proba(self._transform(self._features(X, reset=False)))
        if proba.shape[1] == 1:  # binary model with one sigmoid output
            proba = self.model_.backend.xp.concat([1.0 - proba, proba], axis=1)
        return proba

    def _onnx_outputs(self, xt: Any) -> dict:
        from .export import sequential_outputs

        if isinstance(self.model_, Sequential):
            return sequential_outputs(self.model_, xt, classes=self.classes_)
        xp = self.model_.backend.xp  # the perceptron: labels only
        return {"label": xp.take(xp.asarray(self.classes_), self.model_.predict(xt), axis=0)}

    def score(self, X: Any, y: Any) -> float:
        """Mean accuracy of ``predict(X)`` against ``y``."""
        backend = self.model_.backend if hasattr(self, "model_") else self._backend()
        pred = backend.to_numpy(self.predict(X))
        truth = backend.to_numpy(y) if backend.owns(y) else np.asarray(y)
        if truth.shape[0] != pred.shape[0]:
            raise ValueError(f"X has {pred.shape[0]} samples but y has {truth.shape[0]}: lengths must match")
        return float(np.mean(pred == truth.reshape(pred.shape)))


class _RegressorMixin(_SkRegressor):
    """``predict`` and R^2 ``score`` for regressors."""

    def predict(self, X: Any) -> Any:
        """Predictions ``(N,)`` for one target, ``(N, k)`` for several."""
        self._check_fitted()
        out = self.model_.predict(self._transform(self._features(X, reset=False)))
        return out[:, 0] if self.n_outputs_ == 1 else out

    def _onnx_outputs(self, xt: Any) -> dict:
        from .export import sequential_outputs

        out = sequential_outputs(self.model_, xt)["output"]
        return {"output": out[:, 0] if self.n_outputs_ == 1 else out}

    def score(self, X: Any, y: Any) -> float:
        """Coefficient of determination R^2 (uniform average over outputs)."""
        backend = self.model_.backend if hasattr(self, "model_") else self._backend()
        pred = backend.to_numpy(self.predict(X)).reshape(len(X) if not hasattr(X, "shape") else X.shape[0], -1)
        truth = (backend.to_numpy(y) if backend.owns(y) else np.asarray(y, dtype=float)).reshape(pred.shape[0], -1)
        ss_res = ((truth - pred) ** 2).sum(axis=0)
        ss_tot = ((truth - truth.mean(axis=0)) ** 2).sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = np.where(ss_tot > 0, 1 - ss_res / ss_tot, 0.0)
        return float(np.mean(r2))


class _Standardized:
    """Optional internal feature standardisation for the linear models.

    The network trains on ``(X - mean_) / scale_``; ``coef_``/``intercept_`` are
    reported for the original features, as scikit-learn's are.
    """

    def _fit_transform(self, Xd: Any) -> Any:
        xp = self.model_backend.xp
        if not self.standardize:
            self.mean_ = self.scale_ = None
            return Xd
        self.mean_ = xp.mean(Xd, axis=0)
        std = xp.std(Xd, axis=0)
        self.scale_ = xp.where(std > 0, std, xp.ones_like(std))
        return self._transform(Xd)

    def _transform(self, Xd: Any) -> Any:
        if getattr(self, "mean_", None) is None:
            return Xd
        return (Xd - self.mean_) / self.scale_

    def _set_linear_attributes(self) -> None:
        xp = self.model_backend.xp
        W, b = self.model_.parameters()  # (d, k), (k,)
        if self.mean_ is not None:
            W = W / xp.reshape(self.scale_, (-1, 1))
            b = b - xp.sum(W * xp.reshape(self.mean_, (-1, 1)), axis=0)
        self.coef_ = W.T
        self.intercept_ = b


# ----------------------------------------------------------------------------
# The models
# ----------------------------------------------------------------------------
def _lipschitz_step(Xd: Any, xp: Any, iterations: int = 100) -> float:
    """``1 / L`` for the MSE ``1/(2N) ||X w + b - y||^2``: L is the largest eigenvalue of
    ``[X 1].T [X 1] / N``, estimated by power iteration (the safe full-batch step size)."""
    n, d = Xd.shape
    gram = (Xd.T @ Xd) * (1.0 / n)
    v = xp.ones((d,), dtype=Xd.dtype, device=_device(Xd))
    for _ in range(iterations):
        v = gram @ v
        norm = float(xp.sqrt(xp.sum(v * v)))
        if norm == 0.0:  # X is all zeros (all-constant features, standardised): no curvature from X
            break
        v = v / norm
    largest = float(xp.sum(v * (gram @ v)))
    column_means = xp.mean(Xd, axis=0)  # the intercept column couples through the means
    return 1.0 / (largest + 1.0 + float(xp.sum(column_means * column_means)))


class LinearRegression(_Standardized, _RegressorMixin, _Estimator):
    """Least-squares linear regression fitted by gradient descent on the MSE.

    Gradient ``X.T @ (X w - y) / N`` (xpnet/backprop.md). Features are standardised
    internally (``standardize=True``) and the step size defaults to ``"auto"``,
    ``1/L`` for the largest curvature ``L`` of the loss, so full-batch descent
    decreases the loss at every step and converges to the least-squares solution.
    Like any plain gradient descent it is slow on ill-conditioned problems (nearly
    collinear features): there ``n_iter_`` reaching ``max_iter`` says it stopped early.

    Attributes: ``coef_`` ``(n_targets, n_features)`` (``(n_features,)`` for one
    target), ``intercept_``, ``loss_curve_``, ``n_iter_``.
    """

    def __init__(
        self, *, learning_rate_init: Any = "auto", max_iter: int = 10000, tol: float = 1e-12,
        n_iter_no_change: int = 10, batch_size: Any = None, momentum: float = 0.0, standardize: bool = True,
        random_state: int | None = None, backend: Any = None, dtype: str = "float64", fused: bool | None = None,
    ) -> None:
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

    def fit(self, X: Any, y: Any) -> "LinearRegression":
        rule = self._stopping_rule()
        if self.learning_rate_init != "auto":
            _check_float("learning_rate_init", self.learning_rate_init, strict=True)
        Xd = self._features(X, reset=True)
        check_same_length(Xd, y)
        y_arr = np.asarray(y) if isinstance(y, (list, tuple)) else y
        self.n_outputs_ = 1 if getattr(y_arr, "ndim", 1) == 1 else int(y_arr.shape[1])
        model = Sequential([Dense(self.n_features_in_, self.n_outputs_, init="zeros")], loss="mse", backend=self.backend,
                           dtype=self.dtype, seed=self.random_state, fused=self.fused)
        yd = model.loss.prepare_targets(y_arr, Xd.shape[0], self.n_outputs_, model.backend, model.dtype)
        self.model_backend = model.backend
        self.model_ = model
        Xt = self._fit_transform(Xd)
        lr = _lipschitz_step(Xt, model.backend.xp) if self.learning_rate_init == "auto" else float(self.learning_rate_init)
        optimizer = SGD(lr=lr, momentum=self.momentum)
        self._run_epochs(model, Xt, yd, optimizer, self._batch_size(Xd.shape[0]), True, rule)
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
    the default ``alpha=1.0`` is its ``C=1.0`` (on unstandardised features the coefficients
    then equal scikit-learn's; tested). Without a penalty, separable classes have no finite
    optimum. Training stops when the largest absolute gradient entry is at most ``tol``
    (scikit-learn's lbfgs criterion; full batch), or at ``max_iter``. ``n_iter_no_change``
    applies to mini-batches (``batch_size`` set): the loss rule of the MLP estimators.

    Attributes: ``classes_``, ``coef_`` ``(1, n_features)`` for two classes or
    ``(n_classes, n_features)``, ``intercept_``, ``loss_curve_``, ``n_iter_``.
    """

    def __init__(
        self, *, learning_rate_init: float = 0.5, max_iter: int = 1000, tol: float = 1e-4,
        n_iter_no_change: int = 10, alpha: float = 1.0, batch_size: Any = None, momentum: float = 0.9,
        standardize: bool = True, random_state: int | None = None, backend: Any = None,
        dtype: str = "float64", fused: bool | None = None,
    ) -> None:
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

    def fit(self, X: Any, y: Any) -> "LogisticRegression":
        max_iter, grad_tol, patience = self._stopping_rule()
        lr = _check_float("learning_rate_init", self.learning_rate_init, strict=True)
        alpha = _check_float("alpha", self.alpha)
        Xd = self._features(X, reset=True)
        check_same_length(Xd, y)
        labels = self._encode_labels(y, Xd.shape[0])
        binary = self.classes_.size == 2
        n_out = 1 if binary else int(self.classes_.size)
        model = Sequential([Dense(self.n_features_in_, n_out, init="zeros")],
                           loss="binary_cross_entropy" if binary else "softmax_cross_entropy",
                           backend=self.backend, dtype=self.dtype, seed=self.random_state, fused=self.fused, l2=alpha)
        yd = model.loss.prepare_targets(labels, Xd.shape[0], n_out, model.backend, model.dtype)
        self.model_backend = model.backend
        self.model_ = model
        Xt = self._fit_transform(Xd)
        optimizer = SGD(lr=lr, momentum=self.momentum)
        batch_size = self._batch_size(Xd.shape[0])
        full_batch = batch_size >= Xd.shape[0]  # momentum overshoots the loss: no loss rule on full batches
        self._run_epochs(model, Xt, yd, optimizer, batch_size, True,
                         (max_iter, grad_tol, max_iter if full_batch else patience), grad_tol=grad_tol)
        self._set_linear_attributes()
        return self

    def decision_function(self, X: Any) -> Any:
        """Logits: ``(N,)`` for two classes, ``(N, n_classes)`` otherwise."""
        self._check_fitted()
        out = self.model_._outputs(self._transform(self._features(X, reset=False)))
        return out[:, 0] if out.shape[1] == 1 else out


class Perceptron(_ClassifierMixin, _Estimator):
    """Rosenblatt's perceptron: on a mistake ``y (w.x + b) <= 0``, ``w += eta0 y x``, ``b += eta0 y``.

    Two classes use one unit with labels mapped to -1/+1; more classes train one
    unit per class (one-vs-rest), updated together. Each epoch is one call of
    ``ops.perceptron_epoch`` (compiled with Numba on NumPy; the Array-API reference elsewhere).
    Training stops after an epoch without mistakes, or by scikit-learn's rule: when the
    epoch's summed perceptron loss ``max(0, -y (w.x + b))`` has not fallen below the best by
    ``tol * n_samples`` for ``n_iter_no_change`` epochs (``tol=None`` turns that off), or
    after ``max_iter`` epochs.

    Attributes: ``classes_``, ``coef_`` ``(1 or n_classes, n_features)``,
    ``intercept_``, ``n_iter_``, ``errors_`` (mistakes per epoch), ``loss_curve_``.
    """

    def __init__(
        self, *, eta0: float = 1.0, max_iter: int = 1000, tol: float | None = 1e-3, n_iter_no_change: int = 5,
        shuffle: bool = True, random_state: int | None = None, backend: Any = None, dtype: str = "float64",
        fused: bool | None = None,
    ) -> None:
        self.eta0 = eta0
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.shuffle = shuffle
        self.random_state = random_state
        self.backend = backend
        self.dtype = dtype
        self.fused = fused

    def fit(self, X: Any, y: Any) -> "Perceptron":
        from .ops import Ops

        eta0 = _check_float("eta0", self.eta0, strict=True)
        max_iter = check_positive_int("max_iter", self.max_iter)
        tol = None if self.tol is None else _check_float("tol", self.tol)
        patience = check_positive_int("n_iter_no_change", self.n_iter_no_change)
        Xd = self._features(X, reset=True)
        check_same_length(Xd, y)
        labels = self._encode_labels(y, Xd.shape[0])
        backend = self._backend()
        xp, dtype = backend.xp, backend.dtype(self.dtype)
        ops = Ops(backend, self.fused)
        k = 1 if self.classes_.size == 2 else int(self.classes_.size)
        signs = np.where(labels[:, None] == np.arange(k) + (1 if k == 1 else 0), 1.0, -1.0)
        Y = backend.asarray(signs, dtype=dtype)
        W = xp.zeros((self.n_features_in_, k), dtype=dtype, device=backend.device)
        b = xp.zeros((k,), dtype=dtype, device=backend.device)
        rng = np.random.default_rng(self.random_state)
        n = Xd.shape[0]
        self.errors_, self.loss_curve_ = [], []
        best, stale = np.inf, 0
        for _ in range(max_iter):
            order = rng.permutation(n) if self.shuffle else np.arange(n)
            W, b, mistakes, loss = ops.perceptron_epoch(Xd, Y, W, b, order, eta0=eta0)
            self.errors_.append(mistakes)
            self.loss_curve_.append(loss)
            if mistakes == 0:
                break
            if tol is not None:  # scikit-learn's SGD rule (sklearn/linear_model/_sgd_fast)
                stale = stale + 1 if loss > best - tol * n else 0
                best = min(best, loss)
                if stale >= patience:
                    break
        self.n_iter_ = len(self.errors_)
        self.coef_, self.intercept_ = W.T, b
        self.model_ = _LinearScorer(backend, W, b)
        return self

    def _transform(self, Xd: Any) -> Any:
        return Xd

    def decision_function(self, X: Any) -> Any:
        self._check_fitted()
        out = self._features(X, reset=False) @ self.model_.W + self.model_.b
        return out[:, 0] if out.shape[1] == 1 else out


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


class _MLPBase(_Estimator):
    """Shared constructor and network construction for the MLP estimators."""

    _ACTIVATIONS = ("identity", "logistic", "sigmoid", "tanh", "relu")

    def __init__(
        self, hidden_layer_sizes: Any = (100,), activation: str = "relu", *, solver: str = "adam",
        alpha: float = 0.0001, batch_size: Any = "auto", learning_rate_init: float = 0.001,
        max_iter: int = 200, shuffle: bool = True, random_state: int | None = None, tol: float = 1e-4,
        verbose: bool = False, momentum: float = 0.9, nesterovs_momentum: bool = True,
        beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8, n_iter_no_change: int = 10,
        backend: Any = None, dtype: str = "float32", fused: bool | None = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.backend = backend
        self.dtype = dtype
        self.fused = fused

    def _transform(self, Xd: Any) -> Any:
        return Xd

    def _hidden(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, numbers.Integral) else list(sizes)
        return [check_positive_int("hidden_layer_sizes entries", s) for s in sizes]

    def _optimizer(self):
        lr = _check_float("learning_rate_init", self.learning_rate_init, strict=True)
        if self.solver == "adam":
            return Adam(lr=lr, beta1=self.beta_1, beta2=self.beta_2, eps=self.epsilon)
        if self.solver == "sgd":
            return SGD(lr=lr, momentum=self.momentum, nesterov=self.nesterovs_momentum and self.momentum > 0)
        raise ValueError(f"solver must be 'adam' or 'sgd', got {self.solver!r}")

    def _fit_network(self, Xd: Any, targets: Any, n_out: int, loss: str) -> None:
        if self.activation not in self._ACTIVATIONS:
            raise ValueError(f"activation must be one of {self._ACTIVATIONS}, got {self.activation!r}")
        alpha = _check_float("alpha", self.alpha)
        rule = self._stopping_rule()
        widths = [self.n_features_in_, *self._hidden(), n_out]
        optimizer = self._optimizer()
        batch_size = self._batch_size(Xd.shape[0])
        model = Sequential(dense_stack(widths, self.activation), loss=loss, backend=self.backend, dtype=self.dtype,
                           seed=self.random_state, fused=self.fused, l2=alpha)
        yd = model.loss.prepare_targets(targets, Xd.shape[0], n_out, model.backend, model.dtype)
        self._run_epochs(model, Xd, yd, optimizer, batch_size, bool(self.shuffle), rule)
        self.model_ = model
        params = model.parameters()
        self.coefs_, self.intercepts_ = params[0::2], params[1::2]
        self.n_layers_ = len(widths)
        if self.verbose:
            print(f"{type(self).__name__}: {self.n_iter_} epochs, final loss {self.loss_curve_[-1]:.6f}")


class MLPClassifier(_ClassifierMixin, _MLPBase):
    """Multi-layer perceptron classifier (softmax cross-entropy), scikit-learn's parameter names.

    Attributes: ``classes_``, ``coefs_``, ``intercepts_`` (backend arrays),
    ``loss_curve_``, ``n_iter_``, ``n_features_in_``, ``model_`` (the Sequential).
    """

    def fit(self, X: Any, y: Any) -> "MLPClassifier":
        Xd = self._features(X, reset=True)
        check_same_length(Xd, y)
        labels = self._encode_labels(y, Xd.shape[0])
        self._fit_network(Xd, labels, int(self.classes_.size), "softmax_cross_entropy")
        return self


class MLPRegressor(_RegressorMixin, _MLPBase):
    """Multi-layer perceptron regressor (MSE, identity output), scikit-learn's parameter names."""

    def fit(self, X: Any, y: Any) -> "MLPRegressor":
        Xd = self._features(X, reset=True)
        check_same_length(Xd, y)
        y_arr = np.asarray(y) if isinstance(y, (list, tuple)) else y
        self.n_outputs_ = 1 if getattr(y_arr, "ndim", 1) == 1 else int(y_arr.shape[1])
        self._fit_network(Xd, y_arr, self.n_outputs_, "mse")
        return self
