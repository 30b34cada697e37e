"""Fused GPU kernels (CuPy) for CuPy arrays.

Same signatures and results as the references in ``xpnet.ops``. Kernels are
built once, on first use (memoised factories, as Chainer does), and compiled
by CuPy on their first launch (then cached on disk by CuPy). Importing this
module does not import CuPy, so CPU-only machines can import and test it: the
CUDA sources below are what CI compiles with ``nvcc``.

- ``sigmoid_backward``: one elementwise kernel.
- ``bias_sigmoid``: bias add and stable sigmoid in one elementwise kernel.
- ``softmax_cross_entropy``: ``softmax_ce.cu``, no one-hot matrix: one warp per row
  (online max and sum, warp shuffles) up to ``WARP_PER_ROW_MAX_COLS`` classes, one
  block per row beyond. Then one reduction for the mean of the row losses.
- ``adam_update`` / ``sgd_update``: param and state updated in place by one kernel.
- ``captured_training``: whole training steps replayed as one CUDA graph (``cupy_graph``).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

from xpnet.ops import adam_eps

__all__ = [
    "sigmoid_backward", "bias_sigmoid", "softmax_cross_entropy", "adam_update", "sgd_update",
    "matmul", "matmul_into", "sum_rows_into", "captured_training", "ELEMENTWISE", "SOFTMAX_CE_SOURCE",
]

# name -> (input params, output params, body): CuPy ElementwiseKernel definitions.
# T is deduced from the array arguments; scalars arrive as Python floats and are cast to T.
ELEMENTWISE = {
    "sigmoid_backward": ("T g, T y", "T out", "out = g * y * (T(1) - y);"),
    "bias_sigmoid": (
        "T z, T b",
        "T out",
        "const T x = z + b; const T e = exp(-fabs(x)); out = x >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);",
    ),
    "adam": (
        "T g, T step_size, T beta1, T beta2, T bias2_sqrt, T eps",
        "T p, T m, T v",
        "m = beta1 * m + (T(1) - beta1) * g; v = beta2 * v + (T(1) - beta2) * g * g; "
        "p -= step_size * m / (sqrt(v) / bias2_sqrt + eps);",
    ),
    "sgd_momentum": (
        "T g, T lr, T mu, bool nesterov",
        "T p, T vel",
        "vel = mu * vel - lr * g; p += nesterov ? mu * vel - lr * g : vel;",
    ),
    "sgd": ("T g, T lr", "T p", "p -= lr * g;"),
}
SOFTMAX_CE_SOURCE = Path(__file__).with_name("softmax_ce.cu")


@functools.lru_cache(maxsize=None)
def _elementwise(name: str):
    import cupy

    in_params, out_params, body = ELEMENTWISE[name]
    return cupy.ElementwiseKernel(in_params, out_params, body, f"xpnet_{name}")


@functools.lru_cache(maxsize=None)
def _softmax_ce_module():
    import cupy

    return cupy.RawModule(
        code=SOFTMAX_CE_SOURCE.read_text(),
        options=("--std=c++14",),
        name_expressions=("xpnet_softmax_ce_rows<float>", "xpnet_softmax_ce_rows<double>",
                          "xpnet_softmax_ce_warp_rows<float>", "xpnet_softmax_ce_warp_rows<double>"),
    )


def sigmoid_backward(grad_out, y):
    """``grad_out * y * (1 - y)`` in one elementwise kernel."""
    return _elementwise("sigmoid_backward")(grad_out, y)


def bias_sigmoid(z, b):
    """``sigmoid(z + b)``; ``b`` of shape ``(units,)`` broadcasts over the rows of ``z``."""
    return _elementwise("bias_sigmoid")(z, b)


WARP_PER_ROW_MAX_COLS = 4096  # wider rows get a whole block each


def _threads_for(n_cols: int) -> int:
    return 32 if n_cols <= 32 else 128 if n_cols <= 128 else 256


def softmax_cross_entropy(logits, labels):
    """``(mean loss as a 0-d device array, (softmax(logits) - onehot(labels)) / N)``.

    A label outside ``[0, C)`` makes the loss NaN (checked by the training loop)
    rather than reading out of bounds; no host synchronisation happens here.
    """
    import cupy
    import numpy as np

    n, c = logits.shape
    if logits.dtype not in (cupy.float32, cupy.float64):
        from xpnet import ops

        return ops.softmax_cross_entropy_reference(logits, labels, cupy)
    z = cupy.ascontiguousarray(logits)
    t = cupy.ascontiguousarray(labels, dtype=cupy.int64)
    grad = cupy.empty_like(z)
    row_loss = cupy.empty(n, dtype=z.dtype)
    ctype = "float" if z.dtype == cupy.float32 else "double"
    inv_n = z.dtype.type(1.0 / n)
    if c <= WARP_PER_ROW_MAX_COLS:
        kernel = _softmax_ce_module().get_function(f"xpnet_softmax_ce_warp_rows<{ctype}>")
        kernel((-(-n // 8),), (256,), (z, t, np.int64(n), np.int32(c), inv_n, grad, row_loss))
    else:
        kernel = _softmax_ce_module().get_function(f"xpnet_softmax_ce_rows<{ctype}>")
        kernel((n,), (_threads_for(c),), (z, t, np.int32(c), inv_n, grad, row_loss))
    return row_loss.mean(), grad


def adam_update(param, grad, m, v, *, lr, beta1, beta2, eps, step, eps_form="pytorch"):
    """One Adam step in place on ``param``, ``m``, ``v``: one kernel launch per tensor. Returns them.
    ``eps_form``: see :func:`xpnet.ops.adam_eps`."""
    bias2_sqrt = math.sqrt(1.0 - beta2**step)
    _elementwise("adam")(grad, lr / (1.0 - beta1**step), beta1, beta2, bias2_sqrt, adam_eps(eps, bias2_sqrt, eps_form),
                         param, m, v)
    return param, m, v


def sgd_update(param, grad, velocity, *, lr, momentum, nesterov):
    """SGD step in place; one kernel launch. Returns ``(param, velocity)``."""
    if velocity is None:
        _elementwise("sgd")(grad, lr, param)
    else:
        _elementwise("sgd_momentum")(grad, lr, momentum, bool(nesterov), param, velocity)
    return param, velocity


def matmul(a, b):
    """``a @ b`` through cuBLAS."""
    import cupy

    return cupy.matmul(a, b)


def matmul_into(a, b, out):
    """``out[...] = a @ b``: cuBLAS writes into ``out`` (a view of the flat gradient buffer)."""
    import cupy

    cupy.matmul(a, b, out=out)


def sum_rows_into(g, out):
    """``out[...] = g.sum(axis=0)``: one reduction kernel writing into ``out``."""
    import cupy

    cupy.sum(g, axis=0, out=out)


def captured_training(model, optimizer, X, y, batch_size):
    """A :class:`~xpnet.kernels.cupy_graph.CapturedTraining`: training steps replayed as a CUDA graph."""
    from .cupy_graph import CapturedTraining

    return CapturedTraining(model, optimizer, X, y, batch_size)
