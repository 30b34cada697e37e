"""ONNX export: the forward pass traced on ndonnx arrays, run by onnxruntime (xpnet.export)."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet import Dense, ReLU, Sequential, Sigmoid, Tanh

ort = pytest.importorskip("onnxruntime", reason="needs the onnx extra: pip install 'xpnet[onnx]'")
pytest.importorskip("ndonnx", reason="needs the onnx extra: pip install 'xpnet[onnx]'")


def _run(path_or_proto, X):
    source = str(path_or_proto) if not hasattr(path_or_proto, "SerializeToString") else path_or_proto.SerializeToString()
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"X": X})))


def _blobs(n=200, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    X = rng.normal(size=(n, d)) + 2.0 * y[:, None] * (np.arange(d) % k == 0)
    return X, y


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layers", [
    lambda: [Dense(6, 16), Sigmoid(), Dense(16, 3)],
    lambda: [Dense(6, 16), ReLU(), Dense(16, 8), Tanh(), Dense(16 // 2, 3)],
], ids=["sigmoid", "relu-tanh"])
def test_sequential_classifier_round_trip(tmp_path, layers, dtype):
    X, y = _blobs()
    model = Sequential(layers(), seed=0, dtype=dtype)
    model.fit(X, y, epochs=5, batch_size=32)
    path = tmp_path / "model.onnx"
    model.to_onnx(path)
    Xc = X.astype(dtype)
    got = _run(path, Xc)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(got["probabilities"], np.asarray(model.predict_proba(Xc)), rtol=tol, atol=tol)
    np.testing.assert_array_equal(got["label"], np.asarray(model.predict(Xc)))


def test_sequential_regressor_and_binary_outputs():
    X, y = _blobs()
    reg = Sequential([Dense(6, 8), Tanh(), Dense(8, 2)], loss="mse", seed=0)
    targets = np.stack([X[:, 0], X[:, 1] * 2], axis=1)
    reg.fit(X, targets, epochs=3)
    got = _run(reg.to_onnx(), X.astype(np.float32))
    np.testing.assert_allclose(got["output"], np.asarray(reg.predict(X)), rtol=1e-5, atol=1e-5)
    binary = Sequential([Dense(6, 4), Sigmoid(), Dense(4, 1)], loss="binary_cross_entropy", seed=0)
    binary.fit(X, (y > 0).astype(np.float64).reshape(-1, 1), epochs=3)
    got = _run(binary.to_onnx(), X.astype(np.float32))
    np.testing.assert_allclose(got["probabilities"], np.asarray(binary.predict_proba(X)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", [
    lambda: xpnet.MLPClassifier(hidden_layer_sizes=(12,), max_iter=20, random_state=0),
    lambda: xpnet.LogisticRegression(max_iter=50),
    lambda: xpnet.Perceptron(random_state=0),
], ids=["mlp", "logistic", "perceptron"])
@pytest.mark.parametrize("labels", ["ints", "strings"])
def test_classifier_estimators_export_original_labels(make, labels):
    X, y = _blobs()
    if labels == "strings":
        y = np.array(["setosa", "versicolor", "virginica"])[y]
    est = make().fit(X, y)
    got = _run(est.to_onnx(), X.astype(est.dtype))
    np.testing.assert_array_equal(got["label"], np.asarray(est.predict(X)))
    if hasattr(est, "predict_proba") and not isinstance(est, xpnet.Perceptron):
        np.testing.assert_allclose(got["probabilities"], np.asarray(est.predict_proba(X)), rtol=1e-5, atol=1e-6)


def test_multilabel_mlp_exports_its_indicator_rows():
    """A multilabel MLPClassifier's label is the 0/1 row predict returns (its export used to fail
    inside ndonnx, taking classes_ at a 2-D index)."""
    X, y = _blobs()
    Y = np.stack([y == 0, y == 1, X[:, 0] > 0], axis=1).astype(int)
    est = xpnet.MLPClassifier(hidden_layer_sizes=(12,), max_iter=30, random_state=0).fit(X, Y)
    got = _run(est.to_onnx(), X.astype(est.dtype))
    assert got["label"].shape == Y.shape and 0 < got["label"].sum() < Y.size
    np.testing.assert_array_equal(got["label"], np.asarray(est.predict(X)))
    np.testing.assert_allclose(got["probabilities"], np.asarray(est.predict_proba(X)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", [
    lambda: xpnet.MLPRegressor(hidden_layer_sizes=(8,), max_iter=20, random_state=0),
    lambda: xpnet.LinearRegression(),
], ids=["mlp", "linear"])
def test_regressor_estimators_export(make):
    X, _ = _blobs()
    y = X @ np.arange(1.0, 7.0) + 0.5
    est = make().fit(X, y)
    got = _run(est.to_onnx(), X.astype(est.dtype))
    assert got["output"].shape == (X.shape[0],)
    np.testing.assert_allclose(got["output"], np.asarray(est.predict(X)), rtol=1e-5, atol=1e-4)


def test_binary_perceptron_labels():
    X, y = _blobs(k=2)
    est = xpnet.Perceptron(random_state=0).fit(X, np.where(y == 1, "yes", "no"))
    got = _run(est.to_onnx(), X.astype(est.dtype))
    assert set(got["label"]) == {"yes", "no"}
    np.testing.assert_array_equal(got["label"], np.asarray(est.predict(X)))


def test_binary_logistic_regression_two_probability_columns():
    X, y = _blobs(k=2)
    est = xpnet.LogisticRegression().fit(X, y)
    got = _run(est.to_onnx(), X.astype(est.dtype))
    assert got["probabilities"].shape == (X.shape[0], 2)
    np.testing.assert_allclose(got["probabilities"], np.asarray(est.predict_proba(X)), rtol=1e-5, atol=1e-6)


def test_unfitted_estimator_refuses_export():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        xpnet.MLPClassifier().to_onnx()
