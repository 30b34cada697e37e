"""Plots (matplotlib, Agg backend): training curves and a 2-D decision boundary.

matplotlib comes with the ``bench`` extra; it is imported only when a plot is drawn.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_write

__all__ = ["plot_history", "plot_decision_boundary", "save_figure", "figure_format"]


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError("plotting needs matplotlib: pip install 'xpnet[bench]'") from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def figure_format(path: str | Path) -> str:
    """The image format named by ``path``'s suffix (``png``, ``pdf``, ``svg``, ...), checked
    against what matplotlib can write. Raises ImportError without matplotlib and ValueError
    for a missing or unknown suffix, so a caller can check an output path before the work."""
    _pyplot()
    from matplotlib.figure import Figure

    supported = Figure().canvas.get_supported_filetypes()
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in supported:
        raise ValueError(f"cannot tell the image format of {str(path)!r} from its suffix; use one of "
                         + ", ".join(f".{ext}" for ext in sorted(supported)))
    return suffix


def save_figure(fig: Any, path: str | Path) -> Path:
    """Save a figure atomically, in the format its suffix names (``.png``, ``.pdf``, ``.svg``...), and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=figure_format(path), dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return atomic_write(path, lambda fh: fh.write(buffer.getvalue()))


def plot_history(history: dict, path: str | Path, title: str = "") -> Path:
    """Train/test loss and accuracy per epoch, side by side, written to ``path`` (format from its suffix)."""
    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = np.arange(1, len(history["loss"]) + 1)
    ax_loss.plot(epochs, history["loss"], "o-", label="train")
    if "val_loss" in history:
        ax_loss.plot(epochs, history["val_loss"], "s-", label="test")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    if "accuracy" in history:
        ax_acc.plot(epochs, history["accuracy"], "o-", label="train")
        if "val_accuracy" in history:
            ax_acc.plot(epochs, history["val_accuracy"], "s-", label="test")
        ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
        ax_acc.legend()
    else:
        ax_acc.set_axis_off()
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_decision_boundary(
    classifier: Any, X: Any, y: Any, path: str | Path | None = None, *, ax: Any = None,
    feature_names: tuple[str, str] = ("feature 0", "feature 1"), resolution: int = 300,
) -> Any:
    """Scatter a two-feature dataset and shade the regions a fitted classifier assigns.

    For a linear classifier (``coef_``, ``intercept_``; e.g. :class:`xpnet.LogisticRegression`
    with two classes) the boundary line ``w . x + b = 0`` is drawn too. Returns the axes,
    or the path written when ``path`` is given.
    """
    plt = _pyplot()
    X = np.asarray(X, dtype=float)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"X must have shape (n_samples, 2) to draw a 2-D boundary, got {X.shape}")
    own_figure = ax is None
    if own_figure:
        fig, ax = plt.subplots(figsize=(6, 5))
    pad = 0.5
    (x0, y0), (x1, y1) = X.min(axis=0) - pad, X.max(axis=0) + pad
    gx, gy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    grid = np.c_[gx.ravel(), gy.ravel()]
    to_numpy = classifier.model_.backend.to_numpy
    regions = np.searchsorted(classifier.classes_, to_numpy(classifier.predict(grid))).reshape(gx.shape)
    ax.contourf(gx, gy, regions, alpha=0.25, cmap="coolwarm", levels=np.arange(len(classifier.classes_) + 1) - 0.5)
    for k, label in enumerate(classifier.classes_):
        pts = X[y == label]
        ax.scatter(pts[:, 0], pts[:, 1], s=25, edgecolor="k", label=str(label), color=plt.cm.coolwarm(k / max(1, len(classifier.classes_) - 1)))
    coef = getattr(classifier, "coef_", None)
    if coef is not None and to_numpy(coef).shape == (1, 2):
        (w0, w1), b = to_numpy(coef)[0], float(to_numpy(classifier.intercept_)[0])
        if abs(w1) > 1e-12:
            xs = np.array([x0, x1])
            ax.plot(xs, -(w0 * xs + b) / w1, "k--", label="w . x + b = 0")
    ax.set(xlim=(x0, x1), ylim=(y0, y1), xlabel=feature_names[0], ylabel=feature_names[1])
    ax.legend(loc="best")
    if own_figure and path is not None:
        ax.set_title(f"{type(classifier).__name__} decision boundary")
        return save_figure(fig, path)
    return ax
