"""Losses: each object owns its value AND its gradient, so their normalisations cannot drift.

All are means over the batch of size ``N``; ``output`` is the last layer's
``(N, k)`` pre-activation (logits for the classification losses).

- ``MSE``: ``1/(2N) sum (output - y)^2``, gradient ``(output - y) / N``.
- ``BinaryCrossEntropy`` (from logits): ``1/N sum softplus(z) - y z``, computed as
  ``max(z, 0) - z y + log1p(exp(-|z|))``; gradient ``(sigmoid(z) - y) / N``.
- ``SoftmaxCrossEntropy``: ``-1/N sum log softmax(z)[i, t_i]`` with labels as class
  indices (one-hot rows accepted); gradient ``(softmax(z) - onehot(t)) / N``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import default_int_dtype
from .ops import _device, log_softmax_reference

__all__ = ["Loss", "MSE", "SquaredError", "BinaryCrossEntropy", "SoftmaxCrossEntropy", "get_loss", "LOSSES"]


class Loss:
    """Base class.

    ``prepare_targets`` validates and converts the targets once per fit;
    ``value_and_grad`` and ``value`` then work on device arrays.
    """

    name = ""
    is_classifier = False

    def prepare_targets(self, y: Any, n_samples: int, n_outputs: int, backend: Any, dtype: Any) -> Any:
        raise NotImplementedError

    def value_and_grad(self, output: Any, target: Any, ops: Any, weights: Any = None) -> tuple[Any, Any]:
        """``(0-d loss array, dL/d output)`` for one batch. With ``weights`` ``(N,)`` (sample
        weights, >= 0), the loss is the weighted mean ``sum_i w_i l_i / sum_i w_i`` and each row of
        the gradient is scaled to match, as scikit-learn's MLP weights samples."""
        raise NotImplementedError

    def value(self, output: Any, target: Any, ops: Any) -> Any:
        return self.value_and_grad(output, target, ops)[0]

    def correct_rows(self, output: Any, target: Any, xp: Any) -> Any:
        """``(N,)`` booleans: which rows are predicted right (classification losses only)."""
        return None

    def n_correct(self, output: Any, target: Any, xp: Any) -> Any:
        """0-d count of correct predictions (classification losses only)."""
        right = self.correct_rows(output, target, xp)
        return None if right is None else xp.sum(xp.astype(right, default_int_dtype(xp)))

    def predict(self, output: Any, ops: Any) -> Any:
        return output

    def predict_proba(self, output: Any, ops: Any) -> Any:
        raise TypeError(f"predict_proba needs a classification loss; this model uses {self.name!r}")

    def config(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _row_weights(weights: Any, n: int, xp: Any) -> Any:
    """Sample weights ``(N,)`` rescaled to mean 1 (so a weighted mean is ``mean(w * l)``), as a column
    ``(N, 1)``; a batch whose weights are all zero gets zeros (no loss, no gradient)."""
    total = xp.sum(weights)
    scale = xp.where(total > 0, n / xp.where(total > 0, total, xp.ones_like(total)), xp.zeros_like(total))
    return xp.reshape(weights * scale, (n, 1))


def _host(y: Any, backend: Any, name: str) -> tuple[Any, Any]:
    """Targets as a backend array plus the namespace to check them with."""
    if isinstance(y, (list, tuple)):
        y = np.asarray(y)
    arr = backend.asarray(y, name=name)
    return arr, backend.xp


def _check_numeric_finite(y: Any, xp: Any, name: str) -> None:
    if not xp.isdtype(y.dtype, ("bool", "integral", "real floating")):
        raise TypeError(f"{name} must be numeric, got dtype {y.dtype}")
    if xp.isdtype(y.dtype, "real floating") and not bool(xp.all(xp.isfinite(y))):
        raise ValueError(f"{name} contains NaN or infinity")


def _column_targets(y: Any, n_samples: int, n_outputs: int, backend: Any, dtype: Any, name: str) -> tuple[Any, Any]:
    """Finite numeric targets as a ``(N, n_outputs)`` float array (``(N,)`` accepted for one output)."""
    arr, xp = _host(y, backend, name)
    _check_numeric_finite(arr, xp, name)
    if arr.ndim == 1 and n_outputs == 1:
        arr = xp.reshape(arr, (arr.shape[0], 1))
    if arr.ndim != 2 or arr.shape[1] != n_outputs:
        raise ValueError(
            f"{name} must have shape ({n_samples}, {n_outputs})"
            + (f" or ({n_samples},)" if n_outputs == 1 else "")
            + f" to match the network's {n_outputs} output(s), got {tuple(arr.shape)}"
        )
    return xp.astype(arr, dtype), xp


class MSE(Loss):
    """Mean squared error ``1/(2N) sum (output - y)^2`` (regression)."""

    name = "mse"

    def prepare_targets(self, y, n_samples, n_outputs, backend, dtype, name="y"):
        return _column_targets(y, n_samples, n_outputs, backend, dtype, name)[0]

    def value_and_grad(self, output, target, ops, weights=None):
        diff = output - target
        inv_n = 1.0 / output.shape[0]
        if weights is None:
            return 0.5 * inv_n * ops.xp.sum(diff * diff), diff * inv_n
        w = _row_weights(weights, output.shape[0], ops.xp)
        return 0.5 * inv_n * ops.xp.sum(w * diff * diff), diff * (w * inv_n)


class SquaredError(MSE):
    """scikit-learn's MLPRegressor loss over ``k`` outputs, its convention included: the value is
    ``1/(2 N k) sum (output - y)^2``, averaged over outputs too (scikit-learn's ``loss_``), while
    the gradient is :class:`MSE`'s, ``(output - y) / N``, summed over outputs (scikit-learn's
    ``_backprop`` steps with ``deltas = output - y`` divided by ``N`` only). For one output the two
    agree. For several, the value is not the function the gradient descends: scikit-learn's own
    mismatch, kept so that ``loss_`` and ``tol`` read as there and the learning rate, ``alpha``
    and lbfgs's optimum act as there. Use ``"mse"`` for a loss whose gradient is its own. It has
    no compiled whole step; the eager step runs it."""

    name = "squared_error"

    def value_and_grad(self, output, target, ops, weights=None):
        loss, grad = super().value_and_grad(output, target, ops, weights)
        return loss * (1.0 / output.shape[1]), grad


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy on logits (log-sigmoid form); targets in ``[0, 1]`` shaped ``(N,)`` or ``(N, k)``."""

    name = "binary_cross_entropy"
    is_classifier = True

    def prepare_targets(self, y, n_samples, n_outputs, backend, dtype, name="y"):
        arr, xp = _column_targets(y, n_samples, n_outputs, backend, dtype, name)
        if not bool(xp.all((arr >= 0) & (arr <= 1))):
            raise ValueError(f"{name} must hold binary targets in [0, 1] (0/1 labels) for binary cross-entropy")
        return arr

    def value_and_grad(self, output, target, ops, weights=None):
        xp = ops.xp
        inv_n = 1.0 / output.shape[0]
        softplus = xp.maximum(output, xp.zeros_like(output)) + xp.log1p(xp.exp(-xp.abs(output)))
        if weights is None:
            loss = xp.sum(softplus - output * target) * inv_n
            return loss, (ops.sigmoid(output) - target) * inv_n
        w = _row_weights(weights, output.shape[0], xp)
        return xp.sum(w * (softplus - output * target)) * inv_n, (ops.sigmoid(output) - target) * (w * inv_n)

    def correct_rows(self, output, target, xp):
        """Rows whose every output is on the right side of 0.5 (subset accuracy for several labels)."""
        return xp.all((output > 0) == (target > 0.5), axis=1)

    def predict(self, output, ops):
        xp = ops.xp
        pred = xp.astype(output > 0, default_int_dtype(xp))
        return pred[:, 0] if pred.shape[1] == 1 else pred

    def predict_proba(self, output, ops):
        return ops.sigmoid(output)


class SoftmaxCrossEntropy(Loss):
    """Softmax cross-entropy; targets are class indices ``(N,)`` in ``[0, C)`` or one-hot rows ``(N, C)``."""

    name = "softmax_cross_entropy"
    is_classifier = True

    def prepare_targets(self, y, n_samples, n_outputs, backend, dtype, name="y"):
        arr, xp = _host(y, backend, name)
        if not xp.isdtype(arr.dtype, ("bool", "integral", "real floating")):
            raise TypeError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
        if arr.ndim == 2 and arr.shape[1] == n_outputs and n_outputs > 1:
            ones = xp.sum(xp.astype(arr == 1, backend.int_dtype), axis=1)
            zeros = xp.sum(xp.astype(arr == 0, backend.int_dtype), axis=1)
            if not bool(xp.all((ones == 1) & (zeros == n_outputs - 1))):
                raise ValueError(f"{name} given as a 2-D array must be one-hot rows (one 1, the rest 0)")
            return xp.argmax(arr, axis=1)
        if arr.ndim != 1:
            raise ValueError(
                f"{name} must be class indices of shape ({n_samples},) or one-hot rows of shape "
                f"({n_samples}, {n_outputs}), got {tuple(arr.shape)}"
            )
        if xp.isdtype(arr.dtype, "real floating"):
            if not bool(xp.all(xp.isfinite(arr))):
                raise ValueError(f"{name} contains NaN or infinity")
            if not bool(xp.all(arr == xp.round(arr))):
                raise ValueError(f"{name} must hold integer class labels, got non-integer values")
        arr = xp.astype(arr, backend.int_dtype)
        if arr.shape[0] and not bool(xp.all((arr >= 0) & (arr < n_outputs))):
            lo, hi = int(xp.min(arr)), int(xp.max(arr))
            raise ValueError(
                f"{name} holds class labels in [{lo}, {hi}] but the network has {n_outputs} outputs, "
                f"so labels must lie in [0, {n_outputs - 1}]"
            )
        return arr

    def value_and_grad(self, output, target, ops, weights=None):
        loss, grad = ops.softmax_cross_entropy(output, target)
        if weights is None:
            return loss, grad
        xp = ops.xp
        n, c = output.shape
        w = _row_weights(weights, n, xp)
        picked = xp.reshape(xp.arange(c, device=_device(output)), (1, c)) == xp.reshape(target, (n, 1))
        per_sample = -xp.sum(xp.where(picked, log_softmax_reference(output, xp), xp.zeros_like(output)), axis=1)
        return xp.sum(w[:, 0] * per_sample) / n, grad * w

    def correct_rows(self, output, target, xp):
        return xp.argmax(output, axis=1) == target

    def predict(self, output, ops):
        return ops.xp.argmax(output, axis=1)

    def predict_proba(self, output, ops):
        return ops.softmax(output)


LOSSES = {
    "mse": MSE,
    "mean_squared_error": MSE,
    "squared_error": SquaredError,
    "binary_cross_entropy": BinaryCrossEntropy,
    "bce": BinaryCrossEntropy,
    "softmax_cross_entropy": SoftmaxCrossEntropy,
    "cross_entropy": SoftmaxCrossEntropy,
}


def get_loss(loss: Any) -> Loss:
    """A loss object from a :class:`Loss` instance or one of the names in ``LOSSES``."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, type) and issubclass(loss, Loss):
        return loss()
    if isinstance(loss, str) and loss.lower() in LOSSES:
        return LOSSES[loss.lower()]()
    raise ValueError(f"loss must be a Loss or one of {sorted(LOSSES)}, got {loss!r}")
