"""The seed models as scikit-learn-style estimators, trained by xpnet's own backprop.

Conventions follow scikit-learn: the constructor only stores its arguments;
``fit`` checks them and the data, returns ``self`` and sets attributes ending
in ``_``; ``get_params``/``set_params`` make the estimators clone-able, so they
work in ``Pipeline`` and ``cross_val_score``. A ``fit`` that raises leaves the
attributes as they were. When scikit-learn is installed
the estimators derive from its ``BaseEstimator`` and mixins (tags, repr,
clone); without it a minimal base with the same methods stands in.

Parameter names are scikit-learn's where they overlap, plus ``backend=``,
``dtype=`` and ``fused=``, and for the MLPs ``matmul_precision=`` (see
:class:`~xpnet.network.Sequential`: "tf32" or "bf16" products on a GPU's tensor cores).
``dtype`` is "float32" or "float64" (or NumPy's types), or None to follow X: float32 X trains
in float32, anything else in float64 (the MLPs' default; the linear models default to "float64").
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
import numbers
import warnings
from typing import Any

import numpy as np

from ._validation import check_features, check_flag, check_positive_int, check_same_length, check_seed, float_dtype_name
from .backend import get_backend, host_state
from .layers import Dense, dense_stack
from . import stopping, training
from .callbacks import Callback
from .network import Sequential, check_matmul_precision
from .ops import _device
from .sources import DataSource, _is_sparse
from .optim import SGD, Adam, _check_number

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


try:
    from sklearn.exceptions import ConvergenceWarning
except ImportError:  # pragma: no cover - exercised only without scikit-learn

    class ConvergenceWarning(UserWarning):  # type: ignore[no-redef]
        """Training stopped at ``max_iter`` before the stopping rule was met."""


# ----------------------------------------------------------------------------
# Shared machinery
# ----------------------------------------------------------------------------
def _check_float(name: str, value: Any, *, minimum: float = 0.0, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum}, got {value}")
    return float(value)


def _check_below_one(name: str, value: Any) -> float:
    """``value`` in [0, 1) (Adam's betas, ``validation_fraction``), checked as the optimizers
    check theirs, under the estimator's own parameter name."""
    return _check_number(name, value, low=0.0, high=1.0, low_open=False)


def _labels(values: Any) -> str:
    """Class labels for a message, as Python values: ``[0, 1, 2]``, ``['a', 'b']``."""
    return repr(np.asarray(values).tolist())


def _typed_labels(labels: np.ndarray) -> np.ndarray:
    """Object labels (pandas strings, categoricals) as the array NumPy makes of their values ('<U1' for
    strings), as scikit-learn's ``classes_`` are, so that ``predict`` returns scikit-learn's dtype.
    Strings mixed with numbers are refused (NumPy would turn the numbers into strings)."""
    if labels.dtype != object:
        return labels
    strings = sum(isinstance(v, str) for v in labels.ravel().tolist())
    if 0 < strings < labels.size:
        raise ValueError("y mixes strings and numbers (a mix of label input types); give labels of one kind")
    return np.asarray(labels.tolist())


def _unchanged_if_it_raises(fit: Any) -> Any:
    """``fit``/``partial_fit``, leaving the estimator's attributes as they were when it raises.

    Checks run as a fit goes (features, then labels, then the warm-start network), and each sets
    what it checked: without this, a refit with one class in y raised with the new ``classes_``
    beside the old network, so ``predict`` failed, or named other classes than it trained on.
    A fit that raises after training began (Ctrl-C, a non-finite loss) also leaves the attributes
    of the last complete fit; a warm start's network, trained in place, keeps its updates."""

    @functools.wraps(fit)
    def checked_fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        before = dict(self.__dict__)
        try:
            return fit(self, *args, **kwargs)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise

    return checked_fit


class _Estimator(_SkBase):
    """Helpers shared by every xpnet estimator (not public)."""

    def __getstate__(self) -> dict:
        """Fitted arrays are pickled as host NumPy (restored onto the backend on load), the
        backend by name: estimators pickle, deep-copy and ``joblib.dump`` on every backend."""
        state = super().__getstate__() if hasattr(_SkBase, "__getstate__") else self.__dict__.copy()
        return host_state(state)

    def _backend(self):
        """The backend of the current fit (see ``_fit_inputs``), else the one ``backend`` names."""
        return getattr(self, "_fit_backend_", None) or get_backend(self.backend)

    def _backend_for(self, X: Any) -> Any:
        """``backend="auto"`` follows the input: an array of another Array-API library (torch,
        CuPy, JAX, as scikit-learn passes them with ``array_api_dispatch=True``) trains on that
        library and device, so the data stays where it is; NumPy input gets the usual "auto"."""
        if isinstance(self.backend, str) and self.backend == "auto" and not isinstance(X, np.ndarray):
            import array_api_compat as compat

            if compat.is_array_api_obj(X):
                if compat.is_torch_array(X):
                    return get_backend(X.device)
                return get_backend(compat.array_namespace(X))
        return get_backend(self.backend)

    _multi_output = False  # regressors fit a 2-D y as several outputs
    _accepts_sparse = False  # the MLPs stream scipy.sparse X, densifying a chunk at a time

    def __sklearn_tags__(self) -> Any:
        """scikit-learn's tags: array API support (the math is Array-API code; see the README's
        "From scikit-learn"), and which targets each estimator takes."""
        tags = super().__sklearn_tags__()
        tags.array_api_support = True
        tags.target_tags.multi_output = self._multi_output
        tags.input_tags.sparse = self._accepts_sparse
        return tags

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise _not_fitted_error(self)

    def _scored(self, X: Any, y: Any, sample_weight: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``score``'s host arrays: ``predict(X)``, ``y`` and the checked ``sample_weight`` (or None)."""
        pred = self.predict(X)  # raises first where the estimator is not fitted
        backend = self.model_.backend
        pred = backend.to_numpy(pred)
        truth = backend.to_numpy(y) if backend.owns(y) else np.asarray(y)
        if truth.shape[0] != pred.shape[0]:
            raise ValueError(f"X has {pred.shape[0]} samples but y has {truth.shape[0]}: lengths must match")
        if truth.size != pred.size:
            raise ValueError(f"y must have the shape of predict(X), {pred.shape}, got {truth.shape}")
        if sample_weight is None:
            return pred, truth, None
        return pred, truth, training.host_sample_weight(sample_weight, pred.shape[0], backend)

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
            dtype_name = self._dtype_name_
        for name in ("mean_", "scale_"):
            if getattr(self, name, None) is not None:
                setattr(twin, name, backend.asarray(self.model_.backend.to_numpy(getattr(self, name))))
        proto = export.build_onnx(self.n_features_in_, dtype_name, lambda x: twin._onnx_outputs(twin._transform(x)))
        if path is not None:
            export.save_onnx(proto, path)
        return proto

    def _sklearn_validated(self, X: Any, y: Any, reset: bool, fitting: bool) -> tuple[Any, Any]:
        """Host data (NumPy, lists, pandas, sparse, ...) through scikit-learn's own ``validate_data``:
        its messages for empty data, 1-D X, a wrong number of features, complex or sparse input,
        a missing y, and its conversions (float32 kept, other numbers to float64, y's length).
        Arrays already on the model's device (CuPy, torch, JAX) skip it and stay there."""
        try:
            from sklearn.utils.validation import validate_data
        except ImportError:  # without scikit-learn: xpnet's own checks only
            return X, y
        backend = self._backend() if reset else self.model_.backend
        if backend.owns(X) and not backend.is_numpy:
            return X, y
        kw = dict(reset=reset, dtype=[np.float64, np.float32], ensure_all_finite=False,  # NaN/inf: xpnet's message
                  accept_sparse=["csr", "csc"] if self._accepts_sparse else False)
        if not fitting:
            return validate_data(self, X, **kw), y
        if y is not None and backend.owns(y) and not backend.is_numpy:
            return validate_data(self, X, **kw), y
        return validate_data(self, X, y, multi_output=True, y_numeric=isinstance(self, _RegressorMixin), **kw)

    def _fit_inputs(self, X: Any, y: Any, reset: bool = True) -> tuple[Any, Any]:
        """``(X on the device, y)`` for ``fit`` (``reset``) or a later ``partial_fit``, checked."""
        check_seed("random_state", self.random_state)
        if reset:
            self._fit_backend_ = self._backend_for(X)
        X, y = self._sklearn_validated(X, y, reset=reset, fitting=True)
        Xd = self._features(X, reset=reset, validated=True)
        check_same_length(Xd, y)
        return Xd, y

    def _features(self, X: Any, reset: bool, validated: bool = False) -> Any:
        if not validated:
            X, _ = self._sklearn_validated(X, None, reset=reset, fitting=False)
        backend = self.model_.backend if not reset else self._backend()
        if reset:  # dtype=None follows X (float32 stays float32; anything else is float64), as scikit-learn does
            chosen = getattr(self, "dtype", "float32")
            name = (float_dtype_name(chosen) if chosen is not None
                    else "float32" if "float32" in str(getattr(X, "dtype", "")) else "float64")
        else:
            name = self._dtype_name_
        if self._accepts_sparse and _is_sparse(X):  # streamed: densified a chunk at a time (xpnet.sources)
            Xd = DataSource(X, name="X")
            if not reset and Xd.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {Xd.shape[1]} features, but {type(self).__name__} is expecting "
                                 f"{self.n_features_in_} features as input.")
        else:
            Xd = check_features(X, backend, backend.dtype(name), None if reset else self.n_features_in_)
        if reset:
            self.n_features_in_ = int(Xd.shape[1])
            self._dtype_name_ = name
        return Xd

    def _stopping_rule(self) -> tuple[int, float, int]:
        """``(max_iter, tol, n_iter_no_change)``, checked; called first thing in ``fit``."""
        return (
            check_positive_int("max_iter", self.max_iter),
            _check_float("tol", self.tol),
            check_positive_int("n_iter_no_change", self.n_iter_no_change),
        )

    def _run_epochs(self, model: Sequential, Xd, yd, optimizer, batch_size: int, shuffle: bool, rule,
                    grad_tol: float | None = None, wd: Any = None) -> None:
        """Train until ``max_iter`` epochs, or until the loss has not improved on the best by
        ``tol`` for more than ``n_iter_no_change`` epochs in a row (scikit-learn's MLP rule:
        the count must *exceed* ``n_iter_no_change``), or, with ``grad_tol``, until the largest
        absolute gradient entry of a full-batch epoch is at most ``grad_tol`` (scikit-learn's
        lbfgs ``tol``). ``wd`` are sample weights ``(N,)`` on the device: each batch's loss is
        their weighted mean."""
        max_iter, tol, patience = rule
        watch = stopping.NoImprovement(tol, patience)
        self.loss_curve_ = []
        for _ in range(max_iter):
            batches = training.memory_batches(model, Xd, yd, batch_size, shuffle, wd=wd)
            logs = training.eager_epoch(model, batches, Xd.shape[0], batch_size, optimizer, ())
            model.epochs_trained += 1
            self.loss_curve_.append(logs["loss"])
            watch.update(logs["loss"])
            if watch.stop:
                break
            if grad_tol is not None and batch_size >= Xd.shape[0]:
                xp = model.backend.xp
                if max(float(xp.max(xp.abs(g))) for g in model._grads()) <= grad_tol:
                    break
        self.n_iter_ = len(self.loss_curve_)
        self.best_loss_ = float(watch.best)

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


def _sklearn_label_checks(y: np.ndarray) -> np.ndarray:
    """Checks on classification targets: finite; and, where scikit-learn is installed, its own:
    a continuous or otherwise unsupported target is refused ("Unknown label type"), and a
    column vector ``(n, 1)`` becomes ``(n,)`` with its DataConversionWarning."""
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise ValueError("y contains NaN or infinity")
    try:
        from sklearn.utils.multiclass import check_classification_targets
        from sklearn.utils.validation import column_or_1d
    except ImportError:
        return y
    check_classification_targets(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = column_or_1d(y, warn=True)
    return y


class _ClassifierMixin(_SkClassifier):
    """Label encoding, ``predict``, ``predict_proba`` and accuracy ``score`` for classifiers."""

    def _encode_labels(self, y: Any, n_samples: int) -> np.ndarray:
        backend = self._backend()
        y_host = backend.to_numpy(y) if backend.owns(y) else np.asarray(y)
        y_host = _sklearn_label_checks(y_host)
        if y_host.ndim != 1:
            if y_host.ndim == 2 and y_host.shape[1] == 1:
                y_host = y_host[:, 0]
            else:
                raise ValueError(f"y must be 1-D class labels of shape ({n_samples},), got shape {y_host.shape}")
        if y_host.dtype.kind not in "biufUSO":
            raise TypeError(f"y must hold class labels (numbers or strings), got dtype {y_host.dtype}")
        self.classes_, encoded = np.unique(_typed_labels(y_host), return_inverse=True)
        if self.classes_.size < 2:
            raise ValueError(f"y has only one class ({_labels(self.classes_)[1:-1]}); a classifier needs at least "
                             "2 classes")
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

    def predict_log_proba(self, X: Any) -> Any:
        """``log(predict_proba(X))``, shape ``(N, n_classes)``."""
        proba = self.predict_proba(X)
        return self.model_.backend.xp.log(proba)

    def _onnx_outputs(self, xt: Any) -> dict:
        from .export import sequential_outputs

        if isinstance(self.model_, Sequential):  # a multilabel label is the 0/1 indicator row, as predict returns it
            return sequential_outputs(self.model_, xt, classes=None if getattr(self, "_multilabel_", False) else self.classes_)
        xp = self.model_.backend.xp  # the perceptron: labels only
        return {"label": xp.take(xp.asarray(self.classes_), self.model_.predict(xt), axis=0)}

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean accuracy of ``predict(X)`` against ``y``, weighted by ``sample_weight`` ``(N,)``; for
        a multilabel ``y``, the share of rows whose labels all match (scikit-learn's subset accuracy)."""
        pred, truth, weights = self._scored(X, y, sample_weight)
        truth = _typed_labels(truth)
        strings = [a.dtype.kind in "US" for a in (truth, _typed_labels(pred))]
        if strings[0] != strings[1]:  # "1" == 1 is never true: every row would count as wrong (scikit-learn refuses it)
            raise ValueError(f"y holds {'strings' if strings[0] else 'numbers'} but the classes are "
                             f"{_labels(self.classes_)}: mix of label types")
        right = pred == truth.reshape(pred.shape)
        return float(np.average(right.all(axis=1) if right.ndim == 2 else right, weights=weights))


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

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Coefficient of determination R^2, weighted by ``sample_weight`` ``(N,)`` and averaged
        uniformly over outputs, as scikit-learn's ``r2_score``: a constant target scores 1.0 when
        predicted exactly, else 0.0."""
        pred, truth, weights = self._scored(X, y, sample_weight)
        truth = _typed_labels(truth)
        if truth.dtype.kind not in "biuf":
            raise TypeError(f"y must be numeric, got dtype {truth.dtype}")  # as fit says
        pred, truth = pred.reshape(pred.shape[0], -1), truth.astype(float).reshape(pred.shape[0], -1)
        return training.r2_score(truth, pred, np.ones(pred.shape[0]) if weights is None else weights, np)


class _Standardized:
    """Optional internal feature standardisation for the linear models.

    The network trains on ``(X - mean_) / scale_``; ``coef_``/``intercept_`` are
    reported for the original features, as scikit-learn's are.
    """

    def _fit_transform(self, Xd: Any, wd: Any = None) -> Any:
        """Standardise with the (``wd``-weighted) mean and standard deviation of each feature, so a
        weight of 2 standardises as the row repeated twice would."""
        xp = self.model_.backend.xp
        if not self.standardize:
            self.mean_ = self.scale_ = None
            return Xd
        if wd is None:
            self.mean_, std = xp.mean(Xd, axis=0), xp.std(Xd, axis=0)
        else:
            share = xp.reshape(wd / xp.sum(wd), (-1, 1))
            self.mean_ = xp.sum(share * Xd, axis=0)
            std = xp.sqrt(xp.sum(share * (Xd - self.mean_) ** 2, axis=0))
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


# ----------------------------------------------------------------------------
# The models
# ----------------------------------------------------------------------------
def _lipschitz_step(Xd: Any, xp: Any, iterations: int = 100, wd: Any = None) -> float:
    """``1 / L`` for the MSE ``1/(2N) ||X w + b - y||^2``: L is the largest eigenvalue of
    ``[X 1].T [X 1] / N``, estimated by power iteration (the safe full-batch step size). With
    sample weights ``wd`` ``(N,)``, the weighted MSE's: ``[X 1].T diag(wd) [X 1] / sum(wd)``."""
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

    _multi_output = True

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

    @_unchanged_if_it_raises
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> "LinearRegression":
        """Fit by gradient descent; ``sample_weight`` ``(N,)`` (or one number) weights each sample's
        squared error (weighted least squares, scikit-learn's meaning)."""
        rule = self._stopping_rule()
        check_flag("standardize", self.standardize)
        if self.learning_rate_init != "auto":
            _check_float("learning_rate_init", self.learning_rate_init, strict=True)
        Xd, y = self._fit_inputs(X, y)
        y_arr = np.asarray(y) if isinstance(y, (list, tuple)) else y
        self.n_outputs_ = 1 if getattr(y_arr, "ndim", 1) == 1 else int(y_arr.shape[1])
        model = Sequential([Dense(self.n_features_in_, self.n_outputs_, init="zeros")], loss="mse", backend=self._backend(),
                           dtype=self._dtype_name_, seed=self.random_state, fused=self.fused)
        yd = model.loss.prepare_targets(y_arr, Xd.shape[0], self.n_outputs_, model.backend, model.dtype)
        wd = None if sample_weight is None else training.check_sample_weight(sample_weight, Xd.shape[0], model.backend,
                                                                              model.dtype)
        self.model_ = model
        Xt = self._fit_transform(Xd, wd)
        lr = (_lipschitz_step(Xt, model.backend.xp, wd=wd) if self.learning_rate_init == "auto"
              else float(self.learning_rate_init))
        optimizer = SGD(lr=lr, momentum=self.momentum)
        self._run_epochs(model, Xt, yd, optimizer, self._batch_size(Xd.shape[0]), True, rule, wd=wd)
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

    @_unchanged_if_it_raises
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> "LogisticRegression":
        """Fit by gradient descent; ``sample_weight`` ``(N,)`` (or one number) weights each sample's
        loss, and the L2 term is divided by the weight sum (scikit-learn's objective)."""
        max_iter, grad_tol, patience = self._stopping_rule()
        check_flag("standardize", self.standardize)
        lr = _check_float("learning_rate_init", self.learning_rate_init, strict=True)
        alpha = _check_float("alpha", self.alpha)
        Xd, y = self._fit_inputs(X, y)
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
        optimizer = SGD(lr=lr, momentum=self.momentum)
        batch_size = self._batch_size(Xd.shape[0])
        full_batch = batch_size >= Xd.shape[0]  # momentum overshoots the loss: no loss rule on full batches
        self._run_epochs(model, Xt, yd, optimizer, batch_size, True,
                         (max_iter, grad_tol, max_iter if full_batch else patience), grad_tol=grad_tol, wd=wd)
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

    @_unchanged_if_it_raises
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> "Perceptron":
        """Run the rule over ``(X, y)``; ``sample_weight`` ``(N,)`` (or one number) scales each
        sample's step, as scikit-learn's does."""
        from .ops import Ops

        eta0 = _check_float("eta0", self.eta0, strict=True)
        max_iter = check_positive_int("max_iter", self.max_iter)
        tol = None if self.tol is None else _check_float("tol", self.tol)
        patience = check_positive_int("n_iter_no_change", self.n_iter_no_change)
        shuffle = check_flag("shuffle", self.shuffle)
        Xd, y = self._fit_inputs(X, y)
        labels = self._encode_labels(y, Xd.shape[0])
        backend = self._backend()
        weights = None if sample_weight is None else training.host_sample_weight(sample_weight, Xd.shape[0], backend)
        xp, dtype = backend.xp, backend.dtype(self._dtype_name_)
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
            order = rng.permutation(n) if shuffle else np.arange(n)
            W, b, mistakes, loss = ops.perceptron_epoch(Xd, Y, W, b, order, eta0=eta0, weights=weights)
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

    @property
    def predict_proba(self) -> Any:
        """Not available: the perceptron has no probabilities (``hasattr`` is False, as in scikit-learn)."""
        raise AttributeError("Perceptron has no predict_proba; use decision_function")

    @property
    def predict_log_proba(self) -> Any:
        """Not available, as :attr:`predict_proba`."""
        raise AttributeError("Perceptron has no predict_log_proba; use decision_function")

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


def scikit_learn_initial_weights(model: Sequential, activation: str) -> None:
    """Draw ``model``'s weights and biases from its generator as scikit-learn's MLP draws them
    (``_init_coef``): each uniform in ``+-sqrt(f / (fan_in + fan_out))``, ``f = 2`` for the logistic
    activation, else 6. With Sequential's own choice (He-normal weights in front of a ReLU, zero
    biases) a relu MLPClassifier scored 0.896 against scikit-learn's 0.944 after 30 adam epochs
    on unscaled digits (mean of 3 seeds); with these, 0.946 (tests/test_mlp_options.py)."""
    factor = 2.0 if activation in ("logistic", "sigmoid") else 6.0
    arrays = []
    for layer in model.layers:
        if isinstance(layer, Dense):
            bound = math.sqrt(factor / (layer.n_in + layer.n_out))
            arrays += [model.rng.uniform(-bound, bound, (layer.n_in, layer.n_out)), model.rng.uniform(-bound, bound, layer.n_out)]
    model.set_parameters(arrays)


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
        random_state: int | None = None, tol: float = 1e-4, verbose: bool = False, warm_start: bool = False,
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
            return Adam(lr=o["lr"], beta1=o["beta1"], beta2=o["beta2"], eps=o["eps"])
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
        if first:
            epochs = 1 if incremental else int(self.max_iter)
            fused = _fused_for_fit(self.fused, self._backend(), Xd.shape[0], widths, epochs)
            model = Sequential(dense_stack(widths, self.activation), loss=loss, backend=self._backend(),
                               dtype=self._dtype_name_, seed=self.random_state, fused=fused, l2=alpha,
                               matmul_precision=self.matmul_precision)
            scikit_learn_initial_weights(model, self.activation)
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
            self._fit_stochastic(model, Xd, yd, incremental, sample_weight)
        params = model.parameters()
        self.coefs_, self.intercepts_ = params[0::2], params[1::2]
        self.n_layers_ = len(widths)
        self.n_outputs_ = n_out
        self.out_activation_ = self._out_activation(loss)

    def _fit_stochastic(self, model: Sequential, Xd: Any, yd: Any, incremental: bool, sample_weight: Any = None) -> None:
        if incremental and hasattr(self, "_optimizer_"):
            optimizer = self._optimizer_
        else:
            optimizer = self._optimizer_ = self._optimizer()
        early = self.early_stopping and not incremental
        schedule = self.learning_rate if self.solver == "sgd" else "constant"  # Adam ignores it, as in scikit-learn
        callbacks = [_SklearnLines()] if self.verbose else []
        validation = None
        if early and isinstance(Xd, DataSource):  # sparse X: hold out rows here, both parts stay sparse
            labels = model.backend.to_numpy(yd) if model.loss.is_classifier else np.zeros(Xd.shape[0])
            train_rows, val_rows = stopping.validation_split(labels, float(self.validation_fraction), model.rng,
                                                             stratify=model.loss.is_classifier)
            take = lambda rows: model.backend.xp.take(yd, model.backend.asarray(rows), axis=0)  # noqa: E731
            validation = (DataSource(Xd.data[val_rows]), take(val_rows))
            if sample_weight is not None:
                sw = training.host_sample_weight(sample_weight, Xd.shape[0], model.backend)
                validation, sample_weight = (*validation, sw[val_rows]), sw[train_rows]
            Xd, yd = DataSource(Xd.data[train_rows]), take(train_rows)
        n_train = Xd.shape[0] - (stopping.held_out_count(Xd.shape[0], float(self.validation_fraction))
                                 if early and validation is None else 0)
        if isinstance(self.batch_size, numbers.Integral) and self.batch_size > n_train:  # scikit-learn's warning
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped",
                          UserWarning, stacklevel=5)  # at the caller of fit
        history = model.fit(
            Xd, yd, epochs=1 if incremental else int(self.max_iter), batch_size=self._batch_size(Xd.shape[0]),
            optimizer=optimizer, shuffle=self.shuffle, callbacks=callbacks, tol=float(self.tol),
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
        from scipy.optimize import minimize

        backend = model.backend
        shapes = [tuple(p.shape) for p in model.parameters()]
        sizes = [int(np.prod(s)) for s in shapes]

        def unpack(theta):
            out, at = [], 0
            for shape, size in zip(shapes, sizes):
                out.append(theta[at:at + size].reshape(shape))
                at += size
            return out

        def loss_and_grad(theta):
            model.set_parameters(unpack(theta))
            loss, grads = training.full_batch_value_and_grad(model, Xd, yd, weights)
            return loss, np.concatenate([g.ravel() for g in grads])

        theta0 = np.concatenate([backend.to_numpy(p).ravel() for p in model.parameters()]).astype(np.float64)
        result = minimize(loss_and_grad, theta0, method="L-BFGS-B", jac=True,
                          options={"maxfun": int(self.max_fun), "maxiter": int(self.max_iter), "gtol": float(self.tol)})
        model.set_parameters(unpack(result.x))
        self.n_iter_ = int(result.nit)
        self.loss_ = float(result.fun)
        self.t_ = Xd.shape[0]
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
        if classes is not None:
            labels = _typed_labels(np.ravel(y_host))
            known = _typed_labels(np.asarray(classes))
            if not np.isin(labels, known).all():
                raise ValueError(f"y holds labels {_labels(np.setdiff1d(labels, known))} not in "
                                 f"classes={_labels(known)}")
            self.classes_ = np.unique(known)
            encoded = np.searchsorted(self.classes_, labels)
        else:
            encoded = self._encode_labels(y_host, n)
        if self.classes_.size == 2:
            return encoded.astype(np.float64).reshape(-1, 1), 1, "binary_cross_entropy"
        return encoded, int(self.classes_.size), "softmax_cross_entropy"

    @_unchanged_if_it_raises
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> "MLPClassifier":
        """Train on ``(X, y)``; ``sample_weight`` ``(N,)`` weights each sample's loss (scikit-learn's meaning)."""
        self._check_options()
        warm = self.warm_start and hasattr(self, "model_")
        before = (self.classes_, getattr(self, "_multilabel_", False)) if warm else None
        Xd, y = self._fit_inputs(X, y)
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

    @_unchanged_if_it_raises
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None, classes: Any = None) -> "MLPClassifier":
        """One epoch over ``(X, y)``, continuing from the last call. The first call needs
        ``classes`` (every label that will ever appear), as in scikit-learn."""
        first = not hasattr(self, "model_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        if not first and classes is not None and not np.array_equal(np.unique(_typed_labels(np.asarray(classes))),
                                                                    self.classes_):
            raise ValueError(f"classes={_labels(np.asarray(classes))} is not the same as on the last call to "
                             f"partial_fit or fit, was {_labels(self.classes_)}")  # as scikit-learn refuses it
        if self.solver == "lbfgs":
            raise AttributeError("partial_fit is only available for stochastic optimizers; solver='lbfgs' is not")
        self._check_options()
        if self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        Xd, y = self._fit_inputs(X, y, reset=first)
        targets, n_out, loss = self._targets(y, Xd.shape[0], classes if first else self.classes_)
        self._fit_network(Xd, targets, n_out, loss, incremental=True, sample_weight=sample_weight)
        return self

    def _decode(self, indices: Any) -> Any:
        if getattr(self, "_multilabel_", False):
            return indices
        return super()._decode(indices)


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
        y_arr = np.asarray(y) if isinstance(y, (list, tuple)) else y
        return y_arr, 1 if getattr(y_arr, "ndim", 1) == 1 else int(y_arr.shape[1])

    @_unchanged_if_it_raises
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> "MLPRegressor":
        """Train on ``(X, y)``; ``sample_weight`` ``(N,)`` weights each sample's loss (scikit-learn's meaning)."""
        self._check_options()
        Xd, y = self._fit_inputs(X, y)
        y_arr, n_out = self._targets(y)
        self._fit_network(Xd, y_arr, n_out, _regression_loss(n_out), sample_weight=sample_weight)
        return self

    @_unchanged_if_it_raises
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> "MLPRegressor":
        """One epoch over ``(X, y)``, continuing from the last call."""
        if self.solver == "lbfgs":
            raise AttributeError("partial_fit is only available for stochastic optimizers; solver='lbfgs' is not")
        self._check_options()
        if self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        first = not hasattr(self, "model_")
        Xd, y = self._fit_inputs(X, y, reset=first)
        y_arr, n_out = self._targets(y)
        self._fit_network(Xd, y_arr, n_out, _regression_loss(n_out), incremental=True, sample_weight=sample_weight)
        return self
