"""Fitted estimators and Sequential pickle, deep-copy and joblib.dump on every backend, and
model loaders refuse anything that is not an xpnet file with one clear message."""

from __future__ import annotations

import copy
import importlib.util
import pickle
import warnings

import joblib
import numpy as np
import pytest

import xpnet
from xpnet import Dense, ModelFileError, Sequential, Sigmoid
from xpnet.backend import get_backend

LIBRARIES = [
    "numpy",
    "array_api_strict",
    pytest.param("torch", marks=pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs PyTorch")),
    pytest.param("jax", marks=pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs JAX")),
]


def _round_trips(tmp_path):
    def joblib_trip(obj):
        joblib.dump(obj, tmp_path / "obj.joblib")
        return joblib.load(tmp_path / "obj.joblib")

    return {"pickle": lambda o: pickle.loads(pickle.dumps(o)), "deepcopy": copy.deepcopy, "joblib": joblib_trip}


def _estimators(dtype):
    return [
        xpnet.MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0, dtype=dtype),
        xpnet.MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0, dtype=dtype),
        xpnet.LogisticRegression(max_iter=20, dtype=dtype),
        xpnet.Perceptron(max_iter=5, random_state=0, dtype=dtype),
        xpnet.LinearRegression(max_iter=20, dtype=dtype),
    ]


@pytest.mark.parametrize("library", LIBRARIES)
def test_fitted_estimators_round_trip_and_predict_identically(library, rng, tmp_path):
    X = rng.normal(size=(60, 4))
    y_class, y_reg = (X[:, 0] > 0).astype(int), X @ np.arange(4.0)
    backend = get_backend(library)
    for est in _estimators("float32" if library == "jax" else "float64"):
        est.set_params(backend=library)
        est.fit(X, y_reg if type(est).__name__ in ("MLPRegressor", "LinearRegression") else y_class)
        expected = backend.to_numpy(est.predict(X))
        for how, trip in _round_trips(tmp_path).items():
            again = trip(est)
            got = again.predict(X)
            assert backend.owns(got) or isinstance(got, np.ndarray), (how, type(got))
            np.testing.assert_array_equal(backend.to_numpy(got), expected, err_msg=f"{type(est).__name__} {how}")


@pytest.mark.parametrize("library", LIBRARIES)
def test_sequential_round_trips_with_its_training_state(library, rng, tmp_path):
    X = rng.normal(size=(50, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    model = Sequential([Dense(3, 5), Sigmoid(), Dense(5, 2)], backend=library, seed=1)
    model.fit(X, y, epochs=2, batch_size=16)
    state = pickle.dumps(model)
    assert b"array_api_compat" not in state and b"jaxlib" not in state, "no module or device array in the pickle"
    for how, trip in _round_trips(tmp_path).items():
        again = trip(model)
        assert again.backend == model.backend and again.epochs_trained == 2, how
        np.testing.assert_array_equal(model.backend.to_numpy(again.predict(X)), model.backend.to_numpy(model.predict(X)))
        # The RNG travels too: one more epoch on each gives the same weights.
        model_copy = pickle.loads(state)
        model_copy.fit(X, y, epochs=1, batch_size=16)
        again.fit(X, y, epochs=1, batch_size=16)
        for a, b in zip(model_copy.parameters(), again.parameters()):
            np.testing.assert_array_equal(model.backend.to_numpy(a), model.backend.to_numpy(b))


def test_a_cupy_pickle_loads_without_a_gpu_with_one_warning(rng, monkeypatch):
    """Simulate a model pickled on CuPy: its state names the 'cupy' backend. Without a usable GPU
    it loads onto NumPy with one BackendFallbackWarning and predicts what the original did."""
    from xpnet.backend import cupy_usable

    if cupy_usable()[0]:
        pytest.skip("needs a machine where CuPy has no usable GPU")
    import xpnet.backend as backend_module

    monkeypatch.setattr(backend_module, "_FALLBACK_REPORTED", set())
    X = rng.normal(size=(30, 3))
    clf = xpnet.MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(X, (X[:, 0] > 0).astype(int))
    state = clf.__getstate__()
    model_state = clf.model_.__getstate__()
    model_state["backend"] = "cupy"
    restored_model = Sequential.__new__(Sequential)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        restored_model.__setstate__(model_state)
        again = type(clf).__new__(type(clf))
        again.__setstate__({**state, "model_": restored_model})
        pickle.loads(pickle.dumps(restored_model.backend.__reduce__()[0]("cupy")))  # a second restore: no 2nd warning
    fallbacks = [w for w in caught if issubclass(w.category, xpnet.BackendFallbackWarning)]
    assert len(fallbacks) == 1 and "falling back to 'numpy'" in str(fallbacks[0].message)
    np.testing.assert_array_equal(again.predict(X), clf.predict(X))


def _bad_files(tmp_path, good):
    raw = good.read_bytes()
    files = {
        "empty": (b"", "is empty"),
        "pickle": (pickle.dumps({"weights": [1, 2]}), "not an xpnet model file"),
        "truncated": (raw[: len(raw) // 3], "not an xpnet model file|truncated or corrupt"),
        "text": (b"hello, world\n" * 10, "not an xpnet model file"),
    }
    paths = {}
    for name, (data, message) in files.items():
        path = tmp_path / f"{name}.npz"
        path.write_bytes(data)
        paths[name] = (path, message)
    np.save(tmp_path / "array.npy", np.zeros(3))
    paths["npy"] = (tmp_path / "array.npy", "single NumPy array")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    paths["other npz"] = (tmp_path / "other.npz", "without xpnet's description")
    return paths


def test_load_refuses_every_kind_of_bad_file_with_one_line(tmp_path):
    model = Sequential([Dense(3, 2)], seed=0)
    good = model.save(tmp_path / "good.npz")
    for name, (path, message) in _bad_files(tmp_path, good).items():
        with pytest.raises(ModelFileError, match=message) as info:
            xpnet.load(path)
        text = str(info.value)
        assert "\n" not in text and "allow_pickle" not in text and str(path) in text, (name, text)


def test_load_refuses_a_newer_format_version(tmp_path):
    import json

    model = Sequential([Dense(3, 2)], seed=0)
    config = model.config()
    config["format_version"] = 99
    arrays = {f"param_{i}": model.backend.to_numpy(p) for i, p in enumerate(model.parameters())}
    np.savez(tmp_path / "future.npz", __config__=np.frombuffer(json.dumps(config).encode(), dtype=np.uint8), **arrays)
    with pytest.raises(ModelFileError, match="format version 99.*upgrade xpnet"):
        xpnet.load(tmp_path / "future.npz")


def test_an_adam_pickled_before_eps_form_steps_with_pytorchs_epsilon():
    """Adam's eps_form came later; an Adam unpickled without it keeps the form it stepped with."""
    old = xpnet.Adam(0.1, eps=0.5)
    del old.__dict__["eps_form"]  # what an older xpnet pickled
    again = pickle.loads(pickle.dumps(old))
    p, g = np.ones(3), np.full(3, 0.2)
    (stepped,) = again.step([p.copy()], [g], xpnet.Sequential([xpnet.Dense(3, 1)], loss="mse", fused=False).ops)
    want, _, _ = xpnet.ops.adam_update_reference(p, g, np.zeros(3), np.zeros(3), lr=0.1, beta1=0.9, beta2=0.999, eps=0.5,
                                                 step=1, xp=np)
    np.testing.assert_allclose(stepped, want)


@pytest.mark.parametrize("library", LIBRARIES)
def test_optimizer_and_stopping_state_pickle_as_host_arrays(library, rng):
    """An estimator keeps its optimizer and its stopping state (best weights) for warm starts and
    partial_fit; they pickle as host NumPy too, come back on the backend, and training continues."""
    X = rng.normal(size=(120, 4))
    y = (X[:, 0] > 0).astype(int)
    clf = xpnet.MLPClassifier(hidden_layer_sizes=(5,), max_iter=5, early_stopping=True, n_iter_no_change=100,
                              random_state=0, backend=library, dtype="float32", warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    data = pickle.dumps(clf)
    assert b"jaxlib" not in data and b"array_api_strict._array_object" not in data
    again = pickle.loads(data)
    backend = get_backend(library)
    assert all(backend.owns(m) for m in again._optimizer_.state["m"])
    assert all(backend.owns(p) for p in again._fit_state_.best_params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again.fit(X, y)
    assert again.n_iter_ == 5 and len(again.loss_curve_) == 10  # n_iter_: this call's epochs
