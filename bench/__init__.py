"""Benchmarks: the MNIST device/peer comparison (``python -m bench.mnist``) and kernel micro-benchmarks."""
