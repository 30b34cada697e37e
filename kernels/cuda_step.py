"""The captured GPU training step as a fixed plan of fused kernels (``fused_step.cu``).

The generic captured step (:class:`~xpnet.kernels.cupy_graph.CapturedTraining` running the
network's own Python code) launches about 33 kernels per step on the reference network: each
product, its split-K sum, bias add with activation, loss pieces, bias sums, activation
backwards, the update and the statistics. :func:`plan_step` plans the same step as
``3 L + 2`` kernels for ``L`` Dense layers (11 for 784-256-128-10): the gather, one product per
layer forward (bias and activation inside it), one loss kernel, per layer backward one product
for ``[gW; gb]`` (bias gradient and L2 term inside it) and one for the previous layer's signal
(the activation's backward inside it), and one update kernel that also finishes the L2 penalty
and the epoch statistics. ``fused_step.cu`` explains each fusion.

A plan is data: a list of :class:`Launch` (kernel name, grid, block, arguments), built from a
:class:`~xpnet.kernels.step_spec.StepSpec` and the buffers the step reads and writes. CuPy runs
it (:class:`CudaKernels`); the tests run the same plan with NumPy arrays through a CPU emulation
of the kernels (``tests/cuda_emulation``), against the reference training step. Building a plan
needs neither CuPy nor a GPU, so the launch count is tested everywhere.

Opt-in until measured on a GPU: ``XPNET_GRAPH_STEP=fused`` makes the captured step use it
(:func:`graph_step_requested`); the default stays the generic captured step.
``XPNET_GRAPH_STEP=persistent`` runs the same plan as one launch per step
(:mod:`~xpnet.kernels.persistent_step`).

Precision: a float32 plan's products can run on the tensor cores (``precision="tf32"`` or
``"bf16"``, Sequential's ``matmul_precision``): their inputs rounded to TF32 or bfloat16, their sums
in float32, everything else unchanged. Those products are compiled in a module of their own
(:data:`PRECISIONS`), with the tensor-core instructions written as inline PTX, so neither module
needs a CUDA header (NVRTC finds none where CUDA comes from pip wheels).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .cupy_graph import env_choice, gemm_plan, split_k  # gemm_plan: the generic step's (tile, splits, k_per_split)
from .step_spec import SOFTMAX_CE, StepSpec, network_unsupported

__all__ = ["Launch", "plan_step", "resident_gemm_plan", "StepBuffers", "unsupported", "fused_step_requested",
           "graph_step_requested", "GRAPH_STEPS", "PERSISTENT_STEPS", "kernel_names", "persistent_kernel_names",
           "persistent_step_name", "PERSISTENT_SOURCE", "tensor_core_support",
           "CudaKernels", "FUSED_SOURCE", "GATHER_SOURCE", "EPI_NONE", "EPI_ACT", "EPI_ACT_GRAD", "EPI_L2",
           "BIAS_NONE", "BIAS_IN", "BIAS_OUT", "OPT_SGD", "OPT_MOMENTUM", "OPT_NESTEROV", "OPT_ADAM",
           "OPT_ADAM_SCIKIT_LEARN_EPS",
           "PRECISIONS", "round_inputs"]

FUSED_SOURCE = Path(__file__).with_name("fused_step.cu")
GATHER_SOURCE = Path(__file__).with_name("training_step.cu")  # xpnet_gather_batch
PERSISTENT_SOURCE = Path(__file__).with_name("persistent_step.cu")  # xpnet_persistent_step
# XPNET_GRAPH_STEP: what the captured step runs (unset or "": the first)
GRAPH_STEPS = ("generic", "fused", "persistent", "epoch")
PERSISTENT_STEPS = ("persistent", "epoch")  # those that run the plan as one launch (persistent_step)

# fused_step.cu's constants
EPI_NONE, EPI_ACT, EPI_ACT_GRAD, EPI_L2 = 0, 1, 2, 3
BIAS_NONE, BIAS_IN, BIAS_OUT = 0, 1, 2
OPT_SGD, OPT_MOMENTUM, OPT_NESTEROV, OPT_ADAM, OPT_ADAM_SCIKIT_LEARN_EPS = 0, 1, 2, 3, 4
# matmul_precision -> fused_step.cu's XPNET_PREC_*; a product's name carries it when it is not 0
PRECISIONS = {"highest": 0, "tf32": 1, "bf16": 2}
THREADS = 256
# At most this many values of k a product stages per round (fused_step.cu's XPNET_MAX_BK: 16, 32 or
# 64). 64 since 2026-11-24, from reading the code, not from a GPU measurement; 16 was the depth
# measured on the H100 on 2026-11-24. bench.launches times both in one run.
MAX_STAGED_K = 64
# Blocks per multiprocessor of the persistent step (persistent_step.cu's XPNET_PERSISTENT_BLOCKS_PER_SM,
# 1 or 2): its grid and its kernel's launch bounds. 1 from reading ptxas's report (no spills), not
# from a GPU measurement; bench.launches times both.
PERSISTENT_BLOCKS_PER_SM = 1
_TILES = (32, 64)
_PRODUCTS = ((False, False), (True, False), (False, True))  # forward, weight gradient, input gradient


def round_inputs(x: np.ndarray, precision: str) -> np.ndarray:
    """What the tensor cores multiply at ``precision``: float32 ``x`` rounded as the fused product
    stages it, to TF32 (10 mantissa bits, to nearest, ties away from zero: ``cvt.rna.tf32.f32``) or
    bfloat16 (7 bits, to nearest, ties to even), held in float32; NaN and inf pass. The NumPy
    reference the tests hold the kernels to; ``"highest"`` returns ``x``."""
    if precision == "highest":
        return x
    x = np.asarray(x, dtype=np.float32)
    bits = x.view(np.uint32)
    if precision == "tf32":
        rounded = (bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000)
    elif precision == "bf16":
        rounded = (bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) & np.uint32(0xFFFF0000)
    else:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    return np.where(np.isfinite(x), rounded.view(np.float32), x)


def graph_step_requested() -> str:
    """``XPNET_GRAPH_STEP``: what the captured step runs, one of :data:`GRAPH_STEPS`: "generic" (the
    network's own code, the default), "fused" (this plan, a launch per kernel), "persistent" (this
    plan as one launch, :mod:`~xpnet.kernels.persistent_step`) or "epoch" (that launch running all
    of an epoch's full batches in a row, where no callback watches them). Anything else is refused.

    The generic step stays the default because it is faster at the reference task. On an H100
    (bench/results/README.md, 2026-11-24), 784-256-128-10 at batch 128, the fused plan ran 11.2
    kernels per step against 33.2, but they kept the GPU busy 113.6 us against 101.9 us, and an
    epoch took 0.0548 s against 0.0509 s. The persistent and epoch steps have not run on a GPU yet."""
    return env_choice("XPNET_GRAPH_STEP", GRAPH_STEPS)


def fused_step_requested() -> bool:
    """Whether ``XPNET_GRAPH_STEP`` asks for this plan, a launch per kernel or as one ("fused",
    "persistent" or "epoch"), instead of the generic captured step."""
    return graph_step_requested() != "generic"


def unsupported(model: Any, optimizer: Any) -> str:
    """Why :func:`plan_step` cannot plan ``model``'s step with ``optimizer`` ("" when it can)."""
    from xpnet.optim import SGD, Adam

    if type(optimizer) not in (Adam, SGD):
        return f"no fused update for {type(optimizer).__name__} (Adam and SGD have one)"
    if model._flat is None:
        return "the fused step needs the model's flat parameter buffers (fused kernels)"
    return network_unsupported(model)


def _ctype(dtype: Any) -> str:
    return {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}[np.dtype(dtype)]


def _gemm_name(ctype: str, tile: int, ta: bool, tb: bool, precision: str = "highest") -> str:
    code = PRECISIONS[precision]
    return (f"xpnet_fused_gemm<{ctype}, {tile}, {str(ta).lower()}, {str(tb).lower()}"
            + (f", {code}>" if code else ">"))


def _gemm_names(ctype: str, precision: str = "highest") -> list[str]:
    """Every product a plan in ``ctype`` at ``precision`` may launch."""
    return [_gemm_name(ctype, tile, ta, tb, precision) for tile in _TILES for ta, tb in _PRODUCTS]


def kernel_names(ctype: str, precision: str = "highest") -> list[str]:
    """Every name expression a plan in ``ctype`` ("float" or "double") at ``precision`` may launch."""
    names = _gemm_names(ctype, precision)
    names += [f"xpnet_loss_grad<{ctype}, {u}>" for u in ("long long", ctype)]
    names += [f"xpnet_update_step<{ctype}>"] + [f"xpnet_gather_batch<{ctype}, {u}>" for u in ("long long", ctype)]
    return names


def persistent_kernel_names(ctype: str) -> list[str]:
    """The persistent step's name expressions in ``ctype`` (one per kind of targets). Each is compiled
    alone, where ``XPNET_GRAPH_STEP=persistent`` asks for it: one takes NVRTC about twice as long as
    all the plan's kernels together (9 s against 4.5 s, float, sm_90, on the 2-core development VM)."""
    return [persistent_step_name(ctype, u) for u in ("long long", ctype)]


def persistent_step_name(ctype: str, utype: str) -> str:
    """``xpnet_persistent_step<ctype, utype>``: the persistent step for parameters of C type ``ctype``
    and targets of ``utype`` (``"long long"`` for labels, else ``ctype``)."""
    return f"xpnet_persistent_step<{ctype}, {utype}>"


@dataclass(frozen=True)
class Launch:
    """One kernel launch: ``kernel`` (a name expression), ``grid`` and ``block`` (3-tuples),
    ``args`` (arrays and NumPy scalars, in the kernel's parameter order).

    ``with_next``: the plan's next launch neither reads nor writes what this one writes, nor writes
    what it reads, so the two may run at once (the persistent step runs them in one phase)."""

    kernel: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    args: tuple
    with_next: bool = False


@dataclass
class StepBuffers:
    """What one training step touches, on the device that runs it (CuPy or, in tests, NumPy).

    X ``(N, F)``, Y ``(N, k)`` (labels as ``(N, 1)`` int64, or float targets): the training set.
    order ``(N,)`` int64, counters ``(4,)`` int64, sums ``(2,)`` float64: as ``training_step.cu``.
    params, grads, slot1, slot2: the flat parameter, gradient and optimizer-state buffers
    (``slot1``/``slot2``: Adam's ``m``/``v``, SGD's velocity in ``slot1``; any valid array when unused).
    """

    X: Any
    Y: Any
    order: Any
    counters: Any
    sums: Any
    params: Any
    grads: Any
    slot1: Any
    slot2: Any


@dataclass
class _Product:
    """One ``xpnet_fused_gemm``: ``C = epilogue(op(A) @ op(B))`` with ``op(A)`` ``(m, k)``, ``op(B)``
    ``(k, n)``, the bias joining it or coming out of it (``bias_mode``); as in ``fused_step.cu``."""

    A: Any
    B: Any
    C: Any
    m: int
    n: int
    k: int
    lda: int
    ldb: int
    ldc: int
    ta: bool
    tb: bool
    bias: Any
    bias_mode: int
    epi: int
    code: int
    aux: Any  # read by the EPI_ACT_GRAD and EPI_L2 epilogues only
    ld_aux: int = 0
    lam: float = 0.0
    # 1: an input gradient, which may run at once with its layer's weight gradient (the launch
    # before it), so it has split-K scratch of its own; 0: every other product
    lane: int = 0

    @property
    def m_rows(self) -> int:  # the bias gradient is one more row
        return self.m + (self.bias_mode == BIAS_OUT)

    @property
    def k_all(self) -> int:  # the bias is one more k
        return self.k + (self.bias_mode == BIAS_IN)


def resident_gemm_plan(m: int, n: int, k: int, sm_count: int, resident_blocks: int) -> tuple[int, int, int]:
    """``(tile, splits, k_per_split)`` for an ``m x k`` by ``k x n`` product whose blocks a grid of
    ``resident_blocks`` blocks takes in turn (the persistent step runs each launch of the plan so).

    :func:`~xpnet.kernels.cupy_graph.gemm_plan` splits K until about two blocks per multiprocessor
    exist, for a launch whose blocks the GPU schedules as they fit. In the persistent grid a block
    that finds no free real block waits for a whole wave: 784-256-128-10's first product, split 9
    ways into 288 blocks, would take 3 waves of 132 blocks of 2 rounds of staged k each, 6 rounds
    where 4 splits (128 blocks, 4 rounds of 64) take 4. So: gemm_plan's tile, and the split that
    puts the fewest rounds of staged k (:data:`MAX_STAGED_K`, fewer for 64-tiles) on the busiest
    real block, ``ceil(blocks / resident_blocks) * ceil(k_per_split / BK)``; among equals the
    fewest splits (less split-K summing); at most ``k // 64`` splits, as gemm_plan. Never more
    rounds than gemm_plan's split, which is one of those weighed. A reading of the kernel (a round
    waits on memory once), not a GPU measurement."""
    if resident_blocks < 1:
        raise ValueError(f"resident_blocks must be at least 1, got {resident_blocks}")
    tile = gemm_plan(m, n, k, sm_count)[0]
    tiles = -(-m // tile) * -(-n // tile)
    staged = min(2048 // tile, MAX_STAGED_K)  # fused_step.cu's xpnet_gemm_stage::BK
    best = None
    for asked in range(1, max(1, k // 64) + 1):
        splits, k_per_split = split_k(k, asked)
        rounds = -(-tiles * splits // resident_blocks) * -(-k_per_split // staged)
        if best is None or rounds < best[0]:
            best = (rounds, splits, k_per_split)
    return tile, best[1], best[2]


def plan_step(spec: StepSpec, buffers: StepBuffers, *, rows: int, batch_stride: int, optimizer: Any, l2: float,
              sm_count: int, empty: Callable[[tuple, Any], Any], zeros: Callable[[tuple, Any], Any],
              to_device: Callable[[np.ndarray], Any], precision: str = "highest",
              resident_blocks: int | None = None) -> list[Launch]:
    """The launches of one step on the batch of ``rows`` rows at ``counters[0] * batch_stride`` of
    ``order``, with its scratch buffers allocated through ``empty``/``zeros``/``to_device`` (the
    device's ``(shape, dtype) -> array`` and ``numpy array -> array``). ``optimizer`` (Adam or SGD)
    gives the update and its hyperparameters, fixed in the plan as in a captured graph; Adam's
    step number is read on the device (``counters[3]``). ``precision``: the products' (a key of
    :data:`PRECISIONS`; ``"tf32"`` and ``"bf16"`` need float32 parameters).

    ``resident_blocks``: for a plan the persistent step runs, the blocks of its grid (all resident
    at once). The products then split K by :func:`resident_gemm_plan`, and the gather and update,
    grid-stride loops, take no more blocks than that grid has (each block of theirs a real block
    would run in turn adds a block reduction, not work). None: a plan launched kernel by kernel.
    """
    from xpnet.optim import Adam

    dt = np.dtype(buffers.params.dtype)
    ctype = _ctype(dt)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    if precision != "highest" and ctype != "float":
        raise ValueError(f"precision={precision!r} runs float32 products on the tensor cores; these parameters are {dt}")
    scalar = dt.type
    i32 = np.int32
    widths = [int(w) for w in spec.widths]
    n_layers = spec.n_layers
    labels = spec.loss_code == SOFTMAX_CE
    utype = "long long" if labels else ctype
    params, grads = buffers.params, buffers.grads
    want = np.dtype(np.int64) if labels else dt
    if np.dtype(buffers.Y.dtype) != want or buffers.Y.ndim != 2:
        raise TypeError(f"the fused step needs Y as a 2-D {want} array for this loss, got {buffers.Y.ndim}-D {buffers.Y.dtype}")

    def W(flat: Any, layer: int) -> Any:
        lo = int(spec.w_off[layer])
        return flat[lo: lo + widths[layer] * widths[layer + 1]]

    def b(flat: Any, layer: int) -> Any:
        lo = int(spec.b_off[layer])
        return flat[lo: lo + widths[layer + 1]]

    xb = empty((rows, widths[0]), dt)
    yb = empty((rows, buffers.Y.shape[1]), buffers.Y.dtype)
    acts = [empty((rows, w), dt) for w in widths[1:]]
    widest = max(widths[1:])
    deltas = [empty((rows * widest,), dt) for _ in range(2)]
    lam = l2 / rows
    dummy = empty((1,), dt)
    forward, backward = [], []
    h = xb
    for layer in range(n_layers):  # h = act([h, 1] @ [W; b])
        k, m = widths[layer], widths[layer + 1]
        forward.append(_Product(h, W(params, layer), acts[layer], rows, m, k, k, m, m, False, False,
                                b(params, layer), BIAS_IN, EPI_ACT, int(spec.act_codes[layer]), dummy))
        h = acts[layer]
    which = 0
    for layer in range(n_layers - 1, -1, -1):  # d: dL/dz of this layer, (rows, m)
        k, m = widths[layer], widths[layer + 1]
        d = deltas[which][: rows * m]
        h_in = xb if layer == 0 else acts[layer - 1]
        # [gW; gb] = [h_in^T; 1^T] @ d (+ lam * W)
        backward.append(_Product(h_in, d, W(grads, layer), k, m, rows, k, m, m, True, False, b(grads, layer), BIAS_OUT,
                                 EPI_L2 if lam else EPI_NONE, 0, W(params, layer), m, lam))
        if layer > 0:  # d_prev = (d @ W^T) * act'(h_in)
            d_prev = deltas[1 - which][: rows * k]
            backward.append(_Product(d, W(params, layer), d_prev, rows, k, m, m, m, k, False, True, dummy, BIAS_NONE,
                                     EPI_ACT_GRAD, int(spec.act_codes[layer - 1]), acts[layer - 1], k, lane=1))
            which = 1 - which

    if resident_blocks is None:
        shapes = [gemm_plan(p.m_rows, p.n, p.k_all, sm_count) for p in forward + backward]
    else:
        shapes = [resident_gemm_plan(p.m_rows, p.n, p.k_all, sm_count, resident_blocks) for p in forward + backward]

    def loop_blocks(size: int, per_sm: int) -> int:  # a grid-stride loop's blocks
        blocks = min(-(-size // THREADS), per_sm * sm_count)
        return max(1, blocks if resident_blocks is None else min(blocks, resident_blocks))

    # Split-K workspace and tile counters (zero between products), one pair per lane: the input
    # gradients' own, as each may run at once with its layer's weight gradient (the same signal d
    # read, different outputs written: Launch.with_next), and one for every other product, which
    # runs after the one before it.
    scratch = {}
    for lane in sorted({p.lane for p in forward + backward}):
        mine = [(p, shape) for p, shape in zip(forward + backward, shapes) if p.lane == lane]
        workspace = max([splits * p.m_rows * p.n for p, (_, splits, _) in mine if splits > 1] + [1])
        tiles = max(-(-p.m_rows // tile) * -(-p.n // tile) for p, (tile, _, _) in mine)
        scratch[lane] = (empty((workspace,), dt), zeros((tiles,), np.int32))

    def product_launch(p: _Product, shape: tuple[int, int, int], with_next: bool = False) -> Launch:
        tile, splits, k_per_split = shape
        name = _gemm_name(ctype, tile, p.ta, p.tb, precision)
        grid = (-(-p.n // tile), -(-p.m_rows // tile), splits)
        partial, tile_counters = scratch[p.lane]
        return Launch(name, grid, (THREADS, 1, 1), (
            p.A, p.B, p.C, i32(p.m), i32(p.n), i32(p.k), i32(p.lda), i32(p.ldb), i32(p.ldc), p.bias, i32(p.bias_mode),
            i32(p.epi), i32(p.code), p.aux, i32(p.ld_aux), scalar(p.lam), partial, tile_counters, i32(k_per_split)),
            with_next)

    launches = []
    y_cols = buffers.Y.shape[1]
    size = rows * (widths[0] + y_cols)
    launches.append(Launch(f"xpnet_gather_batch<{ctype}, {utype}>", (loop_blocks(size, 8), 1, 1),
                           (THREADS, 1, 1), (buffers.X, buffers.Y, buffers.order, buffers.counters, i32(batch_stride),
                                             i32(rows), i32(widths[0]), i32(y_cols), xb, yb)))
    launches += [product_launch(p, shape) for p, shape in zip(forward, shapes[:n_layers])]
    loss_result = zeros((2,), np.float64)
    launches.append(Launch(f"xpnet_loss_grad<{ctype}, {utype}>", (1, 1, 1), (THREADS, 1, 1), (
        acts[-1], yb, deltas[0], i32(rows), i32(widths[-1]), i32(spec.loss_code), i32(spec.act_codes[-1]), loss_result)))
    launches += [product_launch(p, shape, with_next=nxt is not None and nxt.lane == 1)
                 for p, shape, nxt in zip(backward, shapes[n_layers:], [*backward[1:], None])]

    size = int(params.shape[0])
    blocks = loop_blocks(size, 4)
    if isinstance(optimizer, Adam):
        opt_code = OPT_ADAM_SCIKIT_LEARN_EPS if optimizer.eps_form == "scikit-learn" else OPT_ADAM
        hyper = (optimizer.lr, optimizer.beta1, optimizer.beta2, optimizer.eps, 0.0)
    else:
        opt_code = OPT_SGD if optimizer.momentum == 0 else OPT_NESTEROV if optimizer.nesterov else OPT_MOMENTUM
        hyper = (optimizer.lr, 0.0, 0.0, 0.0, optimizer.momentum)
    segments = to_device(np.array([[spec.w_off[i], widths[i] * widths[i + 1]] for i in range(n_layers)], dtype=np.int64))
    launches.append(Launch(f"xpnet_update_step<{ctype}>", (blocks, 1, 1), (THREADS, 1, 1), (
        params, grads, buffers.slot1, buffers.slot2, np.int64(size), i32(opt_code), *map(np.float64, hyper),
        segments, i32(n_layers), np.float64(lam), loss_result, np.float64(rows), empty((blocks,), np.float64),
        zeros((1,), np.int32), buffers.sums, buffers.counters)))
    return launches


class CudaKernels:
    """Runs plans with CuPy: ``fused_step.cu`` and the gather kernel, compiled once per process
    (the tensor-core products in a module of their own per precision)."""

    def __call__(self, launches: list[Launch]) -> None:
        for launch in launches:
            self.function(launch.kernel)(launch.grid, launch.block, launch.args)

    @staticmethod
    def function(name: str) -> Any:
        """Kernel ``name``, compiled with the current :data:`MAX_STAGED_K` and
        :data:`PERSISTENT_BLOCKS_PER_SM`."""
        return _function(name, MAX_STAGED_K, PERSISTENT_BLOCKS_PER_SM)

    @classmethod
    def blocks_per_multiprocessor(cls, name: str) -> int:
        """How many blocks of kernel ``name`` (:data:`THREADS` threads, no dynamic shared memory) a
        multiprocessor of the current GPU runs at once, as the driver computes it for the compiled
        kernel (``cuOccupancyMaxActiveBlocksPerMultiprocessor``)."""
        import cupy

        return int(cupy.cuda.driver.occupancyMaxActiveBlocksPerMultiprocessor(cls.function(name).kernel.ptr, THREADS, 0))


def tensor_core_support(device_id: int = 0) -> str:
    """Why this GPU cannot run the tensor-core products ("" when it can): TF32 and bfloat16 wmma
    need compute capability 8.0 or newer."""
    import cupy

    capability = int(cupy.cuda.Device(device_id).compute_capability)
    return "" if capability >= 80 else (f"the GPU has compute capability {capability // 10}.{capability % 10}; TF32 and "
                                        "bfloat16 tensor cores need 8.0 or newer")


def module_spec(ctype: str, precision: str = "highest", max_staged_k: int | None = None,
                persistent: bool = False, blocks_per_sm: int | None = None) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """What NVRTC compiles for a plan in ``ctype`` at ``precision``: (source, options, name expressions).

    "highest" is one module with every kernel; "tf32" / "bf16" add a module of the tensor-core
    products alone (``-DXPNET_TENSOR_CORES``); ``persistent``: the module of the persistent step
    (highest precision), the same sources and ``persistent_step.cu``, for ``blocks_per_sm``
    (default :data:`PERSISTENT_BLOCKS_PER_SM`). None takes an include path. ``max_staged_k``:
    fused_step.cu's ``XPNET_MAX_BK`` (default :data:`MAX_STAGED_K`)."""
    max_staged_k = MAX_STAGED_K if max_staged_k is None else max_staged_k
    if max_staged_k not in (16, 32, 64):
        raise ValueError(f"max_staged_k must be 16, 32 or 64, got {max_staged_k!r}")
    source = GATHER_SOURCE.read_text() + FUSED_SOURCE.read_text()
    options = ("--std=c++17", f"-DXPNET_MAX_BK={max_staged_k}")
    if persistent:
        if precision != "highest":
            raise ValueError(f"the persistent step runs highest-precision products only, not {precision!r}")
        blocks_per_sm = PERSISTENT_BLOCKS_PER_SM if blocks_per_sm is None else blocks_per_sm
        if blocks_per_sm not in (1, 2):
            raise ValueError(f"blocks_per_sm must be 1 or 2, got {blocks_per_sm!r}")
        return (source + PERSISTENT_SOURCE.read_text(), (*options, f"-DXPNET_PERSISTENT_BLOCKS_PER_SM={blocks_per_sm}"),
                tuple(persistent_kernel_names(ctype)))
    if precision == "highest":
        return source, options, tuple(kernel_names(ctype))
    return source, (*options, "-DXPNET_TENSOR_CORES"), tuple(_gemm_names(ctype, precision))


@functools.lru_cache(maxsize=None)
def _function(name: str, max_staged_k: int, blocks_per_sm: int) -> Any:
    ctype = "double" if "<double" in name else "float"
    precision = next((p for p, code in PRECISIONS.items() if code and name.endswith(f", {code}>")), "highest")
    if name.startswith("xpnet_persistent_step<"):  # its own module, of this kernel alone (a fit needs one)
        import cupy

        source, options, names = module_spec(ctype, "highest", max_staged_k, True, blocks_per_sm)
        if name not in names:
            raise ValueError(f"{name} is not one of the persistent step's kernels {names}")
        return cupy.RawModule(code=source, options=options, name_expressions=(name,)).get_function(name)
    return _module(ctype, precision, max_staged_k).get_function(name)


@functools.lru_cache(maxsize=None)
def _module(ctype: str, precision: str, max_staged_k: int) -> Any:
    import cupy

    source, options, names = module_spec(ctype, precision, max_staged_k)
    module = cupy.RawModule(code=source, options=options, name_expressions=names)
    if precision == "highest":
        return module
    try:
        module.compile()
    except cupy.cuda.compiler.CompileException as error:
        raise RuntimeError(f"matmul_precision={precision!r}: the tensor-core products did not compile "
                           f"(options {options}):\n{error}") from error
    return module
