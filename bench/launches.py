"""Kernel launches per training step on the GPU, for xpnet-cupy (each mode) and PyTorch eager.

    python -m bench.launches --out bench/out        # needs a CUDA GPU, CuPy and PyTorch

Counts come from CUPTI through ``torch.profiler``, which records every kernel
and every launch call of the process, CuPy's included. To leave out per-epoch
work (shuffle, counters, the one read-back, a graph's capture), a short epoch
of ``n1`` batches and a longer one of ``n2`` batches are profiled, and the
difference is divided by ``n2 - n1``:

- ``kernels``: GPU kernels executed per step (inside a CUDA graph or not);
- ``host_launches``: launch calls the host makes per step (``cuLaunchKernel``,
  ``cudaLaunchKernel*``, ``cudaGraphLaunch``...), the cost that bounds small batches;
- ``gpu_busy_us``: summed kernel time per step;
- ``by_kernel``: each kernel's launches and time per step, so that a GPU run shows where a step's
  time goes without a separate profiler.

The fused captured step is timed twice: as it is, and staging 16 values of k per round of a product
(``cuda_step.MAX_STAGED_K = 16``, the depth it had when it was measured on 2026-11-24; the loads of
a round are now all issued before the first store, at either depth), so one run compares the two.
So is the persistent step (``XPNET_GRAPH_STEP=persistent``, the plan as one launch): with one block
per multiprocessor and with two (``cuda_step.PERSISTENT_BLOCKS_PER_SM``). The epoch step
(``XPNET_GRAPH_STEP=epoch``) runs an epoch's full batches in one launch of that kernel, so it
launches nothing per step: its time per step is that kernel's added time. Last, the grid barrier
those two steps end each phase with is timed alone (:func:`barrier_cost`), at one and two blocks
per multiprocessor, and so is each phase of the persistent step (:func:`phase_times`).

Writes ``launches.json`` and ``launches.md`` to ``--out`` after every measurement, atomically, so a
run cut short keeps what it measured (``"complete": false``). The modes that launch the persistent
kernel run last, the barrier alone first of them: a grid barrier that never opened would hang the
process until the device stage's timeout kills it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

from .arguments import positive_int
from .kernels import event_seconds

LAUNCH_CALLS = ("cuLaunchKernel", "cuLaunchKernelEx", "cudaLaunchKernel", "cudaLaunchKernelExC",
                "cudaLaunchKernelEx", "cudaGraphLaunch", "cuGraphLaunch", "cudaLaunchCooperativeKernel")


def kernel_name(event_name: str) -> str:
    """A kernel's name without its return type and parameter list, as CUPTI reports it:
    ``"void xpnet_fused_gemm<float, 32, true, false>(float const*, ...)"`` -> ``"xpnet_fused_gemm<float, 32, true, false>"``."""
    return event_name.removeprefix("void ").split("(", 1)[0]


def summarise(events: Iterable[Any]) -> dict:
    """Kernels, host launch calls and kernel time in profiler ``events`` (objects with ``name``,
    ``device_type`` and ``device_time`` or, in older PyTorch, ``cuda_time``, in microseconds),
    with each kernel's launches and time under ``by_kernel``."""
    kernels = launches = 0
    busy_us = 0.0
    by_kernel: dict[str, dict[str, float]] = {}
    for event in events:
        if str(event.device_type).endswith("CUDA"):
            us = event.device_time if hasattr(event, "device_time") else event.cuda_time
            kernels += 1
            busy_us += us
            entry = by_kernel.setdefault(kernel_name(event.name), {"launches": 0, "us": 0.0})
            entry["launches"] += 1
            entry["us"] += us
        elif event.name in LAUNCH_CALLS:
            launches += 1
    return {"kernels": kernels, "host_launches": launches, "gpu_busy_us": busy_us, "by_kernel": by_kernel}


def _profile(fn: Callable[[], None]) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return summarise(prof.events())


def per_step(short: dict, long: dict, steps: int) -> dict:
    """What ``steps`` more batches added, per batch: :func:`summarise`'s totals of an epoch of ``n1``
    batches (``short``) and of ``n1 + steps`` (``long``). Kernels that ran once per epoch (in both
    equally) drop out of ``by_kernel``, which is sorted by time, the slowest first; unless their
    time grew by more than half, as a kernel that runs an epoch's steps does (the epoch step): it
    stays, with 0 launches per step."""
    result = {key: (long[key] - short[key]) / steps for key in ("kernels", "host_launches", "gpu_busy_us")}
    by_kernel = {}
    for name in long["by_kernel"].keys() | short["by_kernel"].keys():
        a = short["by_kernel"].get(name, {"launches": 0, "us": 0.0})
        b = long["by_kernel"].get(name, {"launches": 0, "us": 0.0})
        if b["launches"] != a["launches"] or b["us"] > 1.5 * a["us"] > 0:
            by_kernel[name] = {"launches": (b["launches"] - a["launches"]) / steps, "us": (b["us"] - a["us"]) / steps}
    result["by_kernel"] = dict(sorted(by_kernel.items(), key=lambda item: -item[1]["us"]))
    return result


def count_per_step(run_batches: Callable[[int], None], n1: int, n2: int) -> dict:
    """Per-step counts from ``run_batches(n)`` (one epoch of ``n`` batches) at ``n1`` and ``n2``."""
    run_batches(n1)  # warm-up: compilation, allocator growth
    short, long = _profile(lambda: run_batches(n1)), _profile(lambda: run_batches(n2))
    return per_step(short, long, n2 - n1)


def xpnet_case(graphs: bool, fused: bool, hidden=(256, 128), batch_size: int = 128,
               graph_step: str = "", max_staged_k: int | None = None, graph_gemm: str = "",
               blocks_per_sm: int | None = None) -> Callable[[int], None]:
    """``graph_step="fused"``: the captured step as ``cuda_step``'s fused plan (``XPNET_GRAPH_STEP``),
    its products staging at most ``max_staged_k`` values of k per round (default: ``cuda_step``'s);
    ``"persistent"``: that plan as one launch per step, of ``blocks_per_sm`` blocks per multiprocessor
    (default: ``cuda_step``'s); ``"epoch"``: that launch running all of an epoch's batches.
    ``graph_gemm="cublas"``: the generic captured step's products by cuBLAS (``XPNET_GRAPH_GEMM``)."""
    import cupy

    from xpnet import Adam, Sequential
    from xpnet.kernels import cuda_step

    from xpnet.layers import dense_stack

    from .contestants import captured_step_mismatch
    from .env import temporary_environment

    model = Sequential(dense_stack([784, *hidden, 10], "sigmoid"), backend="cupy", seed=0, fused=fused, graphs=graphs if fused else False)
    rng = cupy.random.default_rng(0)
    X = rng.random((batch_size * 64, 784), dtype=cupy.float32)
    y = rng.integers(0, 10, size=batch_size * 64).astype(cupy.int64)
    optimizer = Adam(1e-3)

    def run(n: int) -> None:
        saved = cuda_step.MAX_STAGED_K, cuda_step.PERSISTENT_BLOCKS_PER_SM
        # read when the step is captured (the first run)
        cuda_step.MAX_STAGED_K = max_staged_k or saved[0]
        cuda_step.PERSISTENT_BLOCKS_PER_SM = blocks_per_sm or saved[1]
        try:
            with temporary_environment({"XPNET_GRAPH_STEP": graph_step, "XPNET_GRAPH_GEMM": graph_gemm}):
                model.fit(X[: n * batch_size], y[: n * batch_size], epochs=1, batch_size=batch_size, optimizer=optimizer)
        finally:
            cuda_step.MAX_STAGED_K, cuda_step.PERSISTENT_BLOCKS_PER_SM = saved
        mismatch = captured_step_mismatch(model._captured, graph_step, graph_gemm, blocks_per_sm=blocks_per_sm)
        if mismatch:  # never count one step as another
            raise RuntimeError(mismatch)

    run.model = model  # type: ignore[attr-defined] # its last fit's captured step, for phase_times
    return run


def torch_case(hidden=(256, 128), batch_size: int = 128) -> Callable[[int], None]:
    import torch

    widths = [784, *hidden, 10]
    layers = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(torch.nn.Sigmoid())
    net = torch.nn.Sequential(*layers).cuda()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    X = torch.rand(batch_size * 64, 784, device="cuda")
    y = torch.randint(0, 10, (batch_size * 64,), device="cuda")

    def run(n: int) -> None:  # the same loop as the torch-cuda contestant of bench.mnist
        perm = torch.randperm(n * batch_size, device="cuda")
        for lo in range(0, n * batch_size, batch_size):
            idx = perm[lo: lo + batch_size]
            opt.zero_grad(set_to_none=True)
            loss_fn(net(X[idx]), y[idx]).backward()
            opt.step()

    return run


def barrier_cost(blocks_per_sm: int, phases: int = 8, steps: int = 250, repeats: int = 5) -> dict:
    """The persistent step's grid barrier alone: one launch of phases without work
    (``persistent_step.barrier_launch``), ``phases * steps - 1`` barriers on a grid of
    ``blocks_per_sm`` blocks per multiprocessor, timed with CUDA events, best of ``repeats``.
    Every phase of the persistent and epoch steps ends at one (``2 L + 2`` per step, 8 on the
    reference network), so this is their floor per phase."""
    import cupy

    from xpnet.kernels import cuda_step, persistent_step

    name = cuda_step.persistent_step_name("float", "long long")
    saved = cuda_step.PERSISTENT_BLOCKS_PER_SM
    cuda_step.PERSISTENT_BLOCKS_PER_SM = blocks_per_sm  # the kernel compiled for it (launch bounds)
    try:
        fitting = cuda_step.CudaKernels.blocks_per_multiprocessor(name)
        if persistent_step.resident_blocks_per_sm(blocks_per_sm, fitting, name) != blocks_per_sm:
            raise RuntimeError(f"{blocks_per_sm} blocks per multiprocessor asked, only {fitting} fit")
        blocks = int(cupy.cuda.Device().attributes["MultiProcessorCount"]) * blocks_per_sm
        launch = persistent_step.barrier_launch(name, phases=phases, steps=steps, blocks=blocks, to_device=cupy.asarray,
                                                zeros=lambda shape, dt: cupy.zeros(shape, dtype=dt))
        run = cuda_step.CudaKernels()
        run([launch])  # compiles; the barrier ends as it began, with no block arrived
        best_us = min(event_seconds(lambda: run([launch]), repeats)) * 1e6
    finally:
        cuda_step.PERSISTENT_BLOCKS_PER_SM = saved
    barriers = phases * steps - 1
    return {"blocks": blocks, "barriers": barriers, "launch_us": best_us, "us_per_barrier": best_us / barriers}


def phase_times(blocks_per_sm: int, steps: int = 100, repeats: int = 3) -> list[dict]:
    """The persistent step's time per phase, on the reference network: each phase of its table
    (``persistent_step.phase_alone``) launched alone for ``steps`` steps in a row, timed with CUDA
    events, best of ``repeats`` after one warm-up; in microseconds per step, its barrier included.
    The profiler sees the persistent step as one kernel; this shows where its time goes. The
    phases then compute nothing that is used (a throwaway model); the epoch's counters, which the
    update advances, are put back to the epoch's start after each launch, so that the gather
    always reads the first batch."""
    import cupy
    import numpy as np

    from xpnet.kernels import cuda_step, persistent_step

    run = xpnet_case(graphs=True, fused=True, graph_step="persistent", blocks_per_sm=blocks_per_sm)
    run(2)  # plans, compiles and captures the persistent step
    captured = run.model._captured
    ((rows, launch),) = captured._persistent_launches.items()
    plan = captured._fused_plan(rows)
    captured.counters[:3] = cupy.asarray([0, 0, -1])  # the epoch's start: the gather reads batch 0, within X
    counters = captured.counters.copy()

    def put_back() -> None:
        captured.counters[...] = counters

    kernels = cuda_step.CudaKernels()
    saved = cuda_step.PERSISTENT_BLOCKS_PER_SM
    cuda_step.PERSISTENT_BLOCKS_PER_SM = blocks_per_sm  # the kernel the step was compiled as
    phases = []
    try:
        for first, stop in persistent_step.phase_spans(plan):
            alone = persistent_step.phase_alone(launch, first, stop, steps, lambda shape, dt: cupy.zeros(shape, dtype=dt))
            times = event_seconds(lambda: kernels([alone]), repeats + 1, between=put_back)  # the first warms up
            phases.append({"kernels": [planned.kernel for planned in plan[first:stop]],
                           "blocks": [int(np.prod(planned.grid)) for planned in plan[first:stop]],
                           "us": min(times[1:]) * 1e6 / steps})
    finally:
        cuda_step.PERSISTENT_BLOCKS_PER_SM = saved
    return phases


def phase_table_lines(by_blocks: dict[int, list[dict]]) -> list[str]:
    """Markdown lines: :func:`phase_times` at each blocks per multiprocessor, a row per phase and their sum."""
    if not by_blocks:
        return []
    columns = sorted(by_blocks)
    lines = ["", "The persistent step phase by phase (each phase alone, its barrier included; us per step):", "",
             "| phase | kernels (blocks) | " + " | ".join(f"{c} per multiprocessor" for c in columns) + " |",
             "|---:|---|" + "---:|" * len(columns)]
    for i, phase in enumerate(by_blocks[columns[0]]):
        names = " + ".join(f"`{kernel_name(k)}` ({b})" for k, b in zip(phase["kernels"], phase["blocks"]))
        lines.append(f"| {i} | {names} | " + " | ".join(f"{by_blocks[c][i]['us']:.2f}" for c in columns) + " |")
    lines.append("| | sum | " + " | ".join(f"{sum(p['us'] for p in by_blocks[c]):.2f}" for c in columns) + " |")
    return lines


def at_one_and_two_blocks_per_sm(measure: Callable[[int], Any]) -> tuple[dict, dict]:
    """``measure(blocks_per_sm)`` at 1 and at 2 blocks per multiprocessor: ``(results, failures)``,
    each by blocks per multiprocessor, a failure as its exception's type and message (one failing
    case is reported, not fatal)."""
    results, failures = {}, {}
    for per_sm in (1, 2):
        try:
            results[per_sm] = measure(per_sm)
        except Exception as exc:
            failures[per_sm] = f"{type(exc).__name__}: {exc}"
    return results, failures


def kernel_tables(results: dict, top: int = 12) -> list[str]:
    """Markdown lines: for each mode, its ``top`` slowest kernels per step."""
    lines = []
    for mode, r in results.items():
        lines += ["", f"{mode}: the {top} kernels with the most time per step", "",
                  "| kernel | launches per step | us per step |", "|---|---:|---:|"]
        for name, k in list(r["by_kernel"].items())[:top]:
            lines.append(f"| `{name[:100]}` | {k['launches']:.2f} | {k['us']:.1f} |")
    return lines


# The modes, in the order they run: the persistent kernels last, so that one which never finished (its
# grid barrier waiting for good: the stage's timeout kills the process) leaves the others' figures.
def _modes() -> dict[str, Callable[[], Callable[[int], None]]]:
    return {
        "xpnet-cupy-unfused": lambda: xpnet_case(graphs=False, fused=False),
        "xpnet-cupy-fused (eager)": lambda: xpnet_case(graphs=False, fused=True),
        "xpnet-cupy-fused (CUDA graph)": lambda: xpnet_case(graphs=True, fused=True),
        "xpnet-cupy-fused-step (CUDA graph, 3L+2 kernels)": lambda: xpnet_case(graphs=True, fused=True, graph_step="fused"),
        "xpnet-cupy-fused-step, 16 k per round (the depth of 2026-11-24)": lambda: xpnet_case(
            graphs=True, fused=True, graph_step="fused", max_staged_k=16),
        "xpnet-cupy-cublas-graph (CUDA graph, cuBLAS products)": lambda: xpnet_case(
            graphs=True, fused=True, graph_gemm="cublas"),
        "torch-cuda eager": torch_case,
        "xpnet-cupy-persistent-step (CUDA graph, the plan as 1 kernel)": lambda: xpnet_case(
            graphs=True, fused=True, graph_step="persistent"),
        "xpnet-cupy-persistent-step, 2 blocks per multiprocessor": lambda: xpnet_case(
            graphs=True, fused=True, graph_step="persistent", blocks_per_sm=2),
        "xpnet-cupy-epoch-step (an epoch's batches as 1 kernel)": lambda: xpnet_case(
            graphs=True, fused=True, graph_step="epoch"),
    }


def report_lines(report: dict) -> list[str]:
    """The Markdown of a :func:`main` report (``results``, ``barriers``, ``phases``, ``failed``)."""
    lines = ["Per training step of the MNIST reference network (784-256-128-10 sigmoid, batch 128, Adam, float32).", "",
             "| mode | kernels on the GPU | launch calls from the host | GPU busy (us) |", "|---|---:|---:|---:|"]
    for name, r in report["results"].items():
        lines.append(f"| {name} | {r['kernels']:.1f} | {r['host_launches']:.1f} | {r['gpu_busy_us']:.1f} |")
    lines += [f"| {name} | failed: {why} | | |" for name, why in report["failed"].items()]
    if report["barriers"]:
        lines += ["", "The persistent step's grid barrier alone (phases without work, one launch; best of 5):", "",
                  "| blocks per multiprocessor | grid | barriers | us per barrier |", "|---:|---:|---:|---:|"]
        lines += [f"| {per_sm} | {b['blocks']} | {b['barriers']} | {b['us_per_barrier']:.2f} |"
                  for per_sm, b in report["barriers"].items()]
    lines += phase_table_lines(report["phases"])
    if not report["complete"]:
        lines += ["", "(incomplete: the run stopped before its last measurement)"]
    return lines + kernel_tables(report["results"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "out"))
    p.add_argument("--n1", type=positive_int, default=10)
    p.add_argument("--n2", type=positive_int, default=50)
    args = p.parse_args(argv)
    if args.n2 <= args.n1:
        p.error(f"--n2 must exceed --n1 (launches per step are the difference over n2 - n1 steps), got {args.n1} and {args.n2}")
    from xpnet.backend import cupy_usable

    ok, why = cupy_usable()
    if not ok:
        print(f"needs a CUDA GPU: {why}", file=sys.stderr)
        return 1
    from xpnet._io import atomic_write

    from .env import environment

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"results": {}, "barriers": {}, "phases": {}, "failed": {}, "complete": False, "n1": args.n1,
              "n2": args.n2, "environment": environment()}

    def write() -> str:  # after every measurement: a run cut short keeps what it measured
        table = "\n".join(report_lines(report))
        atomic_write(out / "launches.json", lambda fh: fh.write(json.dumps(report, indent=2).encode()))
        atomic_write(out / "launches.md", lambda fh: fh.write((table + "\n").encode()))
        return table

    modes = _modes()
    persistent = [name for name in modes if "persistent" in name or "epoch" in name]
    for name, make in modes.items():  # one failing mode is reported, not fatal: the others still count
        if name == persistent[0]:  # the barrier alone first, the simplest launch of the persistent kernel
            report["barriers"], failed = at_one_and_two_blocks_per_sm(barrier_cost)
            report["failed"].update({f"grid barrier, {n} blocks per multiprocessor": why for n, why in failed.items()})
            write()
        try:
            report["results"][name] = count_per_step(make(), args.n1, args.n2)
        except Exception as exc:
            report["failed"][name] = f"{type(exc).__name__}: {exc}"
        write()
    report["phases"], failed = at_one_and_two_blocks_per_sm(phase_times)
    report["failed"].update({f"phases, {n} blocks per multiprocessor": why for n, why in failed.items()})
    report["complete"] = True
    print(write())
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
