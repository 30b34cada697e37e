"""What a whole-step kernel needs to know of a network: the same description for the CPU's
compiled step (``numba_step``) and the GPU's fused captured step (``cuda_step``).

A network a whole-step kernel can run is a stack of plain :class:`xpnet.layers.Dense` layers,
each optionally followed by one activation (sigmoid, tanh or ReLU), ending in one of xpnet's
three losses. Its architecture becomes data (:class:`StepSpec`): the layer widths, where each
layer's ``W`` and ``b`` sit in the model's flat parameter buffer, and activation and loss codes
that the kernels branch on. Importing this module imports neither Numba nor CuPy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["IDENTITY", "SIGMOID", "TANH", "RELU", "ACTIVATION_CODES", "SOFTMAX_CE", "BCE", "MSE", "LOSS_CODES",
           "network_unsupported", "StepSpec", "describe"]

IDENTITY, SIGMOID, TANH, RELU = 0, 1, 2, 3
ACTIVATION_CODES = {"Sigmoid": SIGMOID, "Tanh": TANH, "ReLU": RELU}
SOFTMAX_CE, BCE, MSE = 0, 1, 2
LOSS_CODES = {"SoftmaxCrossEntropy": SOFTMAX_CE, "BinaryCrossEntropy": BCE, "MSE": MSE}


def network_unsupported(model: Any) -> str:
    """Why ``model``'s layers or loss have no whole-step form ("" when they have one).
    Subclasses are refused by name: their overridden methods would be skipped."""
    from xpnet.layers import Dense

    if type(model.loss).__name__ not in LOSS_CODES or type(model.loss).__module__ != "xpnet.losses":
        return f"no compiled loss for {type(model.loss).__name__}"
    previous = None
    for i, layer in enumerate(model.layers):
        kind = type(layer).__name__
        if isinstance(layer, Dense) and type(layer) is Dense:
            previous = "Dense"
            continue
        if kind not in ACTIVATION_CODES or type(layer).__module__ != "xpnet.layers":
            return f"layers[{i}] ({kind}) has no compiled form"
        if previous != "Dense":
            return f"layers[{i}] ({kind}) does not follow a Dense layer"
        previous = kind
    return ""


@dataclass(frozen=True)
class StepSpec:
    """A supported network as data, for ``L`` Dense layers.

    widths : ``(L + 1,)`` int64, the input width then each layer's output width.
    w_off, b_off : ``(L,)`` int64, offsets (in elements) of each layer's ``W``
        ``(widths[l], widths[l + 1])`` and ``b`` ``(widths[l + 1],)`` in the flat parameter buffer
        (the same offsets hold in the flat gradient and optimizer-state buffers).
    act_codes : ``(L,)`` int64, the activation after each Dense layer (``IDENTITY`` for none).
    loss_code : ``SOFTMAX_CE``, ``BCE`` or ``MSE``.
    """

    widths: np.ndarray
    w_off: np.ndarray
    b_off: np.ndarray
    act_codes: np.ndarray
    loss_code: int

    @property
    def n_layers(self) -> int:
        return int(self.widths.size - 1)


def _address(a: Any) -> int:
    """The address of an array's first element (NumPy's interface, else CuPy's ``data.ptr``)."""
    interface = getattr(a, "__array_interface__", None)
    return interface["data"][0] if interface is not None else int(a.data.ptr)


def describe(model: Any) -> StepSpec:
    """The :class:`StepSpec` of a model with flat parameters whose layers ``network_unsupported`` accepts."""
    from xpnet.layers import Dense

    dense = [layer for layer in model.layers if isinstance(layer, Dense)]
    flat_params = model._flat[0]
    base, itemsize = _address(flat_params), flat_params.itemsize

    def offset(view: Any) -> int:
        return (_address(view) - base) // itemsize

    following = model.layers[1:] + [None]  # the layer after each one (None after the last)
    return StepSpec(
        widths=np.array([dense[0].n_in] + [layer.n_out for layer in dense], dtype=np.int64),
        w_off=np.array([offset(layer.W) for layer in dense], dtype=np.int64),
        b_off=np.array([offset(layer.b) for layer in dense], dtype=np.int64),
        act_codes=np.array([ACTIVATION_CODES.get(type(nxt).__name__, IDENTITY)
                            for layer, nxt in zip(model.layers, following) if isinstance(layer, Dense)], dtype=np.int64),
        loss_code=LOSS_CODES[type(model.loss).__name__],
    )
