"""Gradients and optimizer steps against PyTorch autograd on the same weights and inputs."""

import numpy as np
import pytest

from xpnet import SGD, Adam, Dense, ReLU, Sequential, Sigmoid, Tanh

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.13.0 for the CPU build)")
pytestmark = pytest.mark.torch

ACTS = [(Sigmoid, torch.nn.Sigmoid), (Tanh, torch.nn.Tanh), (ReLU, torch.nn.ReLU)]


def random_pair(rng, loss):
    depth = int(rng.integers(1, 5))
    widths = [int(w) for w in rng.integers(2, 12, size=depth + 1)]
    if loss == "binary_cross_entropy":
        widths[-1] = 1
    ours, theirs = [], []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        ours.append(Dense(a, b))
        theirs.append(torch.nn.Linear(a, b, dtype=torch.float64))
        if i < depth - 1:
            mine, torchs = ACTS[int(rng.integers(0, 3))]
            ours.append(mine())
            theirs.append(torchs())
    model = Sequential(ours, loss=loss, dtype="float64", seed=int(rng.integers(0, 1000)))
    net = torch.nn.Sequential(*theirs)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for lin, (W, b) in zip(linears, zip(model.parameters()[0::2], model.parameters()[1::2])):
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
            lin.bias.copy_(torch.from_numpy(b))
    return model, net, linears, widths


def torch_loss(loss, out, y):
    n = out.shape[0]
    if loss == "mse":
        return ((out - y) ** 2).sum() / (2 * n)
    if loss == "binary_cross_entropy":
        return torch.nn.functional.binary_cross_entropy_with_logits(out, y, reduction="sum") / n
    return torch.nn.functional.cross_entropy(out, y)


def make_targets(loss, rng, n, k):
    if loss == "softmax_cross_entropy":
        y = rng.integers(0, k, size=n)
        return y, torch.from_numpy(y)
    if loss == "binary_cross_entropy":
        y = rng.integers(0, 2, size=(n, 1)).astype(float)
    else:
        y = rng.normal(size=(n, k))
    return y, torch.from_numpy(y)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("loss", ["mse", "binary_cross_entropy", "softmax_cross_entropy"])
def test_gradients_match_autograd(loss, seed):
    rng = np.random.default_rng(seed)
    model, net, linears, widths = random_pair(rng, loss)
    n = int(rng.integers(1, 20))
    X = rng.normal(size=(n, widths[0])) * 3
    y, ty = make_targets(loss, rng, n, widths[-1])
    value, grads = model.value_and_grad(X, y)
    tl = torch_loss(loss, net(torch.from_numpy(X)), ty)
    tl.backward()
    assert np.isclose(value, tl.item(), rtol=1e-12, atol=1e-12)
    for lin, gW, gb in zip(linears, grads[0::2], grads[1::2]):
        np.testing.assert_allclose(gW, lin.weight.grad.numpy().T, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(gb, lin.bias.grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda: Adam(lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
        (lambda: SGD(lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
        (lambda: SGD(lr=0.1, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
        (lambda: SGD(lr=0.1, momentum=0.9, nesterov=True), lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True)),
    ],
    ids=["adam", "sgd", "momentum", "nesterov"],
)
def test_training_steps_match_torch_optim(ours, theirs, fused):
    rng = np.random.default_rng(7)
    model, net, linears, widths = random_pair(rng, "softmax_cross_entropy")
    model = Sequential(model.layers, loss="softmax_cross_entropy", dtype="float64", fused=fused)
    model.set_parameters([np.ascontiguousarray(p) for lin in linears for p in (lin.weight.detach().numpy().T, lin.bias.detach().numpy())])
    X = rng.normal(size=(64, widths[0]))
    y = rng.integers(0, widths[-1], size=64)
    opt = ours()
    topt = theirs(net.parameters())
    # Five epochs of 4 batches, no shuffling, through fit; torch steps the same batches.
    model.fit(X, y, epochs=5, batch_size=16, optimizer=opt, shuffle=False)
    for _ in range(5):
        for lo in range(0, 64, 16):
            topt.zero_grad()
            torch_loss("softmax_cross_entropy", net(torch.from_numpy(X[lo:lo + 16])), torch.from_numpy(y[lo:lo + 16])).backward()
            topt.step()
    for lin, W, b in zip(linears, model.parameters()[0::2], model.parameters()[1::2]):
        np.testing.assert_allclose(W, lin.weight.detach().numpy().T, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(b, lin.bias.detach().numpy(), rtol=1e-7, atol=1e-10)
