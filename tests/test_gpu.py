"""CuPy on a CUDA GPU: kernels against the reference, gradients against NumPy, a short MNIST run.

Skipped, with the reason, where CuPy is missing or ``cupy.is_available()`` is False.
"""

from pathlib import Path

import numpy as np
import pytest

from xpnet import Adam, Dense, Sequential, Sigmoid, ops
from xpnet.backend import cupy_usable

GPU_OK, WHY = cupy_usable()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not GPU_OK, reason=f"needs a CUDA GPU: {WHY}")]
MNIST_DIR = Path(__file__).resolve().parents[1] / "bench" / "data" / "mnist"
DTYPES = ["float32", "float64"]
TOL = {"float32": dict(rtol=2e-5, atol=1e-6), "float64": dict(rtol=1e-11, atol=1e-13)}


@pytest.fixture
def cp():
    import cupy

    return cupy


@pytest.fixture
def kernels():
    from xpnet.kernels import cupy_gpu

    return cupy_gpu


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (128, 10), (129, 257), (1000, 1001)])
def test_elementwise_kernels_equal_reference(cp, kernels, shape, dtype, rng):
    g = rng.normal(size=shape).astype(dtype)
    y = rng.uniform(size=shape).astype(dtype)
    z = (rng.normal(size=shape) * 40).astype(dtype)
    b = rng.normal(size=shape[1]).astype(dtype)
    np.testing.assert_allclose(kernels.sigmoid_backward(cp.asarray(g), cp.asarray(y)).get(), g * y * (1 - y), **TOL[dtype])
    np.testing.assert_allclose(kernels.bias_sigmoid(cp.asarray(z), cp.asarray(b)).get(),
                               ops.bias_sigmoid_reference(z, b, np), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 10), (5, 33), (128, 10), (300, 1000), (8192, 1000), (7, 4096), (9, 5000)])
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_softmax_cross_entropy_equals_reference(cp, kernels, shape, dtype, scale, rng):
    n, c = shape
    z = (rng.normal(size=shape) * scale).astype(dtype)
    t = rng.integers(0, c, size=n)
    t[0], t[-1] = c - 1, 0
    loss, grad = kernels.softmax_cross_entropy(cp.asarray(z), cp.asarray(t))
    ref_loss, ref_grad = ops.softmax_cross_entropy_reference(z, t, np)
    np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-5 if dtype == "float32" else 1e-11)
    np.testing.assert_allclose(grad.get(), ref_grad, **TOL[dtype])


def test_bad_label_gives_nan_loss_not_a_crash(cp, kernels):
    loss, _ = kernels.softmax_cross_entropy(cp.zeros((2, 3), dtype=cp.float32), cp.asarray([0, 7]))
    assert np.isnan(float(loss))


@pytest.mark.parametrize("eps_form", ["pytorch", "scikit-learn"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_optimizer_kernels_equal_reference(cp, kernels, dtype, eps_form, rng):
    p, g, m = (rng.normal(size=(77, 33)).astype(dtype) for _ in range(3))
    v = rng.uniform(size=(77, 33)).astype(dtype) * 1e-4  # sqrt(v) near eps, where the two forms differ
    dp, dg, dm, dv = (cp.asarray(a) for a in (p, g, m, v))
    for step in (1, 2, 3):
        kw = dict(lr=1e-5, beta1=0.9, beta2=0.999, eps=1e-2, step=step, eps_form=eps_form)  # steps of about lr / eps
        assert kernels.adam_update(dp, dg, dm, dv, **kw) == (dp, dm, dv)  # in place, returns its arrays
        p, m, v = ops.adam_update_reference(p, g, m, v, xp=np, **kw)
    for ours, ref in ((dp, p), (dm, m), (dv, v)):
        np.testing.assert_allclose(ours.get(), ref, **TOL[dtype])
    vel, dvel = np.zeros_like(p), cp.zeros(p.shape, dtype=dtype)
    for _ in range(2):
        kernels.sgd_update(dp, dg, dvel, lr=0.1, momentum=0.9, nesterov=True)
        p, vel = ops.sgd_update_reference(p, g, vel, lr=0.1, momentum=0.9, nesterov=True, xp=np)
    np.testing.assert_allclose(dp.get(), p, **TOL[dtype])


@pytest.mark.parametrize("fused", [True, False])
def test_gradients_equal_the_numpy_backend(fused, rng):
    layers = lambda: [Dense(12, 9), Sigmoid(), Dense(9, 4)]  # noqa: E731
    cpu = Sequential(layers(), dtype="float64", seed=0, backend="numpy")
    gpu = Sequential(layers(), dtype="float64", seed=0, backend="cupy", fused=fused)
    assert gpu.ops.fused is fused
    X, y = rng.normal(size=(33, 12)), rng.integers(0, 4, size=33)
    lc, gc = cpu.value_and_grad(X, y)
    lg, gg = gpu.value_and_grad(X, y)
    assert abs(lc - lg) < 1e-12
    for a, b in zip(gc, gg):
        np.testing.assert_allclose(b.get(), a, rtol=1e-10, atol=1e-13)


def test_outputs_stay_on_the_gpu_and_numpy_input_is_converted(cp, rng):
    model = Sequential([Dense(5, 3)], backend="cupy", seed=0)
    X = rng.normal(size=(10, 5))
    assert isinstance(model.predict(X), cp.ndarray)
    assert isinstance(model.predict_proba(cp.asarray(X)), cp.ndarray)
    model.fit(X, rng.integers(0, 3, size=10), epochs=1)


@pytest.mark.skipif(not GPU_OK or __import__("cupy").cuda.runtime.getDeviceCount() < 2, reason="needs two GPUs")
def test_arrays_on_another_device_are_refused(cp):
    model = Sequential([Dense(2, 2)], backend="cupy")
    with cp.cuda.Device(1):
        other = cp.zeros((3, 2))
    with pytest.raises(TypeError, match="lives on device"):
        model.predict(other)


@pytest.mark.mnist
def test_short_mnist_run_matches_the_cpu():
    """Same initial weights and the same batches (no shuffle: the GPU draws its own permutation)
    on both devices; the GPU run replays CUDA graphs (graphs=None picks them at batch 128)."""
    from xpnet.datasets import load_mnist

    X_train, y_train, X_test, y_test = load_mnist(MNIST_DIR, download=False)
    X_train, y_train = X_train[:20000], y_train[:20000]
    accuracy = {}
    for backend in ("numpy", "cupy"):
        model = Sequential([Dense(784, 256), Sigmoid(), Dense(256, 128), Sigmoid(), Dense(128, 10)], backend=backend, seed=0)
        model.fit(X_train, y_train, epochs=3, batch_size=128, optimizer=Adam(1e-3), shuffle=False)
        accuracy[backend] = model.evaluate(X_test, y_test)["accuracy"]
        if backend == "cupy":
            assert model._captured is not None and model._captured.launches > 0
    assert accuracy["cupy"] > 0.9
    assert abs(accuracy["cupy"] - accuracy["numpy"]) <= 0.003, accuracy


@pytest.mark.parametrize("shuffle", [False, True])
def test_streamed_memmap_on_the_gpu(cp, tmp_path, rng, shuffle):
    """Chunks reach the GPU through pinned memory on a copy stream (xpnet.sources); without
    shuffling the fit ends where the in-memory CuPy fit ends, and a shuffled one is reproducible."""
    from xpnet import DataSource

    X = rng.normal(size=(3000, 20))
    y = (X[:, 0] > 0).astype(np.int64)
    np.save(tmp_path / "X.npy", X)
    source = DataSource(np.load(tmp_path / "X.npy", mmap_mode="r"), chunk_rows=700)

    def trained(data):
        model = Sequential([Dense(20, 16), Sigmoid(), Dense(16, 2)], backend="cupy", dtype="float64", seed=0)
        model.fit(data, y, epochs=2, batch_size=64, shuffle=shuffle, optimizer=Adam(0.01))
        return [cp.asnumpy(p) for p in model.parameters()], model

    streamed, model = trained(source)
    other = trained(X if not shuffle else source)[0]
    for a, b in zip(streamed, other):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert int(model.predict(source).shape[0]) == 3000


def test_a_real_out_of_memory_is_a_device_memory_error_and_changes_nothing(cp, rng):
    # issue 12: a batch whose first activations alone exceed the GPU's memory, allocated for real
    free, total = cp.cuda.runtime.memGetInfo()
    batch = 4096
    width = int(total // (batch * 4)) + 1024  # one float32 (batch, width) activation > the whole GPU
    model = Sequential([Dense(8, width), Sigmoid(), Dense(width, 2)], backend="cupy", seed=0)
    before = [p.get() for p in model.parameters()]
    optimizer = Adam(1e-3)
    X, y = rng.normal(size=(batch, 8)).astype(np.float32), rng.integers(0, 2, size=batch)
    from xpnet.network import DeviceMemoryError

    with pytest.raises(DeviceMemoryError, match=rf"ran out of memory training with batch_size={batch} on {batch} samples") as info:
        model.fit(X, y, epochs=1, batch_size=batch, optimizer=optimizer)
    print(f"\nDeviceMemoryError: {info.value}")  # the message a user sees (pytest -s shows it)
    assert isinstance(info.value.__cause__, cp.cuda.memory.OutOfMemoryError)
    for got, want in zip(model.parameters(), before):
        np.testing.assert_array_equal(got.get(), want)
    assert optimizer.iterations == 0 and model.epochs_trained == 0
    cp.get_default_memory_pool().free_all_blocks()
    model.fit(X[:64], y[:64], epochs=1, batch_size=64, optimizer=optimizer)  # the model still trains afterwards
    assert optimizer.iterations == 1
