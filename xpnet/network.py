"""Sequential: a stack of layers with a loss, trained by the hand-written backward pass.

The model holds the layers, the forward and backward pass, the parameters and their
files; the loops that train it (eager, captured on a GPU, streamed) are in
:mod:`xpnet.training`, and out-of-memory data sources in :mod:`xpnet.sources`.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from . import training
from ._io import atomic_write
from ._validation import cast_finite, check_features, check_flag, check_same_length, check_seed, float_dtype_name
from .backend import get_backend
from .callbacks import Callback
from .layers import Activation, Dense, Layer, Sigmoid, layer_from_config
from .losses import get_loss
from .ops import Ops
from .optim import Optimizer
from .sources import as_source
from .training import (  # noqa: F401 - re-exported: these names have always been importable from here
    GRAPH_AUTO_MAX_ELEMENTS, DeviceMemoryError, History, NonFiniteLossError, estimate_training_bytes, graphs_default,
)

__all__ = ["Sequential", "History", "NonFiniteLossError", "DeviceMemoryError", "ModelFileError", "estimate_training_bytes",
           "load", "open_xpnet_file", "MODEL_FORMAT"]

MODEL_FORMAT = "xpnet.Sequential"


# Sequential's matmul_precision (kernels/cuda_step.PRECISIONS maps them to the products' kernels)
MATMUL_PRECISIONS = ("highest", "tf32", "bf16")


def check_matmul_precision(value: Any) -> str:
    """``value`` if it is one of :data:`MATMUL_PRECISIONS`, else a ``ValueError`` naming them."""
    if value not in MATMUL_PRECISIONS:
        raise ValueError(f"matmul_precision must be one of {MATMUL_PRECISIONS}, got {value!r}")
    return value


class Sequential:
    """A feed-forward network: layers applied in order, then a loss.

    Parameters
    ----------
    layers : sequence of Layer
        For example ``[Dense(784, 256), Sigmoid(), Dense(256, 10)]``. The last
        layer's output is what the loss sees (logits for classification).
    loss : Loss or str
        ``"softmax_cross_entropy"`` (default), ``"binary_cross_entropy"``, ``"mse"`` (``1/(2N)``
        times the sum over rows and outputs) or ``"squared_error"`` (scikit-learn's MLPRegressor
        convention: the value also averaged over outputs, the gradient still MSE's; see
        :class:`xpnet.losses.SquaredError`).
    backend : str, module or Backend
        See :func:`xpnet.get_backend`.
    dtype : {"float32", "float64"}
        Parameter and activation precision.
    seed : int or None
        Seeds weight initialisation and shuffling.
    fused : bool or None
        Fused kernels on/off (``None`` follows ``XPNET_FUSED``, default on). On, a backend with
        no kernel family (only NumPy's Numba and CuPy's kernels exist) runs the reference path,
        the same arithmetic; ``model.ops`` says which runs and why (``Ops.reason``).
    l2 : float
        L2 penalty ``l2 / (2N) * sum ||W||^2`` on the Dense weights (not the biases).
    graphs : bool or None
        Replay each training step as one CUDA graph (CuPy with fused kernels only; see
        :mod:`xpnet.kernels.cupy_graph`). ``None`` (default, or ``XPNET_CUDA_GRAPHS``)
        does so where it pays: Adam or SGD, and ``batch_size`` times the widest layer at
        most ``GRAPH_AUTO_MAX_ELEMENTS``. ``True`` requires it; ``False`` never does it.
        The arithmetic is the same either way, except that the captured step's matrix
        products are xpnet's own kernel instead of cuBLAS (same result up to rounding).
    jit : bool
        JAX only: compile each training step (forward, loss, backward and the optimizer
        update, this same code) with ``jax.jit`` (see :class:`xpnet.training.JitStep`).
        Off by default; ``True`` on another backend is a ``ValueError``.
    compiled : bool or None
        NumPy with fused (Numba) kernels: run each training step (forward, loss, backward
        and the optimizer update) as one compiled Numba function around BLAS, with buffers
        reused across batches (:mod:`xpnet.kernels.numba_step`). ``None`` (default) does so
        wherever it applies (Dense layers with sigmoid, tanh or ReLU, the three losses, Adam
        or SGD; see :meth:`uses_compiled_step`); ``True`` requires it; ``False`` runs the
        eager fused step. Same arithmetic as the eager step, up to float rounding.
    matmul_precision : {"highest", "tf32", "bf16"}
        The precision of the training step's matrix products (the names of PyTorch's and JAX's
        knobs). ``"highest"`` (default): float32 or float64 products, as everywhere else.
        ``"tf32"`` / ``"bf16"``: the products run on the GPU's tensor cores with their inputs
        rounded to TF32 (10 mantissa bits) or bfloat16 (7), summed in float32; activations,
        loss and the optimizer update stay float32. They need a float32 model on CuPy with
        fused kernels, a GPU of compute capability 8.0 or newer, and a fit that replays the
        captured CUDA-graph step (see ``graphs``; each step is then
        :mod:`xpnet.kernels.cuda_step`'s fused plan); anything else is a ``ValueError``, never
        a silent fallback. Inference (``predict``, validation scores) stays at full precision.
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
        jit: bool = False,
        compiled: bool | None = None,
        matmul_precision: str = "highest",
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
        dtype = float_dtype_name(dtype)
        if isinstance(l2, bool) or not isinstance(l2, numbers.Real) or not l2 >= 0 or not math.isfinite(l2):
            raise ValueError(f"l2 must be a finite number >= 0, got {l2!r}")
        for name, flag in (("fused", fused), ("graphs", graphs), ("compiled", compiled)):
            check_flag(name, flag, none_allowed=True)
        check_flag("jit", jit)
        check_matmul_precision(matmul_precision)  # with the other options, before any work is done
        # the options as given, for pickling
        self._requested = {"fused": fused, "graphs": graphs, "jit": jit, "compiled": compiled,
                           "matmul_precision": matmul_precision}
        self.layers = layers
        self.loss = get_loss(loss)
        if self.loss.is_classifier and isinstance(layers[-1], Activation):  # Keras' and PyTorch's BCELoss idiom
            squash = "sigmoid" if self.loss.name == "binary_cross_entropy" else "softmax"
            harm = ("the sigmoid is applied twice, every probability is above 0.5 and every prediction is class 1"
                    if squash == "sigmoid" and isinstance(layers[-1], Sigmoid) else
                    f"the {squash} would see squashed logits")
            raise ValueError(f"loss={self.loss.name!r} takes the last Dense layer's logits and applies the {squash} "
                             f"itself, but the layers end with {layers[-1]!r} ({harm}); remove it: predict_proba "
                             "gives the probabilities")
        if self.loss.name == "softmax_cross_entropy" and dense[-1].n_out < 2:  # it would train nothing
            raise ValueError("loss='softmax_cross_entropy' needs at least 2 outputs, but the last Dense layer has "
                             f"{dense[-1].n_out}: a softmax over one logit is always 1, so the loss is 0 and nothing "
                             "trains; use 2 or more outputs, or loss='binary_cross_entropy' with one")
        self.backend = get_backend(backend)
        self.dtype_name = dtype
        self.dtype = self.backend.dtype(dtype)
        self.seed = check_seed("seed", seed)
        self.l2 = float(l2)
        if jit and not self.backend.is_jax:
            raise ValueError(f"jit=True compiles the step with jax.jit and needs the JAX backend, not {self.backend.name!r}")
        self.jit = bool(jit)
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
        self.matmul_precision = "highest"
        self.set_matmul_precision(matmul_precision)
        self.compiled = compiled
        if compiled and self.ops.kernel_family != "numba":
            why = self.ops.reason or f"the {self.ops.kernel_family} kernels have no compiled CPU step"
            raise ValueError(f"compiled=True needs the NumPy backend with fused (Numba) kernels; this model cannot ({why})")
        self._captured = None  # the CapturedTraining of the last fit, while its graph may be replayed

    def set_matmul_precision(self, matmul_precision: str) -> None:
        """Set ``matmul_precision`` (see the class docstring) for later fits, after checking that this
        model can run it; a ``ValueError`` says why not, and leaves the model as it was."""
        why = self._tensor_cores_unavailable(check_matmul_precision(matmul_precision))
        if why:
            raise ValueError(f"matmul_precision={matmul_precision!r} needs the tensor cores of the captured CUDA-graph "
                             f"step, and this model cannot use them: {why}")
        self.matmul_precision = matmul_precision
        self._requested["matmul_precision"] = matmul_precision

    def _tensor_cores_unavailable(self, matmul_precision: str) -> str:
        """Why this model cannot run ``matmul_precision`` ("" when it can, or when it is "highest")."""
        if matmul_precision == "highest":
            return ""
        if self.dtype_name != "float32":
            return f"dtype is {self.dtype_name!r} (TF32 and bfloat16 products round float32 inputs)"
        if self.ops.captured_training is None:
            return self.ops.reason or f"the {self.backend.name} backend has no captured CUDA-graph step (CuPy with fused kernels has)"
        if self.graphs is False:
            return "graphs=False (or XPNET_CUDA_GRAPHS=0) turns the captured step off"
        from .kernels.cuda_step import tensor_core_support
        from .kernels.step_spec import network_unsupported

        return network_unsupported(self) or tensor_core_support(self.backend.device.id)

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
        """Replace the parameters (same order and shapes as :meth:`parameters`) with copies of ``arrays``.
        Arrays holding NaN, infinity, values the model's dtype cannot hold, or non-numbers are
        refused before any parameter changes."""
        current = self.parameters()
        if len(arrays) != len(current):
            raise ValueError(f"expected {len(current)} parameter arrays, got {len(arrays)}")
        new = []
        for i, (old, a) in enumerate(zip(current, arrays)):
            arr = self.backend.asarray(a, name=f"parameter {i}")
            if not self.backend.xp.isdtype(arr.dtype, ("integral", "real floating")):
                raise TypeError(f"parameter {i} must hold real numbers, got dtype {arr.dtype}")
            if tuple(arr.shape) != tuple(old.shape):
                raise ValueError(f"parameter {i} must have shape {tuple(old.shape)}, got {tuple(arr.shape)}")
            new.append(cast_finite(arr, self.dtype, self.backend.xp, f"parameter {i}",
                                   remedy=f"this model is {self.dtype_name}"))
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

    def _loss_and_backward(self, xb: Any, yb: Any, wb: Any = None) -> tuple[Any, Any]:
        """Forward, loss, backward on one batch; fills each layer's grads. Returns (0-d loss, output).
        With sample weights ``wb`` ``(N,)`` the loss is their weighted mean and the L2 term is divided
        by their sum instead of ``N`` (scikit-learn's MLP)."""
        out = self.forward(xb)
        if wb is None:
            loss, grad = self.loss.value_and_grad(out, yb, self.ops)
        else:
            loss, grad = self.loss.value_and_grad(out, yb, self.ops, weights=wb)
        self._backward(grad)
        if self.l2:
            xp, inv_n = self.backend.xp, 1.0 / xb.shape[0]
            if wb is not None:
                total = xp.sum(wb)
                inv_n = 1.0 / xp.where(total > 0, total, xp.ones_like(total))
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

    # -- training (the loops live in xpnet.training) --------------------------------------------
    def fit(
        self,
        X: Any,
        y: Any,
        *,
        epochs: int = 10,
        batch_size: int = 128,
        optimizer: Optimizer | str | None = None,
        validation_data: tuple[Any, Any] | None = None,
        shuffle: Any = True,
        verbose: int = 0,
        callbacks: Sequence[Callback] = (),
        tol: float | None = None,
        n_iter_no_change: float = 10,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        lr_schedule: str = "constant",
        power_t: float = 0.5,
        state: Any = None,
        restore_best: bool = True,
        sample_weight: Any = None,
    ) -> History:
        """Train with mini-batches; returns a :class:`History` of per-epoch figures.

        Parameters
        ----------
        X : array ``(N, n_features)``, or a memmap, Dask or zarr array (or
            :class:`xpnet.sources.DataSource`) read chunk by chunk; y : targets as the loss
            expects them (in memory, or streamed alongside ``X``).
        epochs : int >= 0; batch_size : int >= 1 (a last, smaller batch is kept).
        optimizer : Optimizer or name; default ``Adam(1e-3)``. Pass the same object to
            several ``fit`` calls to continue training with its state.
        validation_data : ``(X_val, y_val)`` evaluated after each epoch.
        shuffle : reshuffle the samples each epoch (seeded by the model's ``seed``); streamed
            data is shuffled by chunk, then within each chunk (see :mod:`xpnet.sources`). Or a
            callable ``n -> order`` giving each epoch's order of in-memory rows, a permutation of
            ``range(n)`` (scikit-learn's MLP estimators pass one that draws as scikit-learn does).
        verbose : 0 silent, 1 a line per epoch, 2 a progress bar and a line per epoch.
        callbacks : :class:`~xpnet.callbacks.Callback` objects.
        tol, n_iter_no_change : stop early, by scikit-learn's MLP rule: once the training loss
            (with ``early_stopping``, the validation score) has not improved on its best by more
            than ``tol`` for more than ``n_iter_no_change`` epochs in a row (``float("inf")``
            never). ``tol=None`` (default) trains every epoch.
        early_stopping, validation_fraction : score ``validation_data`` after each epoch or, without
            it, a held-out ``validation_fraction`` of ``(X, y)`` (stratified by class for
            classifiers, drawn with the model's seed): accuracy, or R^2 for regression
            (``history.val_score``); stop on that score (needs ``tol``), and end with the weights
            of the best-scoring epoch (``restore_best=False`` leaves the last epoch's).
        lr_schedule, power_t : ``"constant"``; ``"invscaling"``, the optimizer's ``lr`` set after
            each epoch to ``lr0 / (samples_seen + 1) ** power_t``; or ``"adaptive"``, ``lr``
            divided by 5 each time the stopping rule fires, stopping once it is at most 1e-6.
            A schedule other than ``"constant"`` runs the eager loop (a CUDA graph holds ``lr``).
        state : ``history.state`` of an earlier fit, to continue its schedule, stopping count and
            best weights instead of starting them afresh (scikit-learn's ``warm_start``).
        sample_weight : ``(N,)`` weights >= 0 (in-memory X): each batch's loss is the weighted mean
            and the L2 term is divided by the batch's weight sum, as in scikit-learn's MLP; with
            early stopping the held-out weights weight the validation score.

        The returned history also has ``stop_message`` (None, or why the stopping rule ended
        training), ``best`` (the best loss or score the rule saw), ``state``, and
        ``training_step``: how each step ran, ``"eager"``, ``"numba-compiled"`` (see
        ``compiled``), ``"cuda-graph"`` (see ``graphs``) or ``"jax-jit"`` (see ``jit``).

        Training loss and accuracy are running means over the epoch's batches
        (computed before each batch's update), not an extra pass. Streamed rows are
        checked as they are read; if a chunk is bad, the model and optimizer are put back
        as they were before this call and the error names the rows.
        """
        return training.fit(self, X, y, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                            validation_data=validation_data, shuffle=shuffle, verbose=verbose, callbacks=callbacks,
                            tol=tol, n_iter_no_change=n_iter_no_change, early_stopping=early_stopping,
                            validation_fraction=validation_fraction, lr_schedule=lr_schedule, power_t=power_t,
                            state=state, restore_best=restore_best, sample_weight=sample_weight)

    def uses_graphs(self, optimizer: Any, batch_size: int, n_samples: int, streamed: bool = False) -> tuple[bool, str]:
        """Whether ``fit`` would replay its steps as a CUDA graph, and why not when it would not."""
        if self.graphs is False:
            return False, "graphs=False"
        if self.ops.captured_training is None:
            return False, self.ops.reason or f"no CUDA-graph replay for the {self.backend.name} backend"
        from .kernels.cupy_graph import capturable_optimizer

        why = "the data is streamed chunk by chunk (a graph holds the whole set on the device)" if streamed else ""
        why = why or capturable_optimizer(optimizer)
        if not why and self.matmul_precision != "highest":  # tensor-core products: the fused plan only
            from .kernels.cuda_step import unsupported

            why = unsupported(self, optimizer)
        if not why and n_samples < batch_size:
            why = f"no full batch of {batch_size} in {n_samples} samples"
        widest = max([self.n_features] + [layer.n_out for layer in self.layers if isinstance(layer, Dense)])
        required = self.graph_requirement()
        if not why and not required and batch_size * widest > GRAPH_AUTO_MAX_ELEMENTS:
            why = (f"batch_size * widest layer = {batch_size * widest} > {GRAPH_AUTO_MAX_ELEMENTS}: "
                   "cuBLAS outruns the captured step's products there")
        if why and required:
            raise ValueError(f"{required}, but this fit cannot replay a CUDA graph: {why}")
        return not why, why

    def graph_requirement(self) -> str:
        """The option that makes ``fit`` require the captured CUDA-graph step ("" if none):
        ``graphs=True``, or a ``matmul_precision`` other than "highest" (only that step has it)."""
        if self.graphs is True:
            return "graphs=True"
        return f"matmul_precision={self.matmul_precision!r}" if self.matmul_precision != "highest" else ""

    def uses_compiled_step(self, optimizer: Any = None) -> tuple[bool, str]:
        """Whether ``fit`` would run each step as one compiled Numba function (see ``compiled``),
        and why not when it would not. ``optimizer``: the one ``fit`` gets (default Adam)."""
        from .optim import Adam, get_optimizer

        if self.compiled is False:
            return False, "compiled=False"
        if self.ops.kernel_family != "numba":
            return False, self.ops.reason or f"the compiled step is Numba's; this model runs the {self.ops.kernel_family} kernels"
        from .kernels.numba_step import unsupported

        why = unsupported(self, Adam() if optimizer is None else get_optimizer(optimizer))
        if why and self.compiled:
            raise ValueError(f"compiled=True, but this fit has no compiled step: {why}")
        return not why, why

    # -- inference -------------------------------------------------------------------------
    def _inputs(self, X: Any) -> Any:
        """``X`` checked and on the device, or a :class:`~xpnet.sources.DataSource` to stream."""
        source = as_source(X, "X")
        if source is not None:
            training.check_streamed_features(self, source)
            return source
        return check_features(X, self.backend, self.dtype, self.n_features)

    def _outputs(self, X: Any) -> Any:
        """Network outputs for what :meth:`_inputs` returned, in chunks."""
        return training.outputs(self, X)

    def predict(self, X: Any) -> Any:
        """Class indices ``(N,)`` for classification losses, outputs ``(N, k)`` otherwise (backend arrays).
        ``X`` may be streamed (a memmap, Dask or zarr array)."""
        return self.loss.predict(self._outputs(self._inputs(X)), self.ops)

    def predict_proba(self, X: Any) -> Any:
        """Class probabilities: softmax ``(N, C)``, or sigmoid outputs for binary cross-entropy."""
        return self.loss.predict_proba(self._outputs(self._inputs(X)), self.ops)

    def evaluate(self, X: Any, y: Any) -> dict:
        """``{"loss": float, "accuracy": float}`` (accuracy for classification losses only).
        ``X`` (and ``y``) may be streamed."""
        source = as_source(X, "X")
        if source is not None:
            return training.evaluate(self, source, training.check_streamed(self, source, y))
        return training.evaluate(self, *self._check_data(X, y))


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

    def to_onnx(self, path: str | Path | None = None) -> Any:
        """The network as an ONNX model (``onnx.ModelProto``), written atomically to ``path`` if given.

        Built by running this model's own forward pass on ndonnx arrays (:mod:`xpnet.export`):
        input ``X`` ``(N, n_features)``; outputs ``label`` and ``probabilities`` for classifiers,
        ``output`` otherwise. Needs ``pip install "xpnet[onnx]"``.
        """
        from .export import sequential_to_onnx

        return sequential_to_onnx(self, path)

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
        if options.get("jit") and not backend.is_jax:  # unpickled where JAX is missing (the fallback warned)
            options["jit"] = False
        if options.get("compiled") and Ops(backend, options.get("fused")).kernel_family != "numba":
            options["compiled"] = None  # unpickled where Numba is missing or fusion is off: the eager step
        if options.get("matmul_precision", "highest") != "highest" and not backend.is_cupy:
            warnings.warn(f"this model was pickled with matmul_precision={options['matmul_precision']!r}, which needs "
                          f"a GPU's tensor cores; unpickled on {backend.name!r}, it trains at 'highest' precision",
                          UserWarning, stacklevel=2)
            options["matmul_precision"] = "highest"
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
    backend = get_backend(backend)  # the caller's arguments: their errors are not the file's
    check_flag("fused", fused, none_allowed=True)
    with open_xpnet_file(path, MODEL_FORMAT) as (data, config):
        try:
            layers, arguments = constructor_arguments(config)
            model = Sequential(layers, backend=backend, fused=fused, **arguments)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{path} describes a network xpnet cannot build ({exc})") from None
        set_parameters_from_file(model, [data[f"param_{i}"] for i in range(len(model.parameters()))], path)
    return model


def set_parameters_from_file(model: Sequential, arrays: Sequence[Any], path: Any) -> None:
    """``model.set_parameters(arrays)``, read from ``path``: a parameter the model cannot take
    (NaN, infinity, another shape) is the file's fault, and the error names the file."""
    try:
        model.set_parameters(arrays)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path} holds parameters this network cannot take ({exc})") from None
