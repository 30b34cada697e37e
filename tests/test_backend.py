import subprocess
import sys
import warnings

import numpy as np
import pytest

import xpnet
from xpnet.backend import Backend, BackendFallbackWarning, BackendUnavailableError, cupy_usable, get_backend

GPU_OK, _ = cupy_usable()


def test_import_is_light_and_fast():
    code = (
        "import sys, time; t = time.perf_counter(); import xpnet; dt = time.perf_counter() - t; "
        "heavy = [m for m in ('cupy', 'numba', 'matplotlib', 'sklearn', 'torch') if m in sys.modules]; "
        "print(dt, heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(" ", 1)
    assert float(out[0]) < 1.0
    assert out[1].strip() == "[]"


def test_public_names_importable():
    for name in xpnet.__all__:
        assert getattr(xpnet, name) is not None
    with pytest.raises(AttributeError):
        xpnet.does_not_exist  # noqa: B018


def test_numpy_backend_roundtrip():
    be = get_backend("numpy")
    assert be.name == "numpy" and be.device == "cpu"
    a = be.asarray([[1, 2], [3, 4]], dtype="float32")
    assert a.dtype == np.float32
    assert np.array_equal(be.to_numpy(a), [[1, 2], [3, 4]])
    be.synchronize()


def test_strict_backend_roundtrip():
    be = get_backend("array_api_strict")
    a = be.asarray(np.arange(6.0).reshape(2, 3), dtype="float64")
    assert type(a).__module__.startswith("array_api_strict")
    assert np.array_equal(be.to_numpy(a), np.arange(6.0).reshape(2, 3))


def test_owns_says_no_to_what_is_no_array():
    """array_api_strict's owns(2.0) raised AttributeError (no namespace for a Python number), so
    sample_weight=2.0 crashed a fit on that backend."""
    for name in ("numpy", "array_api_strict"):
        be = get_backend(name)
        assert be.owns(be.asarray([1.0, 2.0])) and not any(be.owns(x) for x in (2.0, 3, [1.0, 2.0], None))
    reg = xpnet.MLPRegressor(max_iter=2, backend="array_api_strict", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg.fit(np.arange(20.0).reshape(10, 2), np.arange(10.0), sample_weight=2.0)
    assert type(reg.predict(np.ones((2, 2)))) is np.ndarray  # outputs follow the input
    strict = get_backend("array_api_strict")
    assert type(reg.predict(strict.asarray(np.ones((2, 2))))).__module__.startswith("array_api_strict")


def test_namespace_and_backend_specs():
    import array_api_strict

    assert get_backend(np).name == "numpy"
    assert get_backend(array_api_strict).name == "array_api_strict"
    be = get_backend("numpy")
    assert get_backend(be) is be


def test_env_default(monkeypatch):
    monkeypatch.setenv("XPNET_BACKEND", "array_api_strict")
    assert get_backend().name == "array_api_strict"
    monkeypatch.delenv("XPNET_BACKEND")
    assert get_backend().name == "numpy"


def test_unknown_backend_name():
    with pytest.raises(ValueError, match="backend must be one of"):
        get_backend("tensorflow")
    with pytest.raises(TypeError, match="backend"):
        get_backend(3.5)


def test_auto_picks_what_is_usable():
    assert get_backend("auto").name == ("cupy" if GPU_OK else "numpy")


@pytest.mark.skipif(GPU_OK, reason="a usable GPU is present, so no fallback happens")
def test_cupy_falls_back_with_one_warning(monkeypatch):
    monkeypatch.delenv("XPNET_STRICT_BACKEND", raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        be = get_backend("cupy")
    assert be.name == "numpy"
    fallbacks = [w for w in caught if issubclass(w.category, BackendFallbackWarning)]
    assert len(fallbacks) == 1 and "falling back to 'numpy'" in str(fallbacks[0].message)


@pytest.mark.skipif(GPU_OK, reason="a usable GPU is present, so no fallback happens")
def test_cupy_strict_raises(monkeypatch):
    with pytest.raises(BackendUnavailableError, match="cupy"):
        get_backend("cupy", strict=True)
    monkeypatch.setenv("XPNET_STRICT_BACKEND", "1")
    with pytest.raises(BackendUnavailableError):
        get_backend("cupy")


def test_foreign_array_is_a_clear_error():
    import array_api_strict

    be = get_backend("numpy")
    with pytest.raises(TypeError, match="X is a array_api_strict"):
        be.asarray(array_api_strict.asarray([1.0]), name="X")


def test_backend_equality():
    assert get_backend("numpy") == get_backend("numpy")
    assert get_backend("numpy") != get_backend("array_api_strict")
    assert isinstance(get_backend("numpy"), Backend)


class _UnhashableDevice:
    """Like CuPy 14's ``cupy.cuda.Device``: ``__eq__`` without ``__hash__``, so not hashable."""

    def __init__(self, ident):
        self.ident = ident

    def __eq__(self, other):
        return isinstance(other, _UnhashableDevice) and other.ident == self.ident

    def __repr__(self):
        return f"<device {self.ident}>"


def test_per_device_probes_take_an_unhashable_device():
    """The dtype probes run once per namespace and device, also for a device that cannot be a
    dict key (every CuPy fit failed with 'unhashable type: cupy.cuda.device.Device')."""
    import array_api_compat.numpy as xp

    from xpnet.backend import _keeps_float64, _per_device, default_int_dtype

    device = _UnhashableDevice(0)
    with pytest.raises(TypeError):
        hash(device)
    assert default_int_dtype(xp, device) == xp.int64
    calls = []

    @_per_device
    def probe(xp, device):
        calls.append(device)
        return len(calls)

    assert probe(xp, _UnhashableDevice(0)) == probe(xp, _UnhashableDevice(0)) == 1
    assert probe(xp, _UnhashableDevice(1)) == 2 and probe(xp, "cpu") == 3 and probe(xp, "cpu") == 3
    assert _keeps_float64(xp, "cpu") is True
