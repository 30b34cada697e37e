"""The fused plan's training step as one kernel launch (``persistent_step.cu``).

:func:`~xpnet.kernels.cuda_step.plan_step` plans a step as ``3 L + 2`` launches. On an H100 those
11 kernels (784-256-128-10, batch 128) kept the GPU busy 113.6 us per step, for work the chip
could do in a few: each launch is a few microseconds of ramp-up, memory latency and tail for a
grid that does little. :func:`persistent_launch` turns the same plan into one launch of
``xpnet_persistent_step``: a grid of at most one (or two: ``cuda_step.PERSISTENT_BLOCKS_PER_SM``)
blocks per multiprocessor runs each planned launch as a phase (its blocks taken in turn by the real
blocks, the same device code), or two the plan marks independent (``Launch.with_next``) as one,
with a grid-wide barrier between phases. The results are the plan's, bit for bit (the tests hold
the emulated kernel to that).

Any plan runs so; :class:`~xpnet.kernels.cupy_graph.CapturedTraining` makes its plan for the grid
(``plan_step``'s ``resident_blocks``: K split for the fewest waves of the grid's blocks, grid-stride
loops over no more blocks than it has).

The plan's launches become a table of :data:`PHASE_SLOTS` int64 slots per launch (:func:`phase_table`):
slot 0 the kind, 1-3 the grid, 4-6 a product's tile and layout (TA, TB), 7 whether the next launch
runs in the same phase (``Launch.with_next``: a layer's weight and input gradients, no barrier between
them, the second's blocks numbered on from the first's over the grid), and from
:data:`PHASE_ARGS` on the launch's arguments in order: arrays as their device address, integers as
they are, floating-point scalars as the bits of a double. The table holds raw addresses, so the
plan's buffers must outlive it: :class:`~xpnet.kernels.cupy_graph.CapturedTraining` keeps both.

Opt-in until measured on a GPU: ``XPNET_GRAPH_STEP=persistent``. Highest precision only.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

from .cuda_step import THREADS, Launch, persistent_step_name

__all__ = ["PHASE_SLOTS", "PHASE_ARGS", "PHASE_WITH_NEXT", "PHASE_GATHER", "PHASE_PRODUCT", "PHASE_LOSS",
           "PHASE_UPDATE", "persistent_kernel_name", "phase_row", "phase_table", "phase_spans", "phase_blocks",
           "persistent_launch", "with_steps", "phase_alone", "barrier_launch", "resident_blocks_per_sm", "array_address"]

# persistent_step.cu's constants
PHASE_SLOTS, PHASE_ARGS, PHASE_WITH_NEXT = 32, 8, 7
PHASE_GATHER, PHASE_PRODUCT, PHASE_LOSS, PHASE_UPDATE = 0, 1, 2, 3

# Each planned kernel: its phase kind and its arguments' kinds in order (a: array, i: integer,
# f: floating point), as persistent_step.cu reads them back from the slots.
_PHASES = {
    "xpnet_gather_batch": (PHASE_GATHER, "aaaaiiiiaa"),
    "xpnet_fused_gemm": (PHASE_PRODUCT, "aaaiiiiiiaiiiaifaai"),
    "xpnet_loss_grad": (PHASE_LOSS, "aaaiiiia"),
    "xpnet_update_step": (PHASE_UPDATE, "aaaaiifffffaifafaaaa"),
}
# (TA, TB) of the products a plan makes (forward, weight gradient, input gradient): the ones
# persistent_step.cu compiles
_PRODUCT_LAYOUTS = ((False, False), (True, False), (False, True))


def _template_arguments(kernel: str) -> list[str]:
    """``"xpnet_fused_gemm<float, 32, true, false>"`` -> ``["float", "32", "true", "false"]``."""
    return [part.strip() for part in kernel[kernel.index("<") + 1: kernel.rindex(">")].split(",")]


def array_address(a: Any) -> int:
    """The device (CuPy) or host (NumPy, for the CUDA emulation) address of ``a``'s first element."""
    pointer = getattr(getattr(a, "data", None), "ptr", None)
    return int(pointer) if pointer is not None else int(a.ctypes.data)


def _slot(value: Any, kind: str, where: str) -> int:
    if kind == "a":
        if not hasattr(value, "shape"):
            raise TypeError(f"{where}: an array was expected, got {type(value).__name__}")
        return array_address(value)
    if kind == "i":
        if not isinstance(value, (np.integer, int)) or isinstance(value, bool):
            raise TypeError(f"{where}: an integer was expected, got {type(value).__name__}")
        return int(value)
    if not isinstance(value, (np.floating, float)):
        raise TypeError(f"{where}: a floating-point scalar was expected, got {type(value).__name__}")
    return int(np.float64(value).view(np.int64))


def phase_row(launch: Launch) -> np.ndarray:
    """The :data:`PHASE_SLOTS` int64 slots that describe ``launch`` to ``xpnet_persistent_step``."""
    base = launch.kernel.split("<", 1)[0]
    if base not in _PHASES:
        raise ValueError(f"the persistent step runs {sorted(_PHASES)}, not {launch.kernel}")
    kind, argument_kinds = _PHASES[base]
    if len(launch.args) != len(argument_kinds):
        raise ValueError(f"{launch.kernel}: {len(launch.args)} arguments, the persistent step reads {len(argument_kinds)}")
    if tuple(launch.block) != (THREADS, 1, 1):
        raise ValueError(f"{launch.kernel}: blocks of {launch.block}, the persistent step runs ({THREADS}, 1, 1)")
    row = np.zeros(PHASE_SLOTS, dtype=np.int64)
    row[0] = kind
    row[1:4] = launch.grid
    if kind == PHASE_PRODUCT:
        arguments = _template_arguments(launch.kernel)
        layout = (arguments[2] == "true", arguments[3] == "true")
        if len(arguments) != 4 or layout not in _PRODUCT_LAYOUTS:  # a fifth is a tensor-core precision
            raise ValueError(f"the persistent step runs highest-precision forward, weight-gradient and input-gradient "
                             f"products, not {launch.kernel}")
        row[4:7] = int(arguments[1]), *layout
    row[PHASE_WITH_NEXT] = launch.with_next
    for i, (value, argument_kind) in enumerate(zip(launch.args, argument_kinds)):
        row[PHASE_ARGS + i] = _slot(value, argument_kind, f"{launch.kernel} argument {i}")
    return row


def phase_table(launches: Sequence[Launch]) -> np.ndarray:
    """``(len(launches), PHASE_SLOTS)`` int64: the plan's launches as the persistent step's phases."""
    if launches and launches[-1].with_next:
        raise ValueError(f"the plan's last launch ({launches[-1].kernel}) cannot share a phase with a next one")
    return np.stack([phase_row(launch) for launch in launches])


def persistent_kernel_name(launches: Sequence[Launch]) -> str:
    """``xpnet_persistent_step<T, U>`` for a plan: T and U as its gather's (parameters, targets)."""
    gathers = [launch.kernel for launch in launches if launch.kernel.startswith("xpnet_gather_batch<")]
    if len(gathers) != 1:
        raise ValueError(f"a plan has one gather launch, this one {len(gathers)}")
    return persistent_step_name(*_template_arguments(gathers[0]))


def resident_blocks_per_sm(asked: int, fitting: int, kernel: str) -> int:
    """Blocks per multiprocessor to launch ``kernel`` with: the ``asked`` number
    (``cuda_step.PERSISTENT_BLOCKS_PER_SM``), or fewer where only ``fitting`` fit at once (the
    driver's occupancy of the compiled kernel, for its registers and shared memory). The grid
    barrier needs every block resident: a grid of more blocks than run at once would wait forever,
    so no block fitting is refused here, before anything is launched."""
    if fitting < 1:
        raise RuntimeError(f"{kernel}: no block of {THREADS} threads fits on a multiprocessor of this GPU (the driver's "
                           "occupancy for its registers and shared memory is 0), and its grid barrier needs every "
                           "block resident; run the plan kernel by kernel instead (XPNET_GRAPH_STEP=fused)")
    return min(asked, fitting)


def phase_spans(launches: Sequence[Launch]) -> list[tuple[int, int]]:
    """The phases the persistent step runs ``launches`` in, as ``(first, stop)`` rows of its table:
    one launch, or a run of launches marked ``with_next`` and the one after them."""
    spans: list[tuple[int, int]] = []
    joined = False
    for i, launch in enumerate(launches):
        if joined:  # the launch before shares its phase with this one
            spans[-1] = (spans[-1][0], i + 1)
        else:
            spans.append((i, i + 1))
        joined = launch.with_next
    return spans


def phase_blocks(launches: Sequence[Launch]) -> list[int]:
    """The blocks of each phase (:func:`phase_spans`): a launch's grid, or the sum of the grids of
    launches that share a phase."""
    return [sum(int(np.prod(launch.grid)) for launch in launches[first:stop]) for first, stop in phase_spans(launches)]


def persistent_launch(launches: Sequence[Launch], *, blocks: int, to_device: Callable[[np.ndarray], Any],
                      zeros: Callable[[tuple, Any], Any], steps: int = 1) -> Launch:
    """One launch that runs the plan ``launches`` ``steps`` times in a row (as many training steps).

    ``blocks``: the most blocks the kernel may ask for, all of which the GPU must run at once (the
    multiprocessors times :func:`resident_blocks_per_sm`); fewer where no phase has that many
    (:func:`phase_blocks`: a shared phase counts the blocks of both its launches).
    ``to_device`` / ``zeros``: the device's
    ``numpy array -> array`` and ``(shape, dtype) -> zero array`` (the phase table and the
    barrier's two counters are allocated with them). The plan's buffers must outlive the launch.
    """
    if blocks < 1 or steps < 1:
        raise ValueError(f"blocks and steps must be at least 1, got {blocks} and {steps}")
    table = phase_table(launches)
    grid = min(blocks, max(phase_blocks(launches)))
    return Launch(persistent_kernel_name(launches), (grid, 1, 1), (THREADS, 1, 1),
                  (to_device(table), np.int32(len(launches)), np.int32(steps), zeros((2,), np.int32)))


def barrier_launch(kernel: str, *, phases: int, steps: int, blocks: int, to_device: Callable[[np.ndarray], Any],
                   zeros: Callable[[tuple, Any], Any]) -> Launch:
    """A launch of the persistent step ``kernel`` (one of ``cuda_step.persistent_kernel_names``) whose
    ``phases`` phases have no blocks: it runs only its grid barriers, ``phases * steps - 1`` of
    them, on a grid of ``blocks`` (each resident, as for :func:`persistent_launch`).
    ``bench.launches`` times it for the cost of one barrier, the floor of a phase."""
    if blocks < 1 or steps < 1 or phases < 1:
        raise ValueError(f"blocks, steps and phases must be at least 1, got {blocks}, {steps} and {phases}")
    table = np.zeros((phases, PHASE_SLOTS), np.int64)
    table[:, 0], table[:, 1:4] = PHASE_GATHER, (0, 1, 1)  # a gather of no blocks
    return Launch(kernel, (blocks, 1, 1), (THREADS, 1, 1),
                  (to_device(table), np.int32(phases), np.int32(steps), zeros((2,), np.int32)))


def phase_alone(launch: Launch, first: int, stop: int, steps: int, zeros: Callable[[tuple, Any], Any]) -> Launch:
    """``launch`` (from :func:`persistent_launch`) running only rows ``[first, stop)`` of its table
    (one phase: :func:`phase_spans`), ``steps`` times in a row, with a barrier of its own between
    them, on the same grid. ``bench.launches`` times each phase of a step so. For timing only: the
    phase reads what was left by whatever ran before it, and its update moves the parameters and
    the epoch's counters (which the caller puts back)."""
    table, n_phases, _, _ = launch.args
    if not 0 <= first < stop <= int(n_phases) or steps < 1:
        raise ValueError(f"rows [{first}, {stop}) of a table of {int(n_phases)}, {steps} steps: need "
                         f"0 <= first < stop <= {int(n_phases)} and steps >= 1")
    return dataclasses.replace(launch, args=(table[first:stop], np.int32(stop - first), np.int32(steps),
                                             zeros((2,), np.int32)))


def with_steps(launch: Launch, steps: int) -> Launch:
    """``launch`` (from :func:`persistent_launch`) running ``steps`` training steps in a row: the same
    phase table, grid and barrier (``XPNET_GRAPH_STEP=epoch`` launches an epoch's full batches so)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    table, n_phases, _, barrier = launch.args
    return dataclasses.replace(launch, args=(table, n_phases, np.int32(steps), barrier))
