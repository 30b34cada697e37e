"""ONNX export through the same forward code (ndonnx).

ndonnx is an Array API library whose arrays record ONNX operations instead of computing.
Export rebuilds the model on the ndonnx "backend" with the trained parameters as constants,
runs the network's own ``forward`` (and the loss's ``predict`` / ``predict_proba``) on a
symbolic input ``X`` of shape ``(N, n_features)``, and writes the recorded graph. There is no
second implementation of the forward pass to keep in step: what ONNX Runtime computes is
what :meth:`xpnet.Sequential.predict_proba` computes.

Graph inputs and outputs:

- input ``X``: ``(N, n_features)`` in the model's dtype (float32 or float64);
- classifiers: ``label`` ``(N,)`` (class indices for a Sequential, the original class labels
  for an estimator) and ``probabilities`` ``(N, n_classes)``;
- regressors: ``output`` ``(N, n_outputs)`` (``(N,)`` for an estimator with one target).

Needs the optional extra: ``pip install "xpnet[onnx]"`` (ndonnx; onnxruntime to run the file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from ._io import atomic_write

__all__ = ["onnx_backend", "traced_copy", "build_onnx", "save_onnx", "sequential_to_onnx"]


def onnx_backend() -> Any:
    """The xpnet backend over ndonnx (symbolic arrays); a clear ImportError without ndonnx."""
    try:
        import ndonnx
    except ImportError as exc:
        raise ImportError(f"ONNX export needs ndonnx: pip install 'xpnet[onnx]' ({exc})") from None
    from .backend import get_backend

    return get_backend(ndonnx)


def traced_copy(model: Any, backend: Any) -> Any:
    """``model`` (a Sequential) rebuilt on ``backend`` with its parameters, reference ops only."""
    from .network import Sequential, constructor_arguments

    layers, arguments = constructor_arguments(model.config())
    twin = Sequential(layers, backend=backend, fused=False, **arguments)
    twin.set_parameters([model.backend.to_numpy(p) for p in model.parameters()])
    return twin


def build_onnx(n_features: int, dtype_name: str, outputs: Callable[[Any], dict]) -> Any:
    """An ``onnx.ModelProto`` with input ``X`` ``(N, n_features)`` and the named outputs that
    ``outputs(X)`` computes on ndonnx arrays."""
    import ndonnx as ndx

    x = ndx.argument(shape=("N", n_features), dtype=getattr(ndx, dtype_name))
    return ndx.build({"X": x}, outputs(x))


def save_onnx(proto: Any, path: str | Path) -> Path:
    """Write ``proto`` to ``path`` atomically; returns the path."""
    data = proto.SerializeToString()
    return atomic_write(path, lambda fh: fh.write(data))


def sequential_outputs(twin: Any, x: Any, classes: np.ndarray | None = None) -> dict:
    """The graph outputs of a traced Sequential for the symbolic input ``x`` (see the module doc).
    With ``classes``, ``label`` holds ``classes[index]`` and a one-column (binary) probability
    becomes two columns, as the estimators return them."""
    xp = twin.backend.xp
    # ndonnx's matmul forgets static widths; restore the known one so the loss's shape tests hold.
    out = xp.reshape(twin.forward(x), (-1, twin.n_outputs))
    if not twin.loss.is_classifier:
        return {"output": twin.loss.predict(out, twin.ops)}
    label = twin.loss.predict(out, twin.ops)
    proba = twin.loss.predict_proba(out, twin.ops)
    if classes is not None:
        label = xp.take(xp.asarray(classes), label, axis=0)
        if proba.shape[1] == 1:
            proba = xp.concat([1.0 - proba, proba], axis=1)
    return {"label": label, "probabilities": proba}


def sequential_to_onnx(model: Any, path: str | Path | None = None) -> Any:
    """:meth:`xpnet.Sequential.to_onnx` (see there)."""
    twin = traced_copy(model, onnx_backend())
    proto = build_onnx(model.n_features, model.dtype_name, lambda x: sequential_outputs(twin, x))
    if path is not None:
        save_onnx(proto, path)
    return proto
