"""The captured step's cuBLAS products (``XPNET_GRAPH_GEMM=cublas``), checked without a GPU.

cuBLAS is column-major and xpnet's arrays row-major, with transposed views among the operands
of the backward pass: the argument mapping is where such a call goes wrong. Here it drives a
NumPy model of ``cublas<t>gemm`` on the operands' flat memory, for every layout. The calls
themselves, captured and replayed, are tested on a GPU (``test_gpu_graphs.py``).
"""

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
