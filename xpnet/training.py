"""Training loops: how ``Sequential.fit`` turns data into parameter updates.

The model (:class:`xpnet.network.Sequential`) owns the layers, the forward and backward
pass and the parameters; this module owns the loops that drive them:

- the eager loop, on every backend: batches gathered on the device, one
  forward/backward/optimizer step each, the loss read back per batch on the CPU and once
  per epoch on a GPU;
- the captured loop (CuPy): each step replayed as one CUDA graph
  (:mod:`xpnet.kernels.cupy_graph`);
- the streamed loop: the eager loop fed chunk by chunk from a memmap, Dask or zarr array
  (:mod:`xpnet.sources`), for data that does not fit in memory.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Iterator, Sequence

import numpy as np

from ._validation import check_features, check_flag, check_positive_int, check_same_length
from .callbacks import EpochPrinter, ProgressBar, check_callbacks, watches_batches
from .layers import Dense
from .optim import Adam, get_optimizer
from .sources import ChunkReader, DataSource, as_source
from .stopping import FitState, NoImprovement, check_stopping_options, scheduled_lr, validation_split

__all__ = ["fit", "History", "NonFiniteLossError", "DeviceMemoryError", "estimate_training_bytes",
           "graphs_default", "GRAPH_AUTO_MAX_ELEMENTS"]

# graphs=None replays steps as a CUDA graph when batch_size * (widest layer) is at most this:
# there the GPU step is bound by launch overhead, and cuBLAS (which a graph cannot hold here)
# is not needed for speed. Measured on an H100, 784-256-128-10 (bench/results/README.md): the
# graph took 0.051 s/epoch against eager's 0.518 s at batch 128, and 0.0085 s against 0.051 s at
# batch 512 (20k images). The limit itself is not a measured crossover: no run has timed the
# generic graph against eager between batch 512 and 4096. At batch 4096 the fused plan in a
# graph (XPNET_GRAPH_STEP=fused) took 0.0045 s/epoch against eager's 0.0083 s, one round of
# 2 epochs (2026-11-24): a lead that the limit may be too low for that plan, not yet a rule.
GRAPH_AUTO_MAX_ELEMENTS = 1 << 20


def graphs_default() -> bool | None:
    """``XPNET_CUDA_GRAPHS``: 0/false/off/no turns CUDA-graph replay off, 1/true/on/yes forces it."""
    value = os.environ.get("XPNET_CUDA_GRAPHS", "").strip().lower()
    if value in {"0", "false", "off", "no"}:
        return False
    if value in {"1", "true", "on", "yes"}:
        return True
    return None


class NonFiniteLossError(FloatingPointError, ValueError):
    """Training produced a NaN or infinite loss; ``epoch`` and ``batch`` say where (1-based).

    A ``FloatingPointError`` and a ``ValueError``: scikit-learn's MLP raises ``ValueError`` when
    its weights become non-finite, so code written for it catches this one too."""

    def __init__(self, epoch: int, batch: int, value: float, before_update: bool = True) -> None:
        self.epoch, self.batch, self.value = epoch, batch, value
        when = ("before that batch's update" if before_update
                else "at the end of the epoch (a GPU reads the loss back once per epoch), so the parameters are non-finite")
        super().__init__(
            f"the training loss became {value} at epoch {epoch}, batch {batch}; training stopped {when}. "
            "Try a lower learning rate, a smaller batch or float64."
        )


class DeviceMemoryError(MemoryError):
    """The device ran out of memory during ``fit``; the message names the batch size and the estimate."""


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


def estimate_training_bytes(model: Any, n_samples: int, batch_size: int) -> int:
    """Rough device memory for ``fit``: the data, parameters with gradients and
    optimizer state (Adam: two slots), and a few copies of one batch's activations."""
    itemsize = 4 if model.dtype_name == "float32" else 8
    n_params = sum(math.prod(p.shape) for p in model.parameters())
    widths = [model.n_features] + [layer.n_out for layer in model.layers if isinstance(layer, Dense)]
    data = n_samples * (model.n_features + 1) * itemsize
    params = 4 * n_params * itemsize
    activations = 4 * batch_size * sum(widths) * itemsize
    return data + params + activations


# -- fit ------------------------------------------------------------------------------------
def fit(model: Any, X: Any, y: Any, *, epochs: int, batch_size: int, optimizer: Any,
        validation_data: Any, shuffle: bool, verbose: int, callbacks: Sequence[Any],
        tol: float | None = None, n_iter_no_change: float = 10, early_stopping: bool = False,
        validation_fraction: float = 0.1, lr_schedule: str = "constant", power_t: float = 0.5,
        state: FitState | None = None, restore_best: bool = True, sample_weight: Any = None) -> History:
    """:meth:`xpnet.Sequential.fit` (see there)."""
    epochs = check_positive_int("epochs", epochs, minimum=0)
    batch_size = check_positive_int("batch_size", batch_size)
    shuffle = shuffle if callable(shuffle) else check_flag("shuffle", shuffle)
    restore_best = check_flag("restore_best", restore_best)
    if verbose not in (0, 1, 2, False, True):
        raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    check_stopping_options(tol, n_iter_no_change, early_stopping, validation_fraction, lr_schedule, power_t, validation_data)
    callbacks = check_callbacks(callbacks)
    optimizer = Adam() if optimizer is None else get_optimizer(optimizer)
    if state is not None and not isinstance(state, FitState):
        raise TypeError(f"state must be the FitState of an earlier fit (history.state), got {type(state).__name__}")
    rules = dict(tol=tol, n_iter_no_change=n_iter_no_change, early_stopping=early_stopping,
                 validation_fraction=validation_fraction, lr_schedule=lr_schedule, power_t=power_t,
                 state=state if state is not None else FitState(), restore_best=restore_best,
                 sample_weight=sample_weight)
    try:
        return _fit(model, X, y, epochs, batch_size, optimizer, validation_data, shuffle, verbose, callbacks, rules)
    except Exception as exc:
        if not model.backend.is_out_of_memory(exc):
            raise
        n = X.shape[0] if hasattr(X, "shape") else len(X)  # sparse X and strict arrays have no len()
        need = estimate_training_bytes(model, n, batch_size)
        raise DeviceMemoryError(
            f"the {model.backend.name} device ran out of memory training with batch_size={batch_size} "
            f"on {n} samples; this fit needs about {need / 2**20:.0f} MiB of device memory "
            f"(data, parameters, gradients, optimizer state and activations). Try a smaller "
            f"batch_size or free device memory. ({exc})"
        ) from exc


def _fit(model, X, y, epochs, batch_size, optimizer, validation_data, shuffle, verbose, callbacks, rules) -> History:
    source = as_source(X, "X")
    if source is not None:
        if rules["early_stopping"] and validation_data is None:
            raise ValueError("early_stopping=True splits X in memory; with streamed X pass validation_data instead")
        if callable(shuffle):
            raise ValueError("shuffle as a callable orders rows in memory; streamed X is shuffled by chunk: "
                             "pass shuffle=True or False")
        y_checked = check_streamed(model, source, y)
        data = None
    else:
        data = model._check_data(X, y)
    weights = val_weights = None
    if rules["sample_weight"] is not None:
        n_rows = source.n_rows if source is not None else data[0].shape[0]
        weights = check_sample_weight(rules["sample_weight"], n_rows, model.backend, model.dtype)
    val = None
    if rules["early_stopping"] and validation_data is None:
        rows = validation_split(model.backend.to_numpy(data[1]) if model.loss.is_classifier else np.zeros(data[0].shape[0]),
                                rules["validation_fraction"], model.rng,
                                stratify=model.loss.is_classifier)
        xp = model.backend.xp
        train_rows, val_rows = (model.backend.asarray(r) for r in rows)
        val = (xp.take(data[0], val_rows, axis=0), xp.take(data[1], val_rows, axis=0))
        data = (xp.take(data[0], train_rows, axis=0), xp.take(data[1], train_rows, axis=0))
        if weights is not None:  # the weights split with their rows; the validation score is weighted too
            weights, val_weights = xp.take(weights, train_rows, axis=0), xp.take(weights, val_rows, axis=0)
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError("validation_data must be a pair (X_val, y_val) or a triple (X_val, y_val, sample_weight_val)")
        val_source = as_source(validation_data[0], "validation_data[0]")
        if val_source is not None:
            val = (val_source, check_streamed(model, val_source, validation_data[1], "validation_data[1]"))
        else:
            val = model._check_data(*validation_data[:2], names=("validation_data[0]", "validation_data[1]"))
        if len(validation_data) == 3:  # weights the early-stopping score
            n_val = val_source.n_rows if val_source is not None else val[0].shape[0]
            val_weights = check_sample_weight(validation_data[2], n_val, model.backend, model.dtype)
    n = source.n_rows if source is not None else data[0].shape[0]
    captured = None
    required = model.graph_requirement()  # graphs=True, or tensor-core products: only the captured step has them
    if rules["lr_schedule"] != "constant" and required:
        raise ValueError(f"{required}, but lr_schedule={rules['lr_schedule']!r} changes the learning rate between "
                         "epochs, which a captured CUDA graph holds fixed")
    if weights is not None and required:
        raise ValueError(f"{required}, but the captured CUDA-graph step has no sample weights"
                         + ("; use graphs=None" if required == "graphs=True" else ""))
    if (rules["lr_schedule"] == "constant" and weights is None
            and model.uses_graphs(optimizer, batch_size, n, streamed=source is not None)[0]):
        model._captured = captured = model.ops.captured_training(model, optimizer, *data, batch_size)
    step = None  # a compiled step (jax.jit, or Numba on the CPU) in place of the eager one
    if model.jit:
        step = JitStep.for_fit(model, optimizer)
    elif captured is None and model.uses_compiled_step(optimizer)[0]:
        from .kernels.numba_step import CompiledStep

        step = CompiledStep.for_fit(model, optimizer, batch_size)
    optimizer._ensure_state(model.parameters(), model.backend.xp, flat=model._flat is not None)
    if verbose == 2:
        callbacks.append(ProgressBar())
    elif verbose:
        callbacks.append(EpochPrinter())

    # Streamed rows are checked as they are read: a bad chunk puts the model and the
    # optimizer back as they were before this fit, then raises.
    snapshot = _Snapshot(model, optimizer) if source is not None else None
    history = History(loss=[], seconds=[], lr=[])  # present with epochs=0 too
    state = rules["state"]
    watch = None
    if rules["tol"] is not None:  # stop on the training loss, or on the validation score with early stopping
        if state.watch is None or (state.watch.tol, state.watch.patience, state.watch.higher) != (
                rules["tol"], rules["n_iter_no_change"], rules["early_stopping"]):
            state.watch = NoImprovement(rules["tol"], rules["n_iter_no_change"], higher_is_better=rules["early_stopping"])
        watch = state.watch
    if state.lr_init is None:
        state.lr_init = getattr(optimizer, "lr", None)
    best_params = state.best_params if rules["early_stopping"] else None
    history.stop_message, history.state = None, state
    history.training_step = ("cuda-graph" if captured is not None else "eager" if step is None
                             else "jax-jit" if isinstance(step, JitStep) else "numba-compiled")
    try:
        for _ in range(epochs):
            if captured is not None:
                logs = captured_epoch(model, captured, n, batch_size, shuffle, callbacks)
            else:
                batches = (streamed_batches(model, source, y_checked, batch_size, shuffle, wd=weights) if source is not None
                           else memory_batches(model, *data, batch_size, shuffle, wd=weights))
                logs = eager_epoch(model, batches, n, batch_size, optimizer, callbacks, step=step)
            if val is not None:
                logs.update(validation_logs(model, val, val_weights, rules["early_stopping"]))
            state.samples_seen += n
            logs["lr"] = getattr(optimizer, "lr", None)
            history.append(logs)
            for cb in callbacks:
                cb.on_epoch_end(model.epochs_trained, logs)
            model.epochs_trained += 1
            if rules["lr_schedule"] == "invscaling":
                optimizer.lr = scheduled_lr("invscaling", state.lr_init, rules["power_t"], state.samples_seen)
            if watch is None:
                continue
            if watch.update(logs["val_score"] if rules["early_stopping"] else logs["loss"]) and rules["early_stopping"]:
                best_params = state.best_params = [model.backend.xp.asarray(p, copy=True) for p in model.parameters()]
            if watch.stop:
                what = "Validation score" if rules["early_stopping"] else "Training loss"
                message = (f"{what} did not improve more than tol={rules['tol']:f} for "
                           f"{rules['n_iter_no_change']} consecutive epochs.")
                if rules["lr_schedule"] == "adaptive" and optimizer.lr > 1e-6:
                    optimizer.lr /= 5.0
                    watch.count = 0
                    history.setdefault("lr_changes", []).append(f"{message} Setting learning rate to {optimizer.lr:f}")
                    continue
                history.stop_message = message + (" Learning rate too small. Stopping." if rules["lr_schedule"] == "adaptive"
                                                  else " Stopping.")
                break
    except (ValueError, TypeError):
        if snapshot is not None:
            snapshot.restore()
        raise
    if best_params is not None and rules["restore_best"]:  # early stopping keeps the best validation epoch's weights
        model.set_parameters(best_params)
    history.best = None if watch is None else watch.best
    return history


def validation_logs(model: Any, val: tuple[Any, Any], val_weights: Any, scored: bool) -> dict:
    """An epoch's validation figures on checked data ``val``: ``val_loss`` (and ``val_accuracy``
    for classifiers) and, when ``scored`` (early stopping), ``val_score`` from the same forward pass."""
    plain_accuracy = model.loss.is_classifier and val_weights is None  # the score is val_accuracy
    result = evaluate(model, *val, keep_outputs=scored and not plain_accuracy)
    pred = result.pop("outputs", None)
    logs = {f"val_{k}": v for k, v in result.items()}
    if scored:
        logs["val_score"] = logs["val_accuracy"] if plain_accuracy else validation_score(model, *val, val_weights, pred)
    return logs


def validation_score(model: Any, Xv: Any, yv: Any, wv: Any = None, pred: Any = None) -> float:
    """The score early stopping watches, on checked validation arrays: accuracy for classifiers
    (whole rows for several labels), R^2 for regression (uniform average over outputs), each
    weighted by ``wv`` when given, as scikit-learn's ``score(X, y, sample_weight)``. ``pred``: the
    network's outputs on ``Xv`` where already computed."""
    xp = model.backend.xp
    pred = outputs(model, Xv) if pred is None else pred
    w = xp.ones((pred.shape[0],), dtype=pred.dtype, device=model.backend.device) if wv is None else wv
    if model.loss.is_classifier:
        right = xp.astype(model.loss.correct_rows(pred, yv, xp), pred.dtype)
        return float(xp.sum(w * right) / xp.sum(w))
    return r2_score(xp.reshape(yv, pred.shape), pred, w, xp, model.backend.to_numpy)


def r2_score(truth: Any, pred: Any, w: Any, xp: Any, to_numpy: Any = np.asarray) -> float:
    """R^2 of ``pred`` against ``truth`` (both ``(N, k)``, namespace ``xp``), weighted by ``w``
    ``(N,)`` and averaged uniformly over outputs, as scikit-learn's ``r2_score``: a constant target
    column scores 1.0 when predicted exactly, else 0.0. ``to_numpy`` brings ``xp``'s arrays to the host."""
    wc = xp.reshape(w, (-1, 1))
    mean = xp.sum(wc * truth, axis=0) / xp.sum(w)
    ss_res = xp.sum(wc * (truth - pred) ** 2, axis=0)
    ss_tot = xp.sum(wc * (truth - mean) ** 2, axis=0)
    r2 = to_numpy(1.0 - ss_res / xp.where(ss_tot > 0, ss_tot, xp.ones_like(ss_tot)))
    exact = to_numpy(ss_res) == 0
    return float(np.mean(np.where(to_numpy(ss_tot) > 0, r2, np.where(exact, 1.0, 0.0))))


def check_sample_weight(sample_weight: Any, n: int, backend: Any, dtype: Any) -> Any:
    """Sample weights as a ``(n,)`` array on the device: finite, >= 0, not all zero."""
    return backend.asarray(host_sample_weight(sample_weight, n, backend), dtype=dtype)


def host_sample_weight(sample_weight: Any, n: int, backend: Any) -> np.ndarray:
    """Sample weights (host, or ``backend``'s arrays) as a checked float64 NumPy array ``(n,)``; one
    number weights every sample alike, as scikit-learn takes it."""
    host = backend.to_numpy(sample_weight) if backend.owns(sample_weight) else np.asarray(sample_weight)
    if host.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight must be numeric, got dtype {host.dtype}")
    host = np.full(n, host, dtype=np.float64) if host.ndim == 0 else host.astype(np.float64)
    if host.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), one weight per sample, got {host.shape}")
    if not np.all(np.isfinite(host)) or np.any(host < 0) or not host.sum() > 0:
        raise ValueError("sample_weight must be finite and >= 0, and not all zero")
    return host


def check_streamed_features(model: Any, source: DataSource) -> None:
    """Up-front checks of a streamed ``X``: 2-D, the model's width, numeric (values are checked per chunk)."""
    if source.ndim != 2:
        raise ValueError(f"{source.name} must be 2-D (n_samples, n_features), got shape {source.shape}")
    if source.shape[1] != model.n_features:
        raise ValueError(f"{source.name} has {source.shape[1]} features but the model expects {model.n_features}")
    kind = np.dtype(getattr(source.data, "dtype", np.float64)).kind
    if kind not in "biuf":
        raise TypeError(f"{source.name} must be numeric, got dtype {source.data.dtype}")


def check_streamed(model: Any, source: DataSource, y: Any, y_name: str = "y") -> Any:
    """Up-front checks of a streamed ``X`` and its targets ``y``: the whole of ``y`` when it is in
    memory (returned checked, on the device), its length when it is streamed too."""
    check_streamed_features(model, source)
    y_source = as_source(y, y_name)
    check_same_length(source, y if y_source is None else y_source, (source.name, y_name))
    if y_source is not None:
        return y_source
    return model.loss.prepare_targets(y, source.n_rows, model.n_outputs, model.backend, model.dtype, name=y_name)


def _chunk(model: Any, source: DataSource, bounds: tuple[int, int], x: Any, y: Any) -> tuple[Any, Any]:
    """One chunk's rows checked and on the device; ``y`` is the chunk's targets or, for targets
    already checked on the device, None (the caller slices them)."""
    lo, hi = bounds
    xd = check_features(x, model.backend, model.dtype, model.n_features, name=f"{source.name} (rows {lo}:{hi})")
    if y is not None:
        y = model.loss.prepare_targets(y, hi - lo, model.n_outputs, model.backend, model.dtype, name=f"y (rows {lo}:{hi})")
    return xd, y


def checked_chunks(model: Any, source: DataSource, y: Any, order: list[int]) -> Iterator[tuple[tuple[int, int], Any, Any]]:
    """``((lo, hi), X rows, y rows)`` on the device, chunk by chunk in ``order``, each checked.
    ``y`` is a streamed source, checked targets on the device (sliced here), or None."""
    streamed_y = y if isinstance(y, DataSource) else None
    for bounds, x, y_rows in ChunkReader(model.backend, source, streamed_y, order):
        xd, yd = _chunk(model, source, bounds, x, y_rows)
        if y is not None and streamed_y is None:
            yd = y[bounds[0]:bounds[1], ...]
        yield bounds, xd, yd


def full_batch_value_and_grad(model: Any, X: Any, y: Any, weights: Any = None) -> tuple[float, list[np.ndarray]]:
    """``(loss, gradients as host float64 arrays)`` over all of ``X``: the full-batch objective
    (weighted mean loss plus the L2 term) that scikit-learn's lbfgs minimises. ``y`` (and
    ``weights`` ``(N,)``) are checked and on the device. In-memory ``X`` is one forward and
    backward pass; streamed ``X`` (a :class:`DataSource`, such as sparse rows) runs one pass per
    chunk, each chunk's mean weighted by its share of the rows (or of the weight sum), with the
    L2 term counted once in all, so both give the same objective."""
    backend = model.backend

    def host(arrays):
        return [backend.to_numpy(a).astype(np.float64) for a in arrays]

    if not isinstance(X, DataSource):
        loss, _ = model._loss_and_backward(X, y, weights)
        return float(loss), host(model._grads())
    host_w = None if weights is None else backend.to_numpy(weights).astype(np.float64)
    sizes = [hi - lo if host_w is None else float(host_w[lo:hi].sum()) for lo, hi in X.bounds]  # rows, or weight
    total = sum(sizes)
    shares = [size / total for size in sizes]
    # Each chunk's pass adds the L2 term over its own size; times its share, that is the whole
    # objective's L2 term, once per chunk: so each chunk that counts runs with l2 / their number.
    loss, grads, l2 = 0.0, None, model.l2
    model.l2 = l2 / sum(share > 0.0 for share in shares)
    try:
        for share, ((lo, hi), xd, yd) in zip(shares, checked_chunks(model, X, y, list(range(len(shares))))):
            if share == 0.0:  # every weight in the chunk is zero: it adds nothing
                continue
            chunk_loss, _ = model._loss_and_backward(xd, yd, None if weights is None else weights[lo:hi])
            chunk_grads = host(model._grads())
            loss += share * float(chunk_loss)
            grads = [share * g for g in chunk_grads] if grads is None else [a + share * g for a, g in zip(grads, chunk_grads)]
    finally:
        model.l2 = l2
    return loss, grads


def minimize_lbfgs(model: Any, X: Any, y: Any, weights: Any = None, *, max_iter: int, max_fun: int,
                   gtol: float, ftol: float | None = None) -> tuple[Any, list[float]]:
    """Minimise the full-batch objective of :func:`full_batch_value_and_grad` with scipy's
    L-BFGS-B on the host (scikit-learn's lbfgs solver): one forward and backward pass on the
    model's device per evaluation. Leaves the model at the result and returns scipy's
    ``OptimizeResult`` and the objective after each iteration. The parameter vector holds every
    weight matrix, then every bias, as scikit-learn's MLP ``_pack`` lays them out, so L-BFGS-B
    sees the vector it sees there and sums its dot products in the same order. ``ftol`` is
    L-BFGS-B's bound on the objective's relative reduction (scipy's default where None, as
    scikit-learn's MLP passes none)."""
    from scipy.optimize import minimize

    backend = model.backend
    shapes = [tuple(p.shape) for p in model.parameters()]
    order = sorted(range(len(shapes)), key=lambda i: len(shapes[i]) != 2)
    sizes = [int(np.prod(shapes[i])) for i in order]

    def unpack(theta):
        out, at = [None] * len(shapes), 0
        for i, size in zip(order, sizes):
            out[i] = theta[at:at + size].reshape(shapes[i])
            at += size
        return out

    def pack(arrays):
        return np.concatenate([np.asarray(arrays[i]).ravel() for i in order])

    def loss_and_grad(theta):
        model.set_parameters(unpack(theta))
        loss, grads = full_batch_value_and_grad(model, X, y, weights)
        return loss, pack(grads)

    curve: list[float] = []

    def record(intermediate_result):  # scipy >= 1.11 passes the iteration's result by this name
        if hasattr(intermediate_result, "fun"):
            curve.append(float(intermediate_result.fun))

    theta0 = pack([backend.to_numpy(p) for p in model.parameters()]).astype(np.float64)
    result = minimize(loss_and_grad, theta0, method="L-BFGS-B", jac=True,
                      callback=record,
                      options={"maxfun": int(max_fun), "maxiter": int(max_iter), "gtol": float(gtol),
                               **({} if ftol is None else {"ftol": float(ftol)})})
    model.set_parameters(unpack(result.x))
    return result, curve


# -- batches --------------------------------------------------------------------------------
def epoch_order(model: Any, n: int, shuffle: Any) -> Any:
    """This epoch's row order as an int64 device array, or None for the rows as stored: a fresh
    permutation from the model's generator when ``shuffle`` is true, or what a callable ``shuffle``
    returns for ``n`` (a host permutation of ``range(n)``; scikit-learn's MLP estimators draw theirs
    as scikit-learn does)."""
    if not callable(shuffle):
        return model.backend.permutation(n, model.rng) if shuffle else None
    order = np.asarray(shuffle(n))
    if order.shape != (n,) or order.dtype.kind not in "iu":
        raise ValueError(f"shuffle({n}) must return a permutation of range({n}), got shape {order.shape} "
                         f"dtype {order.dtype}")
    order = order.astype(np.int64, copy=False)
    return order if model.backend.is_numpy else model.backend.asarray(order)


def memory_batches(model: Any, Xd: Any, yd: Any, batch_size: int, shuffle: Any,
                   wd: Any = None) -> Iterator[tuple[Any, Any, Any]]:
    """``(x_batch, y_batch, weight_batch or None)`` from arrays on the device, in the order of
    :func:`epoch_order`; ``wd`` are sample weights ``(N,)``."""
    xp = model.backend.xp
    n = Xd.shape[0]
    order = epoch_order(model, n, shuffle)
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)
        if order is None:
            yield Xd[lo:hi, ...], yd[lo:hi, ...], (None if wd is None else wd[lo:hi])
        else:
            idx = order[lo:hi]
            yield xp.take(Xd, idx, axis=0), xp.take(yd, idx, axis=0), (None if wd is None else xp.take(wd, idx, axis=0))


def streamed_batches(model: Any, source: DataSource, y: Any, batch_size: int, shuffle: bool,
                     wd: Any = None) -> Iterator[tuple[Any, Any, Any]]:
    """``(x_batch, y_batch, weight_batch or None)`` read chunk by chunk: chunks in a random order,
    rows in a random order within each chunk (when ``shuffle``); a chunk's last rows open the next
    batch. ``wd`` are in-memory sample weights ``(N,)`` on the device, sliced chunk by chunk."""
    xp, backend = model.backend.xp, model.backend
    order = [int(i) for i in model.rng.permutation(len(source.bounds))] if shuffle else list(range(len(source.bounds)))
    carry = None  # fewer than batch_size rows left over from the previous chunk: [x, y(, w)]
    for (lo, hi), xd, yd in checked_chunks(model, source, y, order):
        parts = [xd, yd] if wd is None else [xd, yd, wd[lo:hi]]
        if shuffle:
            idx = backend.permutation(xd.shape[0], model.rng)
            parts = [xp.take(a, idx, axis=0) for a in parts]
        m, start = xd.shape[0], 0
        if carry is not None:  # complete the open batch with this chunk's first rows
            start = min(m, batch_size - carry[0].shape[0])
            batch = [xp.concat([c, a[:start, ...]], axis=0) for c, a in zip(carry, parts)]
            carry = None
            if batch[0].shape[0] < batch_size:
                carry = batch
                continue
            yield _batch(batch)
        full = start + (m - start) // batch_size * batch_size
        for at in range(start, full, batch_size):
            yield _batch([a[at:at + batch_size, ...] for a in parts])
        if full < m:
            carry = [a[full:m, ...] for a in parts]
    if carry is not None:
        yield _batch(carry)


def _batch(parts: list) -> tuple[Any, Any, Any]:
    return parts[0], parts[1], (parts[2] if len(parts) > 2 else None)


# -- epochs ---------------------------------------------------------------------------------
def eager_epoch(model: Any, batches: Iterator[tuple[Any, Any, Any]], n: int, batch_size: int, optimizer: Any,
                callbacks: Sequence[Any], step: "JitStep | None" = None) -> dict:
    """One epoch of forward, backward and optimizer steps over ``batches`` (``n`` samples in all);
    with ``step`` (a :class:`JitStep` or a :class:`xpnet.kernels.numba_step.CompiledStep`), each
    batch's step is that compiled function instead."""
    xp, backend = model.backend.xp, model.backend
    n_batches = -(-n // batch_size)
    epoch_no = model.epochs_trained
    for cb in callbacks:
        cb.on_epoch_begin(epoch_no, n_batches)
    check_each_batch = not backend.asynchronous  # on a GPU or JAX, read the loss back once per epoch
    batch_losses = []
    loss_sum = xp.zeros((), dtype=model.dtype, device=backend.device)
    correct = xp.zeros((), dtype=backend.int_dtype, device=backend.device) if model.loss.is_classifier else None
    backend.synchronize()
    start = time.perf_counter()
    params = model.parameters()
    seen = 0
    with model.ops.training_loop():
        for b, (xb, yb, wb) in enumerate(batches):
            if step is not None:
                loss, n_right = step(xb, yb, wb)  # jax.jit updates even on a bad loss; Numba does not
            else:
                loss, out = model._loss_and_backward(xb, yb, wb)
            if check_each_batch:
                value = float(loss)
                if not math.isfinite(value):
                    raise NonFiniteLossError(epoch_no + 1, b + 1, value,
                                             before_update=step is None or not step.updated_on_bad_loss)
            else:
                batch_losses.append(loss)
            if step is None:
                new_params = optimizer.step(params, model._grads(), model.ops, flat=model._flat)
                if new_params is not params:
                    params = new_params
                    model._assign_parameters(params)
                n_right = model.loss.n_correct(out, yb, xp) if correct is not None else None
            rows = xb.shape[0]
            seen += rows
            loss_sum = loss_sum + loss * float(rows)
            if correct is not None:
                correct = correct + n_right
            for cb in callbacks:
                cb.on_batch_end(b, {"loss_sum": loss_sum, "seen": seen, "batch_size": batch_size})
    backend.synchronize(model.parameters(), loss_sum)
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


class JitStep:
    """One training step (forward, loss, backward, optimizer update) compiled with ``jax.jit``.

    The compiled function is the eager step itself, traced: the model's ``_loss_and_backward``
    and the optimizer's ``step`` run on JAX tracers, as a pure function of the parameters, the
    optimizer state and step count, and the batch. Each call stores the new parameters, state
    and gradients back on the model and optimizer, so a jitted fit leaves them exactly where an
    eager fit would (up to floating-point reassociation by XLA). A batch of a new shape (the
    last, smaller one) compiles once more.
    """

    updated_on_bad_loss = True  # the compiled function always updates; fit reports a bad loss after it

    def __init__(self, model: Any, optimizer: Any) -> None:
        import jax

        self.model, self.optimizer = model, optimizer
        self._compiled = jax.jit(self._pure)

    @classmethod
    def for_fit(cls, model: Any, optimizer: Any) -> "JitStep":
        """The model's compiled step for this kind of optimizer: reused by later fits with an
        optimizer of the same type and hyperparameters (which the compiled code holds as
        constants; the learning rate, the state and the step count are arguments, so a
        learning-rate schedule does not compile again either)."""
        key = (type(optimizer).__name__, tuple(sorted((k, v) for k, v in optimizer.hyperparameters().items() if k != "lr")))
        cache = model.__dict__.setdefault("_jit_steps", {})
        if key not in cache:
            cache[key] = cls(model, optimizer)
        step = cache[key]
        step.optimizer = optimizer
        return step

    def _pure(self, params: list, slots: dict, iteration: Any, lr: Any, xb: Any, yb: Any, wb: Any) -> tuple:
        model, optimizer = self.model, self.optimizer
        model._assign_parameters(params)
        optimizer.state = {slot: list(arrays) for slot, arrays in slots.items()}
        optimizer.iterations = iteration  # traced scalars: one compiled step serves every count and rate
        optimizer.lr = lr
        loss, out = model._loss_and_backward(xb, yb, wb)
        grads = model._grads()
        new_params = optimizer.step(params, grads, model.ops)
        correct = model.loss.n_correct(out, yb, model.backend.xp) if model.loss.is_classifier else None
        return new_params, optimizer.state, loss, correct, grads

    def __call__(self, xb: Any, yb: Any, wb: Any = None) -> tuple[Any, Any]:
        """Step on one batch; returns ``(0-d loss before the update, 0-d count correct or None)``."""
        model, optimizer = self.model, self.optimizer
        iterations, lr = int(optimizer.iterations), float(optimizer.lr)
        xp = model.backend.xp
        counter, rate = xp.asarray(float(iterations), dtype=model.dtype), xp.asarray(lr, dtype=model.dtype)
        try:
            params, state, loss, correct, grads = self._compiled(model.parameters(), optimizer.state, counter, rate, xb, yb, wb)
        finally:
            optimizer.lr = lr  # the trace leaves a tracer there
        model._assign_parameters(params)
        optimizer.state, optimizer.iterations = state, iterations + 1
        it = iter(grads)
        for layer in model.layers:  # real arrays, not the tracers the trace left behind
            if layer.params:
                layer.grads = [next(it) for _ in layer.params]
        return loss, correct


def captured_epoch(model: Any, captured: Any, n: int, batch_size: int, shuffle: bool, callbacks: Sequence[Any]) -> dict:
    """One epoch of CUDA-graph replays: one launch per full batch, one device read per epoch. Where
    no callback watches the batches (:func:`~xpnet.callbacks.watches_batches`), the full batches
    are asked for in one call (``captured.steps``), which ``XPNET_GRAPH_STEP=epoch`` runs as one
    launch."""
    backend = model.backend
    n_batches = -(-n // batch_size)
    epoch_no = model.epochs_trained
    for cb in callbacks:
        cb.on_epoch_begin(epoch_no, n_batches)
    backend.synchronize()
    start = time.perf_counter()
    captured.begin_epoch(epoch_order(model, n, shuffle))
    with model.ops.training_loop():
        if any(map(watches_batches, callbacks)):
            for b in range(n_batches):
                hi = min(n, (b + 1) * batch_size)
                captured.step(hi - b * batch_size)
                for cb in callbacks:
                    cb.on_batch_end(b, {"loss_sum": captured.loss_sum, "seen": hi, "batch_size": batch_size})
        else:
            full, rest = divmod(n, batch_size)
            captured.steps(batch_size, full)
            if rest:
                captured.step(rest)
    figures = captured.end_epoch()  # synchronises
    seconds = time.perf_counter() - start
    if figures["first_bad_batch"] >= 0:
        raise NonFiniteLossError(epoch_no + 1, figures["first_bad_batch"] + 1, figures["bad_value"], before_update=False)
    logs = {"loss": figures["loss_sum"] / n}
    if model.loss.is_classifier:
        logs["accuracy"] = figures["correct"] / n
    logs["seconds"] = seconds
    return logs


# -- evaluation -------------------------------------------------------------------------------
def evaluate(model: Any, X: Any, y: Any, keep_outputs: bool = False) -> dict:
    """Mean loss (and accuracy for classifiers) over checked data: device arrays ``(Xd, yd)`` or a
    :class:`DataSource` with its checked targets, in chunks of ``PREDICT_CHUNK`` rows; with
    ``keep_outputs``, also the network's outputs ``(N, n_outputs)`` under ``"outputs"``."""
    xp = model.backend.xp
    total, correct, n = 0.0, 0, 0
    kept = []
    for xb, yb in _inference_blocks(model, X, y):
        out = model.forward(xb)
        if keep_outputs:
            kept.append(out)
        total += float(model.loss.value(out, yb, model.ops)) * xb.shape[0]
        n += xb.shape[0]
        if model.loss.is_classifier:
            correct += int(model.loss.n_correct(out, yb, xp))
    result = {"loss": total / n}
    if model.loss.is_classifier:
        result["accuracy"] = correct / n
    if keep_outputs:
        result["outputs"] = kept[0] if len(kept) == 1 else xp.concat(kept, axis=0)
    return result


PREDICT_CHUNK = 8192


def outputs(model: Any, X: Any) -> Any:
    """The network's outputs for checked device rows or a :class:`DataSource`, ``PREDICT_CHUNK`` rows
    at a time, joined on the device."""
    if not isinstance(X, DataSource) and X.shape[0] <= PREDICT_CHUNK:
        return model.forward(X)
    blocks = [model.forward(xb) for xb, _ in _inference_blocks(model, X, None)]
    return blocks[0] if len(blocks) == 1 else model.backend.xp.concat(blocks, axis=0)


def _inference_blocks(model: Any, X: Any, y: Any) -> Iterator[tuple[Any, Any]]:
    if isinstance(X, DataSource):
        for _, xd, yd in checked_chunks(model, X, y, list(range(len(X.bounds)))):
            for lo in range(0, xd.shape[0], PREDICT_CHUNK):
                hi = min(xd.shape[0], lo + PREDICT_CHUNK)
                yield xd[lo:hi, ...], (None if yd is None else yd[lo:hi, ...])
        return
    n = X.shape[0]
    for lo in range(0, n, PREDICT_CHUNK):
        hi = min(n, lo + PREDICT_CHUNK)  # out-of-bounds slice stops are outside the standard
        yield X[lo:hi, ...], (None if y is None else y[lo:hi, ...])


class _Snapshot:
    """The model's parameters and the optimizer's state, copied, to put back if a fit fails part-way."""

    def __init__(self, model: Any, optimizer: Any) -> None:
        xp = model.backend.xp
        copy = lambda a: xp.asarray(a, copy=True)  # noqa: E731
        self.model, self.optimizer = model, optimizer
        self.params = [copy(p) for p in model.parameters()]
        self.rng_state = model.rng.bit_generator.state
        self.epochs_trained = model.epochs_trained
        self.iterations = optimizer.iterations
        self.state = {slot: [copy(a) for a in arrays] for slot, arrays in optimizer.state.items()}

    def restore(self) -> None:
        model, optimizer = self.model, self.optimizer
        model.set_parameters(self.params)
        model.rng.bit_generator.state = self.rng_state
        model.epochs_trained = self.epochs_trained
        optimizer.iterations = self.iterations
        for slot, arrays in self.state.items():
            if optimizer._flat_state is not None:  # views of the flat state: write through them
                for view, saved in zip(optimizer.state[slot], arrays):
                    view[...] = saved
            else:
                optimizer.state[slot] = arrays
