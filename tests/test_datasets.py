"""IDX parsing, checksums, corruption, the MNIST search order and download, small datasets."""

import functools
import gzip
import hashlib
import http.server
import shutil
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from xpnet import datasets
from xpnet.datasets import ChecksumError, DatasetError, DatasetNotFoundError, IDXFormatError, parse_idx, read_idx

MNIST_DIR = Path(__file__).resolve().parents[1] / "bench" / "data" / "mnist"


def idx_bytes(array: np.ndarray, code: int) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize(
    "array, code",
    [
        (np.arange(24, dtype=np.uint8).reshape(2, 3, 4), 0x08),
        (np.array([-3, 5], dtype=np.int8), 0x09),
        (np.arange(6, dtype=np.int16).reshape(3, 2) - 2, 0x0B),
        (np.array([1, -70000], dtype=np.int32), 0x0C),
        (np.linspace(0, 1, 5, dtype=np.float32), 0x0D),
        (np.linspace(-1, 1, 4, dtype=np.float64).reshape(2, 2), 0x0E),
    ],
)
@pytest.mark.parametrize("compressed", [False, True])
def test_idx_roundtrip(tmp_path, array, code, compressed):
    data = idx_bytes(array, code)
    path = tmp_path / ("f.gz" if compressed else "f")
    path.write_bytes(gzip.compress(data) if compressed else data)
    out = read_idx(path, sha256=hashlib.sha256(data).hexdigest())
    assert out.shape == array.shape and out.dtype == array.dtype
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "bad magic"),
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "bad magic"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "unknown IDX data type"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x02" + struct.pack(">I", 2), "truncated IDX header"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 4) + b"\x00\x01", "truncated"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 1) + b"\x00\x01", "trailing bytes"),
    ],
)
def test_idx_format_errors(data, message):
    with pytest.raises(IDXFormatError, match=message):
        parse_idx(data, "test")


def test_truncated_gzip_is_a_clear_error(tmp_path):
    blob = gzip.compress(idx_bytes(np.arange(1000, dtype=np.uint8), 0x08))
    path = tmp_path / "cut.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DatasetError, match="corrupt or truncated gzip"):
        read_idx(path)


def test_checksum_mismatch(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(idx_bytes(np.arange(4, dtype=np.uint8), 0x08))
    with pytest.raises(ChecksumError, match="SHA-256 of the uncompressed bytes"):
        read_idx(path, sha256="0" * 64)


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No $XPNET_DATA_DIR and an empty cache folder; returns that cache folder."""
    cache = tmp_path / "cache"
    monkeypatch.delenv("XPNET_DATA_DIR", raising=False)
    monkeypatch.setattr(datasets, "_cache_dir", lambda: cache)
    return cache


def copy_mnist(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for f in MNIST_DIR.glob("*.gz"):
        shutil.copy(f, dest / f.name)
    return dest


def test_load_mnist_from_the_repository_copy(isolated):
    X_train, y_train, X_test, y_test = datasets.load_mnist(MNIST_DIR, download=False)
    assert X_train.shape == (60000, 784) and X_test.shape == (10000, 784)
    assert X_train.dtype == np.float32 and y_train.dtype == np.int64
    assert 0.0 <= X_train.min() and X_train.max() == 1.0
    assert np.bincount(y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_uncompressed_files_work_too(isolated, tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    for f in MNIST_DIR.glob("*.gz"):
        (folder / f.name[:-3]).write_bytes(gzip.decompress(f.read_bytes()))
    assert datasets.load_mnist(folder, download=False)[3].shape == (10000,)


def test_search_order_argument_then_env_then_cache(isolated, tmp_path, monkeypatch):
    bad = copy_mnist(tmp_path / "bad")  # a corrupt copy proves which folder was read
    raw = bytearray(gzip.decompress((bad / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    raw[-1] = (raw[-1] + 1) % 10
    (bad / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(raw)))
    monkeypatch.setenv("XPNET_DATA_DIR", str(MNIST_DIR))
    with pytest.raises(ChecksumError, match="t10k-labels"):
        datasets.load_mnist(bad, download=False)  # the argument comes first
    assert datasets.load_mnist(tmp_path / "empty", download=False)[0].shape == (60000, 784)  # then the env
    monkeypatch.setenv("XPNET_DATA_DIR", str(bad))
    with pytest.raises(ChecksumError):
        datasets.load_mnist(download=False)
    monkeypatch.delenv("XPNET_DATA_DIR")
    copy_mnist(isolated)  # then the cache
    assert datasets.load_mnist(download=False)[2].shape == (10000, 784)


def test_wrong_dimensions_are_refused(isolated, tmp_path, monkeypatch):
    folder = copy_mnist(tmp_path / "d")
    fake = idx_bytes(np.zeros(5, dtype=np.uint8), 0x08)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(fake))
    files = dict(datasets.MNIST_FILES)
    files["test_labels"] = (files["test_labels"][0], hashlib.sha256(fake).hexdigest())
    monkeypatch.setattr(datasets, "MNIST_FILES", files)
    with pytest.raises(IDXFormatError, match=r"must have shape \(10000,\)"):
        datasets.load_mnist(folder, download=False)


def test_no_copy_and_no_network_says_what_to_do(isolated, tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        datasets.load_mnist(tmp_path / "nowhere", mirrors=("http://127.0.0.1:9/",))
    text = str(info.value)
    assert "download failed" in text and "--data-dir" in text and "XPNET_DATA_DIR" in text
    assert str(tmp_path / "nowhere") in text and str(isolated) in text
    with pytest.raises(DatasetNotFoundError, match="downloading is switched off"):
        datasets.load_mnist(tmp_path / "nowhere", download=False)


@pytest.fixture
def mirror():
    """A local HTTP mirror serving the repository's MNIST files (loopback only)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(MNIST_DIR))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_download_into_cache_then_verify(isolated, mirror):
    X_train, y_train, X_test, y_test = datasets.load_mnist(mirrors=("http://127.0.0.1:9/", mirror))
    assert sorted(p.name for p in isolated.iterdir()) == sorted(f.name for f in MNIST_DIR.glob("*.gz"))
    assert y_train.shape == (60000,)


def test_bad_download_is_refused_and_removed(isolated, mirror, monkeypatch):
    files = dict(datasets.MNIST_FILES)
    files["train_labels"] = (files["train_labels"][0], "0" * 64)  # the mirror's file will not match
    monkeypatch.setattr(datasets, "MNIST_FILES", files)
    with pytest.raises(ChecksumError, match="train-labels"):
        datasets.load_mnist(mirrors=(mirror,))
    assert not (isolated / "train-labels-idx1-ubyte.gz").exists()


def test_small_sklearn_datasets():
    pytest.importorskip("sklearn")
    X_tr, y_tr, X_te, y_te = datasets.load_iris_binary()
    assert X_tr.shape[1] == 2 and set(np.unique(y_tr)) == {0, 1} and len(y_tr) + len(y_te) == 100
    X_tr, y_tr, X_te, y_te = datasets.load_digits()
    assert X_tr.shape[1] == 64 and X_tr.max() <= 1.0 and len(np.unique(y_tr)) == 10
    with pytest.raises(ValueError, match="dataset must be"):
        datasets.load_dataset("cifar")
