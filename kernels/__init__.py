"""Fused kernels for xpnet's two hot paths (and the optimizer updates).

Installed as ``xpnet.kernels`` (never as a bare top-level ``kernels`` module):

- ``numba_cpu``: Numba kernels for NumPy arrays (CPU).
- ``numba_step``: the whole CPU training step as one compiled Numba function, tested against
  the reference training step (``Sequential(compiled=...)``).
- ``cupy_gpu``: CuPy kernels for CUDA arrays.
- ``cupy_graph``: the whole GPU training step replayed as one CUDA graph (``graphs=...``); its
  products are ``gemm.cu``'s, or cuBLAS's with ``XPNET_GRAPH_GEMM=cublas`` (opt-in).
- ``cuda_step``: that step planned as ``3L + 2`` fused kernels (``fused_step.cu``), opt-in with
  ``XPNET_GRAPH_STEP=fused``; tested on the CPU through a CUDA emulation (``tests/cuda_emulation``).
- ``persistent_step``: that plan as one kernel launch per step, a grid barrier between its
  phases (``persistent_step.cu``), opt-in with ``XPNET_GRAPH_STEP=persistent``; with
  ``XPNET_GRAPH_STEP=epoch``, one launch for all of an epoch's full batches.
- ``step_spec``: the network description both whole-step kernels (Numba and CUDA) read.

Nothing here is imported by ``import xpnet``; :class:`xpnet.ops.Ops` imports a
family the first time a model needs it. Every kernel has the signature of its
reference implementation in :mod:`xpnet.ops` and is tested against it.
"""
