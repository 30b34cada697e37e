"""Datasets: MNIST from its four IDX files (verified), and small scikit-learn sets.

Every loader returns ``(X_train, y_train, X_test, y_test)`` as NumPy arrays:
features float32 of shape ``(N, n_features)``, labels int64 of shape ``(N,)``.

MNIST is looked for, in order, in the ``data_dir`` argument, ``$XPNET_DATA_DIR``,
and the user cache directory (platformdirs). If none of them has it, the files
are downloaded from the public mirrors (pooch) into the cache. Each file may be
gzip-compressed or not. Its *uncompressed* bytes must match the pinned SHA-256,
so any mirror's gzip wrapper is accepted, and a bad file never reaches training.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DatasetError",
    "ChecksumError",
    "IDXFormatError",
    "DatasetNotFoundError",
    "read_idx",
    "parse_idx",
    "load_mnist",
    "load_iris_binary",
    "load_digits",
    "load_dataset",
    "mnist_search_path",
    "MNIST_FILES",
    "MNIST_MIRRORS",
]


class DatasetError(ValueError):
    """A dataset file is missing, corrupt or not what it claims to be."""


class ChecksumError(DatasetError):
    """A file's uncompressed bytes do not match the pinned SHA-256."""


class IDXFormatError(DatasetError):
    """Bytes that do not follow the IDX layout (magic, dimensions, length)."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """No local copy was found and none could be downloaded."""


# Uncompressed SHA-256 of the official files (see bench/data/mnist/README.md).
MNIST_FILES = {
    "train_images": ("train-images-idx3-ubyte", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train_labels": ("train-labels-idx1-ubyte", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "test_images": ("t10k-images-idx3-ubyte", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "test_labels": ("t10k-labels-idx1-ubyte", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}
MNIST_SHAPES = {
    "train_images": (60000, 28, 28),
    "train_labels": (60000,),
    "test_images": (10000, 28, 28),
    "test_labels": (10000,),
}
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

# IDX type codes -> big-endian NumPy dtypes.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# ----------------------------------------------------------------------------
# IDX
# ----------------------------------------------------------------------------
def _raw_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic."""
    data = path.read_bytes()
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path} is a corrupt or truncated gzip file ({exc}); delete it and fetch it again") from None


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes: 2 zero bytes, a type code, the number of dimensions, big-endian uint32 sizes, data."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise IDXFormatError(f"{source}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise IDXFormatError(f"{source}: unknown IDX data type code 0x{code:02x}")
    if ndim == 0:
        raise IDXFormatError(f"{source}: IDX file declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXFormatError(f"{source}: truncated IDX header ({len(data)} bytes, need {header})")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise IDXFormatError(f"{source}: IDX data {what}: dimensions {shape} need {expected} bytes, file has {len(data)}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike, sha256: str | None = None) -> np.ndarray:
    """Read an IDX file (gzip or not); with ``sha256``, verify the uncompressed bytes first."""
    path = Path(path)
    data = _raw_bytes(path)
    if sha256 is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise ChecksumError(
                f"{path}: SHA-256 of the uncompressed bytes is {actual}, expected {sha256}; "
                "the file is corrupt or not the official one. Delete it and fetch it again."
            )
    return parse_idx(data, str(path))


# ----------------------------------------------------------------------------
# MNIST
# ----------------------------------------------------------------------------
def _cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("xpnet")) / "mnist"


def mnist_search_path(data_dir: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """The places looked in, in order, as ``(label, folder)`` pairs."""
    places = []
    if data_dir is not None:
        places.append(("data_dir argument", Path(data_dir)))
    if os.environ.get("XPNET_DATA_DIR"):
        places.append(("$XPNET_DATA_DIR", Path(os.environ["XPNET_DATA_DIR"])))
    places.append(("user cache", _cache_dir()))
    return places


def _find_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    return None


def _complete(folder: Path, keys: tuple[str, ...] = tuple(MNIST_FILES)) -> dict[str, Path] | None:
    found = {key: _find_file(folder, MNIST_FILES[key][0]) for key in keys}
    return found if all(found.values()) else None  # type: ignore[return-value]


def _download(folder: Path, mirrors: tuple[str, ...]) -> dict[str, Path]:
    import pooch

    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for key, (name, _) in MNIST_FILES.items():
        errors = []
        for mirror in mirrors:
            try:
                files[key] = Path(pooch.retrieve(mirror + name + ".gz", known_hash=None, fname=name + ".gz", path=folder, progressbar=False))
                break
            except Exception as exc:  # network errors come in many types
                errors.append(f"{mirror}: {type(exc).__name__}: {exc}")
        else:
            raise OSError("; ".join(errors))
    return files


def _load_mnist_from(files: dict[str, Path]) -> tuple[np.ndarray, ...]:
    arrays = {}
    for key, path in files.items():
        arr = read_idx(path, MNIST_FILES[key][1])
        if arr.shape != MNIST_SHAPES[key]:
            raise IDXFormatError(f"{path}: MNIST {key.replace('_', ' ')} must have shape {MNIST_SHAPES[key]}, got {arr.shape}")
        arrays[key] = arr
    to_x = lambda a: (a.reshape(a.shape[0], -1).astype(np.float32) / np.float32(255.0))  # noqa: E731
    out = []
    for split in ("train", "test"):
        if f"{split}_images" in arrays:
            out += [to_x(arrays[f"{split}_images"]), arrays[f"{split}_labels"].astype(np.int64)]
    return tuple(out)


def load_mnist_test(data_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Only MNIST's test split, ``(X_test (10000, 784), y_test)``, from the two t10k files.

    For evaluating a trained model: the training files need not exist (nor be downloaded).
    Searches the same places as :func:`load_mnist`, and downloads nothing.
    """
    keys = ("test_images", "test_labels")
    places = mnist_search_path(data_dir)
    for _, folder in places:
        files = _complete(folder, keys)
        if files:
            return _load_mnist_from(files)  # type: ignore[return-value]
    searched = "\n".join(f"  - {label}: {folder}" for label, folder in places)
    raise DatasetNotFoundError(
        f"the MNIST test files ({', '.join(MNIST_FILES[k][0] for k in keys)}; .gz or not) were not found.\n"
        f"Searched:\n{searched}\nPass their folder with --data-dir DIR or set XPNET_DATA_DIR."
    )


def load_mnist(
    data_dir: str | os.PathLike | None = None, *, download: bool = True, mirrors: tuple[str, ...] = MNIST_MIRRORS
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNIST as ``(X_train (60000, 784), y_train, X_test (10000, 784), y_test)``; pixels in [0, 1].

    Raises :class:`DatasetNotFoundError` (naming every place searched and how to
    supply the files) when no local copy exists and the download fails, and
    :class:`ChecksumError` / :class:`IDXFormatError` / :class:`DatasetError` for
    bad files.
    """
    places = mnist_search_path(data_dir)
    for _, folder in places:
        files = _complete(folder)
        if files:
            return _load_mnist_from(files)
    why = "downloading is switched off"
    if download:
        cache = _cache_dir()
        try:
            files = _download(cache, tuple(mirrors))
        except OSError as exc:
            why = f"the download failed ({exc})"
        else:
            try:
                return _load_mnist_from(files)
            except DatasetError:
                for path in files.values():  # never leave a bad download in the cache
                    path.unlink(missing_ok=True)
                raise
    searched = "\n".join(f"  - {label}: {folder}" for label, folder in places)
    names = ", ".join(name for name, _ in MNIST_FILES.values())
    raise DatasetNotFoundError(
        f"MNIST was not found and {why}.\nSearched:\n{searched}\n"
        f"Put the four IDX files ({names}; .gz or not) in one folder and pass it with "
        "--data-dir DIR (data_dir=...) or set XPNET_DATA_DIR. A copy ships in this repository "
        "under bench/data/mnist."
    )


# ----------------------------------------------------------------------------
# Small scikit-learn datasets
# ----------------------------------------------------------------------------
def _split(X: np.ndarray, y: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, ...]:
    from sklearn.model_selection import train_test_split

    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=test_size, random_state=seed, stratify=y)
    return X_tr.astype(np.float32), y_tr.astype(np.int64), X_te.astype(np.float32), y_te.astype(np.int64)


def _sklearn_datasets() -> Any:
    try:
        from sklearn import datasets
    except ImportError as exc:
        raise ImportError("this dataset comes from scikit-learn: pip install 'xpnet[bench]'") from exc
    return datasets


def load_iris_binary(test_size: float = 0.2, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Iris setosa (0) vs versicolor (1) on the first two features (sepal length and width).

    Linearly separable, as in the classic logistic-regression demo. Split stratified.
    """
    iris = _sklearn_datasets().load_iris()
    keep = iris.target < 2
    return _split(iris.data[keep][:, :2], iris.target[keep], test_size, seed)


def load_digits(test_size: float = 0.2, seed: int = 0) -> tuple[np.ndarray, ...]:
    """scikit-learn's 8x8 digits (1797 images, 64 features scaled to [0, 1], 10 classes)."""
    digits = _sklearn_datasets().load_digits()
    return _split(digits.data / 16.0, digits.target, test_size, seed)


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, split: str = "all") -> tuple[np.ndarray, ...]:
    """``"mnist"``, ``"digits"`` or ``"iris"`` by name: ``(X_train, y_train, X_test, y_test)``, or
    ``(X_test, y_test)`` with ``split="test"`` (for MNIST, read without the training files).
    ``data_dir`` applies to MNIST only (digits and iris ship with scikit-learn)."""
    if split not in ("all", "test"):
        raise ValueError(f"split must be 'all' or 'test', got {split!r}")
    if name == "mnist":
        return load_mnist(data_dir) if split == "all" else load_mnist_test(data_dir)
    if name in ("digits", "iris"):
        arrays = load_digits() if name == "digits" else load_iris_binary()
        return arrays if split == "all" else arrays[2:]
    raise ValueError(f"dataset must be 'mnist', 'digits' or 'iris', got {name!r}")
