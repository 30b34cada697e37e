"""Training callbacks: hooks that ``Sequential.fit`` calls around epochs and batches."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["Callback", "ProgressBar", "EpochPrinter", "watches_batches"]


class Callback:
    """Base class; override what you need. ``logs`` hold device arrays where noted."""

    def on_epoch_begin(self, epoch: int, n_batches: int) -> None:
        """``epoch`` counts from 0 over the model's whole life (it continues across fit calls)."""

    def on_batch_end(self, batch: int, logs: dict) -> None:
        """``logs``: ``loss_sum`` (0-d device array: summed batch losses times batch sizes), ``seen``."""

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        """``logs``: floats ``loss``, ``seconds`` and, where they apply, ``accuracy``, ``val_loss``, ``val_accuracy``."""


HOOKS = ("on_epoch_begin", "on_batch_end", "on_epoch_end")


def check_callbacks(callbacks: Any) -> list:
    """``callbacks`` as a list, each checked to have :class:`Callback`'s three hooks (a subclass of
    it, or any object with the same methods), before a fit changes anything."""
    if isinstance(callbacks, Callback) or isinstance(callbacks, (str, bytes)) or not hasattr(callbacks, "__iter__"):
        raise TypeError(f"callbacks must be a list of Callback objects, got {type(callbacks).__name__}"
                        + (" (put it in a list: callbacks=[...])" if isinstance(callbacks, Callback) else ""))
    callbacks = list(callbacks)
    for i, cb in enumerate(callbacks):
        missing = [hook for hook in HOOKS if not callable(getattr(cb, hook, None))]
        if missing:
            raise TypeError(f"callbacks[{i}] must be an xpnet Callback (with {', '.join(HOOKS)}); "
                            f"{type(cb).__name__} has no {', '.join(missing)}")
    return callbacks


def watches_batches(callback: Any) -> bool:
    """Whether ``callback`` has an ``on_batch_end`` of its own: anything but the base class's (which
    does nothing), as a :class:`Callback` subclass inherits it. A fit asks for an epoch's batches in
    one call where none watches them (``XPNET_GRAPH_STEP=epoch`` runs them as one launch)."""
    return getattr(getattr(callback, "on_batch_end", None), "__func__", None) is not Callback.on_batch_end


def format_epoch(epoch: int, logs: dict, held_out: str = "val") -> str:
    """One readable line per epoch: ``epoch 3: loss 0.1234 acc 0.9650 | val loss ... | 1.23 s``;
    ``held_out`` names the validation data (``"val"``, or ``"test"`` where it is a test set, as
    the CLI's is)."""
    parts = [f"epoch {epoch + 1}: loss {logs['loss']:.4f}"]
    if "accuracy" in logs:
        parts.append(f"acc {logs['accuracy']:.4f}")
    if "val_loss" in logs:
        parts.append(f"| {held_out} loss {logs['val_loss']:.4f}")
    if "val_accuracy" in logs:
        parts.append(f"{held_out} acc {logs['val_accuracy']:.4f}")
    parts.append(f"| {logs['seconds']:.2f} s")
    return " ".join(parts)


class EpochPrinter(Callback):
    """Prints one line per epoch (see :func:`format_epoch`)."""

    def __init__(self, stream: Any = None, held_out: str = "val") -> None:
        self.stream = stream
        self.held_out = held_out

    def on_epoch_end(self, epoch, logs):
        print(format_epoch(epoch, logs, self.held_out), file=self.stream or sys.stdout, flush=True)


class ProgressBar(Callback):
    """A tqdm bar per epoch with the running loss and throughput, then the epoch line.

    The running loss is read from the device every ``refresh`` batches only, so
    the bar costs one synchronisation per ``refresh`` batches on a GPU.
    """

    def __init__(self, refresh: int = 20, stream: Any = None, held_out: str = "val") -> None:
        self.held_out = held_out
        self.refresh = max(1, int(refresh))
        self.stream = stream
        self._bar = None

    def on_epoch_begin(self, epoch, n_batches):
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=n_batches, desc=f"epoch {epoch + 1}", unit="batch", leave=False,
            file=self.stream or sys.stderr, dynamic_ncols=True,
        )

    def on_batch_end(self, batch, logs):
        bar = self._bar
        if bar is None:
            return
        bar.update(1)
        if (batch + 1) % self.refresh == 0:
            seen = logs["seen"]
            elapsed = bar.format_dict["elapsed"]  # tqdm's smoothed "rate" is None until its display first refreshes
            bar.set_postfix(loss=f"{float(logs['loss_sum']) / seen:.4f}",
                            samples_s=f"{seen / elapsed:.0f}" if elapsed > 0 else "-")

    def on_epoch_end(self, epoch, logs):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        print(format_epoch(epoch, logs, self.held_out), file=sys.stdout, flush=True)
