"""Which CuPy extra this machine's NVIDIA driver takes, for the README's set-up commands::

    .venv/bin/pip install ".[bench$(python3 -m bench.cuda_extra)]"

prints ``,cuda13`` where the driver runs CUDA 13 or newer, ``,cuda12`` where it runs CUDA 12, and
nothing where there is no NVIDIA driver or one too old for CuPy 14's wheels, and says which on
stderr. So one command installs CuPy, with CUDA's own libraries from pip (CuPy's ``ctk`` extra:
no CUDA toolkit needed), on a GPU machine, and the CPU packages alone elsewhere.

Standard library only: it runs before anything is installed, from the repository root. The
version comes from ``cuDriverGetVersion`` in the driver's own library (``libcuda.so.1``,
``nvcuda.dll``), which needs no GPU, no CUDA toolkit and no ``nvidia-smi``.
"""

from __future__ import annotations

import ctypes
import sys

# The pyproject extras by the CUDA major version their CuPy wheels are built for. A newer driver
# runs the newest of them (CUDA's drivers run every older CUDA).
EXTRAS = {12: "cuda12", 13: "cuda13"}
DRIVER_LIBRARIES = {"win32": ("nvcuda.dll",), "linux": ("libcuda.so.1", "libcuda.so")}


def driver_cuda_version(load=ctypes.CDLL) -> tuple[int, int] | None:
    """``(major, minor)`` of the newest CUDA the installed NVIDIA driver runs, or None without one
    (``load`` opens a shared library by name, as ``ctypes.CDLL`` does)."""
    for name in DRIVER_LIBRARIES.get(sys.platform, ()):
        try:
            library = load(name)
        except OSError:
            continue
        version = ctypes.c_int(0)
        status = library.cuDriverGetVersion(ctypes.byref(version))
        if status != 0:  # documented to need no cuInit; ask again after one where a driver does
            library.cuInit(0)
            status = library.cuDriverGetVersion(ctypes.byref(version))
        if status == 0 and version.value > 0:
            return version.value // 1000, version.value % 1000 // 10
    return None


def extra_for(version: tuple[int, int] | None) -> tuple[str, str]:
    """The extra's name for a driver's CUDA version (``""`` for none), and a line saying why."""
    if version is None:
        return "", "no NVIDIA driver found (libcuda): installing for the CPU only"
    major, minor = version
    oldest = min(EXTRAS)
    if major < oldest:
        return "", (f"the NVIDIA driver runs CUDA {major}.{minor}, but CuPy 14's wheels need CUDA {oldest} or newer: "
                    f"installing for the CPU only (update the driver to train on the GPU)")
    name = EXTRAS[min(major, max(EXTRAS))]
    return name, f"NVIDIA driver for CUDA {major}.{minor} found: adding the '{name}' extra (CuPy and CUDA's libraries)"


def main() -> None:
    try:
        name, why = extra_for(driver_cuda_version())
    except Exception as error:  # noqa: BLE001 - a set-up command must go on, for the CPU at least
        name, why = "", f"could not ask the NVIDIA driver ({type(error).__name__}: {error}): installing for the CPU only"
    print(f"bench.cuda_extra: {why}", file=sys.stderr)
    print(f",{name}" if name else "")


if __name__ == "__main__":
    main()
