"""Fused kernels against their references, at several sizes.

    python -m bench.kernels                 # CPU (Numba) kernels, and CuPy ones where a GPU is usable
    python -m bench.kernels --quick         # smaller sizes, fewer repeats

For each kernel and size: the median time of repeated calls after a warm-up,
and the speed-up of the fused kernel over the reference. The first call of
each Numba kernel (JIT compilation, or loading it from Numba's disk cache) is
timed separately and never mixed into the medians. On a GPU, each CuPy kernel's
effective bandwidth (bytes read + written / time) is compared with the device's
measured copy bandwidth. GPU times are per call, from 20 calls replayed as
one CUDA graph between two CUDA events, so the time the GPU waits for the
host's launches is left out (the host's wall time per call, queued calls with
one synchronisation, is reported beside them). Writes ``kernels.json`` and ``kernels.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .arguments import positive_int

REPO = Path(__file__).resolve().parents[1]
ELEMENT_SIZES = (10**4, 10**5, 10**6, 10**7)
LOGIT_SHAPES = ((128, 10), (1024, 100), (8192, 1000))
GPU_TARGETS = {  # (kernel, size label) -> minimum fraction of the measured copy bandwidth
    ("sigmoid_backward", f"{2**26} float32"): 0.70,
    ("softmax_cross_entropy", "8192x1000 float32"): 0.50,
}
TARGETS = {  # (kernel, size label) -> minimum fused/reference speed-up on the CPU
    ("sigmoid_backward", "10000000 float32"): 2.5,
    ("softmax_cross_entropy", "8192x1000 float32"): 3.0,
}


def median_seconds(fn, repeats: int, min_time: float = 2e-3, sync=lambda: None) -> float:
    """Median per-call seconds over ``repeats`` measurements after three warm-up calls."""
    for _ in range(3):
        fn()
    sync()
    number, t0 = 1, time.perf_counter()
    fn()
    sync()
    once = time.perf_counter() - t0
    if once < min_time:
        number = max(1, int(min_time / max(once, 1e-7)))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        sync()
        samples.append((time.perf_counter() - t0) / number)
    return statistics.median(samples)


# -- CPU: Numba vs the reference ------------------------------------------------------------
def cpu_cases(rng, quick: bool):
    from xpnet import ops

    sizes = ELEMENT_SIZES[:3] if quick else ELEMENT_SIZES
    shapes = LOGIT_SHAPES[:2] if quick else LOGIT_SHAPES
    for n in sizes:
        g = rng.normal(size=n).astype(np.float32)
        y = rng.uniform(size=n).astype(np.float32)
        yield ("sigmoid_backward", f"{n} float32", n * 3 * 4,
               lambda g=g, y=y: ops.sigmoid_backward_reference(g, y, np), ("sigmoid_backward", (g, y), {}))
    for n, c in shapes:
        z = rng.normal(size=(n, c)).astype(np.float32)
        t = rng.integers(0, c, size=n)
        yield ("softmax_cross_entropy", f"{n}x{c} float32", n * c * 2 * 4,
               lambda z=z, t=t: ops.softmax_cross_entropy_reference(z, t, np), ("softmax_cross_entropy", (z, t), {}))
    for n, units in ((128, 256), (8192, 1024)):
        z = rng.normal(size=(n, units)).astype(np.float32)
        b = rng.normal(size=units).astype(np.float32)
        yield ("bias_sigmoid", f"{n}x{units} float32", n * units * 2 * 4,
               lambda z=z, b=b: ops.bias_sigmoid_reference(z, b, np), ("bias_sigmoid", (z, b), {}))
    for n in sizes:
        p, g, m = (rng.normal(size=n).astype(np.float32) for _ in range(3))
        v = rng.uniform(size=n).astype(np.float32)
        kw = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, step=10)
        ref_state = [a.copy() for a in (p, g, m, v)]
        yield ("adam_update", f"{n} float32", n * 7 * 4,
               lambda s=ref_state, kw=kw: ops.adam_update_reference(*s, xp=np, **kw), ("adam_update", (p, g, m, v), kw))


def bench_cpu(repeats: int, quick: bool) -> list[dict]:
    from xpnet.kernels import numba_cpu

    rng = np.random.default_rng(0)
    rows, first_calls = [], {}
    for kernel, label, nbytes, reference, (name, args, kwargs) in cpu_cases(rng, quick):
        fused = getattr(numba_cpu, name)
        if name not in first_calls:  # JIT compile or disk-cache load, timed on its own
            t0 = time.perf_counter()
            fused(*args, **kwargs)
            first_calls[name] = time.perf_counter() - t0
        t_fused = median_seconds(lambda: fused(*args, **kwargs), repeats)
        t_ref = median_seconds(reference, repeats)
        target = TARGETS.get((kernel, label))
        rows.append({
            "device": "cpu", "kernel": kernel, "size": label, "fused_seconds": t_fused, "reference_seconds": t_ref,
            "speedup": t_ref / t_fused, "fused_GBps": nbytes / t_fused / 1e9, "first_call_seconds": first_calls[name],
            "target_speedup": target, "target_met": None if target is None else t_ref / t_fused >= target,
        })
        print(f"  cpu {kernel:<22} {label:<20} fused {t_fused * 1e6:10.1f} us  reference {t_ref * 1e6:10.1f} us  "
              f"x{t_ref / t_fused:5.2f}", flush=True)
    return rows


# -- GPU: CuPy kernels, bandwidth against the copy bandwidth -----------------------------------
def gpu_seconds(fn, calls: int = 20, repeats: int = 5) -> float:
    """GPU time of one call: ``calls`` calls captured as one CUDA graph, replayed between two
    CUDA events, median over ``repeats`` replays. Unlike events around each call, this leaves
    out the time the GPU waits for the host to launch (about 100 us per softmax call here,
    more than the kernels take at 8192 x 1000)."""
    import cupy

    pool, stream = cupy.cuda.MemoryPool(), cupy.cuda.Stream(non_blocking=True)
    fn()  # compile outside the capture
    with cupy.cuda.using_allocator(pool.malloc), stream:
        fn()
        stream.begin_capture()
        try:
            for _ in range(calls):
                fn()
        finally:
            graph = stream.end_capture()
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    samples = []
    for _ in range(max(5, repeats)):
        start.record(stream)
        graph.launch(stream)
        end.record(stream)
        end.synchronize()
        samples.append(cupy.cuda.get_elapsed_time(start, end) / 1e3 / calls)
    del graph
    pool.free_all_blocks()
    return statistics.median(samples)


def event_seconds(fn: Any, repeats: int, between: Any = None) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` on the current CUDA stream, between two CUDA
    events (the GPU's time, the host's launch gap included: for calls long enough that it does not
    count); ``between()`` runs after each call, outside the timed span."""
    import cupy

    samples = []
    for _ in range(repeats):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn()
        end.record()
        end.synchronize()
        samples.append(cupy.cuda.get_elapsed_time(start, end) / 1e3)
        if between is not None:
            between()
    return samples


def copy_bandwidth(repeats: int = 5) -> tuple[float, int]:
    """The GPU's device-to-device copy bandwidth: ``(bytes per second, bytes moved per copy)``, a
    256 MiB float32 copy (read and write) timed with :func:`gpu_seconds`."""
    import cupy

    src = cupy.ones(2**28 // 4, dtype=cupy.float32)
    dst = cupy.empty_like(src)
    moved = 2 * src.nbytes
    return moved / gpu_seconds(lambda: cupy.copyto(dst, src), repeats=repeats), moved


def bench_gpu(repeats: int, quick: bool) -> tuple[list[dict], dict | None]:
    from xpnet.backend import cupy_usable

    ok, why = cupy_usable()
    if not ok:
        print(f"  gpu: skipped ({why})")
        return [], {"skipped": why}
    import cupy

    from xpnet import get_backend, ops
    from xpnet.kernels import cupy_gpu

    xp = get_backend("cupy").xp  # the references take the Array API namespace, as in training
    sync = cupy.cuda.get_current_stream().synchronize
    copy_bps, copy_bytes = copy_bandwidth(repeats)
    copy_gbps = copy_bps / 1e9
    device = {"copy_GBps": copy_gbps, "copy_bytes": copy_bytes, **get_backend("cupy").describe()}
    print(f"  gpu copy bandwidth {copy_gbps:.0f} GB/s")
    rng = cupy.random.default_rng(0)
    rows = []
    n_big = 2**26 if not quick else 2**22
    g = rng.standard_normal(n_big, dtype=cupy.float32)
    y = rng.random(n_big, dtype=cupy.float32)
    shapes = ((8192, 1000), (65536, 1000)) if not quick else ((8192, 1000),)
    cases = [("sigmoid_backward", f"{n_big} float32", 3 * g.nbytes,
              lambda: cupy_gpu.sigmoid_backward(g, y), lambda: ops.sigmoid_backward_reference(g, y, xp))]
    for n, c in shapes:
        z = rng.standard_normal((n, c), dtype=cupy.float32)
        t = rng.integers(0, c, size=n)
        cases.append(("softmax_cross_entropy", f"{n}x{c} float32", 2 * z.nbytes + t.nbytes,
                      lambda z=z, t=t: cupy_gpu.softmax_cross_entropy(z, t),
                      lambda z=z, t=t: ops.softmax_cross_entropy_reference(z, t, xp)))
    p, m = g.copy(), cupy.zeros_like(g)
    v = cupy.zeros_like(g)
    kw = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, step=10)
    cases.append(("adam_update", f"{n_big} float32", 7 * g.nbytes,
                  lambda: cupy_gpu.adam_update(p, y, m, v, **kw),
                  lambda: ops.adam_update_reference(p, y, m, v, xp=xp, **kw)))
    for kernel, label, nbytes, fused, reference in cases:
        t_fused, t_ref = gpu_seconds(fused, repeats=repeats), gpu_seconds(reference, repeats=repeats)
        gbps = nbytes / t_fused / 1e9
        target = GPU_TARGETS.get((kernel, label))
        rows.append({"device": "gpu", "kernel": kernel, "size": label, "fused_seconds": t_fused,
                     "reference_seconds": t_ref, "speedup": t_ref / t_fused, "fused_GBps": gbps,
                     "fraction_of_copy_bandwidth": gbps / copy_gbps,
                     "host_seconds_per_call": median_seconds(fused, repeats, sync=sync),
                     "target_fraction": target, "target_met": None if target is None else gbps / copy_gbps >= target})
        print(f"  gpu {kernel:<22} {label:<20} fused {t_fused * 1e6:10.1f} us ({gbps:6.0f} GB/s, "
              f"{100 * gbps / copy_gbps:3.0f}% of copy)  reference {t_ref * 1e6:10.1f} us  x{t_ref / t_fused:5.2f}", flush=True)
    return rows, device


def markdown(rows: list[dict], env: dict, gpu: dict | None) -> str:
    lines = [f"Machine: {env['cpu_model']}, {env['cpu_cores']} cores; commit `{(env.get('git_commit') or '?')[:10]}`, "
             f"{env['date_utc']}.", ""]
    if gpu and "copy_GBps" in gpu:
        lines += [f"GPU: {gpu.get('gpu_name')}, measured copy bandwidth {gpu['copy_GBps']:.0f} GB/s.", ""]
    lines += ["| device | kernel | size | fused (us) | reference (us) | speed-up | fused GB/s | notes |",
              "|---|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        notes = []
        if r.get("target_speedup"):
            notes.append(f"target >= {r['target_speedup']}x: {'met' if r['target_met'] else 'NOT met'}")
        if "fraction_of_copy_bandwidth" in r:
            notes.append(f"{100 * r['fraction_of_copy_bandwidth']:.0f}% of copy bandwidth")
        if r.get("target_fraction"):
            notes.append(f"target >= {100 * r['target_fraction']:.0f}%: {'met' if r['target_met'] else 'NOT met'}")
        if "host_seconds_per_call" in r:
            notes.append(f"host wall time per call {r['host_seconds_per_call'] * 1e6:.1f} us")
        if "first_call_seconds" in r:
            notes.append(f"first call {r['first_call_seconds'] * 1e3:.0f} ms")
        lines.append(f"| {r['device']} | {r['kernel']} | {r['size']} | {r['fused_seconds'] * 1e6:.1f} | "
                     f"{r['reference_seconds'] * 1e6:.1f} | {r['speedup']:.2f}x | {r['fused_GBps']:.1f} | {'; '.join(notes)} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.kernels", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / "bench" / "out"))
    parser.add_argument("--repeats", type=positive_int, default=15)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-gpu", action="store_true")
    parser.add_argument("--no-cpu", action="store_true", help="GPU kernels only")
    args = parser.parse_args(argv)

    from xpnet._io import atomic_write

    from .env import environment

    env = environment()
    repeats = 5 if args.quick else args.repeats
    rows = [] if args.no_cpu else bench_cpu(repeats, args.quick)
    gpu_rows, gpu = ([], None) if args.no_gpu else bench_gpu(repeats, args.quick)
    rows += gpu_rows
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(rows, env, gpu)
    atomic_write(out / "kernels.json", lambda fh: fh.write(json.dumps({"environment": env, "gpu": gpu, "rows": rows}, indent=2).encode()))
    atomic_write(out / "kernels.md", lambda fh: fh.write(table.encode()))
    print()
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
