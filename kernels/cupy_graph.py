"""A whole training step replayed as one CUDA graph (CuPy).

At batch 128 on MNIST a GPU step is bound by launch overhead, not arithmetic:
about 30 kernel launches from Python (8 to 30 microseconds each; ``cupy.matmul``
alone costs about 28 microseconds of host time) against a few microseconds of
GPU work each. :class:`CapturedTraining` records the step once with CUDA stream
capture (gather the batch, forward, loss, backward, optimizer update, epoch
statistics) and then replays it with one ``cudaGraphLaunch`` per step.

The captured code is the network's own: ``Sequential._loss_and_backward`` and
``Optimizer.step``, run with three operations swapped for capturable ones:

- ``matmul`` / ``matmul_into``: :func:`gemm` (``gemm.cu``), because CuPy refuses
  cuBLAS calls during capture. With ``XPNET_GRAPH_GEMM=cublas`` (opt-in, not yet measured on a
  GPU): :func:`cublas_gemm`, cuBLAS called through CuPy's low-level binding on a handle of
  xpnet's own, made before the capture.
- ``adam_update``: the same update, reading the step count for the bias
  correction from device memory (a graph replays fixed scalars).

What changes between steps lives on the device (``training_step.cu``): the
batch's rows are gathered from the epoch's permutation at an offset kept in a
device counter, and the loss sum, correct count, first non-finite loss and
optimizer step count are updated by one single-thread kernel. The host reads
them once per epoch.

Memory: everything the graph touches is allocated from a private CuPy memory
pool that lives as long as the captured step, so no later allocation can reuse
a buffer the graph writes. The graph is launched on the current (default)
stream, so it is ordered with everything else the model queues.

With ``XPNET_GRAPH_STEP=fused``, or a model whose ``matmul_precision`` is "tf32" or "bf16", the
captured body is instead :mod:`~xpnet.kernels.cuda_step`'s plan of ``3L + 2`` fused kernels (11
instead of about 33 on 784-256-128-10), same buffers, counters and statistics. With
``XPNET_GRAPH_STEP=persistent`` it is that plan as one kernel launch
(:mod:`~xpnet.kernels.persistent_step`; opt-in, not yet run on a GPU). With
``XPNET_GRAPH_STEP=epoch`` one launch of that kernel runs all of an epoch's full batches in a
row (:meth:`CapturedTraining.steps`), no graph needed, as ``jax.lax.scan`` runs an epoch as
one dispatch; where a callback watches each batch, the steps are launched one by one as with
"persistent".

Importing this module does not import CuPy; the CUDA sources are compiled by CI
with ``nvcc``.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import Any

__all__ = ["gemm", "gemm_into", "cublas_gemm", "cublas_gemm_into", "cublas_gemm_arguments", "graph_gemm_requested",
           "adam_update_device_step", "CapturedTraining", "GEMM_SOURCE", "STEP_SOURCE", "GRAPH_ELEMENTWISE",
           "capturable_optimizer"]

GEMM_SOURCE = Path(__file__).with_name("gemm.cu")
STEP_SOURCE = Path(__file__).with_name("training_step.cu")
_TILES = (32, 64)
GRAPH_GEMMS = ("xpnet", "cublas")  # XPNET_GRAPH_GEMM: the generic captured step's products
_CUBLAS_OP_N, _CUBLAS_OP_T = 0, 1  # cublasOperation_t
_TRANSPOSES = ((False, False), (False, True), (True, False), (True, True))

# Adam with the step count read from device memory (counters[3] = steps already taken).
# The bias corrections are computed in double precision from the float64 hyperparameters,
# exactly as the host computes the scalars that ``cupy_gpu``'s Adam kernel receives, and so is
# scikit-learn's epsilon (``xpnet.ops.adam_eps``) where ``scikit_learn_eps`` is set.
GRAPH_ELEMENTWISE = {
    "adam_device_step": (
        "T g, raw int64 counters, float64 lr, float64 beta1, float64 beta2, float64 eps, bool scikit_learn_eps",
        "T p, T m, T v",
        "const double t = (double)(counters[3] + 1); "
        "const T step_size = (T)(lr / (1.0 - pow(beta1, t))); "
        "const double bias2 = sqrt(1.0 - pow(beta2, t)); "
        "const T bias2_sqrt = (T)bias2; "
        "const T eps_t = (T)(scikit_learn_eps ? eps / bias2 : eps); "
        "const T b1 = (T)beta1, b2 = (T)beta2; "
        "m = b1 * m + (T(1) - b1) * g; v = b2 * v + (T(1) - b2) * g * g; "
        "p -= step_size * m / (sqrt(v) / bias2_sqrt + eps_t);",
    ),
}


def _ctype(dtype: Any) -> str:
    import numpy as np

    if dtype == np.float32:
        return "float"
    if dtype == np.float64:
        return "double"
    raise TypeError(f"the captured step supports float32 and float64 arrays, got {dtype}")


@functools.lru_cache(maxsize=None)
def _gemm_module():
    import cupy

    names = [f"xpnet_gemm<{t}, {tile}, {tile}, {str(ta).lower()}, {str(tb).lower()}>"
             for t in ("float", "double") for tile in _TILES for ta, tb in _TRANSPOSES]
    names += [f"xpnet_splitk_sum<{t}>" for t in ("float", "double")]
    return cupy.RawModule(code=GEMM_SOURCE.read_text(), options=("--std=c++14",), name_expressions=tuple(names))


@functools.lru_cache(maxsize=None)
def _step_module():
    import cupy

    names = [f"xpnet_gather_batch<{t}, {u}>" for t in ("float", "double") for u in ("long long", t)]
    names += [f"xpnet_step_stats<{t}>" for t in ("float", "double")]
    return cupy.RawModule(code=STEP_SOURCE.read_text(), options=("--std=c++14",), name_expressions=tuple(names))


@functools.lru_cache(maxsize=None)
def _elementwise(name: str):
    import cupy

    in_params, out_params, body = GRAPH_ELEMENTWISE[name]
    return cupy.ElementwiseKernel(in_params, out_params, body, f"xpnet_{name}")


@functools.lru_cache(maxsize=None)
def _sm_count(device_id: int) -> int:
    import cupy

    return int(cupy.cuda.Device(device_id).attributes["MultiProcessorCount"])


def strided_layout(strides: tuple[int, int], itemsize: int) -> tuple[bool, int] | None:
    """``(transposed, leading dimension)`` of a 2-D array with these byte ``strides``: rows
    contiguous (``transposed=False``) or columns contiguous (a transposed view such as ``x.T``);
    None when neither, and the array must be copied first."""
    s0, s1 = strides
    if s1 == itemsize and s0 > 0 and s0 % itemsize == 0:
        return False, max(s0 // itemsize, 1)
    if s0 == itemsize and s1 > 0 and s1 % itemsize == 0:
        return True, s1 // itemsize
    return None


def _layout(a: Any) -> tuple[Any, bool, int]:
    """``(array, transposed, leading dimension)`` describing a 2-D array for ``gemm.cu`` and cuBLAS."""
    layout = strided_layout(a.strides, a.itemsize)
    if layout is not None:
        return (a, *layout)
    import cupy

    a = cupy.ascontiguousarray(a)
    return a, False, max(a.shape[1], 1)


def gemm_plan(m: int, n: int, k: int, sm_count: int) -> tuple[int, int, int]:
    """``(tile, splits, k_per_split)`` for an ``m x k`` by ``k x n`` product.

    64 x 64 tiles where there are enough of them to fill the chip twice, 32 x 32
    otherwise; then split K until about two blocks per multiprocessor exist,
    keeping at least 64 values of k per block.
    """
    tile = 64 if -(-m // 64) * -(-n // 64) >= 2 * sm_count else 32
    blocks = -(-m // tile) * -(-n // tile)
    return (tile, *split_k(k, max(1, min(-(-2 * sm_count // blocks), k // 64))))


def split_k(k: int, asked: int) -> tuple[int, int]:
    """``(splits, k_per_split)`` for K split about ``asked`` ways in whole BK slabs (16 values of
    k): fewer splits where rounding each up to a slab leaves the last with nothing."""
    k_per_split = -(-k // asked)
    k_per_split = -(-k_per_split // 16) * 16  # whole BK slabs
    return (-(-k // k_per_split) if k else 1), k_per_split


def _product_operands(a: Any, b: Any, out: Any) -> tuple[int, int, int, str, Any]:
    """``(M, N, K, C type, out)`` for ``a @ b`` after checking shapes, dtypes and ``out`` (made when
    None; zero-filled when ``K == 0``)."""
    import cupy

    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"gemm needs (M, K) and (K, N) matrices, got {a.shape} and {b.shape}")
    if a.dtype != b.dtype:
        raise TypeError(f"gemm needs one dtype, got {a.dtype} and {b.dtype}")
    m, k = a.shape
    n = b.shape[1]
    ctype = _ctype(a.dtype)  # float32 or float64
    if out is None:
        out = cupy.empty((m, n), dtype=a.dtype)
    elif out.shape != (m, n) or out.dtype != a.dtype or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous {(m, n)} {a.dtype} array, got {out.shape} {out.dtype}")
    if k == 0 and m and n:
        out.fill(0)
    return m, n, k, ctype, out


def gemm(a: Any, b: Any, out: Any = None) -> Any:
    """``a @ b`` for 2-D CuPy arrays ``(M, K) @ (K, N) -> (M, N)``, capturable in a CUDA graph.

    ``a`` and ``b`` may be transposed views (as ``x.T`` and ``W.T`` in the backward
    pass); ``out``, if given, must be a C-contiguous ``(M, N)`` array of the same dtype.
    """
    import cupy
    import numpy as np

    m, n, k, ctype, out = _product_operands(a, b, out)
    if m == 0 or n == 0 or k == 0:
        return out
    a, ta, lda = _layout(a)
    b, tb, ldb = _layout(b)
    tile, splits, k_per_split = gemm_plan(m, n, k, _sm_count(out.device.id))
    module = _gemm_module()
    kernel = module.get_function(f"xpnet_gemm<{ctype}, {tile}, {tile}, {str(ta).lower()}, {str(tb).lower()}>")
    target = out if splits == 1 else cupy.empty((splits, m, n), dtype=a.dtype)
    grid = (-(-n // tile), -(-m // tile), splits)
    kernel(grid, (256,), (a, b, target, np.int32(m), np.int32(n), np.int32(k), np.int32(lda), np.int32(ldb),
                          np.int32(n), np.int32(k_per_split)))
    if splits > 1:
        reduce = module.get_function(f"xpnet_splitk_sum<{ctype}>")
        threads = 256
        blocks = min(-(-(m * n) // threads), 4 * _sm_count(out.device.id))
        reduce((blocks,), (threads,), (target, out, np.int32(m), np.int32(n), np.int32(n), np.int32(splits)))
    return out


def gemm_into(a: Any, b: Any, out: Any) -> None:
    """``out[...] = a @ b`` with :func:`gemm` (the ``ops.matmul_into`` signature)."""
    gemm(a, b, out=out)


def env_choice(name: str, choices: tuple[str, ...]) -> str:
    """Environment variable ``name``, stripped and lower-cased, as one of ``choices`` (the first where
    it is unset or empty); anything else is a ValueError naming the variable and its choices."""
    value = os.environ.get(name, "").strip().lower() or choices[0]
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def graph_gemm_requested() -> str:
    """``XPNET_GRAPH_GEMM``: the products of the generic captured step, "xpnet" (``gemm.cu``, the
    default) or "cublas" (:func:`cublas_gemm`; opt-in until it has been timed on a GPU). The
    fused plan (``XPNET_GRAPH_STEP=fused``) has its own products and ignores it."""
    return env_choice("XPNET_GRAPH_GEMM", GRAPH_GEMMS)


def cublas_gemm_arguments(m: int, n: int, k: int, a_layout: tuple[bool, int],
                          b_layout: tuple[bool, int]) -> tuple[int, int, int, int, int, int, int, int]:
    """The column-major cuBLAS product that computes the row-major ``C (m, n) = A (m, k) @ B (k, n)``.

    cuBLAS reads a row-major ``(r, c)`` array with leading dimension ``ld`` as the column-major
    ``(c, r)`` array, its transpose. So it computes ``C^T = B^T A^T``: B is its first operand
    and A its second, each used as stored (``N``), or transposed (``T``) where the operand is a
    transposed view (``*_layout``: ``strided_layout``'s ``(transposed, leading dimension)``).
    Returns ``(op_first, op_second, rows, cols, depth, ld_first, ld_second, ldc)`` for
    ``cublas<t>gemm(handle, op_first, op_second, rows, cols, depth, alpha, B, ld_first, A,
    ld_second, beta, C, ldc)``.

    cuBLAS refuses a leading dimension below the stored row count (``k`` or ``m`` for A, ``n``
    or ``k`` for B). A valid array has one only where it has a single row (or column, when
    transposed), whose stride is never used, so it is raised to that minimum.
    """
    (ta, lda), (tb, ldb) = a_layout, b_layout
    lda, ldb = max(lda, m if ta else k, 1), max(ldb, k if tb else n, 1)
    return (_CUBLAS_OP_T if tb else _CUBLAS_OP_N, _CUBLAS_OP_T if ta else _CUBLAS_OP_N, n, m, k, ldb, lda, max(n, 1))


CUBLAS_WORKSPACE_BYTES = 32 << 20  # cuBLAS's recommendation for Hopper; more than earlier GPUs need
_cublas_workspaces: dict[int, Any] = {}  # device id -> the workspace its handle keeps using


@functools.lru_cache(maxsize=None)
def _cublas_handle(device_id: int) -> int:
    """A cuBLAS handle of xpnet's own on ``device_id``, kept for the process, in cuBLAS's default
    math mode (float32 products in float32: "highest" precision, whatever CuPy's handle is set
    to). Made outside any capture: :class:`CapturedTraining` asks for it before capturing.

    Where CuPy's binding has ``setWorkspace``, the handle gets a workspace of its own, so that a
    captured product never has cuBLAS allocate one (cuBLAS's notes on CUDA graphs)."""
    import cupy
    from cupy_backends.cuda.libs import cublas

    with cupy.cuda.Device(device_id):
        handle = cublas.create()
        cublas.setMathMode(handle, 0)  # CUBLAS_DEFAULT_MATH
        cublas.setPointerMode(handle, 0)  # CUBLAS_POINTER_MODE_HOST: alpha and beta read from host memory at the call
        if hasattr(cublas, "setWorkspace"):
            workspace = _cublas_workspaces[device_id] = cupy.cuda.alloc(CUBLAS_WORKSPACE_BYTES)
            cublas.setWorkspace(handle, workspace.ptr, CUBLAS_WORKSPACE_BYTES)
    return handle


def cublas_gemm(a: Any, b: Any, out: Any = None) -> Any:
    """``a @ b`` as :func:`gemm` (same arguments, checks and layouts), by cuBLAS on the current
    stream, so that a stream capture records cuBLAS's own kernels. ``XPNET_GRAPH_GEMM=cublas``."""
    import cupy
    import numpy as np
    from cupy_backends.cuda.libs import cublas

    m, n, k, ctype, out = _product_operands(a, b, out)
    if m == 0 or n == 0 or k == 0:
        return out
    a, ta, lda = _layout(a)
    b, tb, ldb = _layout(b)
    op_first, op_second, rows, cols, depth, ld_first, ld_second, ldc = cublas_gemm_arguments(m, n, k, (ta, lda), (tb, ldb))
    handle = _cublas_handle(out.device.id)
    cublas.setStream(handle, cupy.cuda.get_current_stream().ptr)
    product = cublas.sgemm if ctype == "float" else cublas.dgemm
    # alpha and beta by host pointer (CuPy's binding takes their addresses); cuBLAS reads them during the
    # call, so a captured graph keeps their values
    alpha, beta = np.ones((), dtype=out.dtype), np.zeros((), dtype=out.dtype)
    product(handle, op_first, op_second, rows, cols, depth, alpha.ctypes.data, b.data.ptr, ld_first,
            a.data.ptr, ld_second, beta.ctypes.data, out.data.ptr, ldc)
    return out


def cublas_gemm_into(a: Any, b: Any, out: Any) -> None:
    """``out[...] = a @ b`` with :func:`cublas_gemm` (the ``ops.matmul_into`` signature)."""
    cublas_gemm(a, b, out=out)


def adam_update_device_step(param, grad, m, v, *, lr, beta1, beta2, eps, step, counters, eps_form="pytorch"):
    """Adam in place, one kernel; the step number is ``counters[3] + 1`` on the device.

    ``step`` (the host's count) is accepted for the ``ops.adam_update`` signature and
    ignored: a replayed graph would otherwise repeat the step it was captured with. So is
    scikit-learn's epsilon, which changes with the step, computed there (``eps_form``).
    """
    del step
    _elementwise("adam_device_step")(grad, counters, lr, beta1, beta2, eps, eps_form == "scikit-learn", param, m, v)
    return param, m, v


def capturable_optimizer(optimizer: Any) -> str:
    """``""`` when a captured step can run ``optimizer``, else the reason it cannot."""
    from xpnet.optim import SGD, Adam

    if type(optimizer) in (SGD, Adam):
        return ""
    return f"{type(optimizer).__name__} is not one of the optimizers a captured step supports (Adam, SGD)"


@contextlib.contextmanager
def _capturable_ops(ops: Any, counters: Any, products: str):
    """Swap the operations that cannot be captured (CuPy's cuBLAS products, host step counts);
    ``products``: "xpnet" (``gemm.cu``) or "cublas" (:func:`cublas_gemm`)."""
    saved = {name: getattr(ops, name) for name in ("matmul", "matmul_into", "adam_update")}
    ops.matmul, ops.matmul_into = (cublas_gemm, cublas_gemm_into) if products == "cublas" else (gemm, gemm_into)
    ops.adam_update = functools.partial(adam_update_device_step, counters=counters)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(ops, name, fn)


class CapturedTraining:
    """Training steps of one ``fit`` on fixed device data, replayed as a CUDA graph.

    Parameters
    ----------
    model : Sequential (CuPy backend, fused kernels, flat parameters)
    optimizer : Adam or SGD, its flat state already built
    X : device array ``(N, n_features)``; y : device targets ``(N,)`` or ``(N, k)``
    batch_size : int; full batches replay the graph, a last smaller batch runs the
        same capturable code eagerly.

    Use: :meth:`begin_epoch` with the epoch's permutation, :meth:`step` once per
    batch (or :meth:`steps` for several in a row), :meth:`end_epoch` for the figures
    (one device read).
    """

    def __init__(self, model: Any, optimizer: Any, X: Any, y: Any, batch_size: int) -> None:
        import cupy

        self.model, self.optimizer = model, optimizer
        self.X, self.y = X, (y if y.ndim == 2 else y.reshape(-1, 1))
        self.batch_size = batch_size
        self._y_1d = y.ndim == 1
        self.pool = cupy.cuda.MemoryPool()  # owns every buffer the graph touches
        self.stream = cupy.cuda.Stream(non_blocking=True)
        n = X.shape[0]
        with cupy.cuda.using_allocator(self.pool.malloc):
            self.order = cupy.arange(n, dtype=cupy.int64)
            self.counters = cupy.zeros(4, dtype=cupy.int64)
            self.sums = cupy.zeros(2, dtype=cupy.float64)
            self._zero_count = cupy.zeros((), dtype=cupy.int64)
        self.graph = None
        self.launches = 0  # graph launches so far
        self.epoch_launches = 0  # launches that ran several steps in a row (XPNET_GRAPH_STEP=epoch)
        # XPNET_GRAPH_STEP=fused: each step is cuda_step's plan of 3L + 2 fused kernels instead of
        # the network's own code (opt-in until it has been measured on a GPU); "persistent": that plan
        # as one launch. Tensor-core products (matmul_precision "tf32"/"bf16") exist only in the plan
        # launched kernel by kernel, so they require it.
        from .cuda_step import PERSISTENT_STEPS, graph_step_requested, unsupported

        self.precision = model.matmul_precision
        requested = graph_step_requested()
        if requested in PERSISTENT_STEPS and self.precision != "highest":
            raise ValueError(f"XPNET_GRAPH_STEP={requested} runs highest-precision products only, and this model's "
                             f"matmul_precision is {self.precision!r}; unset XPNET_GRAPH_STEP or set it to 'fused'")
        wanted = self.precision != "highest" or requested != "generic"
        self.fused_why = unsupported(model, optimizer) if wanted else "XPNET_GRAPH_STEP is 'generic'"
        if self.fused_why and self.precision != "highest":  # Sequential.uses_graphs refuses it first
            raise ValueError(f"matmul_precision={self.precision!r} runs in the fused captured step, which this fit "
                             f"cannot use: {self.fused_why}")
        self.persistent = self.fused and requested in PERSISTENT_STEPS  # the plan as one launch
        self.whole_epoch = self.persistent and requested == "epoch"  # ... of many steps where it can
        self._plans: dict[int, list] = {}  # rows -> the fused plan's launches
        self._persistent_launches: dict[int, Any] = {}  # rows -> that plan as one launch
        self.persistent_blocks_per_sm = 0  # the persistent step's blocks per multiprocessor, once planned
        # XPNET_GRAPH_GEMM=cublas: the generic step's products by cuBLAS (its handle made now, not in the capture)
        self.products = "fused plan" if self.fused else graph_gemm_requested()
        if self.products == "cublas":
            _cublas_handle(X.device.id)

    @property
    def loss_sum(self) -> Any:
        """Running ``sum(batch loss * batch rows)`` of this epoch, a 0-d device array."""
        return self.sums[0]

    def begin_epoch(self, order: Any | None) -> None:
        """Reset the epoch's counters and take its sample order (None: ``0..N-1``)."""
        import numpy as np

        self.order[...] = order if order is not None else self._arange()
        self.counters.set(np.array([0, 0, -1, self.optimizer.iterations], dtype=np.int64))
        self.sums.fill(0)

    def _arange(self) -> Any:
        import cupy

        return cupy.arange(self.order.shape[0], dtype=cupy.int64)

    @property
    def fused(self) -> bool:
        """Whether each step runs ``cuda_step``'s fused plan (else the network's own code)."""
        return not self.fused_why

    @property
    def step_kind(self) -> str:
        """What each step runs: "epoch" (the fused plan as one launch, which runs several steps in
        a row where :meth:`steps` is asked for them), "persistent" (the fused plan as one launch),
        "fused" (the plan, a launch per kernel) or "generic" (the network's own code)."""
        return ("epoch" if self.whole_epoch else "persistent" if self.persistent else "fused" if self.fused
                else "generic")

    def _fused_plan(self, rows: int) -> list:
        """The fused plan for batches of ``rows`` rows, built once (its buffers in the private pool)."""
        import cupy

        from .cuda_step import StepBuffers, plan_step
        from .step_spec import describe

        plan = self._plans.get(rows)
        if plan is None:
            model, optimizer = self.model, self.optimizer
            optimizer._ensure_state(model.parameters(), cupy, flat=True)
            state = optimizer._flat_state
            slot1 = state.get("m", state.get("velocity", self.sums))
            buffers = StepBuffers(X=self.X, Y=self.y, order=self.order, counters=self.counters, sums=self.sums,
                                  params=model._flat[0], grads=model._flat[1], slot1=slot1, slot2=state.get("v", slot1))
            plan = self._plans[rows] = plan_step(
                describe(model), buffers, rows=rows, batch_stride=self.batch_size, optimizer=optimizer, l2=model.l2,
                sm_count=_sm_count(self.X.device.id), empty=lambda shape, dt: cupy.empty(shape, dtype=dt),
                zeros=lambda shape, dt: cupy.zeros(shape, dtype=dt), to_device=cupy.asarray, precision=self.precision,
                resident_blocks=self._resident_blocks() if self.persistent else None)
            for layer in model.layers:  # the gradients the plan writes are the layers' gradients
                if getattr(layer, "grad_buffers", None) is not None:
                    layer.grads = layer.grad_buffers
        return plan

    def _resident_blocks(self) -> int:
        """The persistent step's grid, every block of which the GPU runs at once: the multiprocessors
        times ``cuda_step.PERSISTENT_BLOCKS_PER_SM``, or fewer per multiprocessor where the compiled
        kernel's occupancy is lower (``persistent_blocks_per_sm``, set by the first call)."""
        from . import cuda_step
        from .persistent_step import resident_blocks_per_sm

        if not self.persistent_blocks_per_sm:
            name = cuda_step.persistent_step_name(*self._kernel_types())
            self.persistent_blocks_per_sm = resident_blocks_per_sm(
                cuda_step.PERSISTENT_BLOCKS_PER_SM, cuda_step.CudaKernels.blocks_per_multiprocessor(name), name)
        return _sm_count(self.X.device.id) * self.persistent_blocks_per_sm

    def _kernel_types(self) -> tuple[str, str]:
        """The C types of the parameters and of the targets (``"long long"`` for labels)."""
        import cupy

        return _ctype(self.X.dtype), "long long" if self.y.dtype == cupy.int64 else _ctype(self.y.dtype)

    def _persistent_launch(self, rows: int) -> Any:
        """The fused plan for batches of ``rows`` rows as one launch, built once, outside any capture
        (its phase table and barrier in the private pool; the plan's buffers, which the table
        addresses, stay in ``_plans``). The plan is made for its grid (``_resident_blocks``)."""
        import cupy

        from .persistent_step import persistent_launch

        launch = self._persistent_launches.get(rows)
        if launch is None:
            launch = self._persistent_launches[rows] = persistent_launch(
                self._fused_plan(rows), blocks=self._resident_blocks(), to_device=cupy.asarray,
                zeros=lambda shape, dt: cupy.zeros(shape, dtype=dt))
        return launch

    def _body(self, rows: int) -> None:
        """One step for the batch at ``counters[0]``, queued without any host synchronisation."""
        import cupy
        import numpy as np

        if self.fused:
            from .cuda_step import CudaKernels

            CudaKernels()([self._persistent_launch(rows)] if self.persistent else self._fused_plan(rows))
            self.optimizer.iterations += 1  # as Optimizer.step counts it in the generic body
            return
        model, xp = self.model, self.model.backend.xp
        ctype, utype = self._kernel_types()
        xb = cupy.empty((rows, self.X.shape[1]), dtype=self.X.dtype)
        yb = cupy.empty((rows, self.y.shape[1]), dtype=self.y.dtype)
        gather = _step_module().get_function(f"xpnet_gather_batch<{ctype}, {utype}>")
        size = rows * (self.X.shape[1] + self.y.shape[1])
        gather((min(-(-size // 256), 8 * _sm_count(self.X.device.id)),), (256,),
               (self.X, self.y, self.order, self.counters, np.int32(self.batch_size), np.int32(rows),
                np.int32(self.X.shape[1]), np.int32(self.y.shape[1]), xb, yb))
        if self._y_1d:
            yb = yb.reshape(rows)
        with _capturable_ops(model.ops, self.counters, self.products):
            loss, out = model._loss_and_backward(xb, yb)
            self.optimizer.step(model.parameters(), model._grads(), model.ops, flat=model._flat)
        correct = model.loss.n_correct(out, yb, xp) if model.loss.is_classifier else self._zero_count
        loss = xp.astype(xp.reshape(loss, ()), self.X.dtype, copy=False)
        stats = _step_module().get_function(f"xpnet_step_stats<{ctype}>")
        stats((1,), (1,), (loss, xp.astype(correct, xp.int64, copy=False), np.float64(rows), self.sums, self.counters))

    def step(self, rows: int) -> None:
        """Train on the next batch of ``rows`` samples of this epoch's order."""
        import cupy

        if rows != self.batch_size:  # the last, smaller batch: same code, not replayed
            self._body(rows)
            return
        if self.graph is not None:
            self.graph.launch()
            self.optimizer.iterations += 1
            self.launches += 1
            return
        # First full batch: run it for real (compiles every kernel, fills the private pool),
        # then capture the next one without running it.
        current = cupy.cuda.get_current_stream()
        self.stream.wait_event(current.record())
        with cupy.cuda.using_allocator(self.pool.malloc), self.stream:
            self._body(rows)
            iterations = self.optimizer.iterations
            self.stream.begin_capture()
            try:
                self._body(rows)
            finally:
                graph = self.stream.end_capture()
                self.optimizer.iterations = iterations  # capture ran the Python side once, nothing on the GPU
        current.wait_event(self.stream.record())
        self.graph = graph

    def steps(self, rows: int, count: int) -> None:
        """Train on the next ``count`` batches of ``rows`` samples each, as :meth:`step` ``count``
        times would. With ``XPNET_GRAPH_STEP=epoch``: one launch of the persistent step running them
        in a row (its barrier between steps as between phases), on the current stream."""
        if not (self.whole_epoch and count > 1):
            for _ in range(count):
                self.step(rows)
            return
        import cupy

        from .cuda_step import CudaKernels
        from .persistent_step import with_steps

        with cupy.cuda.using_allocator(self.pool.malloc):  # the plan's buffers, as for the graph
            one = self._persistent_launch(rows)
        CudaKernels()([with_steps(one, count)])
        self.optimizer.iterations += count
        self.epoch_launches += 1

    def end_epoch(self) -> dict:
        """``{"loss_sum", "correct", "first_bad_batch", "bad_value"}`` in one device read."""
        import cupy

        counters = cupy.asnumpy(self.counters)
        sums = cupy.asnumpy(self.sums)
        return {"loss_sum": float(sums[0]), "correct": int(counters[1]),
                "first_bad_batch": int(counters[2]), "bad_value": float(sums[1])}
