"""Every Array-API library trains, or says clearly why it cannot: never a silent no-op.

The same network, from the same initial weights and over the same batches, is trained
for 3 epochs on NumPy, array_api_strict, PyTorch tensors and JAX arrays; the parameters
must equal NumPy's (float64 to 1e-10 relative, float32 to 1e-4). JAX arrays are
immutable, so this also proves the functional update path reaches the model.
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest

import xpnet
from xpnet import SGD, Adam, Dense, ReLU, Sequential, Sigmoid, Tanh
from xpnet.backend import BackendUnavailableError, _probe_in_place, cupy_usable, get_backend

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_JAX = importlib.util.find_spec("jax") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="needs PyTorch (pip install torch)")
needs_jax = pytest.mark.skipif(not HAS_JAX, reason="needs JAX (pip install jax)")
GPU_OK, WHY_NO_GPU = cupy_usable()
NEEDS_GPU = [pytest.mark.gpu, pytest.mark.skipif(not GPU_OK, reason=f"needs a CUDA GPU: {WHY_NO_GPU}")]

LIBRARIES = [
    "numpy",
    "array_api_strict",
    pytest.param("torch", marks=needs_torch),
    pytest.param("jax", marks=needs_jax),
]
OPTIMIZERS = {
    "adam": lambda: Adam(0.01),
    "sgd": lambda: SGD(0.1),
    "nesterov": lambda: SGD(0.05, momentum=0.9, nesterov=True),
}


def _data(rng, n=150, d=5, k=3):
    X = rng.normal(size=(n, d))
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5).astype(np.int64)
    return X, y


def _network(backend, dtype, seed=0):
    layers = [Dense(5, 8), Sigmoid(), Dense(8, 6), Tanh(), Dense(6, 3)]
    return Sequential(layers, backend=backend, dtype=dtype, seed=seed, fused=False, l2=0.05)


def _host(model):
    return [np.array(model.backend.to_numpy(p), dtype=np.float64) for p in model.parameters()]


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("library", LIBRARIES)
def test_three_epochs_equal_numpy(library, opt, rng):
    X, y = _data(rng)
    dtype = "float32" if library == "jax" else "float64"  # JAX keeps float64 only with x64 enabled
    tol = 1e-4 if dtype == "float32" else 1e-10
    reference = _network("numpy", dtype)
    model = _network(library, dtype)
    before = _host(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. JAX's int64 truncation warning must not appear
        model.fit(X, y, epochs=3, batch_size=32, optimizer=OPTIMIZERS[opt]())
    reference.fit(X, y, epochs=3, batch_size=32, optimizer=OPTIMIZERS[opt]())
    after = _host(model)
    for i, (b, a) in enumerate(zip(before, after)):
        assert np.max(np.abs(a - b)) > 1e-4, f"parameter {i} did not change on {library}: a silent no-op"
    for a, r in zip(after, _host(reference)):
        np.testing.assert_allclose(a, r, rtol=tol, atol=tol)


@pytest.mark.parametrize("library", LIBRARIES)
def test_predict_evaluate_grad_save_load(library, rng, tmp_path):
    X, y = _data(rng)
    model = _network(library, "float32")
    model.fit(X, y, epochs=2, batch_size=50)
    Xd = model.backend.asarray(X.astype(np.float32))
    pred = model.predict(Xd)
    assert model.backend.owns(pred), "outputs stay on the model's library"
    loss, grads = model.value_and_grad(X, y)
    ref = _network("numpy", "float32")
    ref.set_parameters([model.backend.to_numpy(p) for p in model.parameters()])
    ref_loss, ref_grads = ref.value_and_grad(X, y)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(model.backend.to_numpy(g), r, rtol=1e-4, atol=1e-6)
    model.save(tmp_path / "m.npz")
    again = xpnet.load(tmp_path / "m.npz", backend=library)
    np.testing.assert_array_equal(model.backend.to_numpy(again.predict(X)), model.backend.to_numpy(pred))
    assert model.evaluate(X, y) == pytest.approx(again.evaluate(X, y))


class _RebindingArray:
    """An array whose ``+=`` returns a new object and which has no ``__setitem__``,
    like JAX's (immutable) and Dask's (rebinding) arrays."""

    def __init__(self, values):
        self.values = np.asarray(values, dtype=np.float32)

    def __add__(self, other):
        return _RebindingArray(self.values + other)

    def __getitem__(self, key):
        return float(self.values[key])


class _RebindingNamespace:
    float32 = np.float32

    @staticmethod
    def zeros(shape, dtype=None, device=None):
        return _RebindingArray(np.zeros(shape))


def test_probe_detects_libraries_whose_updates_do_not_mutate():
    assert _probe_in_place(_RebindingNamespace, None) is False
    assert get_backend("numpy").in_place and get_backend("array_api_strict").in_place


@needs_jax
def test_jax_is_immutable_and_float64_is_refused_not_truncated():
    backend = get_backend("jax")
    assert backend.in_place is False
    with pytest.raises(BackendUnavailableError, match="float64"):
        Sequential([Dense(2, 2)], backend="jax", dtype="float64")


@needs_torch
def test_torch_by_name_module_and_device_and_inputs_stay_torch(rng):
    import torch

    for spec in ("torch", torch, torch.device("cpu"), "torch:cpu"):
        backend = get_backend(spec)
        assert backend.name == "torch" and backend.in_place
    X, y = _data(rng)
    model = Sequential([Dense(5, 4), ReLU(), Dense(4, 3)], backend=torch, seed=0)
    model.fit(torch.asarray(X), torch.asarray(y), epochs=1)
    out = model.predict_proba(torch.asarray(X, dtype=torch.float32))
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == (150, 3)


@pytest.mark.parametrize("library", [*LIBRARIES[1:], pytest.param("cupy", marks=NEEDS_GPU)])
def test_estimator_outputs_follow_the_input(library, rng):
    """An estimator on another backend returns NumPy for host input (NumPy, lists, scipy.sparse),
    as scikit-learn returns outputs in the input's namespace, and that library's arrays for its
    own arrays; the values are the same either way. (predict returned the backend's arrays for
    NumPy input: scikit-learn's metrics could not read them.)"""
    import scipy.sparse

    backend = get_backend(library)
    X, y = _data(rng)
    Xb = backend.asarray(X, dtype=backend.dtype("float32"))
    Y2 = np.stack([y == 1, y == 2], axis=1).astype(np.int64)
    fitted = [
        (xpnet.MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, dtype="float32", backend=library).fit(X, y),
         ("predict", "predict_proba", "predict_log_proba")),
        (xpnet.MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, dtype="float32", backend=library).fit(X, Y2),
         ("predict", "predict_proba")),
        (xpnet.MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, dtype="float32", backend=library).fit(X, X[:, :2]),
         ("predict",)),
        (xpnet.LogisticRegression(max_iter=3, dtype="float32", backend=library).fit(X, y),
         ("predict", "predict_proba", "decision_function")),
        (xpnet.Perceptron(max_iter=3, dtype="float32", backend=library).fit(X, y), ("predict", "decision_function")),
        (xpnet.LinearRegression(max_iter=3, dtype="float32", backend=library).fit(X, X[:, 0]), ("predict",)),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for est, methods in fitted:
            for method in methods:
                on_host, on_backend = getattr(est, method)(X), getattr(est, method)(Xb)
                assert type(on_host) is np.ndarray, (type(est).__name__, method, type(on_host))
                assert backend.owns(on_backend), (type(est).__name__, method, type(on_backend))
                np.testing.assert_allclose(on_host, backend.to_numpy(on_backend), rtol=1e-6, atol=1e-6)
                assert type(getattr(est, method)(X.tolist())) is np.ndarray
        est = fitted[0][0]
        assert type(est.predict(scipy.sparse.csr_matrix(X))) is np.ndarray
        assert est.score(X, y) == pytest.approx(float(np.mean(est.predict(X) == y)))


@pytest.mark.parametrize("source", ["memmap", "dask", "zarr"])
@pytest.mark.parametrize("library", LIBRARIES)
def test_streamed_sources_on_every_library(library, source, rng, tmp_path):
    """Memmap, Dask and zarr arrays feed every library chunk by chunk; without shuffling the
    parameters after 3 epochs equal an in-memory NumPy fit's."""
    X, y = _data(rng)
    if source == "memmap":
        np.save(tmp_path / "X.npy", X)
        data = xpnet.sources.DataSource(np.load(tmp_path / "X.npy", mmap_mode="r"), chunk_rows=40)
    elif source == "dask":
        data = pytest.importorskip("dask.array").from_array(X, chunks=(40, 5))
    else:
        zarr = pytest.importorskip("zarr")
        data = zarr.create_array(store=str(tmp_path / "X.zarr"), shape=X.shape, chunks=(40, 5), dtype="float64")
        data[...] = X
    dtype = "float32" if library == "jax" else "float64"
    tol = 1e-4 if dtype == "float32" else 1e-10
    reference, model = _network("numpy", dtype), _network(library, dtype)
    reference.fit(X, y, epochs=3, batch_size=32, shuffle=False, optimizer=Adam(0.01))
    model.fit(data, y, epochs=3, batch_size=32, shuffle=False, optimizer=Adam(0.01))
    for a, r in zip(_host(model), _host(reference)):
        np.testing.assert_allclose(a, r, rtol=tol, atol=tol)
    assert model.evaluate(data, y)["accuracy"] == pytest.approx(reference.evaluate(X, y)["accuracy"])
    assert np.array_equal(model.backend.to_numpy(model.predict(data)), np.asarray(reference.predict(X)))


@pytest.mark.parametrize("module", ["dask.array", "ndonnx"])
def test_other_array_api_libraries_train(module, rng):
    """Dask arrays (through array-api-compat) and ndonnx's eager arrays train: the parameters move
    and match NumPy's after one epoch."""
    xp = pytest.importorskip(module)
    X, y = _data(rng, n=64)
    model, reference = _network(xp, "float64"), _network("numpy", "float64")
    before = _host(model)
    model.fit(X, y, epochs=1, batch_size=32, optimizer=Adam(0.01))
    reference.fit(X, y, epochs=1, batch_size=32, optimizer=Adam(0.01))
    after = _host(model)
    assert all(np.max(np.abs(a - b)) > 1e-4 for a, b in zip(after, before))
    for a, r in zip(after, _host(reference)):
        np.testing.assert_allclose(a, r, rtol=1e-10, atol=1e-10)


def test_library_without_row_gathering_is_refused_up_front():
    """pydata/sparse implements the standard's elementwise math but not what training needs:
    one BackendUnavailableError names each missing operation before any model is built."""
    sparse = pytest.importorskip("sparse")
    with pytest.raises(BackendUnavailableError, match=r"'sparse' array library cannot train .*row gathering xp.take"):
        Sequential([Dense(4, 2)], backend=sparse)


def test_capability_probe_reports_a_wrong_take():
    """A namespace whose take returns the wrong rows is named, not trusted."""
    import array_api_strict as strict

    from xpnet.backend import missing_capabilities

    class BadTake:
        def __getattr__(self, name):
            return getattr(strict, name)

        def take(self, a, idx, axis=0):
            return a[0:2, ...]

    missing = missing_capabilities(BadTake(), strict.Device("CPU_DEVICE") if hasattr(strict, "Device") else None)
    assert len(missing) == 1 and missing[0].startswith("row gathering") and "wrong result" in missing[0]
    assert missing_capabilities(strict, None) == []


@needs_jax
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_jax_jit_step_equals_eager_step(opt, rng):
    """jit=True compiles the same step; after 3 epochs the parameters, the optimizer state and the
    loss curve equal the eager JAX fit's (float32, up to XLA's reassociation)."""
    X, y = _data(rng)
    runs = []
    for jit in (False, True):
        model = Sequential([Dense(5, 8), Sigmoid(), Dense(8, 6), Tanh(), Dense(6, 3)], backend="jax", seed=0,
                           l2=0.05, jit=jit)
        optimizer = OPTIMIZERS[opt]()
        history = model.fit(X, y, epochs=3, batch_size=32, optimizer=optimizer)
        runs.append((_host(model), history, optimizer))
    (eager, h1, o1), (jitted, h2, o2) = runs
    for a, b in zip(eager, jitted):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(h1.loss, h2.loss, rtol=1e-5)
    assert h1.accuracy == h2.accuracy
    assert o2.iterations == o1.iterations == 15 and isinstance(o2.iterations, int)
    for slot in o1.state:
        for a, b in zip(o1.state[slot], o2.state[slot]):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


@needs_jax
def test_jit_option_checks_and_pickles(rng):
    import pickle

    with pytest.raises(ValueError, match="jit=True .* needs the JAX backend, not 'numpy'"):
        Sequential([Dense(5, 3)], backend="numpy", jit=True)
    with pytest.raises(ValueError, match="jit must be True or False"):
        Sequential([Dense(5, 3)], backend="jax", jit="yes")
    X, y = _data(rng)
    model = Sequential([Dense(5, 4), ReLU(), Dense(4, 3)], backend="jax", seed=0, jit=True)
    model.fit(X, y, epochs=1)
    copy = pickle.loads(pickle.dumps(model))
    assert copy.jit is True
    np.testing.assert_array_equal(np.asarray(copy.predict(X)), np.asarray(model.predict(X)))
    _, grads = model.value_and_grad(X, y)  # the model is usable eagerly after a jitted fit
    assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)


@needs_torch
def test_torch_cuda_without_cuda_is_a_clear_refusal():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: torch:cuda is available")
    with pytest.raises(BackendUnavailableError, match=r"torch' on cuda(:0)? needs CUDA"):
        get_backend("torch:cuda")


@needs_jax
def test_jax_jit_follows_a_learning_rate_schedule(rng):
    """The learning rate is an argument of the compiled step, not a constant baked into it: an
    invscaling schedule under jit=True equals the eager one."""
    X, y = _data(rng)
    runs = []
    for jit in (False, True):
        model = Sequential([Dense(5, 8), Sigmoid(), Dense(8, 3)], backend="jax", seed=0, jit=jit)
        history = model.fit(X, y, epochs=4, batch_size=32, optimizer=SGD(0.5), lr_schedule="invscaling", power_t=0.5)
        runs.append((_host(model), history.lr))
    assert runs[0][1] == runs[1][1] and runs[0][1][1] < runs[0][1][0]
    for a, b in zip(runs[0][0], runs[1][0]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
