"""Data sources: arrays read chunk by chunk, for data that does not fit in memory.

``Sequential.fit``, ``predict`` and ``evaluate`` accept, besides in-memory arrays,

- NumPy memmaps (``np.memmap``, ``np.load(..., mmap_mode="r")``),
- Dask arrays (``dask.array``; on a ``dask.distributed`` cluster when a client is active),
- zarr arrays,
- SciPy sparse matrices and arrays (CSR; other formats are converted to CSR once, staying
  sparse), densified one chunk at a time on the way to the device,
- anything wrapped in :class:`DataSource` (an object with ``shape`` whose row slices
  ``data[lo:hi]`` convert with ``numpy.asarray``: h5py datasets, for example).

Rows are read one chunk at a time, checked (shape, finiteness, labels), moved to the
model's device and cut into batches; the whole set is never held at once. The next
chunk is read on a background thread while the current one trains (on CuPy it is also
copied to the GPU on a separate stream from pinned host memory, so the copy overlaps the
current chunk's compute).

Chunks: a Dask or zarr array's own chunks along the first axis; for a memmap (which has
none), ``DEFAULT_CHUNK_BYTES`` of rows. Shuffling is two-level: each epoch draws a random
order of the chunks, then a random order of the rows inside each chunk, both from the
model's seeded generator, so a streamed fit is reproducible by ``seed``. Batches run
across chunk boundaries (the rows left over at the end of one chunk open the next batch),
so with ``shuffle=False`` a streamed fit sees exactly the batches of an in-memory fit
and ends with the same parameters.
"""

from __future__ import annotations

import concurrent.futures
import copy
import math
import numbers
from typing import Any, Iterator

import numpy as np

__all__ = ["DataSource", "as_source", "DEFAULT_CHUNK_BYTES"]

DEFAULT_CHUNK_BYTES = 64 * 2**20


def _module(data: Any) -> str:
    return type(data).__module__ or ""


class DataSource:
    """Rows of an array that is read in chunks.

    Parameters
    ----------
    data : array-like with ``shape`` (1-D or 2-D) and row slicing ``data[lo:hi]``
        whose result converts with ``numpy.asarray``.
    chunk_rows : int or None
        Rows per chunk. ``None``: the array's own chunking along axis 0 (Dask, zarr),
        else as many rows as fit in ``DEFAULT_CHUNK_BYTES``.
    name : str
        The argument name used in error messages.
    """

    def __init__(self, data: Any, chunk_rows: int | None = None, name: str = "X") -> None:
        if isinstance(data, DataSource):
            data = data.data
        if _is_sparse(data) and getattr(data, "format", "csr") != "csr":
            data = data.tocsr()  # row slices of CSR are cheap; the matrix stays sparse
        shape = getattr(data, "shape", None)
        if shape is None or len(shape) not in (1, 2):
            raise ValueError(f"{name} must be a 1-D or 2-D array to stream from, got shape {shape}")
        if any(s is None or (isinstance(s, float) and math.isnan(s)) for s in shape):
            raise ValueError(f"{name} has unknown chunk sizes {shape}; call compute_chunk_sizes() on the Dask array first")
        self.data = data
        self.name = name
        self.shape = tuple(int(s) for s in shape)
        if self.shape[0] == 0:
            raise ValueError(f"{name} is empty: it has 0 samples")
        if chunk_rows is not None:
            if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, numbers.Integral) or chunk_rows < 1:
                raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
            self.bounds = self._even_bounds(int(chunk_rows))
        else:
            own = self._own_chunks()
            if own is not None:
                self.bounds = own
            else:
                row_bytes = max(1, math.prod(self.shape[1:]) * np.dtype(getattr(data, "dtype", np.float64)).itemsize)
                self.bounds = self._even_bounds(max(1, DEFAULT_CHUNK_BYTES // row_bytes))

    def _even_bounds(self, rows: int) -> list[tuple[int, int]]:
        n = self.shape[0]
        return [(lo, min(n, lo + rows)) for lo in range(0, n, rows)]

    def _own_chunks(self) -> list[tuple[int, int]] | None:
        chunks = getattr(self.data, "chunks", None)
        if not chunks:
            return None
        first = chunks[0]
        if isinstance(first, tuple):  # Dask: a tuple of sizes per axis
            if any(isinstance(s, float) and math.isnan(s) for s in first):
                return None
            edges = np.cumsum((0,) + first)
            return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
        if isinstance(first, int) and first > 0:  # zarr: one chunk length per axis
            return self._even_bounds(first)
        return None

    @property
    def n_rows(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def read(self, lo: int, hi: int) -> np.ndarray:
        """Rows ``lo:hi`` as a host NumPy array (a Dask array computes them here)."""
        block = self.data[lo:hi]
        if hasattr(block, "compute") and "dask" in _module(block):
            block = block.compute()
        if _is_sparse(block):  # scipy.sparse: densified a chunk at a time
            block = block.toarray()
        return np.asarray(block)

    def __repr__(self) -> str:
        return f"DataSource({type(self.data).__name__}, shape={self.shape}, chunks={len(self.bounds)})"


def _is_sparse(data: Any) -> bool:
    return _module(data).startswith("scipy.sparse") and hasattr(data, "toarray")


def is_streamed(data: Any) -> bool:
    """Whether ``data`` is read in chunks rather than moved to the device whole."""
    if isinstance(data, (DataSource, np.memmap)) or _is_sparse(data):
        return True
    module = _module(data)
    return (module.startswith("dask.array") or module.startswith("zarr")) and hasattr(data, "shape")


def as_source(data: Any, name: str = "X") -> DataSource | None:
    """A :class:`DataSource` for a memmap, Dask, zarr or sparse array, else None. A DataSource is
    kept as it is (its chunks too), renamed to ``name`` for error messages if need be."""
    if isinstance(data, DataSource):
        if data.name == name:
            return data
        renamed = copy.copy(data)
        renamed.name = name
        return renamed
    if is_streamed(data):
        return DataSource(data, name=name)
    return None


class ChunkReader:
    """Reads ``(X rows, y rows)`` of the chunks in ``order``, one chunk ahead on a background
    thread, moved to the model's device there (a separate CUDA stream on CuPy). ``y`` is a
    DataSource read alongside ``X``, or None."""

    def __init__(self, backend: Any, source: DataSource, y: DataSource | None, order: list[int]) -> None:
        self.backend, self.source, self.y, self.order = backend, source, y, order
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="xpnet-chunk")
        self._copy = _DeviceCopier(backend)

    def _load(self, index: int, release: Any) -> tuple[tuple[int, int], Any, Any]:
        lo, hi = self.source.bounds[index]
        x = self.source.read(lo, hi)
        y = None if self.y is None else self.y.read(lo, hi)
        return (lo, hi), self._copy(x, release), y

    def __iter__(self) -> Iterator[tuple[tuple[int, int], Any, Any]]:
        try:
            pending = self._pool.submit(self._load, self.order[0], None) if self.order else None
            for k in range(len(self.order)):
                bounds, x, y = pending.result()
                release = self._copy.mark()  # the device finished with older chunks once it passes here
                pending = self._pool.submit(self._load, self.order[k + 1], release) if k + 1 < len(self.order) else None
                yield bounds, x, y
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


class _DeviceCopier:
    """Host rows to the device. On CuPy: through pinned host memory on a copy stream that first
    waits for the compute stream to pass ``release`` (so a freed chunk's memory is not
    overwritten while kernels still read it); the copy overlaps the compute stream's work.
    Elsewhere the host array is returned as it is and converted by the caller's checks."""

    def __init__(self, backend: Any) -> None:
        self.cupy = backend._native if backend.is_cupy else None
        self.stream = None
        if self.cupy is not None:
            with self.cupy.cuda.Device(backend.device.id):
                self.stream = self.cupy.cuda.Stream(non_blocking=True)
            self.device_id = backend.device.id

    def mark(self) -> Any:
        if self.cupy is None:
            return None
        event = self.cupy.cuda.Event(disable_timing=True)
        event.record(self.cupy.cuda.get_current_stream())
        return event

    def __call__(self, host: np.ndarray, release: Any) -> Any:
        if self.cupy is None or host.dtype.kind not in "biuf":
            return host
        import cupyx

        pinned = cupyx.empty_pinned(host.shape, dtype=host.dtype)
        pinned[...] = host
        with self.cupy.cuda.Device(self.device_id), self.stream:
            if release is not None:
                self.stream.wait_event(release)
            device = self.cupy.asarray(pinned)
            self.stream.synchronize()  # the copy is done before the compute stream sees the array
        return device
