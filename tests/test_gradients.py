"""Backward passes against central finite differences in float64 (relative error < 1e-6)."""

import numpy as np
import pytest

from xpnet import Dense, ReLU, Sequential, Sigmoid, Tanh

REL_TOL = 1e-6
H = 1e-6


def finite_difference_grads(model, X, y):
    grads = []
    for p in model.parameters():
        g = np.zeros(p.shape)
        for idx in np.ndindex(*p.shape):
            old = p[idx].copy()
            p[idx] = old + H
            up = model.value_and_grad(X, y)[0]
            p[idx] = old - H
            down = model.value_and_grad(X, y)[0]
            p[idx] = old
            g[idx] = (up - down) / (2 * H)
        grads.append(g)
    return grads


def relative_error(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300)


def assert_grads_match(model, X, y):
    before = [p.copy() for p in model.parameters()]
    _, analytic = model.value_and_grad(X, y)
    for p, b in zip(model.parameters(), before):
        assert np.array_equal(p, b), "value_and_grad changed a parameter"
    numeric = finite_difference_grads(model, X, y)
    assert len(analytic) == len(numeric) == len(model.parameters())
    for i, (a, n) in enumerate(zip(analytic, numeric)):
        assert a.shape == n.shape
        err = relative_error(np.asarray(a), n)
        assert err < REL_TOL, f"parameter {i}: relative error {err:.2e}"


def targets(loss, rng, n, k):
    if loss == "softmax_cross_entropy":
        return rng.integers(0, k, size=n)
    if loss == "binary_cross_entropy":
        return rng.integers(0, 2, size=(n, k)).astype(float)
    return rng.normal(size=(n, k))


ACTS = {"sigmoid": Sigmoid, "tanh": Tanh, "relu": ReLU}


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
@pytest.mark.parametrize("activation", sorted(ACTS))
def test_each_activation(activation, fused, rng):
    model = Sequential([Dense(4, 5), ACTS[activation](), Dense(5, 3)], loss="mse", dtype="float64", seed=1, fused=fused)
    X = rng.normal(size=(7, 4))
    assert_grads_match(model, X, targets("mse", rng, 7, 3))


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
@pytest.mark.parametrize("loss", ["mse", "binary_cross_entropy", "softmax_cross_entropy"])
def test_each_loss_on_a_dense_layer(loss, fused, rng):
    k = 1 if loss == "binary_cross_entropy" else 4
    model = Sequential([Dense(3, k)], loss=loss, dtype="float64", seed=2, fused=fused)
    X = rng.normal(size=(9, 3))
    assert_grads_match(model, X, targets(loss, rng, 9, k))


def test_binary_cross_entropy_several_outputs(rng):
    model = Sequential([Dense(3, 4), Tanh(), Dense(4, 2)], loss="binary_cross_entropy", dtype="float64", seed=3)
    assert_grads_match(model, rng.normal(size=(6, 3)), targets("binary_cross_entropy", rng, 6, 2))


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
@pytest.mark.parametrize("loss", ["mse", "softmax_cross_entropy", "binary_cross_entropy"])
def test_whole_networks(depth, loss, rng):
    widths = [5] + list(rng.integers(2, 7, size=depth - 1)) + [1 if loss == "binary_cross_entropy" else 3]
    acts = [Sigmoid, Tanh, ReLU]
    layers = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers.append(Dense(int(a), int(b)))
        if i < depth - 1:
            layers.append(acts[i % 3]())
    model = Sequential(layers, loss=loss, dtype="float64", seed=depth)
    X = rng.normal(size=(8, 5))
    assert_grads_match(model, X, targets(loss, rng, 8, widths[-1]))


def test_l2_penalty_gradient(rng):
    model = Sequential([Dense(3, 4), Sigmoid(), Dense(4, 2)], loss="softmax_cross_entropy", dtype="float64", seed=4, l2=0.3)
    assert_grads_match(model, rng.normal(size=(5, 3)), rng.integers(0, 2, size=5))


def test_saturated_sigmoid_and_extreme_logits_stay_finite():
    model = Sequential([Dense(2, 3), Sigmoid(), Dense(3, 2)], loss="softmax_cross_entropy", dtype="float64", seed=0)
    X = np.array([[1e4, -1e4], [-1e4, 1e4]])
    loss, grads = model.value_and_grad(X, [0, 1])
    assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in grads)
    bce = Sequential([Dense(1, 1)], loss="binary_cross_entropy", dtype="float64", seed=0)
    bce.set_parameters([np.array([[1.0]]), np.array([0.0])])
    loss, grads = bce.value_and_grad(np.array([[1e4], [-1e4]]), [0, 1])  # confidently wrong: loss = 1e4
    assert np.isclose(loss, 1e4) and all(np.all(np.isfinite(g)) for g in grads)
