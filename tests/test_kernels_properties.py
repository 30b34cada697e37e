"""Property-based checks (hypothesis): the Numba kernels equal the references on arbitrary inputs."""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from xpnet import ops

numba_cpu = pytest.importorskip("xpnet.kernels.numba_cpu", reason="Numba is not importable")

dtypes = st.sampled_from([np.float32, np.float64])
shapes = st.tuples(st.integers(1, 40), st.integers(1, 40))


@st.composite
def logits_and_labels(draw):
    dtype = draw(dtypes)
    n, c = draw(shapes)
    scale = draw(st.sampled_from([1e-3, 1.0, 30.0, 1e4]))
    z = draw(arrays(dtype, (n, c), elements=st.floats(-1, 1, width=32))) * dtype(scale)
    t = draw(arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
    return z, t


@settings(max_examples=200, deadline=None)
@given(logits_and_labels())
@example(case=(np.array([[15, 0, 0, 0, 0, 0, 0]], dtype=np.float32), np.array([0])))
@example(case=(np.array([[15] + [0] * 39], dtype=np.float32), np.array([0])))
def test_softmax_cross_entropy_matches_reference(case):
    z, t = case
    loss, grad = numba_cpu.softmax_cross_entropy(z, t)
    ref_loss, ref_grad = ops.softmax_cross_entropy_reference(z, t, np)
    tight = z.dtype == np.float64
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-10 if tight else 2e-5, atol=1e-12 if tight else 1e-5)
    # float32: the reference adds the row's exponentials in float32, and each small term added to the
    # max's 1 rounds by up to half an ulp of 1.0; the kernel adds them in float64. So p,
    # and p - 1 for p near 1, may differ by about (C - 1) / 2 ulps of 1.0, and the gradient by that
    # over N. Hypothesis found z = [[15, 0, 0]] (1.19e-7 apart) and z = [[15, 0, 0, 0, 0, 0, 0]]
    # (2.98e-7: the reference's 1 - p is 2.15e-6, the kernel's 1.85e-6, the exact 1.84e-6).
    n, c = z.shape
    atol32 = max(2, c) * float(np.finfo(np.float32).eps) / n
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10 if tight else 1e-5, atol=1e-14 if tight else atol32)
    # Each gradient row sums to zero and is bounded by 1/N in magnitude.
    assert np.all(np.abs(grad) <= 1.0 / n + 1e-6)


@settings(max_examples=200, deadline=None)
@given(dtypes.flatmap(lambda dt: st.tuples(
    arrays(dt, shapes, elements=st.floats(-1e3, 1e3, width=32)),
    st.floats(0, 1),
)))
def test_sigmoid_backward_and_bias_sigmoid_match_reference(case):
    g, fraction = case
    y = np.full_like(g, fraction)
    tight = g.dtype == np.float64
    np.testing.assert_allclose(numba_cpu.sigmoid_backward(g, y), ops.sigmoid_backward_reference(g, y, np),
                               rtol=1e-12 if tight else 1e-6, atol=0)
    b = g[0].copy()
    out = numba_cpu.bias_sigmoid(g, b)
    assert np.all((out >= 0) & (out <= 1))
    np.testing.assert_allclose(out, ops.bias_sigmoid_reference(g, b, np), rtol=1e-12 if tight else 1e-6, atol=1e-30)
