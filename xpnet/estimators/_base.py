"""What every xpnet estimator shares: scikit-learn's base classes (or a stand-in without
scikit-learn), input checks through its ``validate_data``, pickling by backend name, ONNX export,
and the classifier and regressor halves (labels, ``predict``, ``score``)."""

from __future__ import annotations

import copy
import functools
import inspect
import numbers
import warnings
from typing import Any, Iterator

import numpy as np

from .._validation import check_features, check_positive_int, check_same_length, check_seed, float_dtype_name
from ..backend import array_to_numpy, backend_of, get_backend, host_state, is_foreign_array
from .. import stopping, training
from ..network import Sequential
from ..optim import _check_number
from ..sources import DataSource, _is_sparse

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
    from sklearn.exceptions import ConvergenceWarning, DataConversionWarning
except ImportError:  # pragma: no cover - exercised only without scikit-learn

    class ConvergenceWarning(UserWarning):  # type: ignore[no-redef]
        """Training stopped at ``max_iter`` before the stopping rule was met."""

    class DataConversionWarning(UserWarning):  # type: ignore[no-redef]
        """The data was converted to another shape or type than the one given."""


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
        library and device, so the data stays where it is; NumPy input gets the usual "auto".
        With scikit-learn's ``array_api_dispatch`` on, the default ``backend=None`` follows such
        input too, as scikit-learn's own estimators compute in their input's namespace."""
        follows = (isinstance(self.backend, str) and self.backend == "auto") or (self.backend is None and
                                                                                _array_api_dispatch())
        if follows and is_foreign_array(X):
            return backend_of(X)
        return get_backend(self.backend)

    def _moved_to_fit(self, value: Any, backend: Any) -> Any:
        """``y`` or ``sample_weight`` for a fit on ``backend``: as given, except that with
        ``array_api_dispatch`` on an array of another library or device comes as host NumPy (from
        where the fit puts it on the model's device), as scikit-learn moves ``y`` and
        ``sample_weight`` to ``X``'s namespace and device there. Without dispatch nothing is moved."""
        if not _array_api_dispatch() or not is_foreign_array(value):
            return value
        if backend.owns(value) and _place(value)[1] == str(backend.device):
            return value
        return array_to_numpy(value)

    def _check_same_place(self, X: Any, method: str) -> None:
        """With ``array_api_dispatch`` on, ``X`` must come from the namespace and device of ``fit``'s
        ``X`` (scikit-learn's ``check_same_namespace`` rule, and its words); without it, host input
        to a model on another backend is taken and gets host output (:meth:`_like_input`)."""
        fitted = getattr(self, "_fit_input_", None)  # absent in estimators pickled before it was kept
        if fitted is None or not _array_api_dispatch():
            return
        given = _place(X)
        if given != fitted:
            raise ValueError(f"Inputs passed to {type(self).__name__}.{method}() must use the same namespace and the "
                             f"same device as those passed to fit() (scikit-learn's rule with array_api_dispatch=True): "
                             f"fit had {_describe_place(fitted)}, {method} has {_describe_place(given)}. Convert X to "
                             f"fit's library and device, or fit on X's.")

    def _like_input(self, X: Any, out: Any) -> Any:
        """``out`` (an array of the model's backend) as the caller gave ``X``: on that backend for
        its own arrays, else as NumPy. Host input (NumPy, lists, pandas, scipy.sparse) gets NumPy
        outputs on every backend, as scikit-learn returns outputs in the input's namespace, so its
        metrics and tools take them. With ``array_api_dispatch`` on, an array of another library
        (a model with an explicit ``backend`` given torch X, say) gets numbers back in X's library
        and on X's device, as scikit-learn's outputs are there; without it, NumPy."""
        if not self._host_input(X):
            return out
        host = self.model_.backend.to_numpy(out)
        if _array_api_dispatch() and is_foreign_array(X) and host.dtype.kind in "biuf":
            return backend_of(X).asarray(host)  # X's library, on X's device
        return host

    def _host_input(self, X: Any) -> bool:
        """True unless ``X`` is an array of the model's backend other than NumPy."""
        backend = self.model_.backend
        return backend.is_numpy or not backend.owns(X)

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
        y, sample_weight = self._moved_to_fit(y, backend), self._moved_to_fit(sample_weight, backend)
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
        from .. import export
        from .linear import _LinearScorer

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
        if is_foreign_array(X) and _array_api_dispatch():  # an explicit backend: X through the host (validate_data
            X = array_to_numpy(X)  # would look for NumPy's dtypes in X's library); outputs go back (_like_input)
        kw = dict(reset=reset, dtype=[np.float64, np.float32], ensure_all_finite=False,  # NaN/inf: xpnet's message
                  accept_sparse=["csr", "csc"] if self._accepts_sparse else False)
        if not fitting:
            return validate_data(self, X, **kw), y
        if y is not None and backend.owns(y) and not backend.is_numpy:
            return validate_data(self, X, **kw), y
        return validate_data(self, X, y, multi_output=True, y_numeric=isinstance(self, _RegressorMixin), **kw)

    def _fit_inputs(self, X: Any, y: Any, sample_weight: Any = None, reset: bool = True) -> tuple[Any, Any, Any]:
        """``(X on the device, y, sample_weight)`` for ``fit`` (``reset``) or a later ``partial_fit``,
        checked (``y`` and ``sample_weight`` moved to the fit's backend where :meth:`_moved_to_fit` says)."""
        check_seed("random_state", self.random_state)
        if reset:
            self._fit_backend_ = self._backend_for(X)
        else:
            self._check_same_place(X, "partial_fit")
        backend = self._backend() if reset else self.model_.backend
        y, sample_weight = self._moved_to_fit(y, backend), self._moved_to_fit(sample_weight, backend)
        place = _place(X)
        X, y = self._sklearn_validated(X, y, reset=reset, fitting=True)
        Xd = self._features(X, reset=reset, validated=True)
        check_same_length(Xd, y)
        if reset:
            self._fit_input_ = place  # where fit's X came from (the namespace and device predict must match)
        return Xd, y, sample_weight

    def _features(self, X: Any, reset: bool, validated: bool = False, method: str = "predict") -> Any:
        """``X`` checked and on the model's device (``method``: the caller, for messages)."""
        if not validated:
            self._check_same_place(X, method)
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

    def _run_epochs(self, model: Sequential, Xd, yd, optimizer, batch_size: int, shuffle: bool, max_iter: int,
                    patience: int, grad_tol: float, wd: Any = None) -> None:
        """Train until the largest absolute entry of the whole objective's gradient (the full
        batch's, whatever ``batch_size``) is at most ``grad_tol`` (scikit-learn's lbfgs ``tol``),
        or for ``max_iter`` epochs, then with a ``ConvergenceWarning`` as scikit-learn's
        estimators warn. ``wd`` are sample weights ``(N,)`` on the device: each batch's loss is
        their weighted mean.

        Full batches take one step an epoch, and the gradient of that step is the one checked.
        The linear models' objective is convex and its optimum does not depend on the batch
        size, so neither may the fit: mini-batches carry the whole data's L2 term in each step
        (:func:`_whole_data_penalty`, an unbiased estimate of the full gradient), and after each
        epoch one full-batch pass gives the gradient checked. At a constant step mini-batch
        descent settles in a noise floor around the optimum, above ``grad_tol``: once the full
        gradient has not reached a new low for more than ``patience`` (``n_iter_no_change``)
        epochs, the remaining epochs take full batches, so every batch size ends at the
        full-batch fit."""
        self.loss_curve_ = []
        floor = stopping.NoImprovement(0.0, patience)  # mini-batches: the full gradient's lowest
        converged = False
        xp = model.backend.xp
        whole = _weight_total(Xd, wd, xp)  # the L2 term's divisor
        for _ in range(max_iter):
            mini_batches = batch_size < Xd.shape[0]
            batches = training.memory_batches(model, Xd, yd, batch_size, shuffle, wd=wd)
            if model.l2 and mini_batches:
                batches = _whole_data_penalty(model, batches, whole)
            logs = training.eager_epoch(model, batches, Xd.shape[0], batch_size, optimizer, ())
            model.epochs_trained += 1
            self.loss_curve_.append(logs["loss"])
            if mini_batches:  # the whole objective's gradient (a full batch's is that of its step)
                model._loss_and_backward(Xd, yd, wd)
            largest = max(float(xp.max(xp.abs(g))) for g in model._grads())
            if mini_batches:
                floor.update(largest)
                if floor.stop:  # mini-batch descent's noise floor: full batches from here on
                    batch_size = Xd.shape[0]
            if largest <= grad_tol:
                converged = True
                break
        self.n_iter_ = len(self.loss_curve_)
        self.best_loss_ = float(min(self.loss_curve_))
        if not converged:
            hint = "" if getattr(self, "standardize", True) else ", standardise the features (standardize=True)"
            warnings.warn(f"{type(self).__name__}: maximum iterations ({max_iter}) reached and the optimization "
                          f"hasn't converged yet. Increase max_iter{hint}, or use solver='lbfgs'.", ConvergenceWarning)

    def _run_lbfgs(self, model: Sequential, Xd, yd, max_iter: int, grad_tol: float, wd: Any = None) -> None:
        """The linear models' ``solver="lbfgs"``: scipy's L-BFGS-B on the full-batch objective
        (:func:`xpnet.training.minimize_lbfgs`, xpnet's backprop for the gradient), stopped where
        the largest gradient entry is at most ``grad_tol``, or at ``max_iter`` iterations (or
        15,000 evaluations, scikit-learn's ``max_fun``) with a ``ConvergenceWarning``, which it
        also gives where its line search stalls above ``grad_tol`` (``ftol=0``: no stop on the
        objective's progress alone, which left ill-conditioned fits short). ``loss_curve_``
        holds the objective after each iteration."""
        result, curve = training.minimize_lbfgs(model, Xd, yd, wd, max_iter=max_iter, max_fun=15000, gtol=grad_tol,
                                                ftol=0.0)
        self.loss_curve_ = curve or [float(result.fun)]
        self.n_iter_ = int(result.nit)
        self.best_loss_ = float(min(self.loss_curve_))
        largest = float(np.max(np.abs(result.jac)))
        if result.status != 0 or largest > grad_tol:  # L-BFGS-B also stops where the objective stalls
            warnings.warn(f"{type(self).__name__}: lbfgs stopped after {self.n_iter_} iterations with the largest "
                          f"gradient entry {largest:.3g} above {grad_tol:.3g} (status={result.status}: "
                          f"{result.message}). Increase max_iter, or scale the data.", ConvergenceWarning)

    def _batch_size(self, n: int) -> int:
        bs = self.batch_size
        if bs is None:
            return n
        if bs == "auto":
            return min(200, n)
        return min(check_positive_int("batch_size", bs), n)


def _weight_total(X: Any, weights: Any, xp: Any) -> float:
    """What the objective averages over: ``X``'s row count, or the sample weights' sum."""
    return float(X.shape[0]) if weights is None else float(xp.sum(weights))


def _whole_data_penalty(model: Sequential, batches: Iterator[tuple[Any, Any, Any]], whole: float
                        ) -> Iterator[tuple[Any, Any, Any]]:
    """``batches``, each passed with the model's L2 factor scaled so that its step carries the
    whole data's penalty ``l2 / (2 N) ||W||^2`` (``whole`` is ``N``: the row count, or the sample
    weights' sum) instead of ``l2 / (2 B)`` over its own ``B`` rows (or their weight): each
    mini-batch gradient is then an unbiased estimate of the full-batch objective's (the linear
    models' objective; the MLP estimators keep scikit-learn's per-batch penalty)."""
    l2 = model.l2
    xp = model.backend.xp
    try:
        for xb, yb, wb in batches:
            rows = _weight_total(xb, wb, xp)
            model.l2 = l2 * rows / whole
            yield xb, yb, wb
    finally:
        model.l2 = l2


def scikit_learn_draws(random_state: Any) -> Any:
    """The generator one ``fit`` or ``partial_fit`` call draws from, made as scikit-learn's MLP and
    SGD estimators make it at each call (``check_random_state``): NumPy's global ``RandomState``
    for None, a new ``RandomState(random_state)`` for a seed, the object itself for a
    ``RandomState``; and what only NumPy's ``default_rng`` takes (a ``Generator``, a
    ``SeedSequence``) as ``default_rng`` makes it."""
    if random_state is None:
        return np.random.mtrand._rand
    if isinstance(random_state, (np.random.RandomState, np.random.Generator)):
        return random_state
    if isinstance(random_state, np.random.SeedSequence):
        return np.random.default_rng(random_state)
    return np.random.RandomState(random_state)


def _array_api_dispatch() -> bool:
    """Whether scikit-learn's ``array_api_dispatch`` is on (``sklearn.set_config``/``config_context``)."""
    try:
        from sklearn import get_config
    except ImportError:  # pragma: no cover - exercised only without scikit-learn
        return False
    return bool(get_config().get("array_api_dispatch", False))


def _place(X: Any) -> tuple[str, str]:
    """``(library, device)`` of ``X`` as scikit-learn compares inputs: ``("numpy", "cpu")`` for NumPy and
    for everything that is not an array of another library (lists, pandas, scipy.sparse)."""
    if not is_foreign_array(X):
        return ("numpy", "cpu")
    import array_api_compat as compat

    return (type(X).__module__.split(".")[0], str(compat.device(X)))


def _describe_place(place: tuple[str, str]) -> str:
    library, device = place
    return "NumPy or other host data" if library == "numpy" else f"{library} arrays on {device}"


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

    def _encode_labels(self, y: Any, n_samples: int, classes: Any = None) -> np.ndarray:
        """``y``'s class indices ``(N,)``; sets ``classes_``: the sorted labels of ``y``, or of
        ``classes`` where given (``partial_fit``), which must then hold every label of ``y``."""
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
        if classes is not None:
            labels, known = _typed_labels(y_host), _typed_labels(np.ravel(np.asarray(classes)))
            if not np.isin(labels, known).all():
                raise ValueError(f"y holds labels {_labels(np.setdiff1d(labels, known))} not in "
                                 f"classes={_labels(known)}")
            self.classes_ = np.unique(known)
            encoded = np.searchsorted(self.classes_, labels)
        else:
            self.classes_, encoded = np.unique(_typed_labels(y_host), return_inverse=True)
        if self.classes_.size < 2:
            where = "y has" if classes is None else "classes holds"
            raise ValueError(f"{where} only one class ({_labels(self.classes_)[1:-1]}); a classifier needs at least "
                             "2 classes")
        return encoded.astype(np.int64)

    def _first_partial_fit(self, classes: Any) -> bool:
        """Whether this ``partial_fit`` call is the first (no model yet), with ``classes`` checked as
        scikit-learn checks it: needed on the first call, and later, if given, the same as ``classes_``."""
        first = not hasattr(self, "model_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        if not first and classes is not None and not np.array_equal(np.unique(_typed_labels(np.asarray(classes))),
                                                                    self.classes_):
            raise ValueError(f"classes={_labels(np.asarray(classes))} is not the same as on the last call to "
                             f"partial_fit or fit, was {_labels(self.classes_)}")  # as scikit-learn refuses it
        return first

    def _decode(self, indices: Any, on_host: bool) -> Any:
        """Class labels for class indices: NumPy where ``on_host`` or the labels are not numbers."""
        backend = self.model_.backend
        if on_host or self.classes_.dtype.kind not in "biuf":
            return self.classes_[backend.to_numpy(indices)]
        return backend.xp.take(backend.asarray(self.classes_), indices, axis=0)

    def predict(self, X: Any) -> Any:
        """Predicted class labels, shape ``(N,)``: NumPy for host ``X``, else on the model's backend."""
        self._check_fitted()
        indices = self.model_.predict(self._transform(self._features(X, reset=False)))
        return self._like_input(X, self._decode(indices, on_host=self._host_input(X)))

    def _proba(self, X: Any, method: str) -> Any:
        proba = self.model_.predict_proba(self._transform(self._features(X, reset=False, method=method)))
        if proba.shape[1] == 1:  # binary model with one sigmoid output
            proba = self.model_.backend.xp.concat([1.0 - proba, proba], axis=1)
        return proba

    def predict_proba(self, X: Any) -> Any:
        """Class probabilities ``(N, n_classes)``, columns in the order of ``classes_`` (NumPy for
        host ``X``, else on the model's backend)."""
        self._check_fitted()
        return self._like_input(X, self._proba(X, "predict_proba"))

    def predict_log_proba(self, X: Any) -> Any:
        """``log(predict_proba(X))``, shape ``(N, n_classes)``."""
        self._check_fitted()
        return self._like_input(X, self.model_.backend.xp.log(self._proba(X, "predict_log_proba")))

    def _onnx_outputs(self, xt: Any) -> dict:
        from ..export import sequential_outputs

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
        """Predictions ``(N,)`` for one target, ``(N, k)`` for several: NumPy for host ``X``, else
        on the model's backend."""
        self._check_fitted()
        out = self.model_.predict(self._transform(self._features(X, reset=False)))
        return self._like_input(X, out[:, 0] if self.n_outputs_ == 1 else out)

    def _onnx_outputs(self, xt: Any) -> dict:
        from ..export import sequential_outputs

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

