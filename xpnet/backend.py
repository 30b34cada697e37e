"""Array backends: the only module that knows library names.

A :class:`Backend` bundles an Array-API namespace (``xp``), the device arrays
live on, and the few operations the standard leaves out (moving data to and
from NumPy, synchronising, random permutations). Everything else in xpnet
receives a backend once and calls ``backend.xp`` from then on.

``get_backend(spec)`` resolves ``"numpy"``, ``"cupy"``, ``"array_api_strict"``,
``"auto"`` or an array module/namespace. Asking for ``"cupy"`` where CuPy or a
usable GPU is missing falls back to NumPy with one warning saying why; with
``strict=True`` or ``XPNET_STRICT_BACKEND=1`` that is an error instead.
``XPNET_BACKEND`` sets the default spec.
"""

from __future__ import annotations

import functools
import os
import types
import warnings
from typing import Any, Callable

import numpy as np

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "BackendFallbackWarning",
    "get_backend",
    "backend_of",
    "cupy_usable",
    "BACKEND_NAMES",
]

BACKEND_NAMES = ("auto", "numpy", "cupy", "array_api_strict", "torch", "jax")


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here and falling back was not allowed."""


class BackendFallbackWarning(RuntimeWarning):
    """The requested backend is unavailable; xpnet fell back to NumPy."""


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@functools.lru_cache(maxsize=None)
def cupy_usable() -> tuple[bool, str]:
    """Whether CuPy imports and a CUDA device is usable, and if not, why.

    CuPy imports fine on machines without a GPU or driver (its first allocation
    fails instead), so this asks ``cupy.is_available()``, which never raises. Where
    CuPy does not import but an NVIDIA driver is present, the reason says which extra
    installs it (:func:`xpnet.cuda_extra.install_hint`).
    """
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA install
        from .cuda_extra import install_hint

        hint = install_hint()
        return False, f"CuPy is not importable ({type(exc).__name__}: {exc})" + (f"; {hint}" if hint else "")
    try:
        if not cupy.is_available():
            return False, "CuPy is installed but no usable CUDA GPU was found"
    except Exception as exc:
        return False, f"CuPy could not query the GPU ({type(exc).__name__}: {exc})"
    return True, "ok"


class Backend:
    """An array namespace plus the device its arrays live on.

    Attributes
    ----------
    name : str
        ``"numpy"``, ``"cupy"``, ``"array_api_strict"`` or the module name of a
        user-supplied namespace.
    xp : module
        The Array-API namespace (from ``array_api_compat`` where it wraps one).
    device : object
        The device new arrays are created on.
    """

    def __init__(self, name: str, xp: Any, device: Any, native: Any = None) -> None:
        self.name = name
        self.xp = xp
        self.device = device
        self._native = native  # the underlying library module (numpy, cupy), if any
        self._in_place: bool | None = None

    # -- pickling: by name, never the module ----------------------------------------
    def __reduce__(self) -> tuple:
        """Pickle as the spec that resolves it again (``get_backend(name)``), so a pickled
        model holds no module object; a CuPy backend unpickled without a GPU falls back
        to NumPy with the usual warning (once)."""
        return (restore_backend, (self.name,))

    # -- behaviour probed once ---------------------------------------------------------
    @property
    def in_place(self) -> bool:
        """Whether this library's arrays can be updated in place.

        Probed once, by behaviour rather than by name: ``alias += 1`` and ``alias[...] = v``
        must both be visible through another reference to the same array. True for NumPy,
        CuPy, torch and array_api_strict; False for JAX (immutable arrays), Dask and ndonnx
        (augmented assignment rebinds a new array). Where it is False, parameters and
        optimizer state are updated functionally (new arrays assigned back).
        """
        if self._in_place is None:
            self._in_place = _probe_in_place(self.xp, self.device)
        return self._in_place

    @property
    def int_dtype(self) -> Any:
        """The namespace's default integer dtype (int64 on NumPy/CuPy/torch, int32 on JAX
        without x64): used for labels, indices and counts so no library truncates them."""
        return default_int_dtype(self.xp, self.device)

    # -- identity ---------------------------------------------------------------
    @property
    def is_numpy(self) -> bool:
        return self.name == "numpy"

    @property
    def is_cupy(self) -> bool:
        return self.name == "cupy"

    @property
    def is_jax(self) -> bool:
        return self.name == "jax"

    def __repr__(self) -> str:
        return f"Backend(name={self.name!r}, device={self.device!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Backend)
            and other.name == self.name
            and str(other.device) == str(self.device)
        )

    def __hash__(self) -> int:
        return hash((self.name, str(self.device)))

    # -- dtypes -------------------------------------------------------------------
    def dtype(self, name: Any) -> Any:
        """The namespace's floating dtype for ``"float32"``/``"float64"`` (or a dtype)."""
        if isinstance(name, str):
            if name not in ("float32", "float64"):
                raise ValueError(f"dtype must be 'float32' or 'float64', got {name!r}")
            return self._supported(name)
        for candidate in ("float32", "float64"):
            if name == getattr(self.xp, candidate) or str(name) == candidate:
                return self._supported(candidate)
        raise ValueError(f"dtype must be float32 or float64, got {name!r}")

    def _supported(self, name: str) -> Any:
        """The dtype ``name``, refused where the library would silently store another
        precision (JAX keeps float64 as float32 unless ``jax_enable_x64`` is on)."""
        dtype = getattr(self.xp, name)
        if name == "float64" and not _keeps_float64(self.xp, self.device):
            raise BackendUnavailableError(
                f"dtype 'float64' was requested but the {self.name!r} backend stores float64 arrays as "
                "float32 here (for JAX, enable 64-bit with jax.config.update('jax_enable_x64', True) "
                "before creating arrays); use dtype='float32' or enable 64-bit"
            )
        return dtype

    # -- moving data --------------------------------------------------------------
    def owns(self, x: Any) -> bool:
        """True if ``x`` is an array of this backend's library."""
        import array_api_compat as compat

        if self.is_numpy:
            return isinstance(x, np.ndarray)
        if self.is_cupy:
            return compat.is_cupy_array(x)
        namespace = _namespace_of(x)  # None for what is no array: a Python number, a list
        if self.name == "array_api_strict":
            return namespace is not None and compat.is_array_api_strict_namespace(namespace)
        return namespace is self.xp

    def asarray(self, obj: Any, dtype: Any = None, *, name: str = "array") -> Any:
        """``obj`` as an array of this backend on its device.

        Accepts NumPy arrays, nested lists and arrays of this backend. A CuPy
        model converts NumPy input with an explicit host-to-device copy; an
        array of another library or on another device is a ``TypeError``
        (``name`` says which argument).
        """
        import array_api_compat as compat

        if dtype is not None and isinstance(dtype, str):
            dtype = self.dtype(dtype) if dtype.startswith("float") else getattr(self.xp, dtype)
        if self.owns(obj):
            if compat.device(obj) != self.device and not self.is_numpy:
                raise TypeError(
                    f"{name} lives on device {compat.device(obj)!r} but this model lives on "
                    f"{self.device!r}; move it explicitly first"
                )
            return obj if dtype is None or obj.dtype == dtype else self.xp.astype(obj, dtype)
        if compat.is_array_api_obj(obj) and not isinstance(obj, np.ndarray):
            raise TypeError(
                f"{name} is a {type(obj).__module__}.{type(obj).__name__} array but this model "
                f"uses the {self.name!r} backend on {self.device!r}; convert it explicitly "
                "(for example to a NumPy array) before passing it"
            )
        host = np.asarray(obj)
        if self.is_numpy:
            return host if dtype is None else host.astype(dtype, copy=False)
        if self.is_cupy:
            with self._native.cuda.Device(self.device.id):
                out = self._native.asarray(host)
            return out if dtype is None else self.xp.astype(out, dtype)
        if dtype is None and host.dtype.kind in "iu":
            dtype = self.int_dtype  # e.g. int32 on JAX: no truncation warning, no silent overflow
            info = np.iinfo(np.dtype(str(dtype).rsplit(".", 1)[-1]))
            if host.size and (host.min() < info.min or host.max() > info.max):
                raise ValueError(f"{name} holds integers outside the {self.name} backend's {dtype} range")
        if not host.flags.writeable:  # a read-only memmap: libraries that share host memory (torch) warn on it
            host = np.array(host)
        return self.xp.asarray(host, dtype=dtype, device=self.device)

    def to_numpy(self, x: Any) -> np.ndarray:
        """A NumPy copy (or view, for NumPy arrays) of a backend array."""
        if isinstance(x, np.ndarray):
            return x
        if self.is_cupy:
            return self._native.asnumpy(x)
        if isinstance(x, (int, float, bool, list, tuple)):
            return np.asarray(x)
        return array_to_numpy(x)

    @property
    def asynchronous(self) -> bool:
        """Whether operations return before their results exist (CuPy, JAX, torch on CUDA): the
        training loop then reads the loss back once per epoch instead of after every batch."""
        return self.is_cupy or self.is_jax or (self.name == "torch" and self.device.type == "cuda")

    def synchronize(self, *arrays: Any) -> None:
        """Block until queued device work has finished (no-op on synchronous CPU libraries).
        JAX has no device-wide barrier: it waits for ``arrays`` (pass what the work produced)."""
        if self.is_cupy:
            self._native.cuda.get_current_stream().synchronize()
        elif self.is_jax and arrays:
            self._native.block_until_ready(arrays)
        elif self.name == "torch" and self.device.type == "cuda":
            self._native.cuda.synchronize(self.device)

    def permutation(self, n: int, rng: np.random.Generator) -> Any:
        """A random permutation of ``range(n)`` as an int64 array on the device.

        The seed comes from the NumPy generator ``rng`` so runs are reproducible;
        on CuPy the permutation itself is drawn on the GPU.
        """
        if self.is_cupy:
            seed = int(rng.integers(0, 2**63 - 1))
            with self._native.cuda.Device(self.device.id):
                # RandomState.permutation is CuPy's documented GPU permutation (cupy.random.permutation).
                return self._native.random.RandomState(seed % 2**32).permutation(n).astype("int64")
        perm = rng.permutation(n)
        return perm if self.is_numpy else self.asarray(perm)

    def is_out_of_memory(self, exc: BaseException) -> bool:
        """Whether ``exc`` is this backend's device out-of-memory error."""
        return self.is_cupy and isinstance(exc, self._native.cuda.memory.OutOfMemoryError)

    def describe(self) -> dict:
        """Versions and device, for logs and benchmark records."""
        info = {"backend": self.name, "device": str(self.device)}
        if self.is_cupy:
            dev = self._native.cuda.Device(self.device.id)
            props = self._native.cuda.runtime.getDeviceProperties(dev.id)
            info["gpu_name"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
            info["gpu_memory_bytes"] = int(props["totalGlobalMem"])
            info["cupy_version"] = self._native.__version__
        return info


_FALLBACK_REPORTED: set[str] = set()


def restore_backend(name: str) -> Backend:
    """``get_backend(name)`` for unpickling: a model pickled on CuPy and loaded where no GPU is
    usable falls back to NumPy, and says so once per process, not once per pickled array."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backend = get_backend(name)
    for w in caught:
        if issubclass(w.category, BackendFallbackWarning):
            if name in _FALLBACK_REPORTED:
                continue
            _FALLBACK_REPORTED.add(name)
        warnings.warn(w.message, w.category, stacklevel=3)
    return backend


class _HostArray:
    """A device array pickled as host NumPy plus its backend's name (see :func:`host_state`)."""

    def __init__(self, array: Any) -> None:
        import array_api_compat as compat

        self.host = array_to_numpy(array)
        self.backend = get_backend(compat.array_namespace(array)).name

    def __reduce__(self) -> tuple:
        return (_restore_array, (np.array(self.host, copy=True), self.backend))


def _restore_array(host: np.ndarray, backend: str) -> Any:
    return restore_backend(backend).asarray(host, dtype=host.dtype.name if host.dtype.kind == "f" else None)


def host_state(state: dict) -> dict:
    """``state`` with every non-NumPy array (alone or in a list, tuple or dict) stored as host NumPy,
    restored onto its backend when unpickled: what an estimator's, optimizer's or FitState's
    ``__getstate__`` returns, so a pickle holds no device memory and no module object."""
    def convert(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return type(value)(convert(v) for v in value)
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if is_foreign_array(value):
            return _HostArray(value)
        return value

    return {key: convert(value) for key, value in state.items()}


def is_foreign_array(value: Any) -> bool:
    """True for an array of an Array-API library other than NumPy (torch, CuPy, JAX,
    array_api_strict, ...); False for NumPy arrays and scalars and for everything else."""
    import array_api_compat as compat

    return not isinstance(value, (np.ndarray, np.generic)) and compat.is_array_api_obj(value)


def array_to_numpy(x: Any) -> np.ndarray:
    """A host NumPy array from any Array-API array (DLPack where it can, else through the CPU)."""
    import array_api_compat as compat

    if isinstance(x, np.ndarray):
        return x
    if compat.is_cupy_array(x):
        return x.get()
    if compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    if hasattr(x, "unwrap_numpy"):  # ndonnx: arrays with values (not symbolic inputs) hold a NumPy array
        return np.asarray(x.unwrap_numpy())
    try:
        return np.from_dlpack(x)
    except (TypeError, BufferError, RuntimeError, AttributeError, ValueError):
        pass
    if not compat.is_array_api_strict_namespace(_namespace_of(x)):
        try:
            return np.asarray(compat.to_device(x, "cpu"))
        except (TypeError, ValueError, AttributeError, NotImplementedError):  # e.g. ndonnx has no "cpu" device
            pass
    return np.asarray(x)


def _probe_in_place(xp: Any, device: Any) -> bool:
    """Do ``alias += 1`` and ``alias[...] = v`` write through to the array ``a`` that ``alias`` names?"""
    try:
        a = xp.zeros((2,), dtype=xp.float32, device=device)
        alias = a
        alias += 1.0
        alias[...] = alias + 1.0
        return float(a[0]) == 2.0 and float(alias[0]) == 2.0
    except Exception:  # no __setitem__ (JAX), or no augmented assignment at all
        return False


def _per_device(probe: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    """``probe(xp, device)``, computed once per namespace and device. The cache keys on the
    device's type and ``repr`` where the device itself is unhashable (CuPy 14's ``cupy.cuda.Device``
    defines ``__eq__`` without ``__hash__``), so ``functools.lru_cache`` cannot take it."""
    answers: dict = {}

    @functools.wraps(probe)
    def cached(xp: Any, device: Any = None) -> Any:
        try:
            hash(device)
            key = (xp, device)
        except TypeError:
            key = (xp, type(device), repr(device))
        if key not in answers:
            answers[key] = probe(xp, device)
        return answers[key]

    return cached


@_per_device
def _keeps_float64(xp: Any, device: Any) -> bool:
    try:
        with warnings.catch_warnings():  # JAX warns that it truncates; the answer is what we want
            warnings.simplefilter("ignore")
            return xp.asarray(0.5, dtype=xp.float64, device=device).dtype == xp.float64
    except Exception:
        return False


@_per_device
def default_int_dtype(xp: Any, device: Any = None) -> Any:
    """The namespace's default integer dtype (``__array_namespace_info__``), else int64."""
    info = getattr(xp, "__array_namespace_info__", None)
    if info is not None:
        try:
            return info().default_dtypes(device=device)["integral"]
        except Exception:
            pass
    return xp.int64


def _namespace_of(x: Any) -> Any:
    import array_api_compat as compat

    try:
        return compat.array_namespace(x)
    except TypeError:
        return None


@functools.lru_cache(maxsize=None)
def _numpy_backend() -> Backend:
    import array_api_compat.numpy as xp_numpy

    return Backend("numpy", xp_numpy, "cpu", native=np)


def _cupy_backend(device: Any = None) -> Backend:
    import array_api_compat.cupy as xp_cupy
    import cupy

    return Backend("cupy", xp_cupy, cupy.cuda.Device() if device is None else device, native=cupy)


def _strict_backend(device: Any = None) -> Backend:
    try:
        import array_api_strict as xs
    except ImportError as exc:
        raise BackendUnavailableError(
            "backend 'array_api_strict' needs the array-api-strict package "
            "(pip install array-api-strict)"
        ) from exc
    return Backend("array_api_strict", xs, xs.Device("CPU_DEVICE") if device is None else device, native=xs)


def _torch_backend(device: Any = None) -> Backend:
    try:
        import array_api_compat.torch as xp_torch
        import torch
    except ImportError as exc:
        raise BackendUnavailableError(f"backend 'torch' needs PyTorch (pip install torch): {exc}") from exc
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(f"backend 'torch' on {device} needs CUDA, but torch.cuda.is_available() is False "
                                      f"(PyTorch {torch.__version__})")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return Backend("torch", xp_torch, device, native=torch)


def _jax_backend() -> Backend:
    try:
        import jax
        import jax.numpy as jnp
    except ImportError as exc:
        raise BackendUnavailableError(f"backend 'jax' needs JAX (pip install jax): {exc}") from exc
    if not hasattr(jnp, "__array_api_version__"):
        raise BackendUnavailableError(f"backend 'jax' needs JAX >= 0.4.32 (jax.numpy as an Array-API namespace), got {jax.__version__}")
    return Backend("jax", jnp, jax.devices()[0], native=jax)


def get_backend(spec: Any = None, *, strict: bool | None = None) -> Backend:
    """Resolve a backend specification to a :class:`Backend`.

    Parameters
    ----------
    spec : str, module, Backend or None
        ``"numpy"``, ``"cupy"``, ``"array_api_strict"``, ``"torch"`` (CUDA where
        ``torch.cuda.is_available()``, else CPU; ``"torch:cpu"``/``"torch:cuda:1"`` pick one),
        ``"jax"``, ``"auto"``, an array module or Array-API namespace (``torch`` and
        ``jax.numpy`` included), a ``torch.device``, or an existing Backend. ``None`` reads
        ``XPNET_BACKEND`` and defaults to ``"numpy"``.
    strict : bool, optional
        Raise :class:`BackendUnavailableError` instead of falling back to NumPy
        when CuPy or a GPU is missing. Defaults to ``XPNET_STRICT_BACKEND``.
    """
    if isinstance(spec, Backend):
        return spec
    if strict is None:
        strict = _env_flag("XPNET_STRICT_BACKEND")
    if spec is None:
        spec = os.environ.get("XPNET_BACKEND", "").strip() or "numpy"
    if type(spec).__module__ == "torch" and type(spec).__name__ == "device":
        return _torch_backend(spec)
    if isinstance(spec, types.ModuleType) or (not isinstance(spec, str) and hasattr(spec, "asarray")):
        return _backend_from_namespace(spec)
    if not isinstance(spec, str):
        raise TypeError(f"backend must be a name, an array module or a Backend, got {type(spec).__name__}")
    name = spec.strip().lower().replace("-", "_")
    if name == "numpy":
        return _numpy_backend()
    if name == "array_api_strict":
        return _strict_backend()
    if name == "torch" or name.startswith("torch:"):
        return _torch_backend(name.split(":", 1)[1] if ":" in name else None)
    if name in ("jax", "jax.numpy"):
        return _jax_backend()
    if name in ("cupy", "auto"):
        ok, why = cupy_usable()
        if ok:
            return _cupy_backend()
        if name == "cupy":
            if strict:
                raise BackendUnavailableError(f"backend 'cupy' was requested but {why}")
            warnings.warn(
                f"backend 'cupy' was requested but {why}; falling back to 'numpy' "
                "(set XPNET_STRICT_BACKEND=1 to make this an error)",
                BackendFallbackWarning,
                stacklevel=2,
            )
        return _numpy_backend()
    if "." in name:  # a namespace by module name (how a pickled custom backend comes back)
        import importlib

        try:
            module = importlib.import_module(spec.strip())
        except ImportError as exc:
            raise BackendUnavailableError(f"backend {spec!r}: the module does not import ({exc})") from exc
        return _backend_from_namespace(module)
    raise ValueError(f"backend must be one of {', '.join(map(repr, BACKEND_NAMES))}, got {spec!r}")


def backend_of(x: Any) -> Backend:
    """The backend of ``x``, an array of an Array-API library other than NumPy, on ``x``'s device
    (a torch tensor's, a CuPy array's, an array_api_strict array's: its ``"device1"`` included)."""
    import array_api_compat as compat

    if compat.is_torch_array(x):
        return _torch_backend(x.device)
    if compat.is_cupy_array(x):
        return _cupy_backend(x.device)
    namespace = compat.array_namespace(x)
    if compat.is_array_api_strict_namespace(namespace):
        return _strict_backend(compat.device(x))
    return get_backend(namespace)


def _backend_from_namespace(module: Any) -> Backend:
    import array_api_compat as compat

    if compat.is_numpy_namespace(module):
        return _numpy_backend()
    if compat.is_cupy_namespace(module):
        return get_backend("cupy")
    if compat.is_array_api_strict_namespace(module):
        return _strict_backend()
    if compat.is_torch_namespace(module):
        return _torch_backend()
    if compat.is_jax_namespace(module) or getattr(module, "__name__", "") == "jax":
        return _jax_backend()
    if not hasattr(module, "__array_api_version__"):  # e.g. dask.array: array-api-compat wraps it
        try:
            module = compat.array_namespace(module.asarray(0.0))
        except Exception:
            pass
    if not hasattr(module, "__array_api_version__"):
        raise TypeError(
            f"backend module {getattr(module, '__name__', module)!r} is not an Array-API "
            "namespace (it has no __array_api_version__)"
        )
    sample = module.asarray(0.0)
    name = getattr(module, "__name__", "custom")
    missing = missing_capabilities(module, compat.device(sample))
    if missing:
        raise BackendUnavailableError(
            f"the {name!r} array library cannot train an xpnet model: it lacks " + "; ".join(missing)
        )
    return Backend(name, module, compat.device(sample), native=module)


def missing_capabilities(xp: Any, device: Any) -> list[str]:
    """What xpnet's loops need beyond the elementwise math, tried once on a small array: each
    entry names an operation the namespace lacks (or computes wrongly) and the error it gave."""
    expect = np.arange(6, dtype=np.float32).reshape(3, 2)
    try:
        a = xp.asarray(expect, device=device)
    except Exception as exc:
        return [f"arrays from NumPy data (xp.asarray: {type(exc).__name__}: {exc})"]
    checks = [
        ("export to NumPy (DLPack or __array__)", lambda: array_to_numpy(a), expect),
        ("row slicing a[i:j, ...]", lambda: array_to_numpy(a[1:3, ...]), expect[1:3]),
        ("row gathering xp.take(a, integer array, axis=0)",
         lambda: array_to_numpy(xp.take(a, xp.asarray([2, 0], device=device), axis=0)), expect[[2, 0]]),
        ("matrix products (a @ b)", lambda: array_to_numpy(a @ xp.ones((2, 1), dtype=xp.float32, device=device)),
         expect.sum(axis=1, keepdims=True)),
        ("reading a scalar back (float(xp.sum(a)))", lambda: np.float32(float(xp.sum(a))), np.float32(15.0)),
    ]
    missing = []
    for what, run, expected in checks:
        try:
            ok = np.array_equal(np.asarray(run()), expected)
            problem = "" if ok else "wrong result"
        except Exception as exc:  # the library's own error, reported in one line
            problem = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if problem:
            missing.append(f"{what} ({problem})")
    return missing
