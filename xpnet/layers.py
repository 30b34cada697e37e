"""Layers: a dense (affine) layer and the activations, each with its backward pass.

Row-vector layout: a batch is ``(N, features)``. Each layer keeps what its
backward pass needs from the last forward call (Dense keeps its input, the
activations keep their output), so a layer serves one forward/backward pair
at a time. The math is ``xpnet/backprop.md``:

    Dense:    Z = A @ W + b;     dW = A.T @ D,  db = sum_rows(D),  dA = D @ W.T
    Sigmoid:  y = 1/(1+e^-z);    dz = dy * y * (1 - y)
    Tanh:     y = tanh(z);       dz = dy * (1 - y*y)
    ReLU:     y = max(z, 0);     dz = dy where y > 0 else 0
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["Layer", "Dense", "Sigmoid", "Tanh", "ReLU", "Activation", "ACTIVATIONS", "get_activation", "dense_stack"]


class Layer:
    """Base class. Subclasses implement ``forward`` and ``backward``.

    ``params`` and ``grads`` are lists of arrays (empty for activations), in the
    order ``parameters()`` of a network reports them.
    """

    params: list
    grads: list

    def __init__(self) -> None:
        self.params = []
        self.grads = []
        self.grad_buffers: list | None = None  # views of the network's flat gradient buffer, if it has one
        self.xp: Any = None
        self.ops: Any = None

    def build(self, backend: Any, ops: Any, dtype: Any, rng: np.random.Generator, init: str | None = None) -> None:
        """Bind the layer to a backend; layers with parameters initialise them here."""
        self.xp = backend.xp
        self.ops = ops

    def forward(self, x: Any) -> Any:
        raise NotImplementedError

    def backward(self, grad_out: Any, need_input_grad: bool = True) -> Any:
        raise NotImplementedError

    def config(self) -> dict:
        """A JSON-serialisable description from which ``layer_from_config`` rebuilds the layer."""
        return {"type": type(self).__name__}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "type")
        return f"{type(self).__name__}({args})"


class Dense(Layer):
    """Affine layer ``x @ W + b`` with ``W`` of shape ``(n_in, n_out)`` and ``b`` of shape ``(n_out,)``.

    Parameters
    ----------
    n_in, n_out : int
        Input and output widths.
    init : {"glorot", "he", "zeros", None}
        Weight initialisation. ``None`` lets the network choose: He (normal) in
        front of a ReLU, Glorot (uniform) elsewhere. ``"zeros"`` suits convex models
        (linear and logistic regression), not hidden layers. Biases start at zero.
    """

    INITS = ("glorot", "he", "zeros")

    def __init__(self, n_in: int, n_out: int, init: str | None = None) -> None:
        super().__init__()
        for arg, value in (("n_in", n_in), ("n_out", n_out)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"Dense: {arg} must be a positive integer, got {value!r}")
        if init is not None and init not in self.INITS:
            raise ValueError(f"Dense: init must be one of {self.INITS} or None, got {init!r}")
        self.n_in, self.n_out, self.init = int(n_in), int(n_out), init
        self._x = None

    @property
    def W(self) -> Any:
        return self.params[0]

    @property
    def b(self) -> Any:
        return self.params[1]

    def build(self, backend, ops, dtype, rng, init=None):
        super().build(backend, ops, dtype, rng)
        scheme = self.init or init or "glorot"
        if scheme == "zeros":
            w = np.zeros((self.n_in, self.n_out))
        elif scheme == "he":
            w = rng.standard_normal((self.n_in, self.n_out)) * math.sqrt(2.0 / self.n_in)
        else:
            limit = math.sqrt(6.0 / (self.n_in + self.n_out))
            w = rng.uniform(-limit, limit, size=(self.n_in, self.n_out))
        self.params = [backend.asarray(w, dtype=dtype), backend.asarray(np.zeros(self.n_out), dtype=dtype)]
        self.grads = [None, None]

    def forward(self, x, add_bias: bool = True):
        """``(N, n_in) -> (N, n_out)``; with ``add_bias=False`` the bias is left to a fused activation."""
        self._x = x
        z = self.ops.matmul(x, self.params[0])
        return z + self.params[1] if add_bias else z

    def backward(self, grad_out, need_input_grad=True):
        """``grad_out``: ``(N, n_out)`` -> ``(N, n_in)`` (or None); fills ``grads = [dW, db]``.

        With ``grad_buffers`` set (a network with a flat gradient buffer), dW and db are
        written into those views instead of new arrays.
        """
        xp, x = self.xp, self._x
        if self.grad_buffers is not None:
            dW, db = self.grad_buffers
            self.ops.matmul_into(x.T, grad_out, dW)
            self.ops.sum_rows_into(grad_out, db)
            self.grads = self.grad_buffers
        else:
            self.grads = [x.T @ grad_out, xp.sum(grad_out, axis=0)]
        return self.ops.matmul(grad_out, self.params[0].T) if need_input_grad else None

    def config(self):
        return {"type": "Dense", "n_in": self.n_in, "n_out": self.n_out, "init": self.init}


class Activation(Layer):
    """Elementwise activation; keeps its output for the backward pass."""

    name = ""

    def __init__(self) -> None:
        super().__init__()
        self._y = None


class Sigmoid(Activation):
    """Logistic sigmoid, stable for large ``|z|``; backward ``dy * y * (1 - y)`` (a fused kernel)."""

    name = "sigmoid"

    def forward(self, z):
        self._y = self.ops.sigmoid(z)
        return self._y

    def forward_with_bias(self, z, b):
        """``sigmoid(z + b)`` in one pass (the bias add of the Dense layer before it)."""
        self._y = self.ops.bias_sigmoid(z, b)
        return self._y

    def backward(self, grad_out, need_input_grad=True):
        return self.ops.sigmoid_backward(grad_out, self._y)


class Tanh(Activation):
    """Hyperbolic tangent; backward ``dy * (1 - y*y)``."""

    name = "tanh"

    def forward(self, z):
        self._y = self.xp.tanh(z)
        return self._y

    def backward(self, grad_out, need_input_grad=True):
        y = self._y
        return grad_out * (1.0 - y * y)


class ReLU(Activation):
    """Rectified linear unit; backward passes ``dy`` where the output is positive."""

    name = "relu"

    def forward(self, z):
        self._y = self.xp.maximum(z, 0.0)
        return self._y

    def backward(self, grad_out, need_input_grad=True):
        xp = self.xp
        return xp.where(self._y > 0, grad_out, xp.zeros_like(grad_out))


ACTIVATIONS = {"sigmoid": Sigmoid, "logistic": Sigmoid, "tanh": Tanh, "relu": ReLU}
_LAYER_TYPES = {"Dense": Dense, "Sigmoid": Sigmoid, "Tanh": Tanh, "ReLU": ReLU}


def get_activation(name: str) -> Activation:
    """A new activation layer by name (``sigmoid``/``logistic``, ``tanh``, ``relu``)."""
    if not isinstance(name, str) or name.lower() not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name.lower()]()


def dense_stack(widths: list[int], activation: str | None) -> list[Layer]:
    """``Dense`` layers through ``widths`` (input first, output last) with ``activation`` between
    them (``None`` or ``"identity"`` for none); the output layer has no activation (the loss takes logits)."""
    layers: list[Layer] = []
    for i, (n_in, n_out) in enumerate(zip(widths, widths[1:])):
        layers.append(Dense(n_in, n_out))
        if i < len(widths) - 2 and activation not in (None, "identity"):
            layers.append(get_activation(activation))
    return layers


def layer_from_config(config: dict) -> Layer:
    """Rebuild a layer from :meth:`Layer.config` output."""
    kind = config.get("type")
    if kind not in _LAYER_TYPES:
        raise ValueError(f"unknown layer type {kind!r} in model description")
    if kind == "Dense":
        return Dense(config["n_in"], config["n_out"], init=config.get("init"))
    return _LAYER_TYPES[kind]()
