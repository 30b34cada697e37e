"""Sequential: a stack of layers with a loss, trained by the hand-written backward pass.

Data flows one way: user arrays are checked and moved to the backend once per
``fit``; batches are gathered on the device; the loss and the count of correct
predictions accumulate on the device and are read back once per epoch.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from ._io import atomic_write
from ._validation import check_features, check_positive_int, check_same_length
from .backend import get_backend
from .callbacks import Callback, EpochPrinter, ProgressBar
from .layers import Dense, Layer, Sigmoid, layer_from_config
from .losses import get_loss
from .ops import Ops
from .optim import Adam, Optimizer, get_optimizer

__all__ = ["Sequential", "History", "NonFiniteLossError", "DeviceMemoryError", "ModelFileError", "estimate_training_bytes",
           "load", "open_xpnet_file", "MODEL_FORMAT"]

MODEL_FORMAT = "xpnet.Sequential"
_PREDICT_CHUNK = 8192
# graphs=None replays steps as a CUDA graph when batch_size * (widest layer) is at most this:
# there the GPU step is bound by launch overhead, and cuBLAS (which a graph cannot hold here)
# is not needed for speed.
GRAPH_AUTO_MAX_ELEMENTS = 1 << 20


def graphs_default() -> bool | None:
    """``XPNET_CUDA_GRAPHS``: 0/false/off/no turns CUDA-graph replay off, 1/true/on/yes forces it."""
    value = os.environ.get("XPNET_CUDA_GRAPHS", "").strip().lower()
    if value in {"0", "false", "off", "no"}:
        return False
    if value in {"1", "true", "on", "yes"}:
        return True
    return None


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; ``epoch`` and ``batch`` say where (1-based)."""

    def __init__(self, epoch: int, batch: int, value: float, before_update: bool = True) -> None:
        self.epoch, self.batch, self.value = epoch, batch, value
        when = ("before that batch's update" if before_update
                else "at the end of the epoch (a GPU reads the loss back once per epoch), so the parameters are non-finite")
        super().__init__(
            f"the training loss became {value} at epoch {epoch}, batch {batch}; training stopped {when}. "
            "Try a lower learning rate (--lr), a smaller batch or float64."
        )


class DeviceMemoryError(MemoryError):
    """The device ran out of memory during ``fit``; the message names the batch size and the estimate."""


def estimate_training_bytes(model: "Sequential", n_samples: int, batch_size: int) -> int:
    """Rough device memory for ``fit``: the data, parameters with gradients and
    optimizer state (Adam: two slots), and a few copies of one batch's activations."""
    itemsize = 4 if model.dtype_name == "float32" else 8
    n_params = sum(int(np.prod(p.shape)) for p in model.parameters())
    widths = [model.n_features] + [layer.n_out for layer in model.layers if isinstance(layer, Dense)]
    data = n_samples * (model.n_features + 1) * itemsize
    params = 4 * n_params * itemsize
    activations = 4 * batch_size * sum(widths) * itemsize
    return data + params + activations


class History(dict):
    """Per-epoch records: ``loss``, ``seconds`` and, where they apply, ``accuracy``,
    ``val_loss``, ``val_accuracy``. Keys read as attributes too (``history.loss``)."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def append(self, logs: dict) -> None:
        for key, value in logs.items():
            self.setdefault(key, []).append(value)


class Sequential:
    """A feed-forward network: layers applied in order, then a loss.

    Parameters
    ----------
    layers : sequence of Layer
        For example ``[Dense(784, 256), Sigmoid(), Dense(256, 10)]``. The last
        layer's output is what the loss sees (logits for classification).
    loss : Loss or str
        ``"softmax_cross_entropy"`` (default), ``"binary_cross_entropy"`` or ``"mse"``.
    backend : str, module or Backend
        See :func:`xpnet.get_backend`.
    dtype : {"float32", "float64"}
        Parameter and activation precision.
    seed : int or None
        Seeds weight initialisation and shuffling.
    fused : bool or None
        Fused kernels on/off (``None`` follows ``XPNET_FUSED``, default on).
    l2 : float
        L2 penalty ``l2 / (2N) * sum ||W||^2`` on the Dense weights (not the biases).
    graphs : bool or None
        Replay each training step as one CUDA graph (CuPy with fused kernels only; see
        :mod:`xpnet.kernels.cupy_graph`). ``None`` (default, or ``XPNET_CUDA_GRAPHS``)
        does so where it pays: Adam or SGD, and ``batch_size`` times the widest layer at
        most ``GRAPH_AUTO_MAX_ELEMENTS``. ``True`` requires it; ``False`` never does it.
        The arithmetic is the same either way, except that the captured step's matrix
        products are xpnet's own kernel instead of cuBLAS (same result up to rounding).
    """

    def __init__(
        self,
        layers: Sequence[Layer],
        loss: Any = "softmax_cross_entropy",
        backend: Any = None,
        dtype: str = "float32",
        seed: int | None = None,
        fused: bool | None = None,
        l2: float = 0.0,
        graphs: bool | None = None,
    ) -> None:
        layers = list(layers) if isinstance(layers, Iterable) else layers
        if not isinstance(layers, list) or not layers:
            raise ValueError("layers must be a non-empty sequence of Layer objects")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{i}] must be a Layer, got {type(layer).__name__}")
        dense = [layer for layer in layers if isinstance(layer, Dense)]
        if not dense:
            raise ValueError("layers must contain at least one Dense layer")
        for prev, nxt in zip(dense, dense[1:]):
            if prev.n_out != nxt.n_in:
                raise ValueError(f"layer widths do not chain: {prev!r} outputs {prev.n_out} but {nxt!r} expects {nxt.n_in}")
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        if isinstance(l2, bool) or not isinstance(l2, (int, float)) or not l2 >= 0 or not math.isfinite(l2):
            raise ValueError(f"l2 must be a finite number >= 0, got {l2!r}")
        if graphs not in (None, True, False):
            raise ValueError(f"graphs must be True, False or None, got {graphs!r}")
        self._requested = {"fused": fused, "graphs": graphs}  # the options as given, for pickling
        self.layers = layers
        self.loss = get_loss(loss)
        self.backend = get_backend(backend)
        self.dtype_name = dtype
        self.dtype = self.backend.dtype(dtype)
        self.seed = seed
        self.l2 = float(l2)
        self.ops = Ops(self.backend, fused)
        self.rng = np.random.default_rng(seed)
        self.n_features = dense[0].n_in
        self.n_outputs = dense[-1].n_out
        self.epochs_trained = 0
        for i, layer in enumerate(layers):
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            init = "he" if type(nxt).__name__ == "ReLU" else "glorot"
            layer.build(self.backend, self.ops, self.dtype, self.rng, init=init)
        self._first_param_layer = next(i for i, layer in enumerate(layers) if layer.params)
        # Dense followed by Sigmoid runs as matmul + one fused bias-add-sigmoid pass.
        self._fuse_bias = {
            i for i, layer in enumerate(layers[:-1]) if isinstance(layer, Dense) and isinstance(layers[i + 1], Sigmoid)
        }
        # With fused kernels, parameters and gradients are views of two flat buffers, so the
        # optimizer updates every parameter with one kernel call (one launch on a GPU).
        self._flat = self._pack_parameters() if self.ops.fused else None
        self.graphs = graphs_default() if graphs is None else graphs
        if self.graphs and self.ops.captured_training is None:
            why = self.ops.reason or f"the {self.ops.kernel_family} kernels have no CUDA-graph replay"
            raise ValueError(f"graphs=True needs the CuPy backend with fused kernels; this model cannot ({why})")
        self._captured = None  # the CapturedTraining of the last fit, while its graph may be replayed

    def _pack_parameters(self) -> tuple[Any, Any]:
        """Move the parameters into one flat buffer (views per layer) and give each layer
        views of a flat gradient buffer to write into. Returns ``(flat_params, flat_grads)``."""
        from .optim import flat_views

        params = self.parameters()
        shapes = [tuple(p.shape) for p in params]
        flat_params, param_views = flat_views(self.backend.xp, shapes, self.dtype, self.backend.device)
        flat_grads, grad_views = flat_views(self.backend.xp, shapes, self.dtype, self.backend.device)
        for view, p in zip(param_views, params):
            view[...] = p
        param_iter, grad_iter = iter(param_views), iter(grad_views)
        for layer in self.layers:
            if layer.params:
                layer.params = [next(param_iter) for _ in layer.params]
                layer.grad_buffers = [next(grad_iter) for _ in layer.params]
        return flat_params, flat_grads

    # -- parameters ---------------------------------------------------------------
    def parameters(self) -> list:
        """Parameter arrays in layer order: ``[W0, b0, W1, b1, ...]``."""
        return [p for layer in self.layers for p in layer.params]

    def _grads(self) -> list:
        return [g for layer in self.layers for g in layer.grads]

    def set_parameters(self, arrays: Sequence[Any]) -> None:
        """Replace the parameters (same order and shapes as :meth:`parameters`) with copies of ``arrays``."""
        current = self.parameters()
        if len(arrays) != len(current):
            raise ValueError(f"expected {len(current)} parameter arrays, got {len(arrays)}")
        new = []
        for i, (old, a) in enumerate(zip(current, arrays)):
            arr = self.backend.asarray(a, dtype=self.dtype, name=f"parameter {i}")
            if tuple(arr.shape) != tuple(old.shape):
                raise ValueError(f"parameter {i} must have shape {tuple(old.shape)}, got {tuple(arr.shape)}")
            new.append(arr)
        if self._flat is not None:  # write into the flat buffer's views
            for view, arr in zip(current, new):
                view[...] = arr
            return
        self._assign_parameters([self.backend.xp.asarray(arr, copy=True) for arr in new])  # the model owns its parameters

    def _assign_parameters(self, arrays: Sequence[Any]) -> None:
        """Make ``arrays`` (in :meth:`parameters` order) the layers' parameters. An optimizer step
        returns new arrays on libraries without in-place updates (JAX, Dask); this stores them."""
        it = iter(arrays)
        for layer in self.layers:
            if layer.params:
                layer.params = [next(it) for _ in layer.params]

    # -- forward / backward ----------------------------------------------------------
    def forward(self, x: Any) -> Any:
        """Network output for a batch ``x`` of shape ``(N, n_features)`` already on the backend."""
        h = x
        skip = False
        for i, layer in enumerate(self.layers):
            if skip:
                skip = False
                continue
            if i in self._fuse_bias:
                z = layer.forward(h, add_bias=False)
                h = self.layers[i + 1].forward_with_bias(z, layer.b)
                skip = True
            else:
                h = layer.forward(h)
        return h

    def _backward(self, grad: Any) -> None:
        for i in range(len(self.layers) - 1, self._first_param_layer - 1, -1):
            grad = self.layers[i].backward(grad, need_input_grad=i > self._first_param_layer)

    def _loss_and_backward(self, xb: Any, yb: Any) -> tuple[Any, Any]:
        """Forward, loss, backward on one batch; fills each layer's grads. Returns (0-d loss, output)."""
        out = self.forward(xb)
        loss, grad = self.loss.value_and_grad(out, yb, self.ops)
        self._backward(grad)
        if self.l2:
            xp, inv_n = self.backend.xp, 1.0 / xb.shape[0]
            penalty = 0.0
            for layer in self.layers:
                if isinstance(layer, Dense):
                    w = layer.W
                    penalty = penalty + xp.sum(w * w)
                    if layer.grad_buffers is not None:  # a view of the flat gradient buffer: in place
                        layer.grads[0] += (self.l2 * inv_n) * w
                    else:  # a fresh array: rebind (correct on libraries whose += does not mutate)
                        layer.grads[0] = layer.grads[0] + (self.l2 * inv_n) * w
            loss = loss + (0.5 * self.l2 * inv_n) * penalty
        return loss, out

    def _check_data(self, X: Any, y: Any, names: tuple[str, str] = ("X", "y")) -> tuple[Any, Any]:
        Xd = check_features(X, self.backend, self.dtype, self.n_features, name=names[0])
        check_same_length(Xd, y, names)
        yd = self.loss.prepare_targets(y, Xd.shape[0], self.n_outputs, self.backend, self.dtype, name=names[1])
        return Xd, yd

    def value_and_grad(self, X: Any, y: Any) -> tuple[float, list]:
        """Mean loss on ``(X, y)`` and its gradients, in the order of :meth:`parameters`.

        No parameter changes.
        """
        Xd, yd = self._check_data(X, y)
        loss, _ = self._loss_and_backward(Xd, yd)
        grads = self._grads()
        if self._flat is not None:  # views of a buffer the next backward pass overwrites
            grads = [self.backend.xp.asarray(g, copy=True) for g in grads]
        return float(loss), grads

    # -- training -----------------------------------------------------------------------
    def fit(
        self,
        X: Any,
        y: Any,
        *,
        epochs: int = 10,
        batch_size: int = 128,
        optimizer: Optimizer | str | None = None,
        validation_data: tuple[Any, Any] | None = None,
        shuffle: bool = True,
        verbose: int = 0,
        callbacks: Sequence[Callback] = (),
    ) -> History:
        """Train with mini-batches; returns a :class:`History` of per-epoch figures.

        Parameters
        ----------
        X : array ``(N, n_features)``; y : targets as the loss expects them.
        epochs : int >= 0; batch_size : int >= 1 (a last, smaller batch is kept).
        optimizer : Optimizer or name; default ``Adam(1e-3)``. Pass the same object to
            several ``fit`` calls to continue training with its state.
        validation_data : ``(X_val, y_val)`` evaluated after each epoch.
        shuffle : reshuffle the samples each epoch (seeded by the model's ``seed``).
        verbose : 0 silent, 1 a line per epoch, 2 a progress bar and a line per epoch.
        callbacks : :class:`~xpnet.callbacks.Callback` objects.

        Training loss and accuracy are running means over the epoch's batches
        (computed before each batch's update), not an extra pass.
        """
        epochs = check_positive_int("epochs", epochs, minimum=0)
        batch_size = check_positive_int("batch_size", batch_size)
        if verbose not in (0, 1, 2, False, True):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        optimizer = Adam() if optimizer is None else get_optimizer(optimizer)
        try:
            return self._fit(X, y, epochs, batch_size, optimizer, validation_data, shuffle, verbose, callbacks)
        except Exception as exc:
            if not self.backend.is_out_of_memory(exc):
                raise
            n = getattr(X, "shape", (len(X),))[0]
            need = estimate_training_bytes(self, n, batch_size)
            raise DeviceMemoryError(
                f"the {self.backend.name} device ran out of memory training with batch_size={batch_size} "
                f"on {n} samples; this fit needs about {need / 2**20:.0f} MiB of device memory "
                f"(data, parameters, gradients, optimizer state and activations). Try a smaller "
                f"batch_size or free device memory. ({exc})"
            ) from exc

    def _fit(self, X, y, epochs, batch_size, optimizer, validation_data, shuffle, verbose, callbacks) -> History:
        Xd, yd = self._check_data(X, y)
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (X_val, y_val)")
            val = self._check_data(*validation_data, names=("validation_data[0]", "validation_data[1]"))
        captured = self._captured_training(optimizer, Xd, yd, batch_size)
        optimizer._ensure_state(self.parameters(), self.backend.xp, flat=self._flat is not None)
        callbacks = list(callbacks)
        if verbose == 2:
            callbacks.append(ProgressBar())
        elif verbose:
            callbacks.append(EpochPrinter())

        history = History()
        for _ in range(epochs):
            if captured is not None:
                logs = self._train_epoch_captured(captured, Xd.shape[0], batch_size, shuffle, callbacks)
            else:
                logs = self._train_epoch(Xd, yd, batch_size, optimizer, shuffle, callbacks)
            if val is not None:
                logs.update({f"val_{k}": v for k, v in self._evaluate_arrays(*val).items()})
            history.append(logs)
            for cb in callbacks:
                cb.on_epoch_end(self.epochs_trained, logs)
            self.epochs_trained += 1
        return history

    def uses_graphs(self, optimizer: Any, batch_size: int, n_samples: int) -> tuple[bool, str]:
        """Whether ``fit`` would replay its steps as a CUDA graph, and why not when it would not."""
        if self.graphs is False:
            return False, "graphs=False"
        if self.ops.captured_training is None:
            return False, self.ops.reason or f"no CUDA-graph replay for the {self.backend.name} backend"
        from .kernels.cupy_graph import capturable_optimizer

        why = capturable_optimizer(optimizer)
        if not why and n_samples < batch_size:
            why = f"no full batch of {batch_size} in {n_samples} samples"
        widest = max([self.n_features] + [layer.n_out for layer in self.layers if isinstance(layer, Dense)])
        if not why and self.graphs is None and batch_size * widest > GRAPH_AUTO_MAX_ELEMENTS:
            why = (f"batch_size * widest layer = {batch_size * widest} > {GRAPH_AUTO_MAX_ELEMENTS}: "
                   "cuBLAS outruns the captured step's products there")
        if why and self.graphs:
            raise ValueError(f"graphs=True, but this fit cannot replay a CUDA graph: {why}")
        return not why, why

    def _captured_training(self, optimizer, Xd, yd, batch_size):
        """A new CapturedTraining for this fit's data, or None (checked before any state changes)."""
        use, _ = self.uses_graphs(optimizer, batch_size, Xd.shape[0])
        if not use:
            return None
        self._captured = self.ops.captured_training(self, optimizer, Xd, yd, batch_size)
        return self._captured

    def _train_epoch_captured(self, captured, n, batch_size, shuffle, callbacks) -> dict:
        """One epoch of CUDA-graph replays: one launch per full batch, one device read per epoch."""
        backend = self.backend
        n_batches = -(-n // batch_size)
        epoch_no = self.epochs_trained
        for cb in callbacks:
            cb.on_epoch_begin(epoch_no, n_batches)
        backend.synchronize()
        start = time.perf_counter()
        captured.begin_epoch(backend.permutation(n, self.rng) if shuffle else None)
        with self.ops.training_loop():
            for b in range(n_batches):
                hi = min(n, (b + 1) * batch_size)
                captured.step(hi - b * batch_size)
                for cb in callbacks:
                    cb.on_batch_end(b, {"loss_sum": captured.loss_sum, "seen": hi, "batch_size": batch_size})
        figures = captured.end_epoch()  # synchronises
        seconds = time.perf_counter() - start
        if figures["first_bad_batch"] >= 0:
            raise NonFiniteLossError(epoch_no + 1, figures["first_bad_batch"] + 1, figures["bad_value"], before_update=False)
        logs = {"loss": figures["loss_sum"] / n}
        if self.loss.is_classifier:
            logs["accuracy"] = figures["correct"] / n
        logs["seconds"] = seconds
        return logs

    def _train_epoch(self, Xd, yd, batch_size, optimizer, shuffle, callbacks) -> dict:
        xp, backend = self.backend.xp, self.backend
        n = Xd.shape[0]
        n_batches = -(-n // batch_size)
        epoch_no = self.epochs_trained
        for cb in callbacks:
            cb.on_epoch_begin(epoch_no, n_batches)
        check_each_batch = not backend.is_cupy  # on a GPU, read the loss back once per epoch
        batch_losses = []
        loss_sum = xp.zeros((), dtype=self.dtype, device=backend.device)
        correct = xp.zeros((), dtype=backend.int_dtype, device=backend.device) if self.loss.is_classifier else None
        backend.synchronize()
        start = time.perf_counter()
        order = backend.permutation(n, self.rng) if shuffle else None
        params = self.parameters()
        with self.ops.training_loop():
            for b in range(n_batches):
                lo, hi = b * batch_size, min(n, (b + 1) * batch_size)
                if order is None:
                    xb, yb = Xd[lo:hi, ...], yd[lo:hi, ...]
                else:
                    idx = order[lo:hi]
                    xb, yb = xp.take(Xd, idx, axis=0), xp.take(yd, idx, axis=0)
                loss, out = self._loss_and_backward(xb, yb)
                if check_each_batch:
                    value = float(loss)
                    if not math.isfinite(value):
                        raise NonFiniteLossError(epoch_no + 1, b + 1, value)
                else:
                    batch_losses.append(loss)
                new_params = optimizer.step(params, self._grads(), self.ops, flat=self._flat)
                if new_params is not params:
                    params = new_params
                    self._assign_parameters(params)
                loss_sum = loss_sum + loss * float(hi - lo)
                if correct is not None:
                    correct = correct + self.loss.n_correct(out, yb, xp)
                for cb in callbacks:
                    cb.on_batch_end(b, {"loss_sum": loss_sum, "seen": hi, "batch_size": batch_size})
        backend.synchronize()
        seconds = time.perf_counter() - start
        if batch_losses:  # device backends: one read-back per epoch
            values = backend.to_numpy(xp.stack(batch_losses))
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                raise NonFiniteLossError(epoch_no + 1, int(bad[0]) + 1, float(values[bad[0]]), before_update=False)
        logs = {"loss": float(loss_sum) / n}
        if correct is not None:
            logs["accuracy"] = int(correct) / n
        logs["seconds"] = seconds
        return logs

    # -- inference -------------------------------------------------------------------------
    def _outputs(self, Xd: Any) -> Any:
        xp = self.backend.xp
        n = Xd.shape[0]
        if n <= _PREDICT_CHUNK:
            return self.forward(Xd)
        chunks = [Xd[i : min(n, i + _PREDICT_CHUNK), ...] for i in range(0, n, _PREDICT_CHUNK)]
        return xp.concat([self.forward(chunk) for chunk in chunks], axis=0)

    def predict(self, X: Any) -> Any:
        """Class indices ``(N,)`` for classification losses, outputs ``(N, k)`` otherwise (backend arrays)."""
        Xd = check_features(X, self.backend, self.dtype, self.n_features)
        return self.loss.predict(self._outputs(Xd), self.ops)

    def predict_proba(self, X: Any) -> Any:
        """Class probabilities: softmax ``(N, C)``, or sigmoid outputs for binary cross-entropy."""
        Xd = check_features(X, self.backend, self.dtype, self.n_features)
        return self.loss.predict_proba(self._outputs(Xd), self.ops)

    def _evaluate_arrays(self, Xd: Any, yd: Any) -> dict:
        xp = self.backend.xp
        n = Xd.shape[0]
        total = 0.0
        correct = 0
        for i in range(0, n, _PREDICT_CHUNK):
            j = min(n, i + _PREDICT_CHUNK)  # out-of-bounds slice stops are outside the standard
            xb, yb = Xd[i:j, ...], yd[i:j, ...]
            out = self.forward(xb)
            total += float(self.loss.value(out, yb, self.ops)) * xb.shape[0]
            if self.loss.is_classifier:
                correct += int(self.loss.n_correct(out, yb, xp))
        result = {"loss": total / n}
        if self.loss.is_classifier:
            result["accuracy"] = correct / n
        return result

    def evaluate(self, X: Any, y: Any) -> dict:
        """``{"loss": float, "accuracy": float}`` (accuracy for classification losses only)."""
        return self._evaluate_arrays(*self._check_data(X, y))

    # -- persistence -------------------------------------------------------------------------
    def config(self) -> dict:
        """The JSON description of the architecture that :meth:`save` writes."""
        from . import __version__

        return {
            "format": MODEL_FORMAT,
            "format_version": FORMAT_VERSION,
            "xpnet_version": __version__,
            "layers": [layer.config() for layer in self.layers],
            "loss": self.loss.config(),
            "dtype": self.dtype_name,
            "l2": self.l2,
        }

    def save(self, path: str | Path) -> Path:
        """Write parameters and architecture to a ``.npz`` (no pickle), atomically."""
        arrays = {f"param_{i}": self.backend.to_numpy(p) for i, p in enumerate(self.parameters())}
        arrays["__config__"] = np.frombuffer(json.dumps(self.config()).encode(), dtype=np.uint8)
        return atomic_write(path, lambda fh: np.savez(fh, **arrays))

    def summary(self) -> str:
        """A table of the layers with their output shapes and parameter counts, then the totals,
        backend, kernels and dtype (what ``xpnet info MODEL`` prints)."""
        rows, width = [], self.n_features
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Dense):
                width = layer.n_out
                name = f"Dense({layer.n_in} -> {layer.n_out})"
            else:
                name = type(layer).__name__
            count = sum(int(np.prod(p.shape)) for p in layer.params)
            rows.append((str(i), name, f"(N, {width})", f"{count:,}"))
        header = ("#", "layer", "output shape", "parameters")
        widths = [max(len(r[c]) for r in rows + [header]) for c in range(4)]
        line = lambda r: "  ".join(r[c].ljust(widths[c]) if c < 3 else r[c].rjust(widths[c]) for c in range(4))  # noqa: E731
        total = sum(int(np.prod(p.shape)) for p in self.parameters())
        kernels = f"fused {self.ops.kernel_family}" if self.ops.fused else "reference ops"
        return "\n".join([
            f"Sequential: input (N, {self.n_features}), loss {self.loss.name}",
            line(header), *(line(r) for r in rows),
            f"total parameters: {total:,} ({self.dtype_name}, {total * (4 if self.dtype_name == 'float32' else 8) / 2**20:.2f} MiB)",
            f"backend: {self.backend.name} on {self.backend.device} ({kernels})",
        ])

    # -- pickling (pickle, copy.deepcopy, joblib) -------------------------------------------
    def __getstate__(self) -> dict:
        """The architecture, host copies of the parameters, the backend by name and the RNG:
        no module object and no device memory, so a model pickled on a GPU loads anywhere."""
        return {
            "config": self.config(),
            "params": [np.array(self.backend.to_numpy(p), copy=True) for p in self.parameters()],
            "backend": self.backend.name,
            "seed": self.seed,
            "options": dict(self._requested),
            "rng_state": self.rng.bit_generator.state,
            "epochs_trained": self.epochs_trained,
        }

    def __setstate__(self, state: dict) -> None:
        from .backend import restore_backend

        config = state["config"]
        backend = restore_backend(state["backend"])
        options = dict(state["options"])
        if options.get("graphs") and not backend.is_cupy:  # unpickled away from a GPU: no replay to require
            options["graphs"] = None
        layers, arguments = constructor_arguments(config)
        self.__init__(layers, backend=backend, seed=state["seed"], **arguments, **options)
        self.set_parameters(state["params"])
        self.rng.bit_generator.state = state["rng_state"]
        self.epochs_trained = state["epochs_trained"]

    def __repr__(self) -> str:
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Sequential([{inner}], loss={self.loss.name!r}, backend={self.backend.name!r}, dtype={self.dtype_name!r})"


FORMAT_VERSION = 1  # the newest format_version this xpnet reads and the one it writes


def constructor_arguments(config: dict) -> tuple[list, dict]:
    """The layers and the ``loss``/``dtype``/``l2`` arguments that rebuild a Sequential from
    :meth:`Sequential.config` (for ``load`` and unpickling)."""
    layers = [layer_from_config(c) for c in config["layers"]]
    return layers, {"loss": config["loss"], "dtype": config["dtype"], "l2": config.get("l2", 0.0)}


def _file_kind(expected: str) -> str:
    return "checkpoint" if expected.endswith("Checkpoint") else "model"


class ModelFileError(ValueError):
    """A file is not a readable xpnet model or checkpoint (empty, truncated, another format,
    or a newer format version); the message names the file and what is wrong with it."""


def read_npz_config(data: Any, path: Any, expected: str) -> dict:
    """The JSON description stored in an xpnet ``.npz`` (``__config__``), checked for its format."""
    what = _file_kind(expected)
    if "__config__" not in data.files:
        raise ModelFileError(f"{path} is not an xpnet {what} file (a .npz archive without xpnet's description)")
    try:
        config = json.loads(bytes(data["__config__"]).decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path} is not an xpnet {what} file (its description is not valid JSON: {exc})") from None
    if not isinstance(config, dict) or config.get("format") != expected:
        found = config.get("format") if isinstance(config, dict) else None
        raise ModelFileError(f"{path} holds {found!r}, not an xpnet {what} ({expected!r})")
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(f"{path} has format version {version!r}; this xpnet ({config.get('xpnet_version', '?')} wrote it) "
                             f"reads versions up to {FORMAT_VERSION}: upgrade xpnet")
    return config


@contextlib.contextmanager
def open_xpnet_file(path: str | Path, expected: str) -> Iterator[tuple[Any, dict]]:
    """Open an xpnet ``.npz`` (model or checkpoint): yields ``(arrays, config)``.

    Never unpickles. Any way the file can be wrong (missing, empty, not a .npz, truncated or
    corrupt, another format, a newer version) is one exception with a one-line message naming
    the file: ``FileNotFoundError`` when it is missing, :class:`ModelFileError` otherwise.
    """
    what = _file_kind(expected)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} file at {path}" + (" (it is a directory)" if path.is_dir() else ""))
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path} is empty: not an xpnet {what} file")
    broken = (zipfile.BadZipFile, EOFError, zlib.error, KeyError, OSError, ValueError)
    try:
        data = np.load(path, allow_pickle=False)
    except broken:
        raise ModelFileError(f"{path} is not an xpnet {what} file (not a readable .npz archive; truncated or another format)") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ModelFileError(f"{path} is not an xpnet {what} file (a single NumPy array, not a .npz archive)")
    with data:
        try:
            config = read_npz_config(data, path, expected)
        except ModelFileError:
            raise
        except broken as exc:
            raise ModelFileError(f"{path} is truncated or corrupt ({type(exc).__name__}: {exc})") from None
        try:
            yield data, config
        except ModelFileError:
            raise
        except (zipfile.BadZipFile, EOFError, zlib.error, KeyError) as exc:
            raise ModelFileError(f"{path} is truncated or corrupt ({type(exc).__name__}: {exc})") from None


def load(path: str | Path, backend: Any = None, fused: bool | None = None) -> Sequential:
    """Load a model written by :meth:`Sequential.save` onto ``backend``."""
    with open_xpnet_file(path, MODEL_FORMAT) as (data, config):
        try:
            layers, arguments = constructor_arguments(config)
            model = Sequential(layers, backend=backend, fused=fused, **arguments)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{path} describes a network xpnet cannot build ({exc})") from None
        model.set_parameters([data[f"param_{i}"] for i in range(len(model.parameters()))])
    return model
