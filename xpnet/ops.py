"""The hot operations, each with one signature and two implementations.

The ``*_reference`` functions are the generic Array-API path: they take the
namespace ``xp`` explicitly and use nothing outside the standard. They are the
specification every fused kernel is tested against.

:class:`Ops` binds one backend and, when fusion is on and a kernel family
exists for that backend (Numba for NumPy arrays, CuPy for CUDA arrays), swaps
in the fused kernels behind the same signatures. Fusion defaults to on; pass
``fused=False`` or set ``XPNET_FUSED=0`` to run the reference path.

Shapes: ``logits`` is ``(N, C)``, ``labels`` is ``(N,)`` of integer class
indices, activations are ``(N, units)``, parameters any shape.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
from typing import Any, Callable

from ._validation import check_flag

__all__ = [
    "Ops",
    "fused_default",
    "sigmoid_reference",
    "sigmoid_backward_reference",
    "bias_sigmoid_reference",
    "log_softmax_reference",
    "softmax_reference",
    "softmax_cross_entropy_reference",
    "adam_update_reference",
    "sgd_update_reference",
    "matmul_reference",
    "matmul_into_reference",
    "sum_rows_into_reference",
    "perceptron_epoch_reference",
    "PerceptronPenalty",
    "sigmoid_backward",
    "softmax_cross_entropy",
]


def fused_default() -> bool:
    """Fusion is on unless ``XPNET_FUSED`` is set to 0/false/off/no."""
    return os.environ.get("XPNET_FUSED", "1").strip().lower() not in {"0", "false", "off", "no"}


def _device(x: Any) -> Any:
    import array_api_compat

    return array_api_compat.device(x)


# ----------------------------------------------------------------------------
# Reference implementations (Array API standard only)
# ----------------------------------------------------------------------------
def sigmoid_reference(z: Any, xp: Any) -> Any:
    """Numerically stable logistic function: never calls ``exp`` on a positive argument."""
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def bias_sigmoid_reference(z: Any, b: Any, xp: Any) -> Any:
    """``sigmoid(z + b)`` for ``z`` of shape ``(N, units)`` and ``b`` of shape ``(units,)``."""
    return sigmoid_reference(z + b, xp)


def sigmoid_backward_reference(grad_out: Any, y: Any, xp: Any) -> Any:
    """``grad_out * y * (1 - y)``: the gradient through a sigmoid whose output was ``y``."""
    return grad_out * y * (1.0 - y)


def log_softmax_reference(z: Any, xp: Any) -> Any:
    """Row-wise ``z - max(z) - log(sum(exp(z - max(z))))`` for ``z`` of shape ``(N, C)``."""
    shifted = z - xp.max(z, axis=1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))


def softmax_reference(z: Any, xp: Any) -> Any:
    """Row-wise softmax of ``z`` of shape ``(N, C)``."""
    shifted = z - xp.max(z, axis=1, keepdims=True)
    e = xp.exp(shifted)
    return e / xp.sum(e, axis=1, keepdims=True)


def softmax_cross_entropy_reference(logits: Any, labels: Any, xp: Any) -> tuple[Any, Any]:
    """Mean softmax cross-entropy and its gradient with respect to the logits.

    Parameters
    ----------
    logits : array, shape (N, C)
    labels : integer array, shape (N,), values in ``[0, C)``

    Returns
    -------
    loss : 0-d array
        ``-1/N * sum_i log softmax(logits)[i, labels_i]``.
    grad : array, shape (N, C)
        ``(softmax(logits) - onehot(labels)) / N``.
    """
    n, c = logits.shape
    shifted = logits - xp.max(logits, axis=1, keepdims=True)
    e = xp.exp(shifted)
    sum_e = xp.sum(e, axis=1, keepdims=True)
    log_p = shifted - xp.log(sum_e)
    onehot = xp.reshape(labels, (n, 1)) == xp.arange(c, device=_device(logits))
    inv_n = 1.0 / n
    loss = -xp.sum(xp.where(onehot, log_p, xp.zeros_like(log_p))) * inv_n
    grad = (e / sum_e - xp.astype(onehot, logits.dtype)) * inv_n
    return loss, grad


def matmul_reference(a: Any, b: Any, xp: Any) -> Any:
    """``a @ b`` for ``(M, K)`` and ``(K, N)`` arrays (either may be a transposed view)."""
    return a @ b


def matmul_into_reference(a: Any, b: Any, out: Any, xp: Any) -> None:
    """``out[...] = a @ b``: a product written into an existing array (a view of a flat buffer)."""
    out[...] = a @ b


def sum_rows_into_reference(g: Any, out: Any, xp: Any) -> None:
    """``out[...] = sum over rows of g``: ``g`` is ``(N, k)``, ``out`` is ``(k,)``."""
    out[...] = xp.sum(g, axis=0)


ADAM_EPS_FORMS = ("pytorch", "scikit-learn")


def adam_eps(eps: float, bias2_sqrt: Any, eps_form: str) -> Any:
    """Adam's epsilon as every Adam kernel adds it: to the bias-corrected ``sqrt(v) / bias2_sqrt``,
    where ``bias2_sqrt = sqrt(1 - b2^t)`` is the step's, which the caller has computed.

    ``"pytorch"`` (PyTorch's and optax's form): ``eps`` itself. ``"scikit-learn"``: scikit-learn's
    MLP adds ``eps`` to the uncorrected ``sqrt(v)``, stepping ``lr sqrt(1 - b2^t) / (1 - b1^t) * m /
    (sqrt(v) + eps)``, which is ``eps / sqrt(1 - b2^t)`` on the corrected scale: up to 32 times
    ``eps`` in the first steps (beta2 = 0.999), tending to ``eps``.
    """
    return eps if eps_form == "pytorch" else eps / bias2_sqrt


def adam_update_reference(
    param: Any, grad: Any, m: Any, v: Any, *, lr: float, beta1: float, beta2: float, eps: float, step: int, xp: Any,
    in_place: bool = False, eps_form: str = "pytorch",
) -> tuple[Any, Any, Any]:
    """One Adam step (PyTorch's form of the bias correction); returns ``(param, m, v)``.

    ``m <- b1 m + (1 - b1) g``; ``v <- b2 v + (1 - b2) g^2``;
    ``param <- param - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps_t)``, where ``eps_t``
    is ``eps``, or with ``eps_form="scikit-learn"`` scikit-learn's epsilon (see :func:`adam_eps`).

    The new arrays are computed functionally, so the update is correct on libraries whose
    arrays are immutable (JAX) or whose augmented assignment rebinds (Dask, ndonnx): the
    caller stores what is returned. With ``in_place=True`` (only for a library whose
    arrays mutate, see ``Backend.in_place``) the results are also written into ``param``,
    ``m`` and ``v``, which are returned, as the fused kernels do.
    """
    m_new = beta1 * m + (1.0 - beta1) * grad
    v_new = beta2 * v + (1.0 - beta2) * (grad * grad)
    bias1 = 1.0 - beta1**step
    bias2_sqrt = (1.0 - beta2**step) ** 0.5  # not math.sqrt: ``step`` is a traced scalar under jax.jit
    param_new = param - (lr / bias1) * m_new / (xp.sqrt(v_new) / bias2_sqrt + adam_eps(eps, bias2_sqrt, eps_form))
    if not in_place:
        return param_new, m_new, v_new
    m[...], v[...], param[...] = m_new, v_new, param_new
    return param, m, v


def sgd_update_reference(
    param: Any, grad: Any, velocity: Any, *, lr: float, momentum: float, nesterov: bool, xp: Any, in_place: bool = False,
) -> tuple[Any, Any]:
    """SGD step: ``v <- mu v - lr g``; ``w <- w + v`` (Nesterov: ``w <- w + mu v - lr g``).

    Returns ``(param, velocity)`` (``velocity`` None without momentum); functional unless
    ``in_place=True``, exactly as :func:`adam_update_reference`.
    """
    if velocity is None:
        velocity_new = None
        param_new = param - lr * grad
    else:
        velocity_new = momentum * velocity - lr * grad
        param_new = param + (momentum * velocity_new - lr * grad if nesterov else velocity_new)
    if not in_place:
        return param_new, velocity_new
    param[...] = param_new
    if velocity is not None:
        velocity[...] = velocity_new
    return param, velocity


PENALTY_CODES = {None: 0, "l1": 1, "l2": 2, "elasticnet": 3}  # scikit-learn's (sklearn/linear_model/_sgd_fast)


class PerceptronPenalty:
    """scikit-learn's SGD penalty bookkeeping for ``k`` units trained by one ``fit`` call
    (``WeightVector`` and ``l1penalty`` in sklearn/utils/_weight_vector and _sgd_fast): each unit's
    weights are ``W[:, j] * wscale`` with ``W`` the stored vector, so the L2 step ``w *= 1 - (1 -
    l1_ratio) eta alpha`` costs one multiply; the stored vector absorbs the scale when it falls below
    ``reset_below``, and at the end (:meth:`scaled`). L1 (``"l1"``, ``"elasticnet"``) is
    Tsuruoka et al.'s truncated gradient: ``u`` sums ``l1_ratio eta alpha`` over the steps, and ``q``
    ``(d, k)`` (an array of ``W``'s library) what the truncation has taken from each weight so far.

    ``scalars`` (a host list of ``k`` lists) holds each unit's ``wscale``, squared norm, L1 norm
    and ``u``. The norms are kept as scikit-learn keeps them, for the objective that its stopping rule
    reads: recomputed after each step that adds a sample, scaled with the vector, and left as they
    were by the L1 truncation.
    """

    def __init__(self, penalty: str, alpha: float, l1_ratio: float, norms: list[tuple[float, float]], q: Any,
                 reset_below: float) -> None:
        """``norms``: each unit's squared and L1 norm of its weights when the fit begins."""
        self.code = PENALTY_CODES[penalty]
        self.alpha = float(alpha)
        self.l1_ratio = {1: 1.0, 2: 0.0}.get(self.code, float(l1_ratio))
        self.reset_below = float(reset_below)
        self.q = q
        self.scalars = [[1.0, float(squared), float(absolute), 0.0] for squared, absolute in norms]

    def scaled(self, W: Any, xp: Any) -> Any:
        """The weights ``(d, k)``: the stored vector times each unit's scale (scikit-learn's ``reset_wscale``)."""
        scale = xp.asarray([row[0] for row in self.scalars], dtype=W.dtype, device=_device(W))
        return W * xp.reshape(scale, (1, -1))


def perceptron_epoch_reference(
    X: Any, Y: Any, W: Any, b: Any, order: Any, *, eta0: float, xp: Any, weights: Any = None,
    fit_intercept: bool = True, penalty: PerceptronPenalty | None = None,
) -> tuple[Any, Any, int, float, float]:
    """One epoch of Rosenblatt's rule over the samples in ``order``, as scikit-learn's SGD runs it;
    returns ``(W, b, mistakes, loss, objective)``.

    ``X`` is ``(N, d)``, ``Y`` ``(N, k)`` of -1/+1 (one column per unit), ``W`` ``(d, k)``, ``b``
    ``(k,)``, ``order`` a host sequence of sample indices. For each sample and unit, ``p = w.x + b``;
    where ``y p <= 0`` the unit gets ``w += eta0 y x`` and ``b += eta0 y``. ``mistakes`` counts
    samples with a wrong unit; ``loss`` sums ``max(0, -y p)`` before each update (scikit-learn's
    perceptron loss), ``objective`` adds to it, per sample, the penalty of the weights then. Sample
    ``weights`` ``(N,)`` (a host sequence) scale each sample's step, as scikit-learn's
    ``sample_weight`` scales its update; the loss stays unweighted, as scikit-learn's. With
    ``fit_intercept=False`` ``b`` is left as it is.

    With a ``penalty`` (:class:`PerceptronPenalty`, whose state carries over between epochs), ``W``
    is the stored vector: ``p = (W[:, j].x) * wscale + b``; each sample first scales the vector by
    ``max(0, 1 - (1 - l1_ratio) eta0 alpha)`` (L2, elastic net), then adds its step, then truncates
    (L1, elastic net), in scikit-learn's order. Functional (new ``W``, ``b``), so correct on
    immutable arrays too; one unit at a time, its scalars on the host, as scikit-learn's loop.
    """
    d, k = W.shape
    code = 0 if penalty is None else penalty.code
    scalars = [[1.0, 0.0, 0.0, 0.0] for _ in range(k)] if penalty is None else penalty.scalars
    alpha, l1_ratio = (0.0, 0.0) if penalty is None else (penalty.alpha, penalty.l1_ratio)
    decay = max(0.0, 1.0 - (1.0 - l1_ratio) * eta0 * alpha)
    q = None if penalty is None else penalty.q
    units = xp.reshape(xp.arange(k, device=_device(W)), (1, k))
    mistakes, loss, objective = 0, 0.0, 0.0
    for i in order:
        x = X[int(i), ...]
        eta = eta0 if weights is None else eta0 * float(weights[int(i)])
        wrong_any = False
        for j in range(k):
            wscale, sq_norm, l1_norm, u = scalars[j]
            column, y = W[:, j], float(Y[int(i), j])
            z = (float(xp.sum(column * x)) * wscale + float(b[j])) * y
            update = 0.0
            if z <= 0:  # a mistake: its loss, and a step of eta y
                loss -= z
                objective -= z
                update = eta * y
                wrong_any = True
            if code:
                objective += alpha * ((1.0 - l1_ratio) * 0.5 * math.sqrt(sq_norm) ** 2 + l1_ratio * l1_norm)
            if code >= 2:  # L2 or elastic net: w *= decay, as a scale
                wscale, sq_norm, l1_norm = wscale * decay, sq_norm * decay * decay, l1_norm * decay
                if wscale < penalty.reset_below:
                    column, wscale = column * wscale, 1.0
            if update != 0.0:
                column = column + x * (update / wscale)
                if code:
                    sq_norm = float(xp.sum(column * column)) * (wscale * wscale)
                    l1_norm = float(xp.sum(xp.abs(column))) * wscale
                if fit_intercept:
                    b = xp.where(units[0, :] == j, b + update, b)
            if code in (1, 3):  # L1 or elastic net: truncate toward zero by what u allows
                u += l1_ratio * eta0 * alpha
                before, taken = column, q[:, j]
                zero = xp.zeros_like(column)
                column = xp.where(before * wscale > 0, xp.maximum(zero, before - (u + taken) / wscale),
                                  xp.where(before * wscale < 0, xp.minimum(zero, before + (u - taken) / wscale), before))
                q = xp.where(units == j, xp.reshape(taken + wscale * (column - before), (d, 1)), q)
            W = xp.where(units == j, xp.reshape(column, (d, 1)), W)
            scalars[j] = [wscale, sq_norm, l1_norm, u]
        mistakes += int(wrong_any)
    if penalty is not None:
        penalty.q = q
    return W, b, mistakes, loss, objective


# ----------------------------------------------------------------------------
# Dispatch
# ----------------------------------------------------------------------------
_KERNEL_NAMES = (
    "sigmoid_backward", "bias_sigmoid", "softmax_cross_entropy", "adam_update", "sgd_update",
    "matmul", "matmul_into", "sum_rows_into", "perceptron_epoch",
)


def _load_kernel_family(backend_name: str) -> tuple[Any, str]:
    """The fused-kernel module for a backend, or (None, reason)."""
    if backend_name == "numpy":
        try:
            importlib.import_module("numba")
        except ImportError as exc:
            return None, f"Numba is not importable ({exc})"
        try:
            from .kernels import numba_cpu
        except ImportError as exc:
            return None, f"the kernels package is not importable ({exc})"
        return numba_cpu, "numba"
    if backend_name == "cupy":
        from .kernels import cupy_gpu

        return cupy_gpu, "cupy"
    return None, f"no fused kernels exist for backend {backend_name!r}"


class Ops:
    """The hot operations bound to one backend, fused where possible.

    Parameters
    ----------
    backend : Backend
    fused : bool or None
        ``None`` follows ``XPNET_FUSED`` (default on). ``False`` always runs the
        reference path. ``True`` uses the kernels where a family exists for the
        backend and the reference elsewhere.

    Attributes
    ----------
    fused : bool
        Whether fused kernels are actually in use.
    kernel_family : str or None
        ``"numba"``, ``"cupy"`` or None.
    captured_training : callable or None
        ``(model, optimizer, X, y, batch_size) -> CapturedTraining`` where the family can
        replay whole training steps as a CUDA graph (CuPy), else None.
    reason : str
        Why the reference path is used, when it is.
    """

    sigmoid_backward: Callable[[Any, Any], Any]
    bias_sigmoid: Callable[[Any, Any], Any]
    softmax_cross_entropy: Callable[[Any, Any], tuple[Any, Any]]

    def __init__(self, backend: Any, fused: bool | None = None) -> None:
        self.backend = backend
        self.xp = xp = backend.xp
        fused = check_flag("fused", fused, none_allowed=True)
        requested = fused_default() if fused is None else fused
        family, self.kernel_family, self.reason = None, None, "fusion switched off"
        if requested:
            family, label = _load_kernel_family(backend.name)
            if family is None:
                self.reason = label
            else:
                self.kernel_family, self.reason = label, ""
        self.fused = family is not None

        # A context the training loop runs in: Numba kernels go serial there (see kernels.numba_cpu).
        self.training_loop = getattr(family, "training_loop", contextlib.nullcontext)
        self.captured_training = getattr(family, "captured_training", None)
        self.sigmoid = lambda z: sigmoid_reference(z, xp)
        self.softmax = lambda z: softmax_reference(z, xp)
        self.log_softmax = lambda z: log_softmax_reference(z, xp)
        if family is not None:
            for name in _KERNEL_NAMES:
                if hasattr(family, name):
                    setattr(self, name, getattr(family, name))
        else:
            self.sigmoid_backward = lambda grad_out, y: sigmoid_backward_reference(grad_out, y, xp)
            self.bias_sigmoid = lambda z, b: bias_sigmoid_reference(z, b, xp)
            self.softmax_cross_entropy = lambda logits, labels: softmax_cross_entropy_reference(logits, labels, xp)
            # In place where the library's arrays mutate (probed once), functional elsewhere.
            in_place = backend.in_place
            self.adam_update = lambda *a, **k: adam_update_reference(*a, xp=xp, in_place=in_place, **k)
            self.sgd_update = lambda *a, **k: sgd_update_reference(*a, xp=xp, in_place=in_place, **k)
            self.matmul = lambda a, b: matmul_reference(a, b, xp)
            self.matmul_into = lambda a, b, out: matmul_into_reference(a, b, out, xp)
            self.sum_rows_into = lambda g, out: sum_rows_into_reference(g, out, xp)
        if not hasattr(family, "perceptron_epoch"):  # the CuPy family has none: a per-sample loop is host-bound
            self.perceptron_epoch = lambda X, Y, W, b, order, **options: perceptron_epoch_reference(
                X, Y, W, b, order, xp=xp, **options)

    def __repr__(self) -> str:
        how = self.kernel_family if self.fused else f"reference ({self.reason})"
        return f"Ops(backend={self.backend.name!r}, {how})"


def _ops_for(*arrays: Any) -> Ops:
    import array_api_compat

    from .backend import get_backend

    return Ops(get_backend(array_api_compat.array_namespace(*arrays)))


def sigmoid_backward(grad_out: Any, y: Any) -> Any:
    """``grad_out * y * (1 - y)``, fused where a kernel exists for the arrays' library.

    Convenience entry point; inside training, :class:`Ops` resolves the
    namespace once instead of per call.
    """
    return _ops_for(grad_out, y).sigmoid_backward(grad_out, y)


def softmax_cross_entropy(logits: Any, labels: Any) -> tuple[Any, Any]:
    """``(mean loss, (softmax(logits) - onehot(labels)) / N)``, fused where possible."""
    return _ops_for(logits, labels).softmax_cross_entropy(logits, labels)
