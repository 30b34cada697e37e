"""bench.cuda_extra, which the README's set-up commands ask for the CuPy extra: the driver's CUDA
version read through a stand-in driver library, the extra for each version, and the pyproject
extras it names."""

import ctypes
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench/ is run from the checkout, not installed
try:
    from bench import cuda_extra, env
finally:
    sys.path.remove(str(REPO))


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
    """As ``$(python3 -m bench.cuda_extra)`` uses it, with the standard library only (``-S``: no
    site-packages, so nothing installed is needed); the reason goes to stderr."""
    proc = subprocess.run([sys.executable, "-S", "-m", "bench.cuda_extra"], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() in ("", ",cuda12", ",cuda13")
    expected = cuda_extra.extra_for(cuda_extra.driver_cuda_version())[0]
    assert proc.stdout.strip() == (f",{expected}" if expected else "")
    assert proc.stderr.startswith("bench.cuda_extra: ")


def test_a_failing_driver_query_still_prints_a_line(monkeypatch, capsys):
    def broken():
        raise ValueError("bad driver")
    monkeypatch.setattr(cuda_extra, "driver_cuda_version", broken)
    cuda_extra.main()
    out, err = capsys.readouterr()
    assert out == "\n" and "bad driver" in err and "CPU only" in err


def test_the_benchmark_report_names_a_driver_without_cupy(monkeypatch):
    monkeypatch.setattr("xpnet.backend.cupy_usable", lambda: (False, "CuPy is not importable (ModuleNotFoundError)"))
    monkeypatch.setattr(env, "driver_cuda_version", lambda: (13, 0))
    gpu = env._gpu()
    assert gpu["available"] is False and gpu["driver_cuda"] == "13.0"
    assert 'pip install ".[bench,cuda13]"' in gpu["reason"]
    line = env.machine_markdown({"cpu_model": "cpu", "cpu_cores": 2, "gpu": gpu, "git_commit": "0" * 40, "date_utc": "now"})
    assert "no usable GPU (CuPy is not importable" in line and "CUDA 13.0" in line
    monkeypatch.setattr(env, "driver_cuda_version", lambda: None)
    assert env._gpu() == {"available": False, "reason": "CuPy is not importable (ModuleNotFoundError)"}
