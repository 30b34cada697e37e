"""The fused captured GPU step (kernels/cuda_step.py, kernels/fused_step.cu), checked on the CPU.

Its launch plan is plain Python, so the kernel count per step is checked everywhere. Its
kernels run here through a CPU emulation of CUDA (``tests/cuda_emulation``, g++): each one
against NumPy, and whole plans (gather, forward, loss, backward, update, statistics) against
the reference training step (``fused=False``), for every loss, activation and optimizer the
plan accepts, in float32 and float64. What the emulation cannot show (timing, and blocks
racing on a GPU) is for ``tests/test_gpu_graphs.py`` on a GPU.
"""

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from xpnet import SGD, Adam, Sequential
from xpnet.kernels import cuda_step
from xpnet.kernels.step_spec import describe
from xpnet.layers import Dense, ReLU, Sigmoid, Tanh, dense_stack

H100_SMS = 132
needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not on the PATH (the CUDA emulation needs it)")


def _numpy_device():
    return dict(empty=lambda shape, dt: np.empty(shape, dtype=dt), zeros=lambda shape, dt: np.zeros(shape, dtype=dt),
                to_device=np.asarray)


def _plan(model, optimizer, X, Y, rows, batch_stride=None, sm_count=H100_SMS):
    """A plan over NumPy buffers for ``model`` (fused, so its parameters are flat) and its optimizer."""
    optimizer._ensure_state(model.parameters(), np, flat=True)
    state = optimizer._flat_state
    slot1 = state.get("m", state.get("velocity", np.zeros(1, model._flat[0].dtype)))
    slot2 = state.get("v", slot1)
    buffers = cuda_step.StepBuffers(
        X=X, Y=Y if Y.ndim == 2 else Y.reshape(-1, 1), order=np.arange(X.shape[0], dtype=np.int64),
        counters=np.array([0, 0, -1, optimizer.iterations], dtype=np.int64), sums=np.zeros(2),
        params=model._flat[0], grads=model._flat[1], slot1=slot1, slot2=slot2)
    launches = cuda_step.plan_step(describe(model), buffers, rows=rows, batch_stride=batch_stride or rows,
                                   optimizer=optimizer, l2=model.l2, sm_count=sm_count, **_numpy_device())
    return launches, buffers


# -- the launch count, on any machine ----------------------------------------------------------
@pytest.mark.parametrize("hidden", [(256, 128), (64,), (512, 256, 128, 64)])
def test_a_step_is_3L_plus_2_kernels(hidden):
    model = Sequential(dense_stack([784, *hidden, 10], "sigmoid"), seed=0)
    X = np.zeros((256, 784), dtype=np.float32)
    launches, _ = _plan(model, Adam(1e-3), X, np.zeros(256, dtype=np.int64), rows=128)
    n_layers = len(hidden) + 1
    assert len(launches) == 3 * n_layers + 2
    kinds = [launch.kernel.split("<")[0] for launch in launches]
    assert kinds == (["xpnet_gather_batch"] + ["xpnet_fused_gemm"] * n_layers + ["xpnet_loss_grad"]
                     + ["xpnet_fused_gemm"] * (2 * n_layers - 1) + ["xpnet_update_step"])
    assert set(launch.kernel for launch in launches) <= set(cuda_step.kernel_names("float"))


def test_reference_network_meets_the_kernel_budget():
    # issue 12: at most 12 kernels per step on 784-256-128-10 (the generic captured step runs 33)
    model = Sequential(dense_stack([784, 256, 128, 10], "sigmoid"), seed=0)
    launches, _ = _plan(model, Adam(1e-3), np.zeros((128, 784), np.float32), np.zeros(128, np.int64), rows=128)
    assert len(launches) == 11 <= 12
    # the products of a batch of 128 fill the H100's 132 multiprocessors by splitting K, finished in-kernel
    assert max(launch.grid[2] for launch in launches if "gemm" in launch.kernel) > 1


def test_unsupported_says_why():
    model = Sequential(dense_stack([4, 3, 2], "sigmoid"), seed=0)
    assert cuda_step.unsupported(model, Adam()) == ""

    class MyAdam(Adam):
        pass

    assert "MyAdam" in cuda_step.unsupported(model, MyAdam())
    assert "flat" in cuda_step.unsupported(Sequential(dense_stack([4, 3, 2], "sigmoid"), seed=0, fused=False), Adam())


def test_plan_refuses_targets_of_the_wrong_kind():
    model = Sequential(dense_stack([4, 3, 2], "sigmoid"), seed=0)
    with pytest.raises(TypeError, match="2-D int64"):
        _plan(model, Adam(), np.zeros((8, 4), np.float32), np.zeros((8, 1), np.int32), rows=4)


def test_fused_step_is_opt_in(monkeypatch):
    monkeypatch.delenv("XPNET_GRAPH_STEP", raising=False)
    assert not cuda_step.fused_step_requested()
    monkeypatch.setenv("XPNET_GRAPH_STEP", "fused")
    assert cuda_step.fused_step_requested()


# -- the kernels, emulated on the CPU ----------------------------------------------------------------
@pytest.fixture(scope="module")
def emulator():
    if shutil.which("g++") is None:
        pytest.skip("g++ is not on the PATH (the CUDA emulation needs it)")
    # the tests run in importlib mode (tests/ is not on sys.path): load the emulation by its path
    where = Path(__file__).with_name("cuda_emulation") / "__init__.py"
    spec = importlib.util.spec_from_file_location("cuda_emulation", where)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names = cuda_step.kernel_names("float") + cuda_step.kernel_names("double")
    return module.load([cuda_step.GATHER_SOURCE, cuda_step.FUSED_SOURCE], names)


def _run(emulator, launches):
    for launch in launches:
        emulator.launch(launch.kernel, launch.grid, launch.block, launch.args)


def _act(z, code):
    return [z, 1 / (1 + np.exp(-z)), np.tanh(z), np.maximum(z, 0)][code]


def _act_grad(d, y, code):
    return [d, d * y * (1 - y), d * (1 - y * y), np.where(y > 0, d, 0)][code]


@needs_gxx
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("product", ["forward", "weight_gradient", "input_gradient"])
@pytest.mark.parametrize("tile,splits", [(32, 1), (32, 3), (64, 2)])
def test_fused_gemm_against_numpy(emulator, dtype, product, tile, splits):
    rng = np.random.default_rng(tile + splits)
    i32, s = np.int32, dtype
    rows, k, m = 70, 150, 45  # ragged against both tiles and against BK = 16
    h = rng.standard_normal((rows, k)).astype(dtype)
    W = rng.standard_normal((k, m)).astype(dtype) * 0.1
    b = rng.standard_normal(m).astype(dtype)
    d = rng.standard_normal((rows, m)).astype(dtype)
    y_prev = _act(rng.standard_normal((rows, k)), 1).astype(dtype)
    dummy = np.zeros(1, dtype)
    counters = np.zeros(64, np.int32)
    if product == "forward":  # sigmoid([h, 1] @ [W; b])
        A, B, C, M, N, K, lda, ldb, ta, tb = h, W, np.zeros((rows, m), dtype), rows, m, k, k, m, False, False
        bias, mode, epi, code, aux, ld_aux, lam = b, cuda_step.BIAS_IN, cuda_step.EPI_ACT, 1, dummy, 0, 0.0
        want, want_bias = _act(h.astype(float) @ W + b, 1), None
    elif product == "weight_gradient":  # [gW; gb] = [h^T; 1] @ d + lam * W
        A, B, C, M, N, K, lda, ldb, ta, tb = h, d, np.zeros((k, m), dtype), k, m, rows, k, m, True, False
        bias, mode, epi, code, aux, ld_aux, lam = np.zeros(m, dtype), cuda_step.BIAS_OUT, cuda_step.EPI_L2, 0, W, m, 0.3
        want, want_bias = h.T.astype(float) @ d + 0.3 * W, d.astype(float).sum(axis=0)
    else:  # (d @ W^T) * sigmoid'(y_prev)
        A, B, C, M, N, K, lda, ldb, ta, tb = d, W, np.zeros((rows, k), dtype), rows, k, m, m, m, False, True
        bias, mode, epi, code, aux, ld_aux, lam = dummy, cuda_step.BIAS_NONE, cuda_step.EPI_ACT_GRAD, 1, y_prev, k, 0.0
        want, want_bias = _act_grad(d.astype(float) @ W.T, y_prev, 1), None
    m_rows, k_all = M + (mode == cuda_step.BIAS_OUT), K + (mode == cuda_step.BIAS_IN)
    k_per_split = -(-k_all // splits)
    k_per_split = -(-k_per_split // 16) * 16
    grid = (-(-N // tile), -(-m_rows // tile), -(-k_all // k_per_split))
    partial = np.full(grid[2] * m_rows * N, np.nan, dtype)  # stale partials must never be read
    ctype = "float" if dtype == np.float32 else "double"
    emulator.launch(f"xpnet_fused_gemm<{ctype}, {tile}, {str(ta).lower()}, {str(tb).lower()}>", grid, (256,), [
        A, B, C, i32(M), i32(N), i32(K), i32(lda), i32(ldb), i32(N), bias, i32(mode), i32(epi), i32(code), aux,
        i32(ld_aux), s(lam), partial, counters, i32(k_per_split)])
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(C, want, **tol)
    if want_bias is not None:
        np.testing.assert_allclose(bias, want_bias, **tol)
    assert not counters.any(), "the split-K tile counters must be left at zero for the next launch"


@needs_gxx
@pytest.mark.parametrize("loss,out_code", [("ce", 0), ("bce", 0), ("mse", 0), ("mse", 2), ("ce", 1)])
def test_loss_kernel_against_numpy(emulator, loss, out_code):
    rng = np.random.default_rng(1)
    n, c = 300, 7  # more rows than threads
    z = rng.standard_normal((n, c)) * 3
    z[0, 2] = 80.0  # a large logit: the shifted exponentials must not overflow
    out = _act(z, out_code)
    if loss == "ce":
        y = rng.integers(0, c, (n, 1)).astype(np.int64)
        logp = out - out.max(axis=1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
        value = -logp[np.arange(n), y[:, 0]].mean()
        dout = (np.exp(logp) - np.eye(c)[y[:, 0]]) / n
        right = (out.argmax(axis=1) == y[:, 0]).sum()
        name, code = "xpnet_loss_grad<double, long long>", 0
    elif loss == "bce":
        y = (rng.random((n, c)) > 0.5).astype(float)
        value = (np.maximum(out, 0) + np.log1p(np.exp(-np.abs(out))) - out * y).sum() / n
        dout = (1 / (1 + np.exp(-out)) - y) / n
        right = ((out > 0) == (y > 0.5)).all(axis=1).sum()
        name, code = "xpnet_loss_grad<double, double>", 1
    else:
        y = rng.standard_normal((n, c))
        value, dout, right = 0.5 * ((out - y) ** 2).sum() / n, (out - y) / n, 0
        name, code = "xpnet_loss_grad<double, double>", 2
    grad = np.zeros((n, c))
    result = np.zeros(2)
    emulator.launch(name, (1,), (256,), [out, y, grad, np.int32(n), np.int32(c), np.int32(code), np.int32(out_code), result])
    np.testing.assert_allclose(result, [value, right], rtol=1e-12)
    np.testing.assert_allclose(grad, _act_grad(dout, out, out_code), rtol=1e-10, atol=1e-15)


# -- whole plans against the reference step ---------------------------------------------------------
def _data(loss, n, width, rng):
    X = rng.normal(size=(n, width))
    if loss == "softmax_cross_entropy":
        return X, rng.integers(0, 3, n)
    if loss == "binary_cross_entropy":
        return X, (rng.random((n, 3)) > 0.5).astype(float)
    return X, rng.normal(size=(n, 3))


CASES = {
    "sigmoid-ce-adam": ("softmax_cross_entropy", lambda w: dense_stack([w, 16, 8, 3], "sigmoid"), lambda: Adam(0.01), 0.0),
    "mixed-ce-nesterov-l2": ("softmax_cross_entropy",
                             lambda w: [Dense(w, 16), Tanh(), Dense(16, 9), ReLU(), Dense(9, 8), Dense(8, 3)],
                             lambda: SGD(0.05, momentum=0.9, nesterov=True), 0.3),
    "relu-bce-momentum": ("binary_cross_entropy", lambda w: dense_stack([w, 10, 3], "relu"),
                          lambda: SGD(0.05, momentum=0.9), 0.1),
    "tanh-mse-sgd-final-sigmoid": ("mse", lambda w: [Dense(w, 10), Tanh(), Dense(10, 3), Sigmoid()],
                                   lambda: SGD(0.1), 0.0),
    "sigmoid-ce-adam-l2": ("softmax_cross_entropy", lambda w: dense_stack([w, 16, 3], "sigmoid"), lambda: Adam(0.01), 1e-2),
}


@needs_gxx
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_trains_like_the_reference(emulator, case, dtype):
    loss, layers, make_optimizer, l2 = CASES[case]
    rng = np.random.default_rng(5)
    width, rows, steps = 140, 40, 3  # 140 inputs: the first layer's products split K
    X, y = _data(loss, rows * steps + 7, width, rng)
    fused = Sequential(layers(width), loss=loss, dtype=dtype, seed=2, l2=l2)
    reference = Sequential(layers(width), loss=loss, dtype=dtype, seed=2, l2=l2, fused=False)
    Xd, yd = fused._check_data(X, y)
    opt_fused, opt_ref = make_optimizer(), make_optimizer()
    launches, buffers = _plan(fused, opt_fused, Xd, yd, rows, sm_count=H100_SMS)
    order = rng.permutation(Xd.shape[0]).astype(np.int64)
    buffers.order[...] = order
    losses, correct = [], 0
    for step in range(steps):
        _run(emulator, launches)
        idx = order[step * rows:(step + 1) * rows]
        Xr, yr = reference._check_data(X[idx], y[idx])
        value, out = reference._loss_and_backward(Xr, yr)
        if reference.loss.is_classifier:
            correct += int(reference.loss.n_correct(out, yr, np))
        opt_ref.step(reference.parameters(), reference._grads(), reference.ops)
        losses.append(float(value))
    tol = dict(rtol=2e-4, atol=2e-5) if dtype == "float32" else dict(rtol=1e-10, atol=1e-12)
    for got, want in zip(fused.parameters(), reference.parameters()):
        np.testing.assert_allclose(got, want, **tol)
    moved = max(float(np.abs(p - q).max()) for p, q in zip(fused.parameters(), Sequential(
        layers(width), loss=loss, dtype=dtype, seed=2).parameters()))
    assert moved > 1e-3  # the step did train
    counters, sums = buffers.counters, buffers.sums
    assert counters[0] == steps and counters[3] == steps and counters[2] == -1
    np.testing.assert_allclose(sums[0], sum(v * rows for v in losses), **tol)
    assert counters[1] == correct


@needs_gxx
def test_a_non_finite_loss_is_recorded(emulator):
    model = Sequential(dense_stack([6, 5, 3], "sigmoid"), seed=0)
    X = np.ones((8, 6), dtype=np.float32)
    X[3, 2] = np.nan  # row 3 is in the first batch
    launches, buffers = _plan(model, Adam(), X, np.zeros(8, np.int64), rows=4)
    _run(emulator, launches)
    _run(emulator, launches)
    assert buffers.counters[2] == 0 and not np.isfinite(buffers.sums[1])
