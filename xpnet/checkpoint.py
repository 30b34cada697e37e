"""Training checkpoints: parameters, optimizer state, RNG state, epoch and history in one ``.npz``.

Written atomically (temporary file + rename), so a crash mid-write leaves the
previous checkpoint intact. Resuming restores everything that decides the next
epoch, so a run stopped after epoch k and resumed ends with the same weights as
an uninterrupted run of the same seed on the CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ._io import atomic_write
from .network import FORMAT_VERSION, History, Sequential, open_xpnet_file, set_parameters_from_file
from .optim import Optimizer
from .stopping import FitState, NoImprovement

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_NAME", "save_checkpoint", "load_checkpoint", "checkpoint_epoch", "TrainingState"]

CHECKPOINT_FORMAT = "xpnet.Checkpoint"
CHECKPOINT_NAME = "checkpoint.npz"


class TrainingState:
    """A snapshot of everything :func:`save_checkpoint` writes, taken in memory (host copies)."""

    def __init__(self, model: Sequential, optimizer: Optimizer, history: dict, extra: dict | None = None,
                 fit_state: FitState | None = None) -> None:
        to_numpy = model.backend.to_numpy
        self.params = [np.array(to_numpy(p), copy=True) for p in model.parameters()]
        self.optimizer = optimizer.state_dict(lambda a: np.array(to_numpy(a), copy=True))
        self.rng_state = model.rng.bit_generator.state
        self.epoch = model.epochs_trained
        self.history = {k: list(v) for k, v in history.items()}
        self.model_config = model.config()
        self.extra = dict(extra or {})
        # The learning-rate schedule and the stopping rule: without them a resumed run would
        # restart the schedule at the initial rate and the no-improvement count at zero. (The
        # scheduled rate itself is the optimizer's "lr" hyperparameter, saved with its state.)
        self.fit_state, self.best_params = None, None
        if fit_state is not None:
            watch = fit_state.watch
            self.fit_state = {
                "samples_seen": fit_state.samples_seen, "lr_init": fit_state.lr_init,
                "watch": None if watch is None else {"tol": watch.tol, "patience": watch.patience,
                                                     "higher": watch.higher, "best": watch.best, "count": watch.count},
            }
            if fit_state.best_params is not None:
                self.best_params = [np.array(to_numpy(p), copy=True) for p in fit_state.best_params]

    def save(self, path: str | Path) -> Path:
        arrays = {f"param_{i}": p for i, p in enumerate(self.params)}
        for slot, values in self.optimizer["slots"].items():
            for i, a in enumerate(values):
                arrays[f"opt_{slot}_{i}"] = a
        for i, a in enumerate(self.best_params or []):
            arrays[f"best_{i}"] = a
        optimizer_meta = {k: v for k, v in self.optimizer.items() if k != "slots"}
        optimizer_meta["slot_names"] = sorted(self.optimizer["slots"])
        config = {
            "format": CHECKPOINT_FORMAT,
            "format_version": FORMAT_VERSION,
            "epoch": self.epoch,
            "model": self.model_config,
            "optimizer": optimizer_meta,
            "rng_state": self.rng_state,
            "history": self.history,
            "extra": self.extra,
            "fit_state": self.fit_state,
        }
        arrays["__config__"] = np.frombuffer(json.dumps(config).encode(), dtype=np.uint8)
        return atomic_write(path, lambda fh: np.savez(fh, **arrays))


def save_checkpoint(path: str | Path, model: Sequential, optimizer: Optimizer, history: dict, extra: dict | None = None,
                    fit_state: FitState | None = None) -> Path:
    """Write the model's training state to ``path`` atomically (with ``fit_state``, the schedule
    and stopping rule that ``fit(..., state=)`` carries from one call to the next)."""
    return TrainingState(model, optimizer, history, extra, fit_state).save(path)


def checkpoint_epoch(path: str | Path) -> int:
    """The number of epochs a checkpoint holds (a bad file raises ModelFileError)."""
    with open_xpnet_file(path, CHECKPOINT_FORMAT) as (_, config):
        return int(config["epoch"])


def load_checkpoint(path: str | Path, model: Sequential, optimizer: Optimizer,
                    fit_state: FitState | None = None) -> tuple[History, dict]:
    """Restore a checkpoint into ``model`` and ``optimizer`` (which must match its architecture),
    and into ``fit_state`` the schedule and stopping rule it holds, if any. When ``optimizer``
    has the learning rate the checkpoint's run started from, the scheduled rate is restored too;
    given another rate, the optimizer keeps it and the schedule starts again from it.

    Returns ``(history, extra)``; ``model.epochs_trained`` is set to the checkpoint's epoch.
    """
    path = Path(path)
    with open_xpnet_file(path, CHECKPOINT_FORMAT) as (data, config):
        if config["model"]["layers"] != model.config()["layers"] or config["model"]["loss"] != model.config()["loss"]:
            raise ValueError(f"{path} was written for a different network ({config['model']['layers']}); "
                             "start a new run or use the same --hidden/--activation")
        meta = config["optimizer"]
        if meta["type"] != type(optimizer).__name__:
            raise ValueError(f"{path} holds {meta['type']} state but this run uses {type(optimizer).__name__}")
        saved = config.get("fit_state") if fit_state is not None else None
        n_params = len(model.parameters())
        # every array is read before anything changes: a truncated file leaves model and optimizer as they were
        params = [data[f"param_{i}"] for i in range(n_params)]
        slots = {s: [data[f"opt_{s}_{i}"] for i in range(n_params)] for s in meta["slot_names"]}
        best = [data[f"best_{i}"] for i in range(n_params)] if "best_0" in data.files else []
        set_parameters_from_file(model, params, path)
        optimizer.load_state_dict({**meta, "slots": slots}, model.backend, model.dtype)
    if saved is not None:
        fit_state.samples_seen = int(saved["samples_seen"])
        if saved["lr_init"] is None or saved["lr_init"] == getattr(optimizer, "lr", None):  # the same run, continued
            fit_state.lr_init = saved["lr_init"]
            if meta["hyperparameters"].get("lr") is not None:
                optimizer.lr = float(meta["hyperparameters"]["lr"])
        # else the optimizer was given another learning rate: the schedule starts again from it
        watch = saved["watch"]
        fit_state.watch = None
        if watch is not None:
            fit_state.watch = NoImprovement(watch["tol"], watch["patience"], higher_is_better=watch["higher"])
            fit_state.watch.best, fit_state.watch.count = watch["best"], int(watch["count"])
        fit_state.best_params = [model.backend.asarray(a, dtype=model.dtype) for a in best] if best else None
    model.rng.bit_generator.state = config["rng_state"]
    model.epochs_trained = int(config["epoch"])
    history = History({k: list(v) for k, v in config["history"].items()})
    return history, config.get("extra", {})
