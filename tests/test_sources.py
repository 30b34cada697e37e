"""Streamed data sources: memmaps, Dask and zarr arrays read chunk by chunk (xpnet.sources)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from xpnet import SGD, Adam, Dense, Sequential, Sigmoid
from xpnet.sources import DataSource, as_source


def _data(n=1000, d=12, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)
    return X, y % classes


def _model(d=12, classes=3, dtype="float64"):
    return Sequential([Dense(d, 16), Sigmoid(), Dense(16, classes)], seed=3, dtype=dtype)


def _memmap(tmp_path, X, name="X.npy"):
    path = tmp_path / name
    np.save(path, X)
    return np.load(path, mmap_mode="r")


def _params(model):
    return [np.array(p, copy=True) for p in model.parameters()]


def test_memmap_fit_equals_in_memory_fit_without_shuffling(tmp_path):
    """Batches run across chunk boundaries (97-row chunks, batch 64), so the streamed fit sees
    exactly the in-memory batches and ends with the same parameters."""
    X, y = _data()
    Xm = _memmap(tmp_path, X)
    streamed, in_memory = _model(), _model()
    h1 = streamed.fit(DataSource(Xm, chunk_rows=97), y, epochs=3, batch_size=64, shuffle=False)
    h2 = in_memory.fit(X, y, epochs=3, batch_size=64, shuffle=False)
    for a, b in zip(_params(streamed), _params(in_memory)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h1.loss, h2.loss, rtol=1e-10)
    assert h1.accuracy == h2.accuracy


def test_shuffled_streaming_is_reproducible_and_trains(tmp_path):
    X, y = _data()
    Xm = _memmap(tmp_path, X)
    runs = []
    for _ in range(2):
        model = _model()
        before = _params(model)
        history = model.fit(DataSource(Xm, chunk_rows=128), y, epochs=4, batch_size=50, optimizer=Adam(0.02))
        runs.append(_params(model))
        assert all(not np.array_equal(a, b) for a, b in zip(before, runs[-1]))
        assert history.loss[-1] < history.loss[0]
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_chunk_then_within_chunk_order(tmp_path, monkeypatch):
    """The first epoch visits whole chunks in a random order, each chunk's rows permuted."""
    from xpnet import training

    X = np.arange(40, dtype=np.float64).reshape(20, 2)
    y = np.zeros(20, dtype=np.int64)
    model = Sequential([Dense(2, 2)], seed=1, dtype="float64", compiled=False)  # batches seen by the eager step
    seen = []
    real = model._loss_and_backward

    def record(xb, yb, wb=None):
        seen.extend(np.asarray(xb)[:, 0].astype(int) // 2)
        return real(xb, yb, wb)

    monkeypatch.setattr(model, "_loss_and_backward", record)
    model.fit(DataSource(_memmap(tmp_path, X), chunk_rows=5), y, epochs=1, batch_size=5, optimizer=SGD(0.0001))
    chunks = [sorted(seen[i:i + 5]) for i in range(0, 20, 5)]
    assert sorted(tuple(c) for c in chunks) == [tuple(range(k, k + 5)) for k in (0, 5, 10, 15)]
    assert seen != list(range(20))  # shuffled
    assert training is not None


def test_predict_and_evaluate_stream(tmp_path):
    X, y = _data(n=20000)
    model = _model()
    model.fit(X[:500], y[:500], epochs=2)
    Xm = _memmap(tmp_path, X)
    np.testing.assert_array_equal(np.asarray(model.predict(Xm)), np.asarray(model.predict(X)))
    np.testing.assert_allclose(np.asarray(model.predict_proba(DataSource(Xm, chunk_rows=3000))),
                               np.asarray(model.predict_proba(X)), rtol=1e-12)
    a, b = model.evaluate(Xm, y), model.evaluate(X, y)
    assert a["accuracy"] == b["accuracy"]
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-12)


def test_dask_and_zarr_sources_match_in_memory(tmp_path):
    da = pytest.importorskip("dask.array")
    zarr = pytest.importorskip("zarr")
    X, y = _data(n=600)
    reference = _model()
    reference.fit(X, y, epochs=2, batch_size=32, shuffle=False)
    dask_X = da.from_array(X, chunks=(70, 12))
    dask_y = da.from_array(y, chunks=70)
    z = zarr.create_array(store=str(tmp_path / "X.zarr"), shape=X.shape, chunks=(110, 12), dtype="float64")
    z[...] = X
    assert len(as_source(dask_X).bounds) == 9 and len(as_source(z).bounds) == 6
    for data, labels in [(dask_X, dask_y), (dask_X, y), (z, y)]:
        model = _model()
        model.fit(data, labels, epochs=2, batch_size=32, shuffle=False)
        for p, q in zip(_params(model), _params(reference)):
            np.testing.assert_allclose(p, q, rtol=1e-10, atol=1e-12)
        assert model.evaluate(data, labels)["accuracy"] == reference.evaluate(X, y)["accuracy"]


def test_bad_chunk_names_rows_and_leaves_model_untouched(tmp_path):
    X, y = _data()
    X[950, 3] = np.nan  # in the last chunk: earlier chunks have trained when it is found
    Xm = _memmap(tmp_path, X)
    model = _model()
    optimizer = Adam(0.01)
    model.fit(X[:100], y[:100], epochs=1, optimizer=optimizer)
    before, iterations = _params(model), optimizer.iterations
    moments = [np.asarray(m).copy() for m in optimizer.state["m"]]
    with pytest.raises(ValueError, match=r"X \(rows 900:1000\) contains NaN or infinity"):
        model.fit(DataSource(Xm, chunk_rows=100), y, epochs=1, optimizer=optimizer, shuffle=False)
    for a, b in zip(before, _params(model)):
        np.testing.assert_array_equal(a, b)
    assert optimizer.iterations == iterations and model.epochs_trained == 1
    for a, b in zip(moments, optimizer.state["m"]):
        np.testing.assert_array_equal(a, np.asarray(b))


def test_streamed_input_checks_before_reading(tmp_path):
    X, y = _data()
    Xm = _memmap(tmp_path, X)
    model = _model()
    with pytest.raises(ValueError, match="X has 12 features but the model expects 5"):
        Sequential([Dense(5, 2)]).fit(Xm, y)
    with pytest.raises(ValueError, match="X has 1000 samples but y has 999"):
        model.fit(Xm, y[:-1])
    with pytest.raises(ValueError, match=r"y holds class labels in \[5, 7\] but the network has 3 outputs"):
        model.fit(Xm, y + 5)
    with pytest.raises(ValueError, match="chunk_rows must be a positive integer"):
        DataSource(Xm, chunk_rows=0)


def test_memmap_bigger_than_the_memory_limit_trains(tmp_path):
    """A subprocess caps its data segment (RLIMIT_DATA: heap and anonymous memory, not the
    file-backed pages of a read-only memmap) below the size of the file, shows that loading
    the set into memory fails, then fits, predicts and evaluates it streamed."""
    resource = pytest.importorskip("resource")
    if not hasattr(resource, "RLIMIT_DATA") or sys.platform != "linux":
        pytest.skip("RLIMIT_DATA is enforced for mmap only on Linux")
    n, d = 1_500_000, 64  # 384 MB of float32
    path = tmp_path / "big.npy"
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for lo in range(0, n, 100_000):  # written in blocks: the test process stays small too
        block = np.random.default_rng(lo).normal(size=(100_000, d)).astype(np.float32)
        X[lo:lo + 100_000] = block
    del X
    script = textwrap.dedent(f"""
        import resource, numpy as np, xpnet
        from xpnet import Dense, Sequential, Sigmoid, SGD
        X = np.load({str(path)!r}, mmap_mode="r")
        y = (np.asarray(X[:, 0]) > 0).astype(np.int8)   # labels: 1 MB, in memory
        model = Sequential([Dense({d}, 8), Sigmoid(), Dense(8, 2)], seed=0)
        model.fit(X[:256], y[:256], epochs=1)           # compile the kernels before the cap
        with open("/proc/self/status") as fh:
            data_segment = next(int(l.split()[1]) * 1024 for l in fh if l.startswith("VmData"))
        limit = data_segment + 200 * 2**20  # the file is 384 MB
        resource.setrlimit(resource.RLIMIT_DATA, (limit, resource.RLIM_INFINITY))
        try:
            np.array(X)
        except MemoryError:
            print("in-memory copy refused")
        history = model.fit(X, y, epochs=1, batch_size=1024, optimizer=SGD(0.5))
        accuracy = model.evaluate(X, y)["accuracy"]
        print("streamed", history.loss[0], accuracy, int(model.predict(X).shape[0]))
    """)
    env = dict(os.environ, XPNET_BACKEND="numpy")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "in-memory copy refused" in done.stdout
    words = done.stdout.split("streamed", 1)[1].split()
    assert float(words[1]) > 0.9 and int(words[2]) == n


def test_dask_array_on_a_distributed_cluster(tmp_path):
    """A Dask array whose chunks are computed by a dask.distributed cluster (an in-process one
    here) streams the same as an in-memory array."""
    distributed = pytest.importorskip("distributed")
    da = pytest.importorskip("dask.array")
    X, y = _data(n=500)
    reference = _model()
    reference.fit(X, y, epochs=2, batch_size=32, shuffle=False)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        data = da.from_array(X, chunks=(120, 12)).persist()  # the chunks now live on the cluster's worker
        assert client.has_what()  # the cluster holds them
        model = _model()
        model.fit(data, y, epochs=2, batch_size=32, shuffle=False)
        accuracy = model.evaluate(data, y)["accuracy"]
    for p, q in zip(_params(model), _params(reference)):
        np.testing.assert_allclose(p, q, rtol=1e-10, atol=1e-12)
    assert accuracy == reference.evaluate(X, y)["accuracy"]


def test_sample_weights_stream_with_their_rows(tmp_path):
    """In-memory sample weights are sliced chunk by chunk and shuffled with their rows: a streamed
    weighted fit equals the in-memory weighted fit without shuffling, and differs from unweighted."""
    X, y = _data()
    w = np.random.default_rng(2).uniform(0, 2, size=X.shape[0])
    source = DataSource(_memmap(tmp_path, X), chunk_rows=97)
    streamed, in_memory, unweighted = _model(), _model(), _model()
    streamed.fit(source, y, epochs=2, batch_size=64, shuffle=False, sample_weight=w)
    in_memory.fit(X, y, epochs=2, batch_size=64, shuffle=False, sample_weight=w)
    unweighted.fit(X, y, epochs=2, batch_size=64, shuffle=False)
    for a, b, c in zip(_params(streamed), _params(in_memory), _params(unweighted)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        assert not np.allclose(a, c)
    shuffled = _model()
    shuffled.fit(source, y, epochs=2, batch_size=64, sample_weight=w)  # runs with the weights permuted alongside
    assert all(np.all(np.isfinite(p)) for p in _params(shuffled))


def test_a_datasource_keeps_its_chunks_when_renamed(tmp_path):
    source = DataSource(_memmap(tmp_path, _data()[0]), chunk_rows=97)
    renamed = as_source(source, "validation_data[0]")
    assert renamed.name == "validation_data[0]" and renamed.bounds == source.bounds and source.name == "X"
    assert as_source(source, "X") is source
