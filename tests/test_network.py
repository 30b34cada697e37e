"""Sequential: training, prediction, persistence, on every backend."""

import re

import numpy as np
import pytest

import xpnet
from xpnet import SGD, Adam, Dense, ReLU, Sequential, Sigmoid, Tanh


def blobs(rng, n=300, d=6, k=3):
    centers = rng.normal(scale=4.0, size=(k, d))
    y = rng.integers(0, k, size=n)
    return centers[y] + rng.normal(size=(n, d)), y


def test_fit_learns_and_history_has_figures(backend, rng):
    X, y = blobs(rng)
    model = Sequential([Dense(6, 16), Sigmoid(), Dense(16, 3)], backend=backend, seed=0)
    hist = model.fit(X, y, epochs=8, batch_size=32, optimizer=Adam(0.01), validation_data=(X, y))
    assert set(hist) == {"loss", "accuracy", "seconds", "val_loss", "val_accuracy", "lr"}
    assert hist.lr == [0.01] * len(hist.loss) and hist.stop_message is None
    assert len(hist.loss) == 8 and hist.loss[-1] < hist.loss[0]
    assert hist.accuracy[-1] > 0.9 and hist.val_accuracy[-1] > 0.9
    pred = model.predict(X)
    assert backend.owns(pred) and pred.shape == (300,)
    proba = model.predict_proba(X)
    assert proba.shape == (300, 3)
    np.testing.assert_allclose(backend.to_numpy(proba).sum(axis=1), 1.0, rtol=1e-5)
    result = model.evaluate(X, y)
    assert set(result) == {"loss", "accuracy"} and result["accuracy"] > 0.9


def test_array_api_strict_runs_the_whole_fit(rng):
    """The generic path uses only the standard: every op of fit/predict/evaluate on array_api_strict."""
    import array_api_strict as xs

    X, y = blobs(rng)
    for layers, loss, yy in [
        ([Dense(6, 8), ReLU(), Dense(8, 8), Tanh(), Dense(8, 3)], "softmax_cross_entropy", y),
        ([Dense(6, 8), Sigmoid(), Dense(8, 1)], "binary_cross_entropy", (y == 0).astype(float)),
        ([Dense(6, 4), Tanh(), Dense(4, 2)], "mse", np.stack([X[:, 0], X[:, 1]], axis=1)),
    ]:
        model = Sequential(layers, loss=loss, backend="array_api_strict", seed=1)
        assert not model.ops.fused
        for opt in (Adam(0.01), SGD(0.01, momentum=0.9, nesterov=True)):
            hist = model.fit(xs.asarray(X), xs.asarray(yy), epochs=3, batch_size=64, optimizer=opt, validation_data=(X, yy))
            assert np.all(np.isfinite(hist.loss))
        assert type(model.predict(X)).__module__.startswith("array_api_strict")
        model.evaluate(X, yy)


def test_fit_three_times_equals_fit_three_epochs(rng):
    X, y = blobs(rng)
    a = Sequential([Dense(6, 10), Sigmoid(), Dense(10, 3)], seed=5)
    b = Sequential([Dense(6, 10), Sigmoid(), Dense(10, 3)], seed=5)
    opt_a, opt_b = Adam(0.01), Adam(0.01)
    a.fit(X, y, epochs=3, batch_size=25, optimizer=opt_a)
    for _ in range(3):
        b.fit(X, y, epochs=1, batch_size=25, optimizer=opt_b)
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(pa, pb)
    assert opt_a.iterations == opt_b.iterations == 36


def test_zero_epochs_change_nothing_and_the_history_reads_empty(rng):
    """fit(epochs=0) trains nothing; history.loss used to raise AttributeError there."""
    X, y = blobs(rng)
    model = Sequential([Dense(6, 4), Sigmoid(), Dense(4, 3)], seed=0)
    before = [np.array(p) for p in model.parameters()]
    history = model.fit(X, y, epochs=0)
    assert history.loss == [] and history.seconds == [] and history.lr == [] and model.epochs_trained == 0
    assert all(np.array_equal(a, b) for a, b in zip(before, model.parameters()))


def test_dtype_takes_numpys_float_types_as_well_as_names():
    """np.float32 was refused by Sequential ("dtype must be 'float32' or 'float64'"), and so by every
    estimator given dtype=np.float32; a linear model with dtype=None failed after checking X."""
    for given, name in [(np.float32, "float32"), ("f8", "float64"), (np.dtype("float32"), "float32")]:
        assert Sequential([Dense(2, 2)], dtype=given).dtype_name == name
    for bad in ["float16", None, int, True]:
        with pytest.raises(ValueError, match=r"dtype must be 'float32' or 'float64' \(or NumPy's"):
            Sequential([Dense(2, 2)], dtype=bad)
    X, y = np.random.default_rng(0).normal(size=(20, 2)), np.arange(20) % 2
    def weights_dtype(est):
        return np.asarray(est.coef_ if hasattr(est, "coef_") else est.coefs_[0]).dtype

    for est in (xpnet.MLPClassifier(max_iter=2), xpnet.LogisticRegression(), xpnet.Perceptron(), xpnet.LinearRegression()):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert weights_dtype(est.set_params(dtype=np.float32).fit(X, y)) == np.float32
            assert weights_dtype(est.set_params(dtype=None).fit(X.astype(np.float32), y)) == np.float32
            assert weights_dtype(est.set_params(dtype=None).fit(X, y)) == np.float64

class Recorder(xpnet.Callback):
    def __init__(self):
        self.events = []

    def on_epoch_begin(self, epoch, n_batches):
        self.events.append(("begin", epoch, n_batches))

    def on_batch_end(self, batch, logs):
        self.events.append(("batch", batch, logs["seen"], float(logs["loss_sum"])))

    def on_epoch_end(self, epoch, logs):
        self.events.append(("end", epoch, logs["loss"]))


def test_callbacks_see_every_epoch_and_batch_across_fits(rng):
    X, y = blobs(rng, n=100)
    model = Sequential([Dense(6, 8), Sigmoid(), Dense(8, 3)], seed=0)
    recorder, opt = Recorder(), Adam(0.01)
    first = model.fit(X, y, epochs=2, batch_size=32, optimizer=opt, callbacks=[recorder])
    second = model.fit(X, y, epochs=1, batch_size=32, optimizer=opt, callbacks=(recorder,))
    kinds = [e[0] for e in recorder.events]
    assert kinds == (["begin"] + ["batch"] * 4 + ["end"]) * 3
    assert [e[1] for e in recorder.events if e[0] != "batch"] == [0, 0, 1, 1, 2, 2]  # the model's epochs
    assert [e[2] for e in recorder.events if e[0] == "begin"] == [4, 4, 4]
    batches = [e for e in recorder.events if e[0] == "batch"]
    assert [e[2] for e in batches[:4]] == [32, 64, 96, 100]
    ends = [e[2] for e in recorder.events if e[0] == "end"]
    assert ends == first.loss + second.loss
    assert batches[3][3] / 100 == pytest.approx(ends[0], rel=1e-6)  # the epoch's loss is the summed batch losses / n


def test_which_callbacks_watch_batches():
    """A fit asks a captured step for an epoch's batches in one call only where no callback has an
    on_batch_end of its own (a duck-typed one may, so it counts as watching)."""
    from xpnet.callbacks import Callback, EpochPrinter, ProgressBar, watches_batches

    class EpochsOnly(Callback):
        def on_epoch_end(self, epoch, logs):
            pass

    class FromAMixin:
        def on_batch_end(self, batch, logs):
            pass

    class Mixed(FromAMixin, Callback):
        pass

    class DuckTyped:
        on_epoch_begin = on_batch_end = on_epoch_end = staticmethod(lambda *args: None)

    patched = EpochsOnly()
    patched.on_batch_end = lambda batch, logs: None
    assert not any(map(watches_batches, [Callback(), EpochsOnly(), EpochPrinter()]))
    assert all(map(watches_batches, [ProgressBar(), Recorder(), Mixed(), DuckTyped(), patched]))


class _StepsRecorder:
    """Stands in for kernels.cupy_graph.CapturedTraining: records what an epoch asks of it."""

    loss_sum = 0.0

    def __init__(self):
        self.calls = []

    def begin_epoch(self, order):
        self.calls.append(("begin",))

    def step(self, rows):
        self.calls.append(("step", rows))

    def steps(self, rows, count):
        self.calls.append(("steps", rows, count))

    def end_epoch(self):
        return {"loss_sum": 1.0, "correct": 0, "first_bad_batch": -1, "bad_value": 0.0}


@pytest.mark.parametrize("n,expected", [(100, [("steps", 32, 3), ("step", 4)]), (96, [("steps", 32, 3)]),
                                        (20, [("steps", 32, 0), ("step", 20)])])
def test_a_captured_epoch_asks_for_its_full_batches_in_one_call_where_nothing_watches_them(n, expected):
    from xpnet.callbacks import EpochPrinter
    from xpnet.training import captured_epoch

    model = Sequential([Dense(6, 8), Sigmoid(), Dense(8, 3)], seed=0)
    unwatched, watched = _StepsRecorder(), _StepsRecorder()
    captured_epoch(model, unwatched, n, 32, False, [EpochPrinter()])
    assert unwatched.calls == [("begin",), *expected]
    recorder = Recorder()
    captured_epoch(model, watched, n, 32, False, [EpochPrinter(), recorder])
    batches = -(-n // 32)
    assert watched.calls == [("begin",), *[("step", min(32, n - 32 * b)) for b in range(batches)]]
    assert [e[2] for e in recorder.events if e[0] == "batch"] == [min(n, 32 * (b + 1)) for b in range(batches)]


@pytest.mark.parametrize("verbose", [1, 2])
def test_verbose_prints_an_epoch_line_naming_the_validation_data(verbose, rng, capsys):
    """verbose=1 prints each epoch's line, verbose=2 a tqdm bar first whose samples/s is read
    from the bar's elapsed time (tqdm's smoothed rate was unset on fast epochs, so it showed 0).
    validation_data is called "val" (it was "test", the CLI's name for its test set)."""
    X, y = blobs(rng, n=800)
    model = Sequential([Dense(6, 8), Sigmoid(), Dense(8, 3)], seed=0)
    model.fit(X, y, epochs=2, batch_size=10, verbose=verbose, validation_data=(X[:50], y[:50]))  # 80 batches an epoch
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 2 and all(re.fullmatch(rf"epoch {i + 1}: loss [\d.]+ acc [\d.]+ \| val loss [\d.]+ "
                                                rf"val acc [\d.]+ \| [\d.]+ s", line) for i, line in enumerate(lines))
    rates = [int(r) for r in re.findall(r"samples_s=(\d+)", captured.err)]
    if verbose == 1:
        assert captured.err == ""
    else:
        assert len(rates) == 8 and all(r > 0 for r in rates), captured.err[-500:]  # every 20 batches


def test_a_callback_without_the_hooks_is_refused_before_training(rng):
    X, y = blobs(rng, n=40)
    model = Sequential([Dense(6, 4), Sigmoid(), Dense(4, 3)], seed=0)
    before = [np.array(p) for p in model.parameters()]
    with pytest.raises(TypeError, match=r"callbacks\[1\] must be an xpnet Callback .* dict has no on_epoch_begin, "
                                        r"on_batch_end, on_epoch_end"):
        model.fit(X, y, epochs=1, callbacks=[Recorder(), {}])
    with pytest.raises(TypeError, match=r"a list of Callback objects, got Recorder \(put it in a list"):
        model.fit(X, y, epochs=1, callbacks=Recorder())
    assert model.epochs_trained == 0
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(before, model.parameters()))

    class DuckTyped:  # any object with the three hooks will do
        on_epoch_begin = on_batch_end = on_epoch_end = staticmethod(lambda *args: None)

    model.fit(X, y, epochs=1, callbacks=[DuckTyped()])
    assert model.epochs_trained == 1


def test_optimizer_refuses_other_model(rng):
    X, y = blobs(rng)
    opt = Adam()
    Sequential([Dense(6, 3)], seed=0).fit(X, y, epochs=1, optimizer=opt)
    with pytest.raises(ValueError, match="use a new optimizer"):
        Sequential([Dense(6, 4), ReLU(), Dense(4, 3)], seed=0).fit(X, y, epochs=1, optimizer=opt)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtypes_flow_through(dtype, rng):
    X, y = blobs(rng)
    model = Sequential([Dense(6, 5), Tanh(), Dense(5, 3)], dtype=dtype, seed=0)
    model.fit(X, y, epochs=1)
    assert all(p.dtype == np.dtype(dtype) for p in model.parameters())
    assert model.predict_proba(X).dtype == np.dtype(dtype)


def test_seed_makes_runs_reproducible(rng):
    X, y = blobs(rng)
    runs = []
    for _ in range(2):
        m = Sequential([Dense(6, 5), ReLU(), Dense(5, 3)], seed=42)
        runs.append(m.fit(X, y, epochs=2, batch_size=16).loss)
    assert runs[0] == runs[1]


def test_fused_and_reference_training_agree(rng):
    X, y = blobs(rng, n=500)
    losses = []
    for fused in (True, False):
        m = Sequential([Dense(6, 32), Sigmoid(), Dense(32, 16), Sigmoid(), Dense(16, 3)], seed=3, fused=fused)
        assert m.ops.fused is fused
        losses.append(m.fit(X, y, epochs=4, batch_size=32, optimizer=Adam(3e-3)).loss)
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)


def test_fused_switch_follows_environment(monkeypatch):
    monkeypatch.setenv("XPNET_FUSED", "0")
    assert not Sequential([Dense(2, 2)]).ops.fused
    monkeypatch.setenv("XPNET_FUSED", "1")
    assert Sequential([Dense(2, 2)]).ops.fused
    assert not Sequential([Dense(2, 2)], fused=False).ops.fused


def test_binary_targets_as_vector_or_column(rng):
    X = rng.normal(size=(50, 3))
    y = (X[:, 0] > 0).astype(int)
    for target in (y, y.reshape(-1, 1)):
        m = Sequential([Dense(3, 1)], loss="binary_cross_entropy", seed=0)
        m.fit(X, target, epochs=30, batch_size=10, optimizer=Adam(0.05))
        assert m.evaluate(X, target)["accuracy"] > 0.9
        assert m.predict(X).shape == (50,)


def test_one_hot_targets_accepted(rng):
    X, y = blobs(rng)
    onehot = np.eye(3)[y]
    m = Sequential([Dense(6, 3)], seed=0)
    la, _ = m.value_and_grad(X, y)
    lb, _ = m.value_and_grad(X, onehot)
    assert la == lb


def test_inputs_as_lists(rng):
    m = Sequential([Dense(2, 2)], seed=0)
    m.fit([[0.0, 1.0], [1.0, 0.0]], [1, 0], epochs=1)
    assert m.predict([[0.0, 1.0]]).shape == (1,)


def test_save_and_load_roundtrip(tmp_path, rng):
    X, y = blobs(rng)
    model = Sequential([Dense(6, 7), ReLU(), Dense(7, 3)], dtype="float64", seed=0, l2=0.01)
    model.fit(X, y, epochs=2)
    path = model.save(tmp_path / "model.npz")
    with np.load(path, allow_pickle=False) as data:
        assert "__config__" in data.files
    loaded = xpnet.load(path)
    assert loaded.dtype_name == "float64" and loaded.l2 == 0.01
    for a, b in zip(model.parameters(), loaded.parameters()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.predict_proba(X), loaded.predict_proba(X))
    strict = xpnet.load(path, backend="array_api_strict")
    np.testing.assert_allclose(strict.backend.to_numpy(strict.predict_proba(X)), model.predict_proba(X))


def test_save_is_atomic(tmp_path, rng, monkeypatch):
    model = Sequential([Dense(2, 2)], seed=0)
    path = model.save(tmp_path / "m.npz")
    before = path.read_bytes()

    def broken_savez(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    model.set_parameters([np.ones((2, 2)), np.ones(2)])
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


def test_saved_files_get_normal_permissions(tmp_path):
    import os
    import stat

    path = Sequential([Dense(2, 2)], seed=0).save(tmp_path / "m.npz")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file"):
        xpnet.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not an xpnet model file"):
        xpnet.load(tmp_path / "other.npz")
    model = Sequential([Dense(2, 3)], seed=0)
    model.save(tmp_path / "m.npz")
    with pytest.raises(ValueError, match="^backend must be one of") as info:  # the argument's fault, not the file's
        xpnet.load(tmp_path / "m.npz", backend="tensorflow")
    assert not isinstance(info.value, xpnet.ModelFileError)
    with pytest.raises(ValueError, match="^fused must be True, False or None") as info:
        xpnet.load(tmp_path / "m.npz", fused="no")
    assert not isinstance(info.value, xpnet.ModelFileError)
    with np.load(tmp_path / "m.npz") as data:  # a file whose weights are NaN
        arrays = dict(data)
    arrays["param_1"] = np.full(3, np.nan, dtype=np.float32)
    np.savez(tmp_path / "nan.npz", **arrays)
    with pytest.raises(xpnet.ModelFileError, match=r"nan.npz holds parameters this network cannot take \(parameter 1 contains NaN"):
        xpnet.load(tmp_path / "nan.npz")
    (tmp_path / "nan.npz").unlink()
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError, match=r"d is a directory; give the path of a file to write"):
        model.save(tmp_path / "d")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "m.npz", "other.npz"]  # no temporary file left


def test_a_damaged_checkpoint_leaves_model_and_optimizer_as_they_were(tmp_path, rng):
    """Every array is read before anything is restored: a checkpoint that lacks an optimizer
    array (it used to restore the parameters, then fail on the optimizer) or holds NaN weights
    raises ModelFileError, naming the file, and changes nothing."""
    from xpnet.checkpoint import load_checkpoint, save_checkpoint

    X, y = blobs(rng)
    model = Sequential([Dense(6, 5), ReLU(), Dense(5, 3)], seed=0)
    optimizer = Adam(lr=0.01)
    model.fit(X, y, epochs=1, optimizer=optimizer)
    path = save_checkpoint(tmp_path / "ck.npz", model, optimizer, {"loss": [1.0]})
    with np.load(path) as data:
        arrays = dict(data)
    lacking = {k: v for k, v in arrays.items() if k != "opt_v_3"}
    nan = {**arrays, "param_2": np.full_like(arrays["param_2"], np.nan)}
    fresh, fresh_opt = Sequential([Dense(6, 5), ReLU(), Dense(5, 3)], seed=1), Adam(lr=0.01)
    before = [p.copy() for p in fresh.parameters()]
    for name, content, message in [("lacking.npz", lacking, r"is truncated or corrupt \(KeyError"),
                                   ("nan.npz", nan, r"holds parameters this network cannot take \(parameter 2 contains NaN")]:
        np.savez(tmp_path / name, **content)
        with pytest.raises(xpnet.ModelFileError, match=f"{name} {message}"):
            load_checkpoint(tmp_path / name, fresh, fresh_opt)
        for a, b in zip(fresh.parameters(), before):
            np.testing.assert_array_equal(a, b)
        assert fresh_opt.state == {} and fresh_opt.iterations == 0
    load_checkpoint(path, fresh, fresh_opt)  # the whole file restores
    for a, b in zip(fresh.parameters(), model.parameters()):
        np.testing.assert_array_equal(a, b)


def test_set_parameters_refuses_what_the_model_cannot_hold():
    """NaN, infinity, values that overflow the model's float32, and non-numbers are refused by
    name (a NaN used to be stored, and 1e300 became inf with only NumPy's RuntimeWarning), and
    the parameters stay as they were."""
    model = Sequential([Dense(2, 3)], seed=0)
    before = [p.copy() for p in model.parameters()]
    nan_bias = [np.ones((2, 3)), np.array([0.0, np.nan, 0.0])]
    with pytest.raises(ValueError, match="^parameter 1 contains NaN or infinity"):
        model.set_parameters(nan_bias)
    with pytest.raises(ValueError, match=r"^parameter 0 holds values too large for float32 .* this model is float32"):
        model.set_parameters([np.full((2, 3), 1e300), np.zeros(3)])
    with pytest.raises(TypeError, match="^parameter 0 must hold real numbers, got dtype <U1"):
        model.set_parameters([np.full((2, 3), "a"), np.zeros(3)])
    for a, b in zip(model.parameters(), before):
        np.testing.assert_array_equal(a, b)
    model.set_parameters([np.ones((2, 3), dtype=np.int64), np.zeros(3)])  # integers convert
    assert model.parameters()[0].dtype == np.float32 and model.parameters()[0].sum() == 6


def test_regression_network(rng):
    X = rng.uniform(-1, 1, size=(400, 1))
    y = np.sin(3 * X[:, 0])
    m = Sequential([Dense(1, 32), Tanh(), Dense(32, 1)], loss="mse", seed=0)
    m.fit(X, y, epochs=200, batch_size=50, optimizer=Adam(0.01))
    assert m.evaluate(X, y)["loss"] < 0.01
    with pytest.raises(TypeError, match="predict_proba needs a classification loss"):
        m.predict_proba(X)


def test_repr_mentions_layers():
    assert "Dense(n_in=3" in repr(Sequential([Dense(3, 2), Sigmoid(), Dense(2, 2)]))


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_device_out_of_memory_names_batch_size_and_need(layout, rng, monkeypatch):
    """Simulated: the backend says the error is its out-of-memory error (as CuPy's would be). With
    sparse X (streamed), the message used to fail on len(X) with a TypeError that hid the OOM."""
    from xpnet.network import DeviceMemoryError

    class FakeOOM(Exception):
        pass

    model = Sequential([Dense(6, 32), Sigmoid(), Dense(32, 3)], seed=0, compiled=False)  # the eager step fails
    monkeypatch.setattr(type(model.backend), "is_out_of_memory", lambda self, exc: isinstance(exc, FakeOOM))

    def boom(*args, **kwargs):
        raise FakeOOM("out of memory allocating 1,000,000 bytes")

    monkeypatch.setattr(model, "_loss_and_backward", boom)
    X, y = blobs(rng)
    if layout == "sparse":
        X = pytest.importorskip("scipy.sparse").csr_matrix(X)
    with pytest.raises(DeviceMemoryError, match=r"batch_size=64 on 300 samples; this fit needs about \d+ MiB"):
        model.fit(X, y, epochs=1, batch_size=64)


@pytest.mark.parametrize("make_optimizer", [lambda: Adam(0.01), lambda: SGD(0.05, momentum=0.9, nesterov=True)],
                         ids=["adam", "nesterov"])
def test_flat_buffer_training_equals_per_tensor_training(make_optimizer, rng):
    """Fused models keep parameters in one flat buffer and update them with one kernel call;
    in float64 they end where the per-tensor reference path ends."""
    X, y = blobs(rng)
    models = [Sequential([Dense(6, 9), Sigmoid(), Dense(9, 5), Tanh(), Dense(5, 3)], dtype="float64", seed=3,
                         fused=fused, l2=0.01) for fused in (True, False)]
    assert models[0]._flat is not None and models[1]._flat is None
    for model in models:
        model.fit(X, y, epochs=3, batch_size=32, optimizer=make_optimizer())
    for a, b in zip(*(m.parameters() for m in models)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_fused_models_update_all_parameters_in_one_call(rng, monkeypatch):
    X, y = blobs(rng, n=96)
    counts = {}
    for fused in (True, False):
        model = Sequential([Dense(6, 8), Sigmoid(), Dense(8, 8), Sigmoid(), Dense(8, 3)], seed=0, fused=fused,
                           compiled=False if fused else None)  # the eager step (the compiled one has no Python calls)
        calls = []
        original = model.ops.adam_update
        monkeypatch.setattr(model.ops, "adam_update", lambda *a, **k: (calls.append(a[0].shape), original(*a, **k))[1])
        model.fit(X, y, epochs=1, batch_size=32, optimizer=Adam())
        counts[fused] = calls
    n_params = sum(int(np.prod(p.shape)) for p in model.parameters())
    assert counts[True] == [(n_params,)] * 3  # one call per step over the flat buffer
    assert len(counts[False]) == 3 * 6  # one call per tensor per step


def test_flat_parameters_are_views_of_one_buffer():
    model = Sequential([Dense(3, 4), Sigmoid(), Dense(4, 2)], seed=0, fused=True)
    flat_params, _ = model._flat
    flat_params[...] = 7.0
    assert all(np.all(p == 7.0) for p in model.parameters())
    model.set_parameters([np.ones((3, 4)), np.zeros(4), np.ones((4, 2)), np.zeros(2)])
    assert flat_params.sum() == 12 + 8


def test_value_and_grad_results_survive_the_next_call(rng):
    model = Sequential([Dense(4, 3), Sigmoid(), Dense(3, 2)], seed=0, fused=True)
    X = rng.normal(size=(10, 4))
    _, first = model.value_and_grad(X, np.zeros(10, dtype=int))
    kept = [g.copy() for g in first]
    model.value_and_grad(-X, np.ones(10, dtype=int))
    for g, k in zip(first, kept):
        np.testing.assert_array_equal(g, k)


def test_graphs_option_is_checked_at_construction():
    with pytest.raises(ValueError, match="graphs must be True, False or None"):
        Sequential([Dense(2, 2)], graphs="yes")
    with pytest.raises(ValueError, match="graphs=True needs the CuPy backend"):
        Sequential([Dense(2, 2)], backend="numpy", graphs=True)
    model = Sequential([Dense(2, 2)], backend="numpy")
    assert model.uses_graphs(None, 32, 100)[0] is False


def test_ctrl_c_during_a_save_cancels_it_cleanly(tmp_path):
    # Ctrl-C in the middle of np.savez would surface as zipfile's "Can't close the ZIP file"
    # ValueError; atomic_write holds it until the temporary file is whole, then raises it
    import os
    import signal
    import time

    from xpnet._io import atomic_write

    handler = signal.getsignal(signal.SIGINT)
    path = atomic_write(tmp_path / "f.bin", lambda fh: fh.write(b"old"))
    finished = []

    def interrupted_write(fh):
        fh.write(b"new, ")
        os.kill(os.getpid(), signal.SIGINT)
        fh.write(b"and the rest")  # still runs: the interrupt is held
        finished.append(True)

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, interrupted_write)
    assert finished and path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    assert signal.getsignal(signal.SIGINT) is handler  # the program's handler is back
    with pytest.raises(KeyboardInterrupt):  # and Ctrl-C works as before after it
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)


def test_shuffle_may_be_a_callable_giving_each_epochs_order(rng):
    """shuffle=callable: each epoch's rows in the order it returns (here reversed), which equals
    training on reversed rows without shuffling; anything but a permutation's shape, or streamed X,
    is refused before training."""
    X, y = rng.normal(size=(50, 4)), rng.integers(0, 3, 50)
    make = lambda: Sequential([Dense(4, 5), Tanh(), Dense(5, 3)], seed=0, dtype="float64")  # noqa: E731
    asked, ordered, reversed_rows = [], make(), make()
    ordered.fit(X, y, epochs=2, batch_size=8, optimizer=SGD(0.1),
                shuffle=lambda n: (asked.append(n), np.arange(n)[::-1])[1])
    reversed_rows.fit(X[::-1], y[::-1], epochs=2, batch_size=8, optimizer=SGD(0.1), shuffle=False)
    assert asked == [50, 50]
    for a, b in zip(ordered.parameters(), reversed_rows.parameters()):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    before = [np.copy(p) for p in ordered.parameters()]
    with pytest.raises(ValueError, match=r"shuffle\(50\) must return a permutation of range\(50\)"):
        ordered.fit(X, y, epochs=1, shuffle=lambda n: np.arange(n - 1))
    with pytest.raises(ValueError, match="streamed X is shuffled by chunk"):
        ordered.fit(xpnet.sources.DataSource(X), y, epochs=1, shuffle=lambda n: np.arange(n))
    for a, b in zip(ordered.parameters(), before):
        np.testing.assert_array_equal(a, b)
