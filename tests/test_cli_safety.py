"""The xpnet command never loses work, never wastes a run, never prints a traceback.

Each case runs the real command in a subprocess and checks the exit code, that stderr is
one line without a traceback, and that files which existed before are byte-for-byte intact.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet import Dense, Sequential
from xpnet.checkpoint import checkpoint_epoch

IRIS = ["train", "--dataset", "iris", "--hidden", "8", "--backend", "numpy", "--quiet"]


def xpnet_cmd(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "xpnet.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def one_line_error(proc, code, pattern):
    import re

    assert proc.returncode == code, (proc.returncode, proc.stderr)
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr and err.count("\n") == 0, proc.stderr
    assert err.startswith("xpnet: error:") and re.search(pattern, err), err


def snapshot(*paths):
    return {p: p.read_bytes() for p in paths}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoint of 4 epochs and a saved model, made once."""
    root = tmp_path_factory.mktemp("trained")
    proc = xpnet_cmd(*IRIS, "--epochs", "4", "--checkpoint-dir", root / "ck", "--save", root / "model.npz")
    assert proc.returncode == 0, proc.stderr
    return root


def test_a_new_run_never_overwrites_a_checkpoint(trained, tmp_path):
    ck = trained / "ck" / "checkpoint.npz"
    before = snapshot(ck)
    one_line_error(xpnet_cmd(*IRIS, "--epochs", "1", "--checkpoint-dir", trained / "ck"), 2,
                   r"already holds a checkpoint .*after 4 epochs.*--resume.*--overwrite")
    one_line_error(xpnet_cmd(*IRIS, "--epochs", "2", "--checkpoint-dir", trained / "ck", "--resume"), 2,
                   r"has 4 epochs already.*--epochs greater than 4")
    one_line_error(xpnet_cmd(*IRIS, "--epochs", "5", "--checkpoint-dir", trained / "ck", "--resume", "--overwrite"), 2,
                   "contradict")
    assert snapshot(ck) == before
    # --overwrite replaces it on purpose.
    copy = tmp_path / "ck"
    copy.mkdir()
    (copy / "checkpoint.npz").write_bytes(ck.read_bytes())
    proc = xpnet_cmd(*IRIS, "--epochs", "1", "--checkpoint-dir", copy, "--overwrite")
    assert proc.returncode == 0 and "after 1 epoch (" in proc.stdout, proc.stdout  # not "1 epochs"
    assert checkpoint_epoch(copy / "checkpoint.npz") == 1


def test_output_paths_and_dependencies_are_checked_before_training(trained, tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("keep me")
    cases = [
        (["--save", tmp_path], "--save: .* is a directory"),
        (["--json", tmp_path], "--json: .* is a directory"),
        (["--checkpoint-dir", a_file], "--checkpoint-dir: .* is a file"),
        (["--save", a_file / "model.npz"], "is not a directory"),
        (["--plot", tmp_path / "curves.txt"], r"--plot: cannot tell the image format .*\.png"),
        (["--plot", tmp_path / "curves"], "--plot: cannot tell the image format"),
    ]
    if Path("/proc/self").is_dir():  # a folder that os.access calls writable (for root) but that takes no new file
        cases.append((["--json", "/proc/metrics.json"], r"--json: cannot write /proc/metrics\.json: "
                                                                  r"(/proc refuses new files|no write permission in /proc)"))
    for extra, pattern in cases:
        started = time.perf_counter()
        proc = xpnet_cmd(*IRIS, "--epochs", "100000", *extra)  # would train for minutes if not refused first
        one_line_error(proc, 2, pattern)
        assert time.perf_counter() - started < 60
    assert a_file.read_text() == "keep me"


def test_plot_without_matplotlib_is_refused_before_training(tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None; from xpnet.cli import main; "
            f"sys.exit(main({[*IRIS, '--epochs', '100000', '--plot', str(tmp_path / 'c.png')]!r}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    one_line_error(proc, 2, "--plot needs matplotlib")


def test_plot_format_follows_the_suffix(tmp_path):
    assert xpnet_cmd(*IRIS, "--epochs", "2", "--plot", tmp_path / "c.svg", "--json", tmp_path / "m.json").returncode == 0
    assert b"<svg" in (tmp_path / "c.svg").read_bytes()[:500]
    assert json.loads((tmp_path / "m.json").read_text())["epochs"] == 2


@pytest.mark.parametrize("args, pattern", [
    (["--seed", "-1"], r"--seed: expected an integer >= 0"),
    (["--hidden", ""], r"--hidden: .*empty width"),
    (["--hidden", "256,,128"], r"--hidden: .*empty width"),
    (["--data-dir", "somewhere"], r"--data-dir applies to --dataset mnist only"),
])
def test_bad_train_arguments(args, pattern):
    one_line_error(xpnet_cmd(*IRIS, *args), 2, pattern)


def test_bad_model_and_checkpoint_files_are_one_line(trained, tmp_path):
    raw = (trained / "model.npz").read_bytes()
    truncated, empty, garbage = tmp_path / "t.npz", tmp_path / "e.npz", tmp_path / "g.npz"
    truncated.write_bytes(raw[: len(raw) // 2])
    empty.write_bytes(b"")
    garbage.write_bytes(b"\x80\x04not a model at all" * 20)
    for path, pattern in ((truncated, "not an xpnet model file|truncated"), (empty, "is empty"), (garbage, "not an xpnet model file")):
        for command in (["predict", path, "--dataset", "iris"], ["info", path]):
            one_line_error(xpnet_cmd(*command), 1, pattern)
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "checkpoint.npz").write_bytes((trained / "ck" / "checkpoint.npz").read_bytes()[:500])
    before = snapshot(ck / "checkpoint.npz")
    one_line_error(xpnet_cmd(*IRIS, "--epochs", "9", "--checkpoint-dir", ck, "--resume"), 1, "not an xpnet checkpoint file")
    assert snapshot(ck / "checkpoint.npz") == before


def test_a_model_with_non_finite_weights_is_refused(tmp_path):
    Sequential([Dense(2, 2)], seed=0).save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as data:  # set_parameters refuses NaN: write the file's array by hand
        arrays = {**data, "param_0": np.full((2, 2), np.nan, dtype=np.float32)}
    np.savez(tmp_path / "nan.npz", **arrays)
    one_line_error(xpnet_cmd("predict", tmp_path / "nan.npz", "--dataset", "iris"), 1,
                   r"nan.npz holds parameters this network cannot take \(parameter 0 contains NaN or infinity\)")


def test_predict_on_the_users_own_data(trained, tmp_path):
    model = xpnet.load(trained / "model.npz")
    X = np.array([[5.1, 3.5], [6.4, 2.9], [4.9, 3.0]])
    np.save(tmp_path / "x.npy", X)
    np.savez(tmp_path / "x.npz", X=X, other=np.zeros(2))
    (tmp_path / "x.csv").write_text("sepal length,sepal width\n" + "\n".join(f"{a},{b}" for a, b in X) + "\n")
    expected = model.predict(X)
    for source in ("x.npy", "x.npz", "x.csv"):
        proc = xpnet_cmd("predict", trained / "model.npz", "--input", tmp_path / source)
        assert proc.returncode == 0, proc.stderr
        assert [int(v) for v in proc.stdout.split()] == expected.tolist()
    proc = xpnet_cmd("predict", trained / "model.npz", "--input", tmp_path / "x.csv", "--proba", "--output", tmp_path / "p.npy")
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), model.predict_proba(X), rtol=1e-6)
    one_line_error(xpnet_cmd("predict", trained / "model.npz", "--input", tmp_path / "x.npy", "--output", tmp_path / "p.json"),
                   2, "--output: unsupported file type .json")
    np.save(tmp_path / "wide.npy", np.zeros((2, 5)))
    one_line_error(xpnet_cmd("predict", trained / "model.npz", "--input", tmp_path / "wide.npy"), 1,
                   "5 features per row but .* expects 2")
    one_line_error(xpnet_cmd("predict", trained / "model.npz", "--proba"), 2, "--proba needs --input")


def test_predict_reads_only_the_mnist_test_files(tmp_path):
    mnist = Path(__file__).resolve().parents[1] / "bench" / "data" / "mnist"
    only_test = tmp_path / "mnist"
    only_test.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (only_test / name).write_bytes((mnist / name).read_bytes())
    (only_test / "train-images-idx3-ubyte.gz").write_bytes(b"corrupt")  # must not be read
    model = Sequential([Dense(784, 10)], seed=0)
    model.save(tmp_path / "m.npz")
    proc = xpnet_cmd("predict", tmp_path / "m.npz", "--dataset", "mnist", "--data-dir", only_test)
    assert proc.returncode == 0, proc.stderr
    assert "on 10000 mnist test samples" in proc.stdout


def test_info_model_and_summary(trained):
    proc = xpnet_cmd("info", trained / "model.npz")
    assert proc.returncode == 0, proc.stderr
    assert "Dense(2 -> 8)" in proc.stdout and "total parameters: 42" in proc.stdout
    summary = xpnet.load(trained / "model.npz").summary()
    assert "backend: numpy" in summary and "float32" in summary


def test_help_shows_every_default():
    proc = xpnet_cmd("train", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for expected in ("(default: mnist)", "(default: [256, 128])", "(default: sigmoid)", "mnist 10, digits 30, iris 100",
                     "mnist 128, digits 32, iris 16", "adam 1e-3, sgd 0.1", "(default: 0)", "MNIST only"):
        assert expected in text, expected
    assert "(default: None)" not in text  # where None means "it depends", the help says on what
    assert "iris 100) (default" not in text and "then a download (default" not in text  # said once each


def test_the_defaults_learn_iris():
    proc = xpnet_cmd("train", "--dataset", "iris", "--backend", "numpy", "--quiet")
    assert proc.returncode == 0, proc.stderr
    accuracy = float(proc.stdout.split("test accuracy ")[1].split(",")[0])
    assert accuracy >= 0.95 and "after 100 epochs" in proc.stdout


def test_fallback_warning_is_one_xpnet_line():
    from xpnet.backend import cupy_usable

    if cupy_usable()[0]:
        pytest.skip("needs a machine without a usable GPU (the cupy fallback)")
    proc = xpnet_cmd(*IRIS, "--epochs", "1", "--backend", "cupy")
    assert proc.returncode == 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xpnet: warning: backend 'cupy' was requested")
    assert ".py" not in lines[0]


@pytest.fixture
def python_sigint_handler():
    """SIGINT handled as a plain Python program handles it, whatever the test runner installed."""
    saved = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, saved)


def _swallows_ctrl_c(args):
    """What NumPy's extension did when Ctrl-C came while it imported ``datetime`` (a CI run): the
    KeyboardInterrupt turned into an ImportError."""
    try:
        signal.raise_signal(signal.SIGINT)
        time.sleep(5)  # the handler runs, and raises, well before this ends
    except KeyboardInterrupt:
        raise ImportError('PyCapsule_Import could not import module "datetime"') from None
    raise AssertionError("SIGINT raised no KeyboardInterrupt")


def test_an_error_that_ctrl_c_caused_is_reported_as_the_interruption(monkeypatch, capsys, python_sigint_handler):
    from xpnet import cli

    monkeypatch.setitem(cli.COMMANDS, "info", _swallows_ctrl_c)
    assert cli.main(["info", "model.npz"]) == cli.EXIT_INTERRUPTED
    assert capsys.readouterr().err == "xpnet: interrupted\n"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # main() puts the handler back

    def import_fails(args):  # the same error without a Ctrl-C stays an error
        raise ImportError("no module named foo")

    monkeypatch.setitem(cli.COMMANDS, "info", import_fails)
    assert cli.main(["info", "model.npz"]) == cli.EXIT_FAILURE
    assert capsys.readouterr().err == "xpnet: error: no module named foo\n"

    def fails_outside_the_handled_errors(args):
        raise RuntimeError("a bug")

    monkeypatch.setitem(cli.COMMANDS, "info", fails_outside_the_handled_errors)
    with pytest.raises(RuntimeError, match="a bug"):  # a bug keeps its traceback
        cli.main(["info", "model.npz"])


def _drop_a_ctrl_c():
    """Ctrl-C while a weak-reference callback runs (as the import system's module locks have): Python
    prints the KeyboardInterrupt as "Exception ignored" and goes on."""
    class Referent:
        pass

    referent = Referent()
    ref = weakref.ref(referent, lambda _: signal.raise_signal(signal.SIGINT))
    del referent
    assert ref() is None


def test_a_ctrl_c_whose_exception_was_dropped_still_interrupts(monkeypatch, capsys, python_sigint_handler):
    from xpnet import cli

    def finishes(args):
        _drop_a_ctrl_c()
        return 0

    monkeypatch.setitem(cli.COMMANDS, "info", finishes)
    assert cli.main(["info", "model.npz"]) == cli.EXIT_INTERRUPTED
    assert capsys.readouterr().err == "xpnet: interrupted\n"  # without the "Exception ignored" traceback

    fit, epochs = Sequential.fit, []

    def fit_dropping_a_ctrl_c(self, *args, **kwargs):
        if not epochs:
            _drop_a_ctrl_c()
        epochs.append(1)
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(Sequential, "fit", fit_dropping_a_ctrl_c)
    assert cli.main([*IRIS, "--epochs", "50"]) == cli.EXIT_INTERRUPTED
    assert len(epochs) == 1  # the loop stopped at the next epoch
    assert capsys.readouterr().err == ("xpnet: interrupted during epoch 2; nothing saved (pass --checkpoint-dir to "
                                       "keep progress)\n")


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="watches the child's mappings in /proc (Linux)")
def test_ctrl_c_at_start_up_is_one_line_and_130():
    """Ctrl-C while xpnet is still importing its libraries (the first moments of a run, where a
    50-line KeyboardInterrupt traceback used to appear). The signal is sent as soon as the child
    starts mapping NumPy, which xpnet.cli imports only inside main(). A signal during Python's
    own start-up, before any xpnet code runs, is outside what a Python program can catch."""
    proc = subprocess.Popen([sys.executable, "-m", "xpnet.cli", *IRIS, "--epochs", "100000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        try:
            if "numpy" in maps.read_text():
                break
        except OSError:
            pass
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    # -SIGINT: under `python -m`, CPython 3.11 ends the process by the signal, after xpnet's line, where
    # the KeyboardInterrupt passed through an eval() (namedtuple builds its constructor with one), even
    # though xpnet caught it; a shell reports that as 130 too
    assert proc.returncode in (130, -signal.SIGINT), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "interrupted" in err
