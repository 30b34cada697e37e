"""The captured step's cuBLAS products (``XPNET_GRAPH_GEMM=cublas``), checked without a GPU.

cuBLAS is column-major and xpnet's arrays row-major, with transposed views among the operands
of the backward pass: the argument mapping is where such a call goes wrong. Here it drives a
NumPy model of ``cublas<t>gemm`` on the operands' flat memory, for every layout. Then the whole
of ``cublas_gemm`` runs against stand-ins for CuPy and its cuBLAS binding that compute with that
model at the addresses they are given. The real calls, captured and replayed, are tested on a
GPU (``test_gpu_graphs.py``).
"""

import ctypes

import numpy as np
import pytest

from xpnet.kernels import cupy_graph

OP_N, OP_T = 0, 1


def column_major(buffer, rows, cols, ld):
    """The column-major ``(rows, cols)`` matrix with leading dimension ``ld`` at the start of ``buffer``."""
    assert ld >= max(1, rows), f"cuBLAS refuses a leading dimension {ld} below {rows} rows"  # as cuBLAS checks
    assert rows == 0 or cols == 0 or (rows - 1) + (cols - 1) * ld < buffer.size, "reads past the operand"
    return np.lib.stride_tricks.as_strided(buffer, shape=(rows, cols), strides=(buffer.itemsize, ld * buffer.itemsize))


def cublas_gemm_model(op_first, op_second, rows, cols, depth, alpha, first, ld_first, second, ld_second, beta, c, ldc):
    """``C = alpha op(first) op(second) + beta C`` on flat buffers, column-major, as cuBLAS defines it."""
    f = column_major(first, depth, rows, ld_first).T if op_first == OP_T else column_major(first, rows, depth, ld_first)
    s = column_major(second, cols, depth, ld_second).T if op_second == OP_T else column_major(second, depth, cols, ld_second)
    out = column_major(c, rows, cols, ldc)
    out[...] = alpha * (f @ s) + (beta * out if beta else 0.0)  # beta = 0: C is not read


def operand(rng, rows, cols, transposed, pad):
    """A logical ``(rows, cols)`` operand and the flat memory it lives in: a row-major view with
    ``pad`` unused columns per row, or (``transposed``) the transpose of such a ``(cols, rows)`` view."""
    base = rng.normal(size=(cols, rows + pad) if transposed else (rows, cols + pad))
    view = base[:, :rows].T if transposed else base[:, :cols]
    return view, base.reshape(-1)


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (3, 5, 7), (128, 784, 256), (784, 128, 256), (17, 1, 9), (1, 6, 4)])
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("pad", [0, 3])
def test_cublas_arguments_compute_the_row_major_product(m, k, n, ta, tb, pad, rng):
    a, a_memory = operand(rng, m, k, ta, pad)
    b, b_memory = operand(rng, k, n, tb, pad)
    a_layout = cupy_graph.strided_layout(a.strides, a.itemsize)
    b_layout = cupy_graph.strided_layout(b.strides, b.itemsize)
    assert a_layout is not None and b_layout is not None
    c = np.full(m * n, np.nan)  # an element of C the call does not write stays NaN
    op_first, op_second, rows, cols, depth, ld_first, ld_second, ldc = cupy_graph.cublas_gemm_arguments(
        m, n, k, a_layout, b_layout)
    cublas_gemm_model(op_first, op_second, rows, cols, depth, 1.0, b_memory, ld_first, a_memory, ld_second, 0.0, c, ldc)
    np.testing.assert_allclose(c.reshape(m, n), a @ b, rtol=1e-12, atol=1e-12)


def test_a_single_row_with_a_short_stride_gets_a_leading_dimension_cublas_accepts(rng):
    """A (1, k) view whose row stride is one element (as a reshape can leave it): its stride is
    never used, but cuBLAS refuses a leading dimension below k."""
    k, n = 6, 4
    memory = rng.normal(size=k)
    a = np.lib.stride_tricks.as_strided(memory, shape=(1, k), strides=(8, 8))
    b = rng.normal(size=(k, n))
    layout = cupy_graph.strided_layout(a.strides, a.itemsize)
    assert layout == (False, 1)
    args = cupy_graph.cublas_gemm_arguments(1, n, k, layout, (False, n))
    assert args[6] == k  # the second operand's (A's) leading dimension, raised from 1
    c = np.zeros(n)
    cublas_gemm_model(*args[:5], 1.0, b.reshape(-1), args[5], memory, args[6], 0.0, c, args[7])
    np.testing.assert_allclose(c, (a @ b)[0], rtol=1e-12)


def test_strided_layout_names_rows_columns_or_neither():
    x = np.zeros((5, 8))
    assert cupy_graph.strided_layout(x.strides, 8) == (False, 8)
    assert cupy_graph.strided_layout(x[:, :3].strides, 8) == (False, 8)
    assert cupy_graph.strided_layout(x.T.strides, 8) == (True, 8)
    assert cupy_graph.strided_layout(x[::2, ::2].strides, 8) is None  # copied first
    assert cupy_graph.strided_layout(np.broadcast_to(np.zeros(3), (4, 3)).strides, 8) is None


def test_graph_gemm_is_chosen_by_environment(monkeypatch):
    monkeypatch.delenv("XPNET_GRAPH_GEMM", raising=False)
    assert cupy_graph.graph_gemm_requested() == "xpnet"
    monkeypatch.setenv("XPNET_GRAPH_GEMM", " cuBLAS ")
    assert cupy_graph.graph_gemm_requested() == "cublas"
    monkeypatch.setenv("XPNET_GRAPH_GEMM", "")
    assert cupy_graph.graph_gemm_requested() == "xpnet"
    monkeypatch.setenv("XPNET_GRAPH_GEMM", "cutlass")
    with pytest.raises(ValueError, match="XPNET_GRAPH_GEMM must be one of"):
        cupy_graph.graph_gemm_requested()


# -- cublas_gemm itself, on a stand-in for CuPy and its cuBLAS binding ----------------------------
class HostArray(np.ndarray):
    """A NumPy array that answers as a CuPy array does where ``cublas_gemm`` asks: ``.data.ptr``
    (the address of element [0, 0]) and ``.device.id``."""

    @property
    def data(self):
        return type("Pointer", (), {"ptr": self.__array_interface__["data"][0]})()

    @property
    def device(self):
        return type("Device", (), {"id": 0})()


class FakeCublas:
    """The few entry points of ``cupy_backends.cuda.libs.cublas`` that ``cublas_gemm`` calls, with
    ``<s|d>gemm`` as the NumPy model above, reading and writing memory at the addresses given,
    alpha and beta included (by host pointer, as the binding takes them)."""

    def __init__(self):
        self.calls, self.handles = [], 0

    def create(self):
        self.handles += 1
        return 1000 + self.handles

    def setMathMode(self, handle, mode):
        self.calls.append(("math", handle, mode))

    def setPointerMode(self, handle, mode):
        self.calls.append(("pointer", handle, mode))

    def setWorkspace(self, handle, ptr, size):
        self.calls.append(("workspace", handle, size))

    def setStream(self, handle, stream):
        self.calls.append(("stream", handle, stream))

    @staticmethod
    def _memory(ptr, ctype, count):
        return np.ctypeslib.as_array((ctype * max(count, 1)).from_address(ptr))

    def _gemm(self, ctype, handle, op_first, op_second, rows, cols, depth, alpha, first, ld_first, second, ld_second,
              beta, c, ldc):
        self.calls.append(("gemm", handle, ctype.__name__))
        shape_first = (depth, rows) if op_first == OP_T else (rows, depth)
        shape_second = (cols, depth) if op_second == OP_T else (depth, cols)
        extent = lambda shape, ld: (shape[0] - 1) + (shape[1] - 1) * ld + 1  # noqa: E731
        cublas_gemm_model(op_first, op_second, rows, cols, depth, self._memory(alpha, ctype, 1)[0],
                          self._memory(first, ctype, extent(shape_first, ld_first)), ld_first,
                          self._memory(second, ctype, extent(shape_second, ld_second)), ld_second,
                          self._memory(beta, ctype, 1)[0], self._memory(c, ctype, extent((rows, cols), ldc)), ldc)

    def sgemm(self, *args):
        self._gemm(ctypes.c_float, *args)

    def dgemm(self, *args):
        self._gemm(ctypes.c_double, *args)


@pytest.fixture
def host_cublas(monkeypatch):
    """``cupy`` and ``cupy_backends.cuda.libs.cublas`` standing in for the GPU, in ``sys.modules``."""
    import contextlib
    import sys
    import types

    cublas = FakeCublas()
    cupy = types.SimpleNamespace(
        empty=lambda shape, dtype: np.empty(shape, dtype=dtype).view(HostArray),
        ascontiguousarray=lambda a: np.ascontiguousarray(a).view(HostArray),
        cuda=types.SimpleNamespace(get_current_stream=lambda: types.SimpleNamespace(ptr=77),
                                   Device=lambda device_id: contextlib.nullcontext(),
                                   alloc=lambda size: types.SimpleNamespace(ptr=5)))
    libs = types.ModuleType("cupy_backends.cuda.libs")
    libs.cublas = cublas
    for name, module in {"cupy": cupy, "cupy_backends": types.ModuleType("cupy_backends"),
                         "cupy_backends.cuda": types.ModuleType("cupy_backends.cuda"),
                         "cupy_backends.cuda.libs": libs, "cupy_backends.cuda.libs.cublas": cublas}.items():
        monkeypatch.setitem(sys.modules, name, module)
    sys.modules["cupy_backends"].cuda = sys.modules["cupy_backends.cuda"]
    sys.modules["cupy_backends.cuda"].libs = libs
    cupy_graph._cublas_handle.cache_clear()
    monkeypatch.setattr(cupy_graph, "_cublas_workspaces", {})
    yield cublas
    cupy_graph._cublas_handle.cache_clear()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
def test_cublas_gemm_calls_cublas_with_the_operands_memory(host_cublas, dtype, ta, tb, rng):
    """The whole of ``cublas_gemm``: layouts, pointers, alpha and beta in the product's precision
    (a float64 1.0 read as a float32 is not 1), the handle's settings, the current stream; into a
    view of a flat buffer, as the gradients are written."""
    m, k, n = 5, 7, 3
    a = (rng.normal(size=(k, m)).T if ta else rng.normal(size=(m, k))).astype(dtype).view(HostArray)
    b = (rng.normal(size=(n, k)).T if tb else rng.normal(size=(k, n))).astype(dtype).view(HostArray)
    expected = a.view(np.ndarray).astype(np.float64) @ b.view(np.ndarray).astype(np.float64)
    tol = dict(rtol=1e-5) if dtype == "float32" else dict(rtol=1e-12)
    np.testing.assert_allclose(cupy_graph.cublas_gemm(a, b).view(np.ndarray), expected, **tol)
    flat = np.full(m * n + 3, np.nan, dtype=dtype).view(HostArray)
    view = flat[3:].reshape(m, n)
    cupy_graph.cublas_gemm_into(a, b, view)
    np.testing.assert_allclose(view.view(np.ndarray), expected, **tol)
    assert np.isnan(flat[:3].view(np.ndarray)).all()  # nothing written before the view
    handle = 1001
    assert host_cublas.handles == 1  # one handle, made once and kept
    assert ("math", handle, 0) in host_cublas.calls and ("pointer", handle, 0) in host_cublas.calls
    assert ("workspace", handle, cupy_graph.CUBLAS_WORKSPACE_BYTES) in host_cublas.calls
    assert host_cublas.calls.count(("stream", handle, 77)) == 2  # the current stream, before each product
    assert host_cublas.calls[-1] == ("gemm", handle, "c_float" if dtype == "float32" else "c_double")


def test_cublas_gemm_copies_an_operand_with_neither_layout_and_skips_empty_products(host_cublas, rng):
    a = rng.normal(size=(6, 10))[::2, ::2].view(HostArray)  # (3, 5), neither rows nor columns contiguous
    b = rng.normal(size=(5, 4)).view(HostArray)
    np.testing.assert_allclose(cupy_graph.cublas_gemm(a, b).view(np.ndarray), a.view(np.ndarray) @ b.view(np.ndarray),
                               rtol=1e-12)
    calls = len(host_cublas.calls)
    empty = cupy_graph.cublas_gemm(np.zeros((3, 0)).view(HostArray), np.zeros((0, 4)).view(HostArray))
    assert (empty.view(np.ndarray) == 0).all() and empty.shape == (3, 4)  # K = 0: zeros, and no cuBLAS call
    assert len(host_cublas.calls) == calls
    with pytest.raises(ValueError, match="gemm needs"):
        cupy_graph.cublas_gemm(b, b)
