"""Optimizers. State (velocity, Adam moments) lives on the parameters' device.

An optimizer remembers the parameters it has stepped (by position and shape),
so passing the same optimizer to several ``fit`` calls continues training
exactly: ``fit(epochs=1)`` three times equals ``fit(epochs=3)``.

Updates go through ``ops.sgd_update`` / ``ops.adam_update``, which are fused
single-pass kernels where the backend has them. Each update returns the new
arrays and ``step`` returns the new parameter list: the same objects, updated in
place, on libraries whose arrays mutate (NumPy, CuPy, torch); new arrays on those
whose arrays are immutable (JAX) or whose ``+=`` rebinds (Dask), which the model
then assigns back. Nothing relies on mutation it has not probed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._validation import check_flag

__all__ = ["Optimizer", "SGD", "Adam", "get_optimizer"]


def _check_number(name: str, value: Any, *, low: float, high: float = math.inf, low_open: bool = True,
                  high_open: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    bad_low = value <= low if low_open else value < low
    bad_high = value >= high if high_open else value > high
    if not math.isfinite(value) or bad_low or bad_high:
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{name} must lie in {lo}{low}, {high}{hi}, got {value}")
    return value


def flat_views(xp: Any, shapes: list[tuple], dtype: Any, device: Any) -> tuple[Any, list]:
    """One zeroed 1-D buffer holding arrays of ``shapes`` back to back, and a view of each.

    Writing through a view writes the buffer (NumPy and CuPy slices and reshapes of a
    contiguous array are views), so one kernel over the buffer updates every array.
    """
    sizes = [math.prod(shape) for shape in shapes]
    flat = xp.zeros((sum(sizes),), dtype=dtype, device=device)
    views, offset = [], 0
    for shape, size in zip(shapes, sizes):
        views.append(xp.reshape(flat[offset : offset + size], shape))
        offset += size
    return flat, views


class Optimizer:
    """Base class: ``step(params, grads, ops, flat=None)`` returns the updated ``params``.

    With ``flat=(flat_params, flat_grads)`` (a model whose parameters are views of one
    buffer), the state is kept in flat buffers too and each step is one kernel call over
    all parameters instead of one per tensor. ``state`` always holds per-tensor arrays
    (views of the flat state when there is one), so checkpoints look the same either way.
    """

    slots: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.iterations = 0
        self.state: dict[str, list] = {}
        self._flat_state: dict[str, Any] | None = None
        self._shapes: list[tuple] | None = None

    def _ensure_state(self, params: list, xp: Any, flat: bool = False) -> None:
        shapes = [tuple(p.shape) for p in params]
        if self._shapes is None:
            self._shapes = shapes
            self.state = {slot: [xp.zeros_like(p) for p in params] for slot in self.slots}
            self._flat_state = None
        elif shapes != self._shapes:
            raise ValueError(
                f"this {type(self).__name__} holds state for parameters of shapes {self._shapes}, "
                f"got {shapes}; use a new optimizer for a different model"
            )
        if flat and self._flat_state is None and params:
            self._flatten_state(params, xp)

    def _flatten_state(self, params: list, xp: Any) -> None:
        """Move per-tensor state (fresh, or loaded from a checkpoint) into flat buffers."""
        from .ops import _device

        device = _device(params[0])
        self._flat_state = {}
        for slot, arrays in self.state.items():
            flat, views = flat_views(xp, self._shapes, params[0].dtype, device)
            for view, old in zip(views, arrays):
                view[...] = old
            self._flat_state[slot] = flat
            self.state[slot] = views

    def step(self, params: list, grads: list, ops: Any, flat: tuple[Any, Any] | None = None) -> list:
        """One update; returns the parameters after it (store them: they may be new arrays)."""
        raise NotImplementedError

    def __getstate__(self) -> dict:
        """Pickled with its state as host NumPy (restored onto its backend), like the models. The
        flat buffers are rebuilt from the per-tensor state on the next flat step, as after
        :meth:`load_state_dict`."""
        from .backend import host_state

        return host_state({**self.__dict__, "_flat_state": None})

    def hyperparameters(self) -> dict:
        raise NotImplementedError

    # -- checkpoints --------------------------------------------------------------
    def state_dict(self, to_numpy: Any) -> dict:
        """Hyperparameters, step count and state slots as NumPy arrays."""
        return {
            "type": type(self).__name__,
            "hyperparameters": self.hyperparameters(),
            "iterations": self.iterations,
            "shapes": self._shapes,
            "slots": {slot: [to_numpy(a) for a in arrays] for slot, arrays in self.state.items()},
        }

    def load_state_dict(self, state: dict, backend: Any, dtype: Any) -> None:
        """Restore what :meth:`state_dict` returned, onto ``backend``."""
        if state["type"] != type(self).__name__:
            raise ValueError(f"checkpoint holds {state['type']} state, not {type(self).__name__}")
        self.iterations = int(state["iterations"])
        self._shapes = [tuple(s) for s in state["shapes"]] if state["shapes"] is not None else None
        self.state = {slot: [backend.asarray(a, dtype=dtype) for a in arrays] for slot, arrays in state["slots"].items()}
        self._flat_state = None  # rebuilt from these on the next flat step

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    ``v <- momentum * v - lr * g``; ``w <- w + v`` (Nesterov: ``w <- w + momentum * v - lr * g``).
    """

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False) -> None:
        super().__init__()
        self.lr = _check_number("lr", lr, low=0.0)
        # [0, 1], as scikit-learn's MLP and PyTorch take it (1 keeps every past step)
        self.momentum = _check_number("momentum", momentum, low=0.0, high=1.0, low_open=False, high_open=False)
        self.nesterov = check_flag("nesterov", nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.slots = ("velocity",) if self.momentum > 0 else ()

    def hyperparameters(self):
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov}

    def step(self, params, grads, ops, flat=None):
        self._ensure_state(params, ops.xp, flat=flat is not None)
        self.iterations += 1
        kw = dict(lr=self.lr, momentum=self.momentum, nesterov=self.nesterov)
        if flat is not None:  # one in-place call over the flat buffers
            ops.sgd_update(flat[0], flat[1], self._flat_state.get("velocity"), **kw)
            return params
        velocities = self.state.get("velocity", [None] * len(params))
        new_params, new_velocities = [], []
        for p, g, v in zip(params, grads, velocities):
            p, v = ops.sgd_update(p, g, v, **kw)
            new_params.append(p)
            new_velocities.append(v)
        if "velocity" in self.state:
            self.state["velocity"] = new_velocities
        return new_params


class Adam(Optimizer):
    """Adam (Kingma and Ba) with bias correction, as PyTorch computes it.

    ``eps_form`` says where ``eps`` enters: ``"pytorch"`` (default; PyTorch's and optax's form) adds
    it to the bias-corrected ``sqrt(v_hat)``; ``"scikit-learn"`` to the uncorrected ``sqrt(v)``, as
    scikit-learn's MLP does (its ``epsilon``; the MLP estimators use this form). The two differ
    only where ``sqrt(v_hat)`` is not much larger than ``eps``, mostly in the first steps
    (see :func:`xpnet.ops.adam_eps`).
    """

    slots = ("m", "v")
    eps_form = "pytorch"  # the class's value for an Adam pickled before the option existed

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 eps_form: str = "pytorch") -> None:
        from .ops import ADAM_EPS_FORMS

        super().__init__()
        self.lr = _check_number("lr", lr, low=0.0)
        self.beta1 = _check_number("beta1", beta1, low=0.0, high=1.0, low_open=False)
        self.beta2 = _check_number("beta2", beta2, low=0.0, high=1.0, low_open=False)
        self.eps = _check_number("eps", eps, low=0.0)
        if not isinstance(eps_form, str) or eps_form not in ADAM_EPS_FORMS:
            raise ValueError(f"eps_form must be one of {ADAM_EPS_FORMS}, got {eps_form!r}")
        self.eps_form = eps_form

    def hyperparameters(self):
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps, "eps_form": self.eps_form}

    def step(self, params, grads, ops, flat=None):
        self._ensure_state(params, ops.xp, flat=flat is not None)
        self.iterations += 1
        kw = dict(lr=self.lr, beta1=self.beta1, beta2=self.beta2, eps=self.eps, step=self.iterations,
                  eps_form=self.eps_form)
        if flat is not None:  # one in-place call over the flat buffers
            ops.adam_update(flat[0], flat[1], self._flat_state["m"], self._flat_state["v"], **kw)
            return params
        new_params, new_m, new_v = [], [], []
        for p, g, m, v in zip(params, grads, self.state["m"], self.state["v"]):
            p, m, v = ops.adam_update(p, g, m, v, **kw)
            new_params.append(p)
            new_m.append(m)
            new_v.append(v)
        self.state["m"], self.state["v"] = new_m, new_v
        return new_params


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def get_optimizer(optimizer: Any, **kwargs: Any) -> Optimizer:
    """An optimizer instance from an instance or a name (``"sgd"``, ``"adam"``) plus keyword arguments."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str) and optimizer.lower() in OPTIMIZERS:
        return OPTIMIZERS[optimizer.lower()](**kwargs)
    raise ValueError(f"optimizer must be an Optimizer or one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
