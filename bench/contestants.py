"""The contestants: each trains the reference task and reports per-epoch seconds and accuracy.

A contestant is a function ``run(task) -> dict`` that raises :class:`Unavailable`
(with the reason) when it cannot run on this machine. Each runs in its own
process (see ``bench.mnist``), so peak memory is its own and thread settings
do not leak between contestants.

Timing: a warm-up outside the measurement (JIT compilation, CUDA context and
kernel compilation, allocator growth), device synchronisation before every
clock read, and the median over the measured epochs.
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable

import numpy as np

from xpnet.cli import peak_rss_bytes
from xpnet.kernels.cuda_step import PERSISTENT_STEPS

from .env import temporary_environment, usable_cores
from .task import Task, load_data


class Unavailable(Exception):
    """This contestant cannot run here; the message says why."""




def _result(task: Task, epoch_seconds: list[float], accuracy: float | None, **extra) -> dict:
    median = float(np.median(epoch_seconds))
    return {
        "epoch_seconds": epoch_seconds,
        "median_epoch_seconds": median,
        "samples_per_second": task.train_samples / median,
        "test_accuracy": None if accuracy is None else float(accuracy),  # None: not a trainer
        "peak_host_memory_bytes": peak_rss_bytes(),
        **extra,
    }


# -- xpnet ----------------------------------------------------------------------------
def captured_step_mismatch(captured, graph_step: str = "", graph_gemm: str = "", matmul_precision: str = "highest",
                           blocks_per_sm: int | None = None) -> str:
    """Why a fit's captured step (``model._captured``: a ``CapturedTraining``, or None where no graph
    was captured) is not the one a benchmark asked for; "" when it is. Never report the generic step
    as the fused plan or as tensor-core products, the plan's kernels as the persistent step (nor
    that step at fewer blocks per multiprocessor than ``blocks_per_sm``, where it asked), a step per
    launch as the epoch step, nor xpnet's products as cuBLAS's (``graph_step``:
    ``XPNET_GRAPH_STEP``, ``graph_gemm``: ``XPNET_GRAPH_GEMM``, "" where not asked)."""
    persistent = graph_step in PERSISTENT_STEPS
    if (graph_step or matmul_precision != "highest") and not (captured is not None and captured.fused):
        return f"the fused captured step did not run: {captured.fused_why if captured else 'no graph'}"
    if persistent and not captured.persistent:
        return "the fused plan ran kernel by kernel, not as the persistent step"
    if graph_step == "epoch" and not captured.epoch_launches:
        return "no epoch ran its batches in one launch (the persistent step ran one launch per step)"
    if persistent and blocks_per_sm and captured.persistent_blocks_per_sm != blocks_per_sm:
        return (f"the persistent step's blocks per multiprocessor were {captured.persistent_blocks_per_sm}, not "
                f"{blocks_per_sm} (no more fit at once)")
    if graph_gemm and (captured is None or captured.products != graph_gemm):
        return f"the captured step's products were not {graph_gemm}'s: {captured.products if captured else 'no graph'}"
    return ""


def _xpnet(backend_name: str, fused: bool, graphs: bool | None = None, jit: bool = False,
           compiled: bool | None = None, graph_step: str = "", matmul_precision: str = "highest",
           graph_gemm: str = "") -> Callable[[Task], dict]:
    """``graph_step="fused"``: the captured step runs ``cuda_step``'s fused plan (``XPNET_GRAPH_STEP``);
    ``"persistent"``: that plan as one launch per step (``persistent_step``); ``"epoch"``: that launch
    running all of an epoch's full batches.
    ``graph_gemm="cublas"``: the generic captured step's products are cuBLAS's (``XPNET_GRAPH_GEMM``).
    ``matmul_precision``: Sequential's ("tf32"/"bf16": tensor-core products in that plan)."""
    settings = {name: value for name, value in (("XPNET_GRAPH_STEP", graph_step), ("XPNET_GRAPH_GEMM", graph_gemm))
                if value}

    def run(task: Task) -> dict:
        with temporary_environment(settings):
            return _run_xpnet(task)

    def _run_xpnet(task: Task) -> dict:
        import xpnet
        from xpnet import Adam, Sequential
        from xpnet.backend import BackendUnavailableError, cupy_usable
        from xpnet.layers import dense_stack

        if backend_name == "cupy":
            ok, why = cupy_usable()
            if not ok:
                raise Unavailable(why)
        try:
            backend = xpnet.get_backend(backend_name, strict=True)
        except (BackendUnavailableError, ImportError) as exc:
            raise Unavailable(str(exc)) from None

        try:
            model = Sequential(dense_stack(task.widths, task.activation), loss=task.loss, backend=backend,
                               dtype=task.dtype, seed=task.seed, fused=fused, graphs=graphs, jit=jit, compiled=compiled,
                               matmul_precision=matmul_precision)
        except ValueError as exc:  # e.g. tensor-core products where there are none
            raise Unavailable(str(exc)) from None
        if fused and not model.ops.fused:  # never report the reference path as "fused"
            raise Unavailable(f"fused kernels are not active: {model.ops.reason}")
        X_train, y_train, X_test, y_test = load_data(task)
        # Move the data once; fit then only checks it.
        X_train, y_train, X_test, y_test = (backend.asarray(a) for a in (X_train, y_train, X_test, y_test))
        initial = [backend.xp.asarray(p, copy=True) for p in model.parameters()]
        rng_state = model.rng.bit_generator.state
        # Warm-up on the measured model (kernels compiled, CUDA context made, JAX steps compiled for
        # the full and the last, smaller batch), then back to the initial weights and RNG.
        warm_rows = 2048 + task.train_samples % task.batch_size
        t0 = time.perf_counter()
        model.fit(X_train[:warm_rows, ...], y_train[:warm_rows, ...], epochs=1, batch_size=task.batch_size,
                  optimizer=Adam(task.lr))
        backend.synchronize()
        warmup_seconds = time.perf_counter() - t0
        model.set_parameters(initial)
        model.rng.bit_generator.state = rng_state
        model.epochs_trained = 0

        # One fit over all epochs: the inputs are checked once, as for a user. Per-epoch
        # seconds come from inside fit: shuffle, batches and updates, synchronised.
        history = model.fit(X_train, y_train, epochs=task.epochs, batch_size=task.batch_size, optimizer=Adam(task.lr))
        seconds = list(history.seconds)
        accuracy = model.evaluate(X_test, y_test)["accuracy"]
        extra = {"warmup_seconds": warmup_seconds, "fused": model.ops.fused, "jit": model.jit,
                 "matmul_precision": model.matmul_precision,
                 "training_step": history.training_step, "backend": backend.describe(), "train_loss": list(history.loss)}
        if backend.is_numpy:  # the BLAS libraries loaded (the compiled step calls NumPy's where it finds it)
            extra["blas"] = _blas_name()
        if backend.is_cupy:
            extra["cuda_graphs"], extra["cuda_graphs_reason"] = model.uses_graphs(Adam(task.lr), task.batch_size, task.train_samples)
            captured = model._captured
            extra["graph_step"] = "" if captured is None else captured.step_kind
            extra["graph_products"] = "" if captured is None else captured.products
            mismatch = captured_step_mismatch(captured, graph_step, graph_gemm, matmul_precision)
            if mismatch:
                raise Unavailable(mismatch)
        if backend.is_cupy:
            import cupy

            # CuPy's pool keeps what it allocated, so its size after training is the peak in use.
            extra["peak_gpu_memory_bytes"] = int(cupy.get_default_memory_pool().total_bytes())
        return _result(task, seconds, accuracy, **extra)

    return run


# -- scikit-learn -------------------------------------------------------------------------
def sklearn_mlp(task: Task) -> dict:
    try:
        import sklearn
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier
    except ImportError as exc:
        raise Unavailable(f"scikit-learn is not installed ({exc})") from None
    import warnings

    if task.optimizer != "adam":
        raise Unavailable("this peer is set up for the Adam task only")
    activation = {"sigmoid": "logistic"}.get(task.activation, task.activation)
    X_train, y_train, X_test, y_test = load_data(task)
    clf = MLPClassifier(hidden_layer_sizes=task.hidden, activation=activation, solver="adam", alpha=0.0,
                        batch_size=task.batch_size, learning_rate_init=task.lr, max_iter=1, shuffle=True,
                        random_state=task.seed, warm_start=True, tol=0.0, n_iter_no_change=10**9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        MLPClassifier(hidden_layer_sizes=task.hidden, activation=activation, max_iter=1, batch_size=task.batch_size,
                      random_state=task.seed).fit(X_train[:2048], y_train[:2048])
        warmup = time.perf_counter() - t0
        seconds = []
        for _ in range(task.epochs):  # warm_start + max_iter=1: one epoch per fit call
            t0 = time.perf_counter()
            clf.fit(X_train, y_train)
            seconds.append(time.perf_counter() - t0)
    return _result(task, seconds, clf.score(X_test, y_test), warmup_seconds=warmup, sklearn_version=sklearn.__version__,
                   weights_dtype=str(clf.coefs_[0].dtype))


# -- PyTorch --------------------------------------------------------------------------------
def _torch(device: str, compile_mode: str | None = None, precision: str = "highest",
           graphed: bool = False) -> Callable[[Task], dict]:
    """PyTorch on ``device``: eager, or with ``compile_mode`` every part of the step compiled
    (forward, loss and backward in ``compile_mode``, Adam's update in Inductor's default mode; see
    ``step_for``): "reduce-overhead" replays CUDA graphs; "max-autotune" also tunes the GEMMs; on
    the CPU, "default": Inductor's C++/OpenMP code around the BLAS products. Compilation happens in
    the warm-up.

    ``precision``, xpnet's ``matmul_precision`` at PyTorch's matching setting: "highest" and "tf32"
    are ``torch.set_float32_matmul_precision("highest" / "high")`` (on CUDA "high" is TF32);
    "bf16" is ``torch.autocast(dtype=torch.bfloat16)`` around forward and loss, since on CUDA
    "medium" is TF32 as well. Autocast also keeps the linear layers' outputs (so the activations)
    in bfloat16, where xpnet keeps everything but the products' inputs in float32.

    ``graphed`` (CUDA): PyTorch's own whole-network capture (``torch.cuda.graph``, "Whole-network
    capture" in its CUDA Graphs notes): forward, loss, backward and a ``capturable`` Adam update
    recorded once as one CUDA graph and replayed for every full batch, the batch copied into the
    graph's static inputs first. The last, smaller batch runs eagerly."""

    def run(task: Task) -> dict:
        try:
            import torch
        except ImportError as exc:
            raise Unavailable(f"PyTorch is not installed ({exc})") from None
        if device == "cuda" and not torch.cuda.is_available():
            raise Unavailable("PyTorch sees no CUDA device")
        if graphed and device != "cuda":
            raise Unavailable("a CUDA graph needs a CUDA device")
        if precision != "highest" and (device != "cuda" or task.dtype != "float32"):
            raise Unavailable(f"precision {precision!r} is a float32 CUDA setting")
        torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")
        def autocast():
            return (torch.autocast(device_type="cuda", dtype=torch.bfloat16) if precision == "bf16"
                    else contextlib.nullcontext())

        torch.set_num_threads(usable_cores())
        torch.manual_seed(task.seed)
        dtype = getattr(torch, task.dtype)
        act = {"sigmoid": torch.nn.Sigmoid, "relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[task.activation]

        def network():
            layers = []
            widths = task.widths
            for i, (a, b) in enumerate(zip(widths, widths[1:])):
                layers.append(torch.nn.Linear(a, b))
                if i < len(widths) - 2:
                    layers.append(act())
            return torch.nn.Sequential(*layers).to(device=device, dtype=dtype)

        X_train, y_train, X_test, y_test = load_data(task)
        Xd = torch.from_numpy(X_train).to(device=device, dtype=dtype)
        yd = torch.from_numpy(y_train).to(device)
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        loss_fn = torch.nn.CrossEntropyLoss()
        generator = torch.Generator(device=device).manual_seed(task.seed)

        def new_optimizer(net):
            return torch.optim.Adam(net.parameters(), lr=task.lr, capturable=graphed)

        steps: dict = {}

        def step_for(net, opt):
            """The training step. Compiled: forward and loss are one ``torch.compile`` graph in
            ``compile_mode`` (AOTAutograd compiles its backward too, and under "reduce-overhead" or
            "max-autotune" both replay as CUDA graphs), and Adam's update is compiled on its own in
            Inductor's default mode (PyTorch's compiled-optimizer recipe). One function holding
            ``backward()`` and ``opt.step()`` breaks the graph there, and under CUDA graphs its
            replays failed on the H100 ('accessing tensor output of CUDAGraphs that has been
            overwritten by a subsequent run'), with ``cudagraph_mark_step_begin`` or without."""
            if id(opt) not in steps:
                def forward_loss(x, y):
                    with autocast():
                        return loss_fn(net(x), y)

                if compile_mode:
                    forward_loss = torch.compile(forward_loss, mode=compile_mode, fullgraph=True)
                    update = torch.compile(opt.step)
                else:
                    update = opt.step
                # each step starts a new generation of CUDA graph replays (outputs of the last are dead)
                mark_step = torch.compiler.cudagraph_mark_step_begin if compile_mode and device == "cuda" else (lambda: None)

                def step(x, y):
                    mark_step()
                    loss = forward_loss(x, y)
                    loss.backward()
                    update()
                    opt.zero_grad(set_to_none=True)

                steps[id(opt)] = graphed_step(forward_loss, opt) if graphed else step
            return steps[id(opt)]

        def graphed_step(forward_loss, opt):
            """PyTorch's whole-network capture: warm up on a side stream, capture with the gradients
            set to None (so the captured backward writes them rather than adding to them), then
            copy each full batch into the static inputs and replay."""
            static: dict = {}

            def capture(x, y):
                static["x"], static["y"] = x.clone(), y.clone()
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(3):
                        opt.zero_grad(set_to_none=True)
                        forward_loss(static["x"], static["y"]).backward()
                        opt.step()
                torch.cuda.current_stream().wait_stream(side)
                static["graph"] = torch.cuda.CUDAGraph()
                opt.zero_grad(set_to_none=True)
                with torch.cuda.graph(static["graph"]):
                    forward_loss(static["x"], static["y"]).backward()
                    opt.step()

            def step(x, y):
                if x.shape[0] != task.batch_size:  # the last, smaller batch: eagerly, on the graph's own
                    opt.zero_grad(set_to_none=False)  # gradient buffers, zeroed in place
                    forward_loss(x, y).backward()
                    opt.step()
                    return
                if "graph" not in static:
                    capture(x, y)
                static["x"].copy_(x)
                static["y"].copy_(y)
                static["graph"].replay()

            return step

        def epoch(net, opt, n):
            perm = torch.randperm(n, device=device, generator=generator)
            step = step_for(net, opt)
            for lo in range(0, n, task.batch_size):
                idx = perm[lo: lo + task.batch_size]
                step(Xd[idx], yd[idx])

        # The measured model is the first one drawn, and every variant's warm-up draws the same
        # shuffle, so eager, compiled and graphed runs start from the same weights and batches.
        t0 = time.perf_counter()
        net = network()
        opt = new_optimizer(net)
        warm_samples = 2048 + task.train_samples % task.batch_size  # both batch shapes
        if compile_mode or graphed:  # compile or capture on the measured model, then restore its start
            start = {k: v.clone() for k, v in net.state_dict().items()}
            epoch(net, opt, warm_samples)
            with torch.no_grad():
                for k, v in net.state_dict().items():
                    v.copy_(start[k])
            for group_state in opt.state.values():  # Adam's moments and step count back to zero, in place
                for value in group_state.values():
                    value.zero_()
        else:
            warm = network()
            epoch(warm, new_optimizer(warm), warm_samples)
        sync()
        warmup = time.perf_counter() - t0
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        seconds = []
        for _ in range(task.epochs):
            sync()
            t0 = time.perf_counter()
            epoch(net, opt, Xd.shape[0])
            sync()
            seconds.append(time.perf_counter() - t0)
        with torch.no_grad():
            pred = net(torch.from_numpy(X_test).to(device=device, dtype=dtype)).argmax(dim=1).cpu().numpy()
        extra = {"warmup_seconds": warmup, "torch_version": torch.__version__, "torch_threads": torch.get_num_threads(),
                 "compile_mode": compile_mode, "matmul_precision": precision,
                 "compiled": (f"forward, loss and backward in {compile_mode!r}, Adam's update in 'default'"
                              if compile_mode else None),
                 "cuda_graph": ("the whole step, capturable Adam included, one torch.cuda.graph replayed per full batch"
                                if graphed else None),
                 "float32_matmul_precision": torch.get_float32_matmul_precision()}
        if device == "cuda":
            extra["peak_gpu_memory_bytes"] = int(torch.cuda.max_memory_allocated())
            extra["gpu_name"] = torch.cuda.get_device_name()
        return _result(task, seconds, float((pred == y_test).mean()), **extra)

    return run


# -- the floor -------------------------------------------------------------------------------
def sgemm_floor(task: Task) -> dict:
    """Not a trainer: one epoch's matrix products alone (forward ``A @ W``, weight gradients
    ``A.T @ D``, input gradients ``D @ W.T`` except the first layer's), NumPy/BLAS into
    preallocated outputs, on random data of the task's shapes. No training step can be faster
    on this machine with this BLAS; it has no accuracy (``test_accuracy`` None)."""
    rng = np.random.default_rng(task.seed)
    dtype = np.dtype(task.dtype)
    widths, n, bs = task.widths, task.train_samples, task.batch_size
    sizes = [bs] * (n // bs) + ([n % bs] if n % bs else [])
    Ws = [rng.standard_normal((a, b)).astype(dtype) for a, b in zip(widths, widths[1:])]

    def buffers(m):
        acts = [rng.standard_normal((m, w)).astype(dtype) for w in widths]
        return acts, [np.empty((m, w), dtype) for w in widths], [np.empty_like(W) for W in Ws]

    bufs = {m: buffers(m) for m in set(sizes)}

    def epoch():
        for m in sizes:
            acts, outs, grads = bufs[m]
            for i, W in enumerate(Ws):
                np.matmul(acts[i], W, out=outs[i + 1])          # forward
            for i in range(len(Ws) - 1, -1, -1):
                np.matmul(acts[i].T, acts[i + 1], out=grads[i])  # dW = A.T @ D
                if i > 0:
                    np.matmul(acts[i + 1], Ws[i].T, out=outs[i])  # dA = D @ W.T

    flops = sum(2 * m * a * b * (3 if i > 0 else 2) for m in sizes for i, (a, b) in enumerate(zip(widths, widths[1:])))
    epoch()  # warm-up: BLAS threads, page faults
    seconds = []
    for _ in range(task.epochs):
        t0 = time.perf_counter()
        epoch()
        seconds.append(time.perf_counter() - t0)
    median = float(np.median(seconds))
    return _result(task, seconds, None, flop_per_epoch=flops, gflop_per_second=flops / median / 1e9,
                   blas=_blas_name())


def _blas_name() -> str:
    try:
        from threadpoolctl import threadpool_info

        return ", ".join(f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} threads)"
                         for i in threadpool_info() if i.get("user_api") == "blas")
    except ImportError:
        return "unknown (threadpoolctl not installed)"


# -- JAX -----------------------------------------------------------------------------------
# xpnet's matmul_precision -> jax_default_matmul_precision. JAX's own default lets a GPU compute
# float32 products in TF32, so the "highest" peer pins "float32", as xpnet's default computes.
JAX_PRECISION = {"highest": "float32", "tf32": "tensorfloat32", "bf16": "bfloat16"}


def _jax(platform: str, precision: str = "highest", scan: bool = False) -> Callable[[Task], dict]:
    """The user's alternative: the same network in JAX, its whole step (forward, loss,
    ``jax.value_and_grad``, Adam as PyTorch computes it) one ``jax.jit`` function; with ``scan``
    an epoch's full batches are one ``jax.lax.scan`` of that step inside one ``jax.jit`` (the
    last, smaller batch is one more step). ``precision``: see :data:`JAX_PRECISION`."""

    def run(task: Task) -> dict:
        try:
            import jax
        except ImportError as exc:
            raise Unavailable(f"JAX is not installed ({exc})") from None
        if precision != "highest" and (platform != "gpu" or task.dtype != "float32"):
            raise Unavailable(f"precision {precision!r} is a float32 GPU setting")
        with jax.default_matmul_precision(JAX_PRECISION[precision]):
            return _run_jax(task)

    def _run_jax(task: Task) -> dict:
        import jax
        import jax.numpy as jnp

        try:
            device = jax.devices(platform)[0]
        except RuntimeError as exc:
            raise Unavailable(f"JAX has no {platform} device ({str(exc).splitlines()[0]})") from None
        if task.optimizer != "adam" or task.loss != "softmax_cross_entropy":
            raise Unavailable("this peer is set up for the Adam softmax-CE task only")
        act = {"sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu, "tanh": jnp.tanh}[task.activation]
        dtype = jnp.dtype(task.dtype)
        if dtype == jnp.float64 and not jax.config.jax_enable_x64:
            raise Unavailable("float64 needs JAX_ENABLE_X64=1")
        rng = np.random.default_rng(task.seed)

        def init():
            params = []
            for a, b in zip(task.widths, task.widths[1:]):
                limit = np.sqrt(6.0 / (a + b))
                params.append((jax.device_put(rng.uniform(-limit, limit, (a, b)).astype(dtype), device),
                               jax.device_put(np.zeros(b, dtype), device)))
            return params

        def loss_fn(params, x, y):
            h = x
            for i, (w, b) in enumerate(params):
                h = h @ w + b
                if i < len(params) - 1:
                    h = act(h)
            logp = jax.nn.log_softmax(h, axis=1)
            return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

        b1, b2, eps, lr = 0.9, 0.999, 1e-8, task.lr

        def train_step(params, m, v, t, X, Y, idx):
            x, y = jnp.take(X, idx, axis=0), jnp.take(Y, idx, axis=0)
            loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
            m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, grads)
            v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, grads)
            c1, c2 = 1 - b1**t, jnp.sqrt(1 - b2**t)
            params = jax.tree_util.tree_map(lambda p, m, v: p - (lr / c1) * m / (jnp.sqrt(v) / c2 + eps), params, m, v)
            return params, m, v, loss

        step = jax.jit(train_step)

        @jax.jit
        def scanned_steps(params, m, v, t, X, Y, batches):  # batches: (n_batches, batch_size) row indices
            def body(carry, idx):
                params, m, v, t = carry
                params, m, v, _ = train_step(params, m, v, t + 1, X, Y, idx)
                return (params, m, v, t + 1), None

            return jax.lax.scan(body, (params, m, v, t), batches)[0]

        X_train, y_train, X_test, y_test = load_data(task)
        X = jax.device_put(X_train.astype(dtype), device)
        Y = jax.device_put(y_train.astype(np.int32), device)

        def epoch(state, n):
            params, m, v, t = state
            perm = jax.device_put(rng.permutation(n).astype(np.int32), device)
            lo = 0
            if scan:
                full = n // task.batch_size
                batches = perm[: full * task.batch_size].reshape(full, task.batch_size)
                params, m, v, _ = scanned_steps(params, m, v, jnp.asarray(t, dtype), X, Y, batches)
                t, lo = t + full, full * task.batch_size
            for lo in range(lo, n, task.batch_size):
                t += 1
                params, m, v, loss = step(params, m, v, jnp.asarray(t, dtype), X, Y, perm[lo: lo + task.batch_size])
            jax.block_until_ready(params)
            return params, m, v, t

        def fresh():
            params = init()
            zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
            return params, zeros, zeros, 0

        t0 = time.perf_counter()
        # compiles both batch shapes; the scan is compiled for a whole epoch's count of batches
        epoch(fresh(), task.train_samples if scan else 2048 + task.train_samples % task.batch_size)
        warmup = time.perf_counter() - t0
        rng = np.random.default_rng(task.seed)
        state = fresh()
        seconds = []
        for _ in range(task.epochs):
            t0 = time.perf_counter()
            state = epoch(state, X.shape[0])
            seconds.append(time.perf_counter() - t0)
        h = jax.device_put(X_test.astype(dtype), device)
        for i, (w, b) in enumerate(state[0]):
            h = h @ w + b
            h = act(h) if i < len(state[0]) - 1 else h
        accuracy = float((np.asarray(jnp.argmax(h, axis=1)) == y_test).mean())
        return _result(task, seconds, accuracy, warmup_seconds=warmup, jax_version=jax.__version__,
                       jax_device=str(device), matmul_precision=precision,
                       jax_default_matmul_precision=str(jax.config.jax_default_matmul_precision), lax_scan=scan)

    return run


CONTESTANTS: dict[str, Callable[[Task], dict]] = {
    "xpnet-numpy-fused": _xpnet("numpy", True),  # one compiled Numba step where it applies (compiled=None)
    "xpnet-numpy-fused-eager": _xpnet("numpy", True, compiled=False),
    "xpnet-numpy-unfused": _xpnet("numpy", False),
    "xpnet-cupy-fused": _xpnet("cupy", True),  # CUDA-graph replay where it pays (graphs=None)
    "xpnet-cupy-fused-eager": _xpnet("cupy", True, graphs=False),
    # the captured step as 3L + 2 fused kernels (kernels/cuda_step.py), at every size
    "xpnet-cupy-fused-step": _xpnet("cupy", True, graphs=True, graph_step="fused"),
    # the same plan as one kernel launch per step, a grid barrier between its phases (kernels/persistent_step.py)
    "xpnet-cupy-persistent-step": _xpnet("cupy", True, graphs=True, graph_step="persistent"),
    # that kernel running all of an epoch's full batches in one launch, as jax-gpu-scan runs an epoch
    "xpnet-cupy-epoch-step": _xpnet("cupy", True, graphs=True, graph_step="epoch"),
    # the generic captured step with cuBLAS's products in the graph (XPNET_GRAPH_GEMM=cublas)
    "xpnet-cupy-cublas-graph": _xpnet("cupy", True, graphs=True, graph_gemm="cublas"),
    "xpnet-cupy-unfused": _xpnet("cupy", False),
    # tensor-core products (matmul_precision), each against PyTorch and JAX at the matching setting
    "xpnet-cupy-tf32": _xpnet("cupy", True, matmul_precision="tf32"),
    "xpnet-cupy-bf16": _xpnet("cupy", True, matmul_precision="bf16"),
    "xpnet-torch": _xpnet("torch:cpu", False),  # xpnet's backprop on PyTorch CPU tensors
    "xpnet-torch-cuda": _xpnet("torch:cuda", False),
    "xpnet-jax": _xpnet("jax", False),
    "xpnet-jax-jit": _xpnet("jax", False, jit=True),
    "jax-cpu": _jax("cpu"),
    "jax-gpu": _jax("gpu"),
    "jax-cpu-scan": _jax("cpu", scan=True),
    "jax-gpu-scan": _jax("gpu", scan=True),
    "jax-gpu-tf32": _jax("gpu", "tf32"),
    "jax-gpu-bf16": _jax("gpu", "bf16"),
    "sgemm-floor": sgemm_floor,
    "sklearn-mlp": sklearn_mlp,
    "torch-cpu": _torch("cpu"),
    "torch-cpu-compiled": _torch("cpu", "default"),
    "torch-cuda": _torch("cuda"),
    "torch-cuda-compiled": _torch("cuda", "reduce-overhead"),
    "torch-cuda-autotune": _torch("cuda", "max-autotune"),
    "torch-cuda-graphed": _torch("cuda", graphed=True),  # PyTorch's whole-network CUDA-graph capture
    # eager at each precision: the accuracy comparison (bench.accuracy) without minutes of compiling per seed
    "torch-cuda-tf32": _torch("cuda", precision="tf32"),
    "torch-cuda-bf16": _torch("cuda", precision="bf16"),
    "torch-cuda-compiled-tf32": _torch("cuda", "reduce-overhead", "tf32"),
    "torch-cuda-compiled-bf16": _torch("cuda", "reduce-overhead", "bf16"),
}
# matmul_precision -> (xpnet's contestant, the peers at the matching setting): the compiled
# PyTorch step (both modes at "highest") and JAX's jit step (and its lax.scan epoch)
PRECISION_CONTESTANTS = {
    "highest": ("xpnet-cupy-fused", ("torch-cuda-compiled", "torch-cuda-autotune", "torch-cuda-graphed", "jax-gpu",
                                     "jax-gpu-scan")),
    "tf32": ("xpnet-cupy-tf32", ("torch-cuda-compiled-tf32", "jax-gpu-tf32")),
    "bf16": ("xpnet-cupy-bf16", ("torch-cuda-compiled-bf16", "jax-gpu-bf16")),
}
CPU_CONTESTANTS = ("xpnet-numpy-fused", "xpnet-numpy-fused-eager", "xpnet-numpy-unfused", "xpnet-torch", "xpnet-jax", "xpnet-jax-jit",
                   "sklearn-mlp", "torch-cpu", "torch-cpu-compiled", "jax-cpu", "jax-cpu-scan", "sgemm-floor")
