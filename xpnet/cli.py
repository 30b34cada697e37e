"""The ``xpnet`` command: ``train``, ``predict`` and ``info``.

    xpnet train                      # the reference MNIST network, 10 epochs
    xpnet train --activation relu --hidden 512,256 --epochs 10 --plot curves.png
    xpnet train --checkpoint-dir ck --epochs 5; xpnet train --checkpoint-dir ck --epochs 10 --resume
    xpnet predict model.npz --dataset mnist
    xpnet info

Bad arguments give one readable line and exit status 2. Data and runtime errors
give a message and exit status 1. Ctrl-C exits with 130, after saving a
checkpoint when ``--checkpoint-dir`` is set.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from . import __version__

EXIT_USAGE, EXIT_FAILURE, EXIT_INTERRUPTED = 2, 1, 130


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + traceback
        raise CLIError(message)


# -- argument types ---------------------------------------------------------------
def _argument(convert, accept, expected: str):
    """An argparse type: ``convert`` the text, then ``accept`` the value, else say what was ``expected``."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value

    parse.__name__ = expected
    return parse


_positive_int = _argument(int, lambda v: v >= 1, "a positive integer")
_non_negative_int = _argument(int, lambda v: v >= 0, "an integer >= 0")
_positive_float = _argument(float, lambda v: 0 < v < float("inf"), "a positive number")
_unit_float = _argument(float, lambda v: 0 <= v < 1, "a number in [0, 1)")


def _hidden(text: str) -> list[int]:
    try:
        widths = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer widths such as 256,128, got {text!r}") from None
    if any(w < 1 for w in widths):
        raise argparse.ArgumentTypeError(f"layer widths must be positive, got {text!r}")
    return widths


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="xpnet", description="Train and inspect xpnet networks.")
    parser.add_argument("--version", action="version", version=f"xpnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="train a network (defaults: the reference MNIST network)")
    train.add_argument("--dataset", choices=["mnist", "digits", "iris"], default="mnist")
    train.add_argument("--data-dir", help="folder with the four MNIST IDX files (.gz or not)")
    train.add_argument("--backend", choices=["auto", "numpy", "cupy"], default="auto")
    train.add_argument("--hidden", type=_hidden, default=[256, 128], help="hidden widths, e.g. 256,128 (default)")
    train.add_argument("--activation", choices=["sigmoid", "relu", "tanh"], default="sigmoid")
    train.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    train.add_argument("--lr", type=_positive_float, default=None, help="learning rate (adam 1e-3, sgd 0.1)")
    train.add_argument("--momentum", type=_unit_float, default=0.9, help="SGD momentum (default 0.9)")
    train.add_argument("--epochs", type=_non_negative_int, default=10, help="total epochs, counting resumed ones")
    train.add_argument("--batch-size", type=_positive_int, default=128)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    train.add_argument("--no-fused", action="store_true", help="use the reference path instead of fused kernels")
    train.add_argument("--limit-train", type=_positive_int, help="train on the first N training samples only")
    train.add_argument("--save", metavar="MODEL.npz", help="write the trained model here")
    train.add_argument("--checkpoint-dir", metavar="DIR", help="write a checkpoint after every epoch")
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint in --checkpoint-dir")
    train.add_argument("--plot", metavar="curves.png", help="plot loss and accuracy per epoch")
    train.add_argument("--json", metavar="metrics.json", help="write the run's figures as JSON")
    train.add_argument("-q", "--quiet", action="store_true", help="print only the final summary line")

    predict = sub.add_parser("predict", help="accuracy of a saved model on a dataset's test split")
    predict.add_argument("model", help="a model written by --save or Sequential.save")
    predict.add_argument("--dataset", choices=["mnist", "digits", "iris"], default="mnist")
    predict.add_argument("--data-dir")
    predict.add_argument("--backend", choices=["auto", "numpy", "cupy"], default="auto")

    sub.add_parser("info", help="versions, backends, GPU and fused-kernel status")
    return parser


# -- commands ---------------------------------------------------------------------
def peak_rss_bytes() -> int:
    """This process's peak resident memory in bytes.

    On Linux, ``VmHWM`` of ``/proc/self/status``: the high-water mark of this process's own
    address space. ``ru_maxrss`` is not used there because it keeps the parent's high-water
    mark across fork and exec (a CLI started from a large process would report its parent's
    peak). Elsewhere ``ru_maxrss`` (KiB on Linux, bytes on macOS).
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(kb) * (1 if sys.platform == "darwin" else 1024)


def _write_json(path: str, payload: dict) -> None:
    from ._io import atomic_write

    atomic_write(path, lambda fh: fh.write(json.dumps(payload, indent=2).encode()))


def build_network(n_features: int, n_classes: int, args: argparse.Namespace) -> Any:
    from .layers import dense_stack
    from .network import Sequential

    layers = dense_stack([n_features, *args.hidden, n_classes], args.activation)
    return Sequential(layers, loss="softmax_cross_entropy", backend=args.backend, dtype=args.dtype,
                      seed=args.seed, fused=False if args.no_fused else None)


def cmd_train(args: argparse.Namespace) -> int:
    from .callbacks import EpochPrinter, ProgressBar
    from .checkpoint import CHECKPOINT_NAME, TrainingState, load_checkpoint, save_checkpoint
    from .datasets import load_dataset
    from .network import History, NonFiniteLossError
    from .optim import SGD, Adam

    if args.resume and not args.checkpoint_dir:
        raise CLIError("--resume needs --checkpoint-dir DIR")
    started = time.perf_counter()
    X_train, y_train, X_test, y_test = load_dataset(args.dataset, args.data_dir)
    if args.limit_train:
        X_train, y_train = X_train[: args.limit_train], y_train[: args.limit_train]
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    model = build_network(X_train.shape[1], n_classes, args)
    lr = args.lr if args.lr is not None else (1e-3 if args.optimizer == "adam" else 0.1)
    optimizer = Adam(lr) if args.optimizer == "adam" else SGD(lr, momentum=args.momentum, nesterov=False)
    say = (lambda *a: None) if args.quiet else print
    say(f"xpnet {__version__}: {args.dataset} {X_train.shape[0]} train / {X_test.shape[0]} test, "
        f"network {'-'.join(map(str, [X_train.shape[1], *args.hidden, n_classes]))} {args.activation}, "
        f"{args.optimizer} lr {lr:g}, batch {args.batch_size}, {model.backend.name} "
        f"({'fused ' + model.ops.kernel_family if model.ops.fused else 'reference ops'}), {args.dtype}")

    history = History()
    checkpoint = Path(args.checkpoint_dir) / CHECKPOINT_NAME if args.checkpoint_dir else None
    if args.resume:
        if checkpoint.is_file():
            history, _ = load_checkpoint(checkpoint, model, optimizer)
            say(f"resumed from {checkpoint} after epoch {model.epochs_trained}")
        else:
            say(f"no checkpoint in {args.checkpoint_dir} yet; starting from epoch 0")

    # Data moves to the backend once; each epoch's fit then only checks it.
    to_device = model.backend.asarray
    X_train, y_train, X_test, y_test = (to_device(a) for a in (X_train, y_train, X_test, y_test))
    callbacks = [] if args.quiet else [ProgressBar() if sys.stderr.isatty() else EpochPrinter()]
    snapshot = None  # the state at the start of the running epoch, for Ctrl-C
    saved_epoch = model.epochs_trained if args.resume and checkpoint.is_file() else -1
    try:
        while model.epochs_trained < args.epochs:
            if checkpoint is not None:
                snapshot = TrainingState(model, optimizer, history)
            epoch_history = model.fit(X_train, y_train, epochs=1, batch_size=args.batch_size, optimizer=optimizer,
                                      validation_data=(X_test, y_test), callbacks=callbacks)
            history.append({key: values[0] for key, values in epoch_history.items()})
            if checkpoint is not None:
                save_checkpoint(checkpoint, model, optimizer, history)
                saved_epoch = model.epochs_trained
    except KeyboardInterrupt:
        print(file=sys.stderr)
        if snapshot is not None:
            if snapshot.epoch > saved_epoch:  # never replace a newer checkpoint with an older snapshot
                snapshot.save(checkpoint)
                saved_epoch = snapshot.epoch
            print(f"xpnet: interrupted after {saved_epoch} completed epoch(s); the checkpoint of epoch "
                  f"{saved_epoch} is in {checkpoint}; continue with --resume", file=sys.stderr)
        else:
            print(f"xpnet: interrupted during epoch {model.epochs_trained + 1}; nothing saved "
                  "(pass --checkpoint-dir to keep progress)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except NonFiniteLossError as exc:
        kept = f"; the checkpoint of epoch {model.epochs_trained} in {checkpoint} is intact" if checkpoint and checkpoint.is_file() else ""
        print(f"xpnet: error: {exc}{kept}", file=sys.stderr)
        return EXIT_FAILURE

    final = model.evaluate(X_test, y_test)
    total = time.perf_counter() - started
    if args.save:
        model.save(args.save)
    if args.plot and history:
        from .plotting import plot_history

        plot_history(history, args.plot, title=f"xpnet {args.dataset}: {args.activation} {'-'.join(map(str, args.hidden))}")
    if args.json:
        _write_json(args.json, {
            "command": sys.argv, "dataset": args.dataset, "args": {k: v for k, v in vars(args).items() if k != "func"},
            "history": dict(history), "test_loss": final["loss"], "test_accuracy": final["accuracy"],
            "epochs": model.epochs_trained, "seconds_total": total, "peak_rss_bytes": peak_rss_bytes(),
            "backend": model.backend.describe(), "fused": model.ops.fused, "xpnet_version": __version__,
            "python": platform.python_version(), "machine": platform.machine(),
        })
    print(f"test accuracy {final['accuracy']:.4f}, test loss {final['loss']:.4f} after {model.epochs_trained} epochs "
          f"({total:.1f} s, peak memory {peak_rss_bytes() / 2**20:.0f} MiB)")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .datasets import load_dataset
    from .network import load

    model = load(args.model, backend=args.backend)
    _, _, X_test, y_test = load_dataset(args.dataset, args.data_dir)
    result = model.evaluate(X_test, y_test)
    print(f"accuracy {result['accuracy']:.4f} (loss {result['loss']:.4f}) on {X_test.shape[0]} {args.dataset} test samples")
    return 0


def _version_of(module: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return "not installed"


def cmd_info(args: argparse.Namespace) -> int:
    from .backend import cupy_usable, get_backend
    from .ops import Ops, fused_default

    print(f"xpnet {__version__} on Python {platform.python_version()} ({platform.machine()})")
    for dist in ("numpy", "array-api-compat", "numba", "array-api-strict", "scikit-learn", "matplotlib", "torch"):
        print(f"  {dist:<18} {_version_of(dist)}")
    cupy_dists = [d for d in ("cupy-cuda13x", "cupy-cuda12x", "cupy") if _version_of(d) != "not installed"]
    print(f"  {'cupy':<18} {(cupy_dists[0] + ' ' + _version_of(cupy_dists[0])) if cupy_dists else 'not installed'}")
    gpu_ok, why = cupy_usable()
    print("backends: numpy (always), array_api_strict" + (" (installed)" if _version_of("array-api-strict") != "not installed" else " (not installed)")
          + (", cupy (GPU usable)" if gpu_ok else f", cupy unavailable: {why}"))
    if gpu_ok:
        info = get_backend("cupy").describe()
        print(f"GPU: {info['gpu_name']}, {info['gpu_memory_bytes'] / 2**30:.1f} GiB")
    print(f"fused kernels: {'on' if fused_default() else 'off (XPNET_FUSED=0)'} by default")
    for name in ("numpy", "cupy") if gpu_ok else ("numpy",):
        ops = Ops(get_backend(name))
        print(f"  {name}: {'fused (' + ops.kernel_family + ')' if ops.fused else 'reference: ' + ops.reason}")
    return 0


COMMANDS = {"train": cmd_train, "predict": cmd_predict, "info": cmd_info}


def main(argv: Sequence[str] | None = None) -> int:
    from .backend import BackendUnavailableError
    from .datasets import DatasetError

    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except CLIError as exc:
        print(f"xpnet: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (DatasetError, FileNotFoundError, BackendUnavailableError, ValueError, TypeError, ImportError, OSError) as exc:
        print(f"xpnet: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
