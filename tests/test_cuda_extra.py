"""xpnet.cuda_extra, which the README's set-up commands ask for the CuPy extra: the driver's CUDA
version read through a stand-in driver library, the extra for each version, the pyproject extras it
names, and the hint that the CuPy fallback message and the benchmark's machine line give."""

import ctypes
import subprocess
import sys
from pathlib import Path

import pytest

from xpnet import cuda_extra
from xpnet.backend import cupy_usable

from bench import env  # from the checkout (conftest.py)

REPO = Path(__file__).resolve().parents[1]


class FakeDriver:
    """A stand-in for libcuda: ``cuDriverGetVersion`` writes ``version`` and returns ``status``
    (3, CUDA_ERROR_NOT_INITIALIZED, until ``cuInit`` where ``needs_init``)."""

    def __init__(self, version: int, status: int = 0, needs_init: bool = False) -> None:
        self.version, self.status, self.initialised = version, status, not needs_init

    def cuInit(self, flags):  # noqa: N802 - the driver's own names
        self.initialised = True
        return 0

    def cuDriverGetVersion(self, pointer):  # noqa: N802
        if not self.initialised:
            return 3
        ctypes.cast(pointer, ctypes.POINTER(ctypes.c_int))[0] = self.version
        return self.status


def loader(found: dict):
    def load(name):
        if name not in found:
            raise OSError(f"{name}: cannot open shared object file")
        return found[name]
    return load


@pytest.mark.parametrize("platform, found, expected", [
    ("linux", {"libcuda.so.1": FakeDriver(13000)}, (13, 0)),
    ("linux", {"libcuda.so": FakeDriver(12080)}, (12, 8)),  # only the unversioned name
    ("win32", {"nvcuda.dll": FakeDriver(12040)}, (12, 4)),
    ("linux", {}, None),  # no driver
    ("linux", {"libcuda.so.1": FakeDriver(13020, needs_init=True)}, (13, 2)),  # asked again after cuInit
    ("linux", {"libcuda.so.1": FakeDriver(13000, status=100)}, None),  # an error even then
    ("darwin", {"libcuda.so.1": FakeDriver(13000)}, None),  # no NVIDIA driver on macOS
    ("linux", {"libcuda.so.1": object(), "libcuda.so": FakeDriver(12020)}, (12, 2)),  # a stub without the function
])
def test_driver_version_is_read_from_the_driver_library(monkeypatch, platform, found, expected):
    monkeypatch.setattr(cuda_extra.sys, "platform", platform)
    assert cuda_extra.driver_cuda_version(load=loader(found)) == expected


@pytest.mark.parametrize("version, extra", [
    (None, ""), ((11, 8), ""), ((12, 0), "cuda12"), ((12, 9), "cuda12"), ((13, 0), "cuda13"), ((14, 1), "cuda13"),
])
def test_extra_for_each_driver(version, extra):
    name, why = cuda_extra.extra_for(version)
    assert name == extra
    assert why and (name in why if name else "CPU only" in why)


def test_the_extras_it_names_are_cupy_with_cuda_libraries_in_pyproject():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for major, name in cuda_extra.EXTRAS.items():
        assert extras[name] == [f"cupy-cuda{major}x[ctk]>=14"], name


def test_the_command_prints_the_extra_alone_on_stdout():
    """As ``$(python3 -m xpnet.cuda_extra)`` uses it, from the checkout with the standard library only
    (``-S``: no site-packages, so neither NumPy nor an installed xpnet); the reason goes to stderr."""
    proc = subprocess.run([sys.executable, "-S", "-m", "xpnet.cuda_extra"], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() in ("", ",cuda12", ",cuda13")
    expected = cuda_extra.extra_for(cuda_extra.driver_cuda_version())[0]
    assert proc.stdout.strip() == (f",{expected}" if expected else "")
    assert proc.stderr.startswith("xpnet.cuda_extra: ")


def test_a_failing_driver_query_still_prints_a_line(monkeypatch, capsys):
    def broken():
        raise ValueError("bad driver")
    monkeypatch.setattr(cuda_extra, "driver_cuda_version", broken)
    cuda_extra.main()
    out, err = capsys.readouterr()
    assert out == "\n" and "bad driver" in err and "CPU only" in err


@pytest.mark.parametrize("version, says", [
    ((13, 0), "this machine has an NVIDIA driver for CUDA 13.0: the 'cuda13' extra installs CuPy for it"),
    ((12, 4), "the 'cuda12' extra"),
    ((11, 8), "CUDA 11.8, older than CuPy 14 supports"),
])
def test_without_cupy_the_reason_names_the_extra_for_the_driver(monkeypatch, version, says):
    monkeypatch.setitem(sys.modules, "cupy", None)  # CuPy not importable, on any machine
    monkeypatch.setattr(cuda_extra, "driver_cuda_version", lambda: version)
    ok, why = cupy_usable.__wrapped__()  # past the cache
    assert not ok and why.startswith("CuPy is not importable") and says in why


def test_without_cupy_or_a_driver_the_reason_is_unchanged(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setattr(cuda_extra, "driver_cuda_version", lambda: None)
    ok, why = cupy_usable.__wrapped__()
    assert not ok and why.startswith("CuPy is not importable (") and why.endswith(")") and "driver" not in why


def test_the_benchmark_machine_line_says_why_a_present_driver_is_unused(monkeypatch):
    reason = "CuPy is not importable (ModuleNotFoundError); this machine has an NVIDIA driver for CUDA 13.0: ..."
    monkeypatch.setattr("xpnet.backend.cupy_usable", lambda: (False, reason))
    monkeypatch.setattr(env, "driver_cuda_version", lambda: (13, 0))
    gpu = env._gpu()
    assert gpu == {"available": False, "reason": reason, "driver_cuda": "13.0"}
    line = env.machine_markdown({"cpu_model": "cpu", "cpu_cores": 2, "gpu": gpu, "git_commit": "0" * 40, "date_utc": "now"})
    assert f"; no usable GPU ({reason})." in line
    monkeypatch.setattr(env, "driver_cuda_version", lambda: None)  # no driver: the short line, as before
    gpu = env._gpu()
    assert "driver_cuda" not in gpu and "; no usable GPU." in env.machine_markdown(
        {"cpu_model": "cpu", "cpu_cores": 2, "gpu": gpu, "git_commit": "0" * 40, "date_utc": "now"})
