"""A whole training step as one compiled function (Numba, CPU): the CPU's captured step.

The eager fused step (:mod:`xpnet.kernels.numba_cpu`) returns to Python between about
thirty operations per batch: each product, bias and activation pass, the loss, every
backward product and bias sum, and the optimizer update. :func:`train_step` runs all of
them in one call, for any stack of Dense layers with sigmoid, tanh, ReLU or no activation,
softmax cross-entropy, binary cross-entropy or squared error, L2, sample weights, and
Adam or SGD (with or without (Nesterov) momentum):

- the matrix products call BLAS: ``cblas_sgemm``/``cblas_dgemm`` of NumPy's own OpenBLAS (the
  library NumPy's ``matmul`` uses, with the same threads), or ``np.dot`` (SciPy's BLAS) where
  that library is not found; all cores work on them;
- every other pass is a serial loop fused around them: the bias add with the activation,
  the loss with its gradient, the activation backward with the previous layer's bias
  gradient (so no separate row sum); the L2 term joins each layer's gradient just before that
  layer's update, which is ``numba_cpu``'s own Adam or momentum kernel on the slice. Serial on
  purpose: BLAS's threads are still spinning after each product, and threads started then
  wait on them (see :mod:`xpnet.kernels.numba_cpu`);
- nothing is allocated per batch: activations and backward signals live in two flat
  buffers sized for the largest batch, kept on the model and reused across batches, epochs
  and later fits (:meth:`CompiledStep.for_fit`); parameters,
  gradients and optimizer state are the model's and optimizer's own flat buffers, updated
  in place.

One function serves every network: the architecture is data (widths, offsets into the flat
buffers, activation codes), not code, so it compiles once per dtype and loads from Numba's
disk cache afterwards.

The arithmetic is that of the reference path (``Sequential._loss_and_backward`` then
``Optimizer.step``), term for term; it differs only by float rounding: the sums run in
another order, and the sigmoid is ``1 / (1 + exp(-z))`` with a polynomial ``exp`` within
1.4 ulp of the true one (:func:`fast_exp`), exact at the extremes in IEEE arithmetic. :class:`CompiledStep` wraps it with the call signature of
:class:`xpnet.training.JitStep`, and ``tests/test_compiled_step.py`` checks it against the
reference path in float32 and float64.
"""

from __future__ import annotations

import ctypes
import math
from pathlib import Path
from typing import Any

import numba
import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from xpnet.ops import adam_eps

from .numba_cpu import _adam_serial, _sgd_momentum_serial, renamed_copy
from .step_spec import (ACTIVATION_CODES, BCE, LOSS_CODES, RELU, SIGMOID, SOFTMAX_CE, TANH, describe,
                        network_unsupported)

__all__ = ["train_step", "CompiledStep", "unsupported", "fast_exp", "NUMPY_BLAS", "ACTIVATION_CODES", "LOSS_CODES"]

# Fast-math without 'nnan'/'ninf': inf and NaN must propagate as NumPy's do.
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

SGD_PLAIN, SGD_MOMENTUM, SGD_NESTEROV, ADAM = 0, 1, 2, 3

# hyper[]: the optimizer's scalars for this step, in the parameters' dtype.
H_LR, H_BETA1, H_BETA2, H_EPS, H_STEP_SIZE, H_BIAS2_SQRT, H_MOMENTUM = range(7)
N_HYPER = 7


def _jit(fn):
    return numba.njit(fastmath=_FASTMATH, cache=True, nogil=True, error_model="numpy")(fn)


# -- exp that LLVM can vectorise ----------------------------------------------------------------
# This Numba has no SVML, so math.exp in a loop is a scalar libm call per element: a 128x256
# bias + sigmoid pass took 220 us that way against NumPy's SIMD exp at 107 us. fast_exp below
# is Cephes' expf (Cody-Waite reduction, degree-6 polynomial), plain arithmetic that LLVM turns
# into AVX2 code: 48-64 us for the same pass, within 1.4 ulp of exp over the float32 range
# (tests/test_compiled_step.py sweeps it), with exp's inf, 0, denormal and NaN results.
@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose bit pattern is the low 32 bits of the int64 ``bits``."""
    if bits != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.trunc(args[0], ir.IntType(32)), ir.FloatType())

    return types.float32(types.int64), codegen


def fast_exp(x):
    """``exp(x)``: vectorisable in float32 (see above), ``math.exp`` in float64 (Python: math.exp)."""
    return math.exp(x)


# No 'reassoc' here: it would fold the two-constant reduction x - k*C1 - k*C2 into one product.
@overload(fast_exp, jit_options={"fastmath": {"nsz", "contract"}, "error_model": "numpy"})
def _fast_exp_overload(x):
    if x != types.float32:
        return lambda x: math.exp(x)

    def exp32(x):
        hi, lo = np.float32(88.72283), np.float32(-103.97208)  # exp overflows above, is 0 below
        xc = hi if x > hi else x
        xc = lo if xc < lo else xc
        k = np.floor(xc * np.float32(1.44269504088896341) + np.float32(0.5))  # x = k ln2 + r
        r = xc - k * np.float32(0.693359375) - k * np.float32(-2.12194440e-4)
        y = np.float32(1.9875691500e-4)
        y = y * r + np.float32(1.3981999507e-3)
        y = y * r + np.float32(8.3334519073e-3)
        y = y * r + np.float32(4.1665795894e-2)
        y = y * r + np.float32(1.6666665459e-1)
        y = y * r + np.float32(5.0000001201e-1)
        y = y * (r * r) + r + np.float32(1)
        ki = np.int64(k)  # 2^k as two factors, so 2^-149..2^128 never leave the normal range
        half = ki >> 1
        y = y * _float32_from_bits((half + 127) << 23) * _float32_from_bits((ki - half + 127) << 23)
        y = np.float32(np.inf) if x > hi else y
        return np.float32(0) if x < lo else y  # NaN fails every comparison and stays NaN

    return exp32


@_jit
def _bias_activation(z, b, code):
    """In place: ``z[i, j] = act(z[i, j] + b[j])``."""
    n, m = z.shape
    one, zero = z.dtype.type(1), z.dtype.type(0)
    for i in range(n):
        for j in range(m):
            v = z[i, j] + b[j]
            if code == SIGMOID:
                v = one / (one + fast_exp(-v))
            elif code == TANH:
                v = math.tanh(v)
            elif code == RELU:
                v = zero if v < zero else v  # NaN stays NaN, as np.maximum keeps it
            z[i, j] = v


@_jit
def _activation_backward(d, y, code, gb):
    """In place: ``d *= act'(y)`` (``y`` the activation's output), and ``gb[j] = sum_i d[i, j]``
    (the bias gradient of the Dense layer in front of the activation)."""
    n, m = d.shape
    one, zero = d.dtype.type(1), d.dtype.type(0)
    gb[:] = zero
    for i in range(n):
        for j in range(m):
            g = d[i, j]
            if code == SIGMOID:
                g = g * y[i, j] * (one - y[i, j])
            elif code == TANH:
                g = g * (one - y[i, j] * y[i, j])
            elif code == RELU:
                g = g if y[i, j] > zero else zero
            d[i, j] = g
            gb[j] += g


@_jit
def _loss_grad(out, labels, targets, weights, w_scale, code, grad):
    """The loss's value and correct-row count for the output ``out`` ``(N, C)``, and its gradient
    with respect to ``out`` written into ``grad`` (as ``xpnet.losses``). With sample weights
    (``weights`` not empty), row ``i`` counts ``weights[i] * w_scale`` times (``w_scale`` rescales
    the batch's weights to mean 1). Returns ``(loss (float64), correct rows)``."""
    n, c = out.shape
    dt = out.dtype.type
    one, zero, half = dt(1), dt(0), dt(0.5)
    inv_n = dt(1.0 / n)
    weighted = weights.size > 0
    total = 0.0
    correct = 0
    for i in range(n):
        w = weights[i] * w_scale if weighted else one
        scale = inv_n * w if weighted else inv_n
        if code == SOFTMAX_CE:
            m = out[i, 0]
            best = 0
            for j in range(1, c):
                if out[i, j] > m:
                    m = out[i, j]
                    best = j
            s = 0.0
            for j in range(c):
                e = math.exp(out[i, j] - m)
                grad[i, j] = e
                s += e
            label = labels[i]
            row_scale = scale / s
            for j in range(c):
                grad[i, j] *= row_scale
            grad[i, label] -= scale
            total += w * (math.log(s) - (out[i, label] - m))
            if best == label and m == m:  # a row with NaN is never right
                correct += 1
        elif code == BCE:
            right = True
            for j in range(c):
                z, t = out[i, j], targets[i, j]
                e = math.exp(-abs(z))
                total += w * ((z if z > zero else zero) + math.log1p(e) - z * t)
                p = one / (one + e) if z >= zero else e / (one + e)
                grad[i, j] = (p - t) * scale
                if (z > zero) != (t > half):
                    right = False
            if right:
                correct += 1
        else:
            for j in range(c):
                diff = out[i, j] - targets[i, j]
                total += w * 0.5 * diff * diff
                grad[i, j] = diff * scale
    return total / n, correct


_gemm: Any = None  # the product routine (a, trans_a, b, trans_b, out), bound in each compiled twin by _step_with


def _train_step_body(x, labels, targets, weights, params, grads, slot1, slot2, acts, deltas,
               widths, w_off, b_off, act_codes, loss_code, l2, opt_code, hyper):
    """Forward, loss, backward and optimizer update on one batch, in place.

    x : ``(N, widths[0])`` C-contiguous, the batch.
    labels : ``(N,)`` int64 class indices (softmax cross-entropy), else unused (may be empty).
    targets : ``(N, widths[-1])`` float targets (BCE, MSE), else unused (may be ``(0, 0)``).
    weights : ``(N,)`` sample weights, or empty for none.
    params, grads, slot1, slot2 : the flat parameter, gradient and optimizer-state buffers
        (Adam: ``m``, ``v``; SGD with momentum: the velocity in ``slot1``), updated in place.
    acts, deltas : scratch, at least ``N * sum(widths[1:])`` and ``2 * N * max(widths[1:])`` long.
    widths : ``(L + 1,)`` layer widths; ``w_off``, ``b_off`` : ``(L,)`` offsets of each Dense
        layer's ``W`` ``(widths[l], widths[l + 1])`` and ``b`` in ``params`` (and ``grads``).
    act_codes : ``(L,)`` the activation after each Dense layer (0 none, 1 sigmoid, 2 tanh, 3 ReLU).
    loss_code : 0 softmax CE, 1 BCE, 2 MSE. l2 : the L2 coefficient (float64).
    opt_code : 0 SGD, 1 SGD with momentum, 2 Nesterov, 3 Adam; hyper : its scalars (``H_*``),
        in the parameters' dtype.

    Returns ``(loss, correct rows, updated)``: the loss before the update (float64) and whether
    the update was made: not when the loss is not finite, which leaves the parameters and the
    optimizer state as they were (the gradients are filled either way, as the eager step's).
    """
    n = x.shape[0]
    n_layers = widths.size - 1
    dt = params.dtype.type
    weighted = weights.size > 0
    w_total = 0.0
    w_scale = dt(0)
    if weighted:
        w_sum = dt(0)
        for i in range(n):
            w_sum += weights[i]
        w_total = float(w_sum)
        w_scale = dt(n / w_total) if w_total > 0 else dt(0)

    # forward: acts holds each layer's output, (N, widths[l + 1]), back to back
    h = x
    a_off = 0
    for layer in range(n_layers):
        k, m = widths[layer], widths[layer + 1]
        out = acts[a_off:a_off + n * m].reshape((n, m))
        _gemm(h, False, params[w_off[layer]:w_off[layer] + k * m].reshape((k, m)), False, out)
        _bias_activation(out, params[b_off[layer]:b_off[layer] + m], act_codes[layer])
        h = out
        a_off += n * m

    # the loss and its gradient, into the first half of deltas
    half = deltas.size // 2
    c = widths[n_layers]
    d = deltas[:n * c].reshape((n, c))
    loss, correct = _loss_grad(h, labels, targets, weights, w_scale, loss_code, d)

    # backward: d is dL/d(this layer's output), before its activation's backward
    which = 0
    for layer in range(n_layers - 1, -1, -1):
        k, m = widths[layer], widths[layer + 1]
        a_off -= n * m
        y = acts[a_off:a_off + n * m].reshape((n, m))
        _activation_backward(d, y, act_codes[layer], grads[b_off[layer]:b_off[layer] + m])
        h_in = x if layer == 0 else acts[a_off - n * k:a_off].reshape((n, k))
        _gemm(h_in, True, d, False, grads[w_off[layer]:w_off[layer] + k * m].reshape((k, m)))
        if layer > 0:
            which = 1 - which
            d_prev = deltas[which * half:which * half + n * k].reshape((n, k))
            _gemm(d, False, params[w_off[layer]:w_off[layer] + k * m].reshape((k, m)), True, d_prev)
            d = d_prev

    # L2, l2 / (2 n) * sum ||W||^2 with n the batch's weight sum under sample weights: its
    # value joins the loss here, its gradient joins the update below
    l2_scale = 0.0
    if l2 > 0:
        l2_scale = l2 / (w_total if w_total > 0 else 1.0) if weighted else l2 / n
        penalty = 0.0
        for layer in range(n_layers):
            acc = dt(0)
            for i in range(w_off[layer], w_off[layer] + widths[layer] * widths[layer + 1]):
                acc += params[i] * params[i]
            penalty += acc
        loss += 0.5 * l2_scale * penalty
    if not math.isfinite(loss):
        return loss, correct, False

    lam = dt(l2_scale)
    for layer in range(n_layers):  # per Dense layer: W (with its L2 term), then b
        lo, size = w_off[layer], widths[layer] * widths[layer + 1]
        _update(params[lo:lo + size], grads[lo:lo + size], slot1, slot2, lo, opt_code, hyper, lam)
        lo, size = b_off[layer], widths[layer + 1]
        _update(params[lo:lo + size], grads[lo:lo + size], slot1, slot2, lo, opt_code, hyper, dt(0))
    return loss, correct, True


@_jit
def _update(p, g, slot1, slot2, lo, opt_code, hyper, lam):
    """The optimizer's update of the parameters ``p`` (a slice of the flat buffer starting at ``lo``)
    with gradient ``g + lam * p`` (``lam``: the L2 term, added into ``g`` as the eager step adds
    it). The loops run over slices from index 0, so LLVM knows every index is in range and
    vectorises them (an index from ``lo`` kept them scalar)."""
    n = p.size
    if lam != 0:
        for i in range(n):
            g[i] += lam * p[i]
    if opt_code == ADAM:  # the eager step's own kernels (numba_cpu), run on this layer's slice
        _adam_serial(p, g, slot1[lo:lo + n], slot2[lo:lo + n], hyper[H_STEP_SIZE], hyper[H_BETA1], hyper[H_BETA2],
                     hyper[H_BIAS2_SQRT], hyper[H_EPS])
    elif opt_code == SGD_PLAIN:
        lr = hyper[H_LR]
        for i in range(n):
            p[i] -= lr * g[i]
    else:
        _sgd_momentum_serial(p, g, slot1[lo:lo + n], hyper[H_LR], hyper[H_MOMENTUM], opt_code == SGD_NESTEROV)


# -- the products: NumPy's own BLAS where it can be found ------------------------------------
# Numba lowers np.dot to SciPy's BLAS, a second OpenBLAS beside NumPy's, with its own thread pool
# (SciPy 1.17 bundles OpenBLAS 0.3.30, NumPy 2.4 0.3.31). The eager step and the sgemm floor go
# through NumPy's, and with np.dot the compiled step measured 7-11% slower than the eager one at
# 1024-512 and 2048-1024 (README). So the step calls cblas_?gemm in NumPy's own OpenBLAS (the ILP64
# "scipy_openblas64_" build in NumPy's wheels), registered as an LLVM symbol, and keeps np.dot for
# other builds.
_CBLAS_ROW_MAJOR, _CBLAS_NO_TRANS, _CBLAS_TRANS = 101, 111, 112
_GEMM_ARGS = (types.int32, types.int32, types.int32, types.int64, types.int64, types.int64)
_numpy_sgemm = types.ExternalFunction("xpnet_numpy_cblas_sgemm", types.void(
    *_GEMM_ARGS, types.float32, types.uintp, types.int64, types.uintp, types.int64, types.float32, types.uintp, types.int64))
_numpy_dgemm = types.ExternalFunction("xpnet_numpy_cblas_dgemm", types.void(
    *_GEMM_ARGS, types.float64, types.uintp, types.int64, types.uintp, types.int64, types.float64, types.uintp, types.int64))


def _find_numpy_cblas() -> str:
    """Register NumPy's OpenBLAS cblas_sgemm/cblas_dgemm (64-bit integers) for the compiled step;
    returns the library's path, or "" where this NumPy has no such library (then np.dot is used)."""
    root = Path(np.__file__).resolve().parent
    for lib_path in sorted(root.parent.glob("numpy.libs/*scipy_openblas64_*")) + sorted(root.glob(".dylibs/*scipy_openblas64_*")):
        try:
            lib = ctypes.CDLL(str(lib_path))
            sgemm, dgemm = lib.scipy_cblas_sgemm64_, lib.scipy_cblas_dgemm64_
        except (OSError, AttributeError):
            continue
        llvm.add_symbol("xpnet_numpy_cblas_sgemm", ctypes.cast(sgemm, ctypes.c_void_p).value)
        llvm.add_symbol("xpnet_numpy_cblas_dgemm", ctypes.cast(dgemm, ctypes.c_void_p).value)
        return str(lib_path)
    return ""


NUMPY_BLAS = _find_numpy_cblas()


@_jit
def _gemm_numpy_blas(a, trans_a, b, trans_b, out):
    """``out = op(a) @ op(b)``, ``op`` transposing where flagged; C-contiguous 2-D arrays of one dtype."""
    m, n = out.shape
    k = a.shape[0] if trans_a else a.shape[1]
    ta = np.int32(_CBLAS_TRANS if trans_a else _CBLAS_NO_TRANS)
    tb = np.int32(_CBLAS_TRANS if trans_b else _CBLAS_NO_TRANS)
    order = np.int32(_CBLAS_ROW_MAJOR)
    if out.itemsize == 4:
        _numpy_sgemm(order, ta, tb, m, n, k, np.float32(1), a.ctypes.data, a.shape[1], b.ctypes.data, b.shape[1],
                     np.float32(0), out.ctypes.data, n)
    else:
        _numpy_dgemm(order, ta, tb, m, n, k, 1.0, a.ctypes.data, a.shape[1], b.ctypes.data, b.shape[1],
                     0.0, out.ctypes.data, n)


@_jit
def _gemm_np_dot(a, trans_a, b, trans_b, out):
    """As :func:`_gemm_numpy_blas`, through ``np.dot`` (SciPy's BLAS)."""
    if trans_a:
        np.dot(a.T, b, out)
    elif trans_b:
        np.dot(a, b.T, out)
    else:
        np.dot(a, b, out)


def _step_with(gemm: Any, name: str) -> Any:
    """:func:`_train_step_body` compiled with ``_gemm`` bound to ``gemm``: a twin under its own name,
    so each has its own disk-cache entry and only the chosen one is ever compiled."""
    return _jit(renamed_copy(_train_step_body, name, {"_gemm": gemm}))


def _scipy_present() -> bool:
    import importlib.util

    return importlib.util.find_spec("scipy") is not None


train_step = _step_with(_gemm_numpy_blas, "train_step_numpy_blas") if NUMPY_BLAS else _step_with(_gemm_np_dot, "train_step_np_dot")
BLAS_REASON = "" if NUMPY_BLAS or _scipy_present() else (
    "no BLAS for the compiled step: NumPy's OpenBLAS was not found and SciPy (which Numba's np.dot needs) is not installed")


# -- the model-facing wrapper ------------------------------------------------------------------
def unsupported(model: Any, optimizer: Any) -> str:
    """Why :class:`CompiledStep` cannot train ``model`` with ``optimizer`` ("" when it can)."""
    from xpnet.optim import SGD, Adam

    if model.ops.kernel_family != "numba":
        return model.ops.reason or f"the compiled step is Numba's, not the {model.ops.kernel_family} kernels'"
    if BLAS_REASON:
        return BLAS_REASON
    if type(optimizer) not in (Adam, SGD):
        return f"no compiled update for {type(optimizer).__name__} (Adam and SGD have one)"
    return network_unsupported(model)


class CompiledStep:
    """:func:`train_step` bound to one model and optimizer, with its scratch buffers.

    Called like :class:`xpnet.training.JitStep`: ``step(xb, yb, wb) -> (loss, correct)`` on a
    checked batch, updating the model's flat parameters and the optimizer's flat state in
    place. A non-finite loss leaves the parameters as they were (``updated_on_bad_loss`` is
    False), so ``fit`` reports it before that batch's update, as the eager CPU step does.
    """

    updated_on_bad_loss = False

    def __init__(self, model: Any, optimizer: Any, batch_size: int) -> None:
        from xpnet.layers import Dense

        self.model = model
        self._bind(optimizer)  # refuses what has no compiled form, before anything is built
        if model._flat is None:
            raise ValueError("the compiled step needs the model's flat parameter buffers (fused kernels)")
        spec = describe(model)
        self.widths, self.w_off, self.b_off, self.act_codes = spec.widths, spec.w_off, spec.b_off, spec.act_codes
        self.loss_code = spec.loss_code
        dense = [layer for layer in model.layers if isinstance(layer, Dense)]
        dtype = model._flat[0].dtype
        self.acts = np.empty(batch_size * int(self.widths[1:].sum()), dtype=dtype)
        self.deltas = np.empty(2 * batch_size * int(self.widths[1:].max()), dtype=dtype)
        self.batch_size = batch_size
        self.no_labels = np.empty(0, dtype=np.int64)
        self.no_targets = np.empty((0, 0), dtype=dtype)
        self.no_weights = np.empty(0, dtype=dtype)
        self.hyper = np.zeros(N_HYPER, dtype=dtype)
        self.kernel = train_step
        for layer in dense:  # the gradients the step writes are the layers' gradients
            layer.grads = layer.grad_buffers

    @classmethod
    def for_fit(cls, model: Any, optimizer: Any, batch_size: int) -> "CompiledStep":
        """The model's step for batches of up to ``batch_size`` rows, kept on the model so its
        buffers are reused by later fits too (``fit(epochs=1)`` in a loop, ``partial_fit``);
        bound to this fit's ``optimizer``."""
        cache = model.__dict__.setdefault("_compiled_steps", {})
        step = cache.get(batch_size)
        if step is None:
            step = cache[batch_size] = cls(model, optimizer, batch_size)
        else:
            step._bind(optimizer)
        return step

    def _bind(self, optimizer: Any) -> None:
        """Step with ``optimizer`` from now on: its flat state is made once here, not per batch."""
        from xpnet.optim import Adam

        why = unsupported(self.model, optimizer)
        if why:
            raise ValueError(f"no compiled training step for this model: {why}")
        optimizer._ensure_state(self.model.parameters(), np, flat=True)
        self.optimizer, self.is_adam = optimizer, isinstance(optimizer, Adam)

    def __call__(self, xb: Any, yb: Any, wb: Any = None) -> tuple[float, int | None]:
        model, optimizer = self.model, self.optimizer
        if xb.shape[0] > self.batch_size:
            raise ValueError(f"batch of {xb.shape[0]} rows; this compiled step holds buffers for {self.batch_size}")
        params, grads = model._flat
        flat_state = optimizer._flat_state
        t = optimizer.iterations + 1
        hyper = self.hyper
        hyper[H_LR] = optimizer.lr
        if self.is_adam:
            slot1, slot2 = flat_state["m"], flat_state["v"]
            beta1, beta2 = optimizer.beta1, optimizer.beta2
            bias2_sqrt = math.sqrt(1.0 - beta2**t)
            hyper[H_BETA1], hyper[H_BETA2], hyper[H_EPS] = beta1, beta2, adam_eps(optimizer.eps, bias2_sqrt, optimizer.eps_form)
            hyper[H_STEP_SIZE] = optimizer.lr / (1.0 - beta1**t)
            hyper[H_BIAS2_SQRT] = bias2_sqrt
            opt_code = ADAM
        else:
            velocity = flat_state.get("velocity")
            slot1 = slot2 = velocity if velocity is not None else self.no_weights
            hyper[H_MOMENTUM] = optimizer.momentum
            opt_code = SGD_PLAIN if velocity is None else (SGD_NESTEROV if optimizer.nesterov else SGD_MOMENTUM)
        x = np.ascontiguousarray(xb, dtype=params.dtype)
        if self.loss_code == SOFTMAX_CE:
            labels, targets = np.ascontiguousarray(yb, dtype=np.int64), self.no_targets
        else:
            labels, targets = self.no_labels, np.ascontiguousarray(yb, dtype=params.dtype)
        weights = self.no_weights if wb is None else np.ascontiguousarray(wb, dtype=params.dtype)
        loss, correct, updated = self.kernel(
            x, labels, targets, weights, params, grads, slot1, slot2, self.acts, self.deltas,
            self.widths, self.w_off, self.b_off, self.act_codes, self.loss_code, float(model.l2), opt_code, hyper)
        if updated:
            optimizer.iterations = t
        return loss, (int(correct) if model.loss.is_classifier else None)
