"""Every Numba kernel equals its reference implementation in xpnet.ops."""

import numpy as np
import pytest

from xpnet import ops

numba_cpu = pytest.importorskip("xpnet.kernels.numba_cpu", reason="Numba is not importable")

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-6, atol=1e-7), np.float64: dict(rtol=1e-13, atol=1e-15)}
# Sizes either side of the serial/parallel switch, a batch of one and odd widths.
# In-place updates subtract a small step from O(1) parameters: one float32 ulp there is ~5e-7.
UPDATE_TOL = {np.float32: dict(rtol=2e-6, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}
SHAPES = [(1, 1), (1, 10), (3, 7), (128, 10), (129, 257), (300, 1000)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_sigmoid_backward(shape, dtype, rng):
    g = rng.normal(size=shape).astype(dtype)
    y = rng.uniform(size=shape).astype(dtype)
    out = numba_cpu.sigmoid_backward(g, y)
    assert out.dtype == dtype and out.shape == shape
    np.testing.assert_allclose(out, ops.sigmoid_backward_reference(g, y, np), **TOL[dtype])


def test_sigmoid_backward_non_contiguous_and_1d(rng):
    g = rng.normal(size=(64, 40))
    y = rng.uniform(size=(40, 64)).T  # Fortran-ordered view
    np.testing.assert_allclose(numba_cpu.sigmoid_backward(g, y), g * y * (1 - y), rtol=1e-13)
    v = rng.normal(size=100_000).astype(np.float32)
    np.testing.assert_allclose(numba_cpu.sigmoid_backward(v, v), v * v * (1 - v), rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_bias_sigmoid(shape, dtype, rng):
    z = (rng.normal(size=shape) * 30).astype(dtype)  # includes saturated units
    b = rng.normal(size=shape[1]).astype(dtype)
    out = numba_cpu.bias_sigmoid(z, b)
    np.testing.assert_allclose(out, ops.bias_sigmoid_reference(z, b, np), **TOL[dtype])
    assert np.all((out >= 0) & (out <= 1))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_softmax_cross_entropy(shape, dtype, scale, rng):
    n, c = shape
    z = (rng.normal(size=shape) * scale).astype(dtype)
    t = rng.integers(0, c, size=n)
    t[0] = c - 1  # labels at both ends
    t[-1] = 0
    loss, grad = numba_cpu.softmax_cross_entropy(z, t)
    ref_loss, ref_grad = ops.softmax_cross_entropy_reference(z, t, np)
    assert grad.dtype == dtype and np.isfinite(loss) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5 if dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(grad, ref_grad, **TOL[dtype])
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-6 if dtype == np.float32 else 1e-14)


def test_softmax_cross_entropy_int32_labels_and_views(rng):
    z = rng.normal(size=(50, 20))[:, ::2]  # non-contiguous view
    t = rng.integers(0, 10, size=50).astype(np.int32)
    loss, grad = numba_cpu.softmax_cross_entropy(z, t)
    ref_loss, ref_grad = ops.softmax_cross_entropy_reference(z, t, np)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-15)


def test_softmax_cross_entropy_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        numba_cpu.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))


@pytest.mark.parametrize("eps_form", ["pytorch", "scikit-learn"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [1, 17, 40_000])
def test_adam_update(size, dtype, eps_form, rng):
    p, g, m = (rng.normal(size=size).astype(dtype) for _ in range(3))
    v = rng.uniform(size=size).astype(dtype) * 1e-4  # sqrt(v) near eps, where the two forms differ
    refs = [a.copy() for a in (p, g, m, v)]
    for step in (1, 2, 50):
        kw = dict(lr=1e-5, beta1=0.9, beta2=0.999, eps=1e-2, step=step, eps_form=eps_form)  # steps of about lr / eps
        returned = numba_cpu.adam_update(p, g, m, v, **kw)
        assert all(a is b for a, b in zip(returned, (p, m, v)))  # in place, returns its arrays
        refs[0], refs[2], refs[3] = ops.adam_update_reference(*refs, xp=np, **kw)
    for ours, ref in zip((p, m, v), (refs[0], refs[2], refs[3])):
        np.testing.assert_allclose(ours, ref, **UPDATE_TOL[dtype])


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_update(dtype, nesterov, rng):
    p, g, vel = (rng.normal(size=(50, 30)).astype(dtype) for _ in range(3))
    rp, rv = p.copy(), vel.copy()
    for _ in range(3):
        numba_cpu.sgd_update(p, g, vel, lr=0.1, momentum=0.9, nesterov=nesterov)
        rp, rv = ops.sgd_update_reference(rp, g, rv, lr=0.1, momentum=0.9, nesterov=nesterov, xp=np)
    np.testing.assert_allclose(p, rp, **UPDATE_TOL[dtype])
    np.testing.assert_allclose(vel, rv, **UPDATE_TOL[dtype])
    q = p.copy()
    numba_cpu.sgd_update(p, g, None, lr=0.5, momentum=0.0, nesterov=False)
    np.testing.assert_allclose(p, q - 0.5 * g, **UPDATE_TOL[dtype])


def test_unsupported_inputs_fall_back_to_reference(rng):
    a = rng.integers(0, 5, size=(4, 4))
    np.testing.assert_array_equal(numba_cpu.sigmoid_backward(a, a), a * a * (1 - a))
    p = np.ones((4, 4))[:, ::2]  # non-contiguous parameter: reference updates the view in place
    numba_cpu.adam_update(p, np.ones_like(p), np.zeros_like(p), np.zeros_like(p), lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8, step=1)
    np.testing.assert_allclose(p, 0.9)


def test_ops_dispatch_picks_kernels():
    from xpnet.backend import get_backend

    fused = ops.Ops(get_backend("numpy"))
    assert fused.fused and fused.kernel_family == "numba"
    assert fused.sigmoid_backward is numba_cpu.sigmoid_backward
    plain = ops.Ops(get_backend("numpy"), fused=False)
    assert not plain.fused and "switched off" in plain.reason
    strict = ops.Ops(get_backend("array_api_strict"), fused=True)
    assert not strict.fused and "no fused kernels" in strict.reason


def test_module_level_entry_points_dispatch(rng):
    z = rng.normal(size=(8, 5)).astype(np.float32)
    t = rng.integers(0, 5, size=8)
    loss, grad = ops.softmax_cross_entropy(z, t)
    ref = ops.softmax_cross_entropy_reference(z, t, np)
    np.testing.assert_allclose(loss, ref[0], rtol=1e-6)
    np.testing.assert_allclose(ops.sigmoid_backward(z, z), z * z * (1 - z), rtol=1e-6)


def test_kernels_found_from_a_source_checkout():
    """Run from the repository root, the checkout's xpnet/ shadows the installed package;
    the fused kernels must still be found (they live in the top-level kernels/ folder)."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    code = (
        "import xpnet, pathlib, xpnet.kernels.cupy_gpu; from xpnet.ops import Ops; from xpnet.backend import get_backend; "
        "ops = Ops(get_backend('numpy'), fused=True); "
        "print(pathlib.Path(xpnet.__file__).resolve().parent.parent, ops.fused, ops.reason)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True).stdout.split()
    assert Path(out[0]) == repo  # the checkout's xpnet/ was imported
    assert out[1] == "True", out


def test_training_loop_runs_kernels_serially(monkeypatch, rng):
    """Inside training_loop() large inputs take the serial variant (parallel Numba threads wait on
    OpenBLAS's spinning threads during training); outside, they use all cores."""
    used = []
    monkeypatch.setattr(numba_cpu, "PARALLEL_MIN_ELEMENTS", 8)
    monkeypatch.setattr(numba_cpu, "_adam_parallel", lambda *a: used.append("parallel"))
    monkeypatch.setattr(numba_cpu, "_adam_serial", lambda *a: used.append("serial"))
    p = np.zeros(64, dtype=np.float32)
    kw = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, step=1)
    numba_cpu.adam_update(p, p, p.copy(), p.copy(), **kw)
    with numba_cpu.training_loop():
        numba_cpu.adam_update(p, p, p.copy(), p.copy(), **kw)
    numba_cpu.adam_update(p, p, p.copy(), p.copy(), **kw)
    assert used == ["parallel", "serial", "parallel"]
    from xpnet.backend import get_backend

    assert ops.Ops(get_backend("numpy")).training_loop is numba_cpu.training_loop
