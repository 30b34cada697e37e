"""The ``xpnet`` command: ``train``, ``predict`` and ``info``.

    xpnet train                      # the reference MNIST network, 10 epochs
    xpnet train --activation relu --hidden 512,256 --epochs 10 --plot curves.png
    xpnet train --checkpoint-dir ck --epochs 5; xpnet train --checkpoint-dir ck --epochs 10 --resume
    xpnet predict model.npz --dataset mnist          # accuracy on the test split
    xpnet predict model.npz --input X.csv --proba    # predictions for your own data
    xpnet info [model.npz]

Bad arguments, and output paths that could not be written, give one readable line and
exit status 2 before any work. File, data and runtime errors give one line and exit
status 1. Ctrl-C exits with 130 at any moment, after saving a checkpoint when
``--checkpoint-dir`` is set. (Run as ``python -m xpnet.cli``, where Ctrl-C landed in code that
Python evaluates from a string, a namedtuple's constructor say, CPython 3.11 ends the process by
SIGINT after xpnet's line instead of with 130; a shell reports that as 130 too.) No command prints
a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import signal
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

from . import __version__

EXIT_USAGE, EXIT_FAILURE, EXIT_INTERRUPTED = 2, 1, 130

# Per-dataset defaults for train: each learns its dataset (measured: MNIST 0.97+ after 10 epochs,
# digits 0.96 after 30, iris 1.00 after 100; `xpnet train --dataset NAME`).
DATASET_DEFAULTS = {
    "mnist": {"epochs": 10, "batch_size": 128, "lr": {"adam": 1e-3, "sgd": 0.1}},
    "digits": {"epochs": 30, "batch_size": 32, "lr": {"adam": 1e-3, "sgd": 0.1}},
    "iris": {"epochs": 100, "batch_size": 16, "lr": {"adam": 1e-2, "sgd": 0.1}},
}
INPUT_SUFFIXES = (".npy", ".npz", ".csv")
OUTPUT_SUFFIXES = (".npy", ".csv", ".txt")


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + traceback
        raise CLIError(message)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: ...)`` after every option that has a default and whose help does not
    already say it (where ``None`` means "depends on the dataset", the help says what instead)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if "default:" in (action.help or "") or action.default is None:
            return action.help or ""
        return super()._get_help_string(action)


def _epochs(n: int) -> str:
    return f"{n} epoch" + ("" if n == 1 else "s")


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
_open_unit_float = _argument(float, lambda v: 0 < v < 1, "a number in (0, 1)")
_non_negative_float = _argument(float, lambda v: 0 <= v < float("inf"), "a number >= 0")


def _hidden(text: str) -> list[int]:
    """Comma-separated positive widths; empty text or empty entries (``256,,128``) are refused."""
    parts = text.split(",")
    if any(not part.strip() for part in parts):
        raise argparse.ArgumentTypeError(f"expected comma-separated layer widths such as 256,128, got {text!r} (an empty width)")
    try:
        widths = [int(part) for part in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer widths such as 256,128, got {text!r}") from None
    if any(w < 1 for w in widths):
        raise argparse.ArgumentTypeError(f"layer widths must be positive, got {text!r}")
    return widths


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="xpnet", description="Train and inspect xpnet networks.")
    parser.add_argument("--version", action="version", version=f"xpnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    per_dataset = lambda key: ", ".join(f"{name} {d[key]}" for name, d in DATASET_DEFAULTS.items())  # noqa: E731
    train = sub.add_parser("train", help="train a network (defaults: the reference MNIST network)", formatter_class=_HelpFormatter)
    train.add_argument("--dataset", choices=["mnist", "digits", "iris"], default="mnist",
                       help="what to train on: mnist (28x28 digits, 60k/10k), digits (scikit-learn's 8x8), "
                            "iris (setosa against versicolor, the first two features)")
    train.add_argument("--data-dir", help="MNIST only: folder with the four IDX files (.gz or not); "
                       "default: $XPNET_DATA_DIR, then the user cache, then a download")
    train.add_argument("--backend", choices=["auto", "numpy", "cupy"], default="auto", help="where to train")
    train.add_argument("--hidden", type=_hidden, default=[256, 128], help="hidden layer widths, comma-separated")
    train.add_argument("--activation", choices=["sigmoid", "relu", "tanh"], default="sigmoid", help="hidden activation")
    train.add_argument("--optimizer", choices=["adam", "sgd"], default="adam", help="update rule")
    train.add_argument("--lr", type=_positive_float, default=None,
                       help="learning rate (default: adam 1e-3, sgd 0.1; adam 1e-2 on iris)")
    train.add_argument("--momentum", type=_unit_float, default=0.9, help="SGD momentum")
    train.add_argument("--epochs", type=_non_negative_int, default=None,
                       help=f"total epochs, counting resumed ones (default: {per_dataset('epochs')})")
    train.add_argument("--batch-size", type=_positive_int, default=None, help=f"(default: {per_dataset('batch_size')})")
    train.add_argument("--seed", type=_non_negative_int, default=0, help="seeds the weights and the shuffling")
    train.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="precision")
    train.add_argument("--no-fused", action="store_true", help="use the reference path instead of fused kernels")
    train.add_argument("--matmul-precision", choices=["highest", "tf32", "bf16"], default="highest",
                       help="the training step's matrix products: tf32/bf16 run on a GPU's tensor cores "
                            "(CuPy, float32, the captured step; refused elsewhere)")
    train.add_argument("--tol", type=_non_negative_float, default=None,
                       help="stop once the training loss (with --early-stopping, the validation accuracy) has not "
                            "improved by more than TOL for more than --n-iter-no-change epochs (default: train every epoch)")
    train.add_argument("--n-iter-no-change", type=_positive_int, default=10, help="patience of --tol")
    train.add_argument("--early-stopping", action="store_true",
                       help="hold out --validation-fraction of the training set, stop on its accuracy, keep the best "
                            "epoch's weights (tol defaults to 1e-4)")
    train.add_argument("--validation-fraction", type=_open_unit_float, default=0.1, help="held out by --early-stopping")
    train.add_argument("--lr-schedule", choices=["constant", "invscaling", "adaptive"], default="constant",
                       help="invscaling: lr / (samples seen + 1) ** power_t after each epoch; adaptive: lr / 5 "
                            "whenever --tol's rule fires, stopping below 1e-6")
    train.add_argument("--power-t", type=_argument(float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"), default=0.5,
                       help="exponent of --lr-schedule invscaling")
    train.add_argument("--limit-train", type=_positive_int, help="train on the first N training samples only (default: all)")
    train.add_argument("--save", metavar="MODEL.npz", help="write the trained model here (default: not saved)")
    train.add_argument("--checkpoint-dir", metavar="DIR", help="write a checkpoint after every epoch (default: none)")
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint in --checkpoint-dir")
    train.add_argument("--overwrite", action="store_true", help="replace a checkpoint already in --checkpoint-dir")
    train.add_argument("--plot", metavar="curves.png", help="plot loss and accuracy per epoch; the suffix "
                       "(.png, .pdf, .svg, ...) sets the format (default: no plot)")
    train.add_argument("--json", metavar="metrics.json", help="write the run's figures as JSON (default: none)")
    train.add_argument("-q", "--quiet", action="store_true", help="print only the final summary line")

    predict = sub.add_parser("predict", formatter_class=_HelpFormatter,
                             help="predict on your own data (--input), or the accuracy on a dataset's test split")
    predict.add_argument("model", help="a model written by --save or Sequential.save")
    predict.add_argument("--input", metavar="FILE", help="samples to predict, one per row: .npy, .npz (one array, "
                         "or the array 'X') or .csv (an optional header row)")
    predict.add_argument("--proba", action="store_true", help="with --input: class probabilities instead of labels")
    predict.add_argument("--output", metavar="FILE", help="with --input: write predictions here (.npy, .csv or .txt) "
                         "instead of standard output")
    predict.add_argument("--dataset", choices=["mnist", "digits", "iris"], default=None,
                         help="without --input: evaluate on this dataset's test split (default: mnist)")
    predict.add_argument("--data-dir", help="MNIST only: folder with the two t10k test files")
    predict.add_argument("--backend", choices=["auto", "numpy", "cupy"], default="auto", help="where to run")

    info = sub.add_parser("info", help="versions, backends, GPU and fused kernels; or a saved model's summary")
    info.add_argument("model", nargs="?", help="a saved model to describe (layers, shapes, parameters)")
    return parser


# -- checks before any work -----------------------------------------------------------
def _check_writable(flag: str, path: str, *, directory: bool = False) -> Path:
    """Refuse an output path that could not be written: a directory where a file is wanted (or
    the reverse), or a folder that cannot be created or written. Writing is tried, with a nameless
    temporary file in the nearest existing folder (gone when closed), since permission bits do not
    tell: root passes every ``os.access`` test, and /proc or a read-only mount may still refuse."""
    target = Path(path)
    if directory and target.exists() and not target.is_dir():
        raise CLIError(f"{flag}: {path} is a file, not a directory")
    if not directory and target.is_dir():
        raise CLIError(f"{flag}: {path} is a directory; give a file name")
    ancestor = target if directory and target.is_dir() else target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise CLIError(f"{flag}: cannot create {path}: {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise CLIError(f"{flag}: cannot write {path}: no write permission in {ancestor}")
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as exc:
        raise CLIError(f"{flag}: cannot write {path}: {ancestor} refuses new files ({exc.strerror or exc})") from None
    return target


def _check_train_outputs(args: argparse.Namespace) -> None:
    if args.save:
        _check_writable("--save", args.save)
    if args.json:
        _check_writable("--json", args.json)
    if args.checkpoint_dir:
        _check_writable("--checkpoint-dir", args.checkpoint_dir, directory=True)
    if args.plot:
        _check_writable("--plot", args.plot)
        from .plotting import figure_format

        try:
            figure_format(args.plot)
        except ImportError:
            raise CLIError("--plot needs matplotlib, which is not installed (pip install matplotlib)") from None
        except ValueError as exc:
            raise CLIError(f"--plot: {exc}") from None


def _check_checkpoint(args: argparse.Namespace, checkpoint: Path | None) -> int | None:
    """The epoch of the checkpoint a run may continue, after refusing what would lose or waste work."""
    if checkpoint is None:
        if args.resume or args.overwrite:
            raise CLIError(f"--{'resume' if args.resume else 'overwrite'} needs --checkpoint-dir DIR")
        return None
    if args.resume and args.overwrite:
        raise CLIError("--resume and --overwrite contradict each other: continue the checkpoint, or replace it")
    if not checkpoint.exists():
        return None
    from .checkpoint import checkpoint_epoch

    if not args.resume and not args.overwrite:
        raise CLIError(f"--checkpoint-dir {args.checkpoint_dir} already holds a checkpoint of another run "
                       f"(after {_epochs(checkpoint_epoch(checkpoint))}); pass --resume to continue it or "
                       "--overwrite to replace it")
    if args.overwrite:
        return None
    epoch = checkpoint_epoch(checkpoint)  # a bad file: ModelFileError, exit 1
    if args.epochs <= epoch:
        raise CLIError(f"--resume: the checkpoint in {args.checkpoint_dir} has {_epochs(epoch)} already and --epochs "
                       f"is the total ({args.epochs}); pass --epochs greater than {epoch} to train more")
    return epoch


def _apply_dataset_defaults(args: argparse.Namespace) -> None:
    if args.data_dir and args.dataset != "mnist":
        raise CLIError(f"--data-dir applies to --dataset mnist only ({args.dataset} ships with scikit-learn)")
    defaults = DATASET_DEFAULTS[args.dataset]
    if args.epochs is None:
        args.epochs = defaults["epochs"]
    if args.batch_size is None:
        args.batch_size = defaults["batch_size"]
    if args.lr is None:
        args.lr = defaults["lr"][args.optimizer]


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
                      seed=args.seed, fused=False if args.no_fused else None, matmul_precision=args.matmul_precision)


def cmd_train(args: argparse.Namespace) -> int:
    from .callbacks import EpochPrinter, ProgressBar
    from .checkpoint import CHECKPOINT_NAME, TrainingState, load_checkpoint, save_checkpoint
    from .datasets import load_dataset
    from .network import History, NonFiniteLossError
    from .optim import SGD, Adam
    from .stopping import FitState, validation_split

    import numpy as np

    _apply_dataset_defaults(args)
    checkpoint = Path(args.checkpoint_dir) / CHECKPOINT_NAME if args.checkpoint_dir else None
    resume_epoch = _check_checkpoint(args, checkpoint)
    _check_train_outputs(args)  # every output path and optional dependency, before any data is read
    started = time.perf_counter()
    X_train, y_train, X_test, y_test = load_dataset(args.dataset, args.data_dir)
    if args.limit_train:
        X_train, y_train = X_train[: args.limit_train], y_train[: args.limit_train]
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    model = build_network(X_train.shape[1], n_classes, args)
    lr = args.lr
    optimizer = Adam(lr) if args.optimizer == "adam" else SGD(lr, momentum=args.momentum, nesterov=False)
    say = (lambda *a: None) if args.quiet else print
    say(f"xpnet {__version__}: {args.dataset} {X_train.shape[0]} train / {X_test.shape[0]} test, "
        f"network {'-'.join(map(str, [X_train.shape[1], *args.hidden, n_classes]))} {args.activation}, "
        f"{args.optimizer} lr {lr:g}, batch {args.batch_size}, {model.backend.name} "
        f"({'fused ' + model.ops.kernel_family if model.ops.fused else 'reference ops'}"
        f"{', one compiled step' if model.uses_compiled_step(optimizer)[0] else ''}), {args.dtype}")

    history = History()
    fit_state = FitState()  # the schedule and the stopping rule, carried across the per-epoch fits and checkpoints
    if resume_epoch is not None:
        history, _ = load_checkpoint(checkpoint, model, optimizer, fit_state)
        say(f"resumed from {checkpoint} after {_epochs(model.epochs_trained)}")
        if fit_state.lr_init is None and fit_state.samples_seen:  # it held a schedule, begun at another rate
            say(f"--lr {lr:g} differs from the rate the checkpoint's run started from: the learning rate starts again at it")
    elif args.resume:
        say(f"no checkpoint in {args.checkpoint_dir} yet; starting from epoch 0")

    # --early-stopping holds out part of the training set once, with the run's seed (a resumed run
    # draws the same rows); its scores drive the stopping rule, the test set is reported at the end.
    validation = None
    if args.early_stopping:
        train_rows, val_rows = validation_split(y_train, args.validation_fraction, np.random.default_rng(args.seed),
                                                stratify=True)
        validation = (X_train[val_rows], y_train[val_rows])
        X_train, y_train = X_train[train_rows], y_train[train_rows]
        say(f"early stopping: {val_rows.size} training samples held out for validation")
    tol = args.tol if args.tol is not None else (1e-4 if args.early_stopping or args.lr_schedule == "adaptive" else None)
    rules = dict(tol=tol, n_iter_no_change=args.n_iter_no_change, early_stopping=args.early_stopping,
                 lr_schedule=args.lr_schedule, power_t=args.power_t, state=fit_state, restore_best=False)

    # Data moves to the backend once; each epoch's fit then only checks it.
    to_device = model.backend.asarray
    X_train, y_train, X_test, y_test = (to_device(a) for a in (X_train, y_train, X_test, y_test))
    if validation is not None:
        validation = tuple(to_device(a) for a in validation)
    interactive = sys.stderr.isatty()
    held_out = "val" if args.early_stopping else "test"
    callbacks = [] if args.quiet else [ProgressBar(held_out=held_out) if interactive else EpochPrinter(held_out=held_out)]
    snapshot = None  # the state at the start of the running epoch, for Ctrl-C
    saved_epoch = resume_epoch if resume_epoch is not None else -1
    try:
        while model.epochs_trained < args.epochs:
            _ctrl_c.raise_if_seen()
            if checkpoint is not None:
                snapshot = TrainingState(model, optimizer, history, fit_state=fit_state)
            epoch_history = model.fit(X_train, y_train, epochs=1, batch_size=args.batch_size, optimizer=optimizer,
                                      validation_data=validation or (X_test, y_test), callbacks=callbacks, **rules)
            history.append({key: values[0] for key, values in epoch_history.items()})
            if checkpoint is not None:
                save_checkpoint(checkpoint, model, optimizer, history, fit_state=fit_state)
                saved_epoch = model.epochs_trained
            for line in epoch_history.get("lr_changes", []):
                say(line)
            if epoch_history.stop_message:
                say(epoch_history.stop_message)
                break
    except KeyboardInterrupt:
        if interactive and not args.quiet:
            print(file=sys.stderr)  # end the progress bar's line
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
        print(f"xpnet: error: {exc} (--lr sets the learning rate){kept}", file=sys.stderr)
        return EXIT_FAILURE

    if rules["state"].best_params is not None:  # early stopping ends with the best validation epoch's weights
        model.set_parameters(rules["state"].best_params)
        say(f"kept the weights of the best validation accuracy, {rules['state'].watch.best:.4f}")
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
    print(f"test accuracy {final['accuracy']:.4f}, test loss {final['loss']:.4f} after {_epochs(model.epochs_trained)} "
          f"({total:.1f} s, peak memory {peak_rss_bytes() / 2**20:.0f} MiB)")
    return 0


def read_samples(path: str) -> Any:
    """Samples from a .npy, .npz (its one array, or the array ``X``) or .csv (optional header) file,
    as a 2-D float array. Never unpickles. Errors are ValueError/OSError with one line."""
    import numpy as np

    file = Path(path)
    suffix = file.suffix.lower()
    if not file.is_file():
        raise FileNotFoundError(f"--input: no file at {path}")
    try:
        if suffix == ".csv":
            with open(file) as fh:
                first = fh.readline()
            try:
                [float(tok) for tok in first.strip().split(",")]
                header = 0
            except ValueError:
                header = 1
            X = np.loadtxt(file, delimiter=",", skiprows=header, ndmin=2, dtype=np.float64)
        else:
            data = np.load(file, allow_pickle=False)
            if isinstance(data, np.lib.npyio.NpzFile):
                with data:
                    names = list(data.files)
                    if len(names) != 1 and "X" not in names:
                        raise ValueError(f"--input: {path} holds arrays {names}; name the samples 'X' or store one array")
                    X = data[names[0] if len(names) == 1 else "X"]
            else:
                X = data
    except ValueError as exc:
        message = str(exc) if str(exc).startswith("--input") else f"--input: {path} is not a readable {suffix} file of numbers ({exc})"
        raise ValueError(message.splitlines()[0]) from None
    if X.dtype.kind not in "biuf":
        raise ValueError(f"--input: {path} holds {X.dtype} data, not numbers")
    return X.reshape(1, -1) if X.ndim == 1 else X


def _write_predictions(values: Any, output: str | None, proba: bool) -> None:
    import io

    import numpy as np

    from ._io import atomic_write

    fmt = "%.6g" if proba or values.dtype.kind == "f" else "%d"
    if output is None:
        np.savetxt(sys.stdout, values, fmt=fmt, delimiter=",")
        return
    if output.lower().endswith(".npy"):
        atomic_write(output, lambda fh: np.save(fh, values))
        return
    text = io.StringIO()
    np.savetxt(text, values, fmt=fmt, delimiter=",")
    atomic_write(output, lambda fh: fh.write(text.getvalue().encode()))


def cmd_predict(args: argparse.Namespace) -> int:
    from .datasets import load_dataset
    from .network import load

    if args.input is None:
        if args.proba or args.output:
            raise CLIError(f"--{'proba' if args.proba else 'output'} needs --input FILE")
        dataset = args.dataset or "mnist"
        if args.data_dir and dataset != "mnist":
            raise CLIError(f"--data-dir applies to --dataset mnist only ({dataset} ships with scikit-learn)")
        model = load(args.model, backend=args.backend)  # a file of NaN or infinite weights is refused
        X_test, y_test = load_dataset(dataset, args.data_dir, split="test")  # the test files only
        result = model.evaluate(X_test, y_test)
        print(f"accuracy {result['accuracy']:.4f} (loss {result['loss']:.4f}) on {X_test.shape[0]} {dataset} test samples")
        return 0
    if args.dataset or args.data_dir:
        raise CLIError("--input and --dataset/--data-dir exclude each other: predict on a file, or evaluate on a dataset")
    if not args.input.lower().endswith(INPUT_SUFFIXES):
        raise CLIError(f"--input: unsupported file type {Path(args.input).suffix or '(none)'}; use {', '.join(INPUT_SUFFIXES)}")
    if args.output:
        if not args.output.lower().endswith(OUTPUT_SUFFIXES):
            raise CLIError(f"--output: unsupported file type {Path(args.output).suffix or '(none)'}; use {', '.join(OUTPUT_SUFFIXES)}")
        _check_writable("--output", args.output)
    model = load(args.model, backend=args.backend)
    if args.proba and not model.loss.is_classifier:
        raise CLIError(f"--proba needs a classifier; {args.model} was trained with the {model.loss.name!r} loss")
    X = read_samples(args.input)
    if X.shape[1] != model.n_features:
        raise ValueError(f"--input has {X.shape[1]} features per row but {args.model} expects {model.n_features}")
    out = model.predict_proba(X) if args.proba else model.predict(X)
    _write_predictions(model.backend.to_numpy(out), args.output, args.proba)
    if args.output:
        print(f"wrote {'probabilities' if args.proba else 'predictions'} for {X.shape[0]} samples to {args.output}", file=sys.stderr)
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

    if args.model:
        from .network import load

        print(load(args.model, backend="numpy").summary())
        return 0
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


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """Warnings (a backend fallback, say) as one ``xpnet: warning:`` line, without a source path."""
    saved = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"xpnet: warning: {message}", file=sys.stderr)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = saved


class _CtrlCRecord:
    """Whether Ctrl-C (SIGINT) arrived during this ``main()``, beside the KeyboardInterrupt it raises.

    Python raises that exception wherever the program happens to be, and some places lose it: NumPy's
    extension, interrupted while it imports ``datetime``, raises an ImportError instead, and one raised
    in a weak-reference callback (the import system's module locks) is printed as "Exception ignored"
    and dropped. The record lets ``main()`` report such an error as the interruption it was, and the
    training loop stop at the next epoch after a dropped one; the dropped exception's traceback is
    not printed. Where SIGINT has a handler other than Python's default (ignored, or a caller's own),
    or off the main thread, nothing is installed and ``seen`` stays False."""

    def __init__(self) -> None:
        self.seen = False

    def _handle(self, signum, frame) -> None:
        self.seen = True
        signal.default_int_handler(signum, frame)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        self.seen = False
        if (threading.current_thread() is not threading.main_thread()
                or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
            yield
            return
        unraisable_hook = sys.unraisablehook

        def hide_a_dropped_ctrl_c(unraisable) -> None:
            if not (self.seen and isinstance(unraisable.exc_value, KeyboardInterrupt)):
                unraisable_hook(unraisable)

        signal.signal(signal.SIGINT, self._handle)
        sys.unraisablehook = hide_a_dropped_ctrl_c
        try:
            yield
        finally:
            sys.unraisablehook = unraisable_hook
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def raise_if_seen(self) -> None:
        """Raise the KeyboardInterrupt of a Ctrl-C whose own exception was lost."""
        if self.seen:
            raise KeyboardInterrupt


_ctrl_c = _CtrlCRecord()


def main(argv: Sequence[str] | None = None) -> int:
    with _ctrl_c.installed():
        try:
            with _one_line_warnings():
                code = _run(argv)
        except KeyboardInterrupt:  # Ctrl-C before or after the training loop's own handler
            code = None
        except Exception:
            if not _ctrl_c.seen:
                raise
            code = None  # an error that Ctrl-C caused (see _CtrlCRecord)
    if code is None or (_ctrl_c.seen and code != EXIT_INTERRUPTED):  # the latter: its exception was lost
        print("xpnet: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


def _run(argv: Sequence[str] | None) -> int:
    from .backend import BackendUnavailableError
    from .datasets import DatasetError

    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except CLIError as exc:
        print(f"xpnet: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (DatasetError, FileNotFoundError, BackendUnavailableError, ValueError, TypeError, ImportError, OSError,
            MemoryError) as exc:
        if _ctrl_c.seen:  # caused by Ctrl-C: main() reports the interruption
            raise
        message = str(exc).splitlines()[0] if not isinstance(exc, DatasetError) else str(exc)
        print(f"xpnet: error: {message}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
