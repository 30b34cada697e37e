"""How far each GPU contestant's training step is from the machine: a roofline per step.

Per step of the task (one batch: forward, loss, backward, Adam):

- ``flop``: the matrix products' floating-point operations, ``2 B sum(in * out)`` forward,
  the same for the weight gradients, and ``2 B sum(in * out)`` over every layer but the first for
  the input gradients (elementwise work is a few percent of it and left out);
- ``bytes``: what the fused step (``kernels/cuda_step.py``) reads and writes if each of its
  kernels touches each operand once: the batch gathered, every product's operands and result,
  the loss pass, and Adam's seven passes over the parameters (read p, g, m, v; write p, m, v).
  Caches can make the real DRAM traffic smaller; no step can do with much less.

:func:`machine_limits` measures the GPU's own limits in the same run: device-to-device copy
bandwidth (``bench.kernels.copy_bandwidth``, as ``bench.kernels`` reports it) and the FP32 and
TF32 throughput of a large cuBLAS product (CuPy for FP32; PyTorch, which switches TF32 on and off
per product, for both). :func:`roofline` then gives, for a
measured step time, the FLOP/s and bytes/s achieved, each as a fraction of its limit, and the
step time the limits allow (``max(flop / peak, bytes / bandwidth)``) next to the measured one.
"""

from __future__ import annotations

import statistics
from typing import Any

ADAM_PASSES = 7  # read p, g, m, v; write p, m, v


def step_work(widths: list[int], batch_size: int, itemsize: int = 4) -> dict:
    """``{"flop", "bytes"}`` of one training step of the Dense stack ``widths`` on ``batch_size`` rows."""
    layers = list(zip(widths, widths[1:]))
    products = sum(a * b for a, b in layers)
    flop = 2 * batch_size * (2 * products + sum(a * b for a, b in layers[1:]))
    n_params = sum(a * b + b for a, b in layers)
    B = batch_size
    elements = B * (widths[0] + 1) * 2  # the gather: read the rows and labels, write the batch
    for i, (a, b) in enumerate(layers):
        elements += B * a + a * b + b + B * b  # forward: read h and [W; b], write the activation
        elements += B * a + B * b + a * b + b  # weight gradient: read h and d, write [gW; gb]
        if i > 0:
            elements += B * b + a * b + B * a + B * a  # input gradient: read d, W and h, write d_in
    elements += 3 * B * widths[-1]  # the loss: read the output, write its gradient (labels: small)
    elements += ADAM_PASSES * n_params
    return {"flop": flop, "bytes": elements * itemsize, "parameters": n_params}


def roofline(step_seconds: float, work: dict, limits: dict) -> dict:
    """The step's achieved rates against ``limits`` (from :func:`machine_limits`)."""
    flops = work["flop"] / step_seconds
    bandwidth = work["bytes"] / step_seconds
    bound = max(work["flop"] / limits["fp32_flops"], work["bytes"] / limits["copy_bytes_per_second"])
    return {
        "step_seconds": step_seconds,
        "flop_per_step": work["flop"],
        "bytes_per_step": work["bytes"],
        "achieved_tflops": flops / 1e12,
        "fraction_of_fp32_peak": flops / limits["fp32_flops"],
        "achieved_GBps": bandwidth / 1e9,
        "fraction_of_copy_bandwidth": bandwidth / limits["copy_bytes_per_second"],
        "bound_seconds": bound,
        "times_the_bound": step_seconds / bound,
    }


def _gpu_seconds(fn: Any, repeats: int = 10) -> float:
    """Median seconds per call of ``fn`` on the current CUDA stream, timed with CUDA events: for
    CuPy's cuBLAS products, which CuPy does not let a graph capture (``bench.kernels.gpu_seconds``)
    and which are long enough that the host's launch gap does not count."""
    from .kernels import event_seconds

    fn()
    return statistics.median(event_seconds(fn, repeats))


def machine_limits(n: int = 8192) -> dict:
    """The GPU's measured limits: copy bandwidth (bytes/s) and FP32/TF32 product throughput (FLOP/s)."""
    import cupy

    from .kernels import copy_bandwidth

    limits = {"copy_bytes_per_second": copy_bandwidth()[0], "product_size": n}
    a = cupy.random.default_rng(0).random((n, n), dtype=cupy.float32)
    limits["fp32_flops"] = 2 * n**3 / _gpu_seconds(lambda: a @ a)  # CuPy's cuBLAS product, no TF32
    limits["fp32_flops_by"] = "cupy.matmul (cuBLAS)"
    try:
        import torch
    except ImportError:
        return limits
    t = torch.as_tensor(a, device="cuda")
    saved = torch.backends.cuda.matmul.allow_tf32
    try:
        for key, tf32 in (("fp32_flops", False), ("tf32_flops", True)):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.cuda.synchronize()
            seconds = _gpu_seconds(lambda: torch.mm(t, t))
            limits[key] = max(limits.get(key, 0.0), 2 * n**3 / seconds)
        limits["fp32_flops_by"] = "the faster of cupy.matmul and torch.mm (cuBLAS)"
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
    return limits


def report(results: dict, task: Any, limits: dict) -> dict:
    """``{contestant: roofline}`` for each GPU contestant that ran, from its median epoch."""
    work = step_work(task.widths, task.batch_size, 4 if task.dtype == "float32" else 8)
    steps = -(-task.train_samples // task.batch_size)
    return {name: roofline(r["median_epoch_seconds"] / steps, work, limits) for name, r in results.items()
            if r.get("status") == "ok" and any(word in name for word in ("cupy", "cuda", "gpu"))}


def markdown(rooflines: dict, limits: dict) -> str:
    lines = [f"Roofline per step (limits measured in this run: copy {limits['copy_bytes_per_second'] / 1e9:.0f} GB/s, "
             f"FP32 {limits['fp32_flops'] / 1e12:.1f} TFLOP/s"
             + (f", TF32 {limits['tf32_flops'] / 1e12:.1f} TFLOP/s" if "tf32_flops" in limits else "") + ")", "",
             "| contestant | step (us) | TFLOP/s | of FP32 peak | GB/s | of copy bandwidth | bound (us) | x bound |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in rooflines.items():
        lines.append(f"| {name} | {r['step_seconds'] * 1e6:.1f} | {r['achieved_tflops']:.2f} | "
                     f"{r['fraction_of_fp32_peak']:.1%} | {r['achieved_GBps']:.0f} | {r['fraction_of_copy_bandwidth']:.1%} | "
                     f"{r['bound_seconds'] * 1e6:.1f} | {r['times_the_bound']:.1f} |")
    return "\n".join(lines)
