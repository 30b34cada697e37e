"""Which CuPy extra this machine's NVIDIA driver takes. The README's set-up commands ask it::

    .venv/bin/pip install ".[bench$(python3 -m xpnet.cuda_extra)]"

It prints ``,cuda13`` where the driver runs CUDA 13 or newer, ``,cuda12`` where it runs CUDA 12,
and nothing where there is no NVIDIA driver or one too old for CuPy 14's wheels; stderr says which.
So one command installs CuPy, with CUDA's own libraries from pip (CuPy's ``ctk`` extra: no CUDA
toolkit needed), on a GPU machine, and the CPU packages alone elsewhere. The backend's fallback
message uses it too (:func:`install_hint`): a machine with a driver but no CuPy is told what to install.

Standard library only (as ``import xpnet`` is), so it runs from a checkout before anything is
installed. The version comes from ``cuDriverGetVersion`` in the driver's own library
(``libcuda.so.1``, ``nvcuda.dll``), which needs no GPU, no CUDA toolkit and no ``nvidia-smi``.
"""

from __future__ import annotations

import ctypes
import sys

# The pyproject extras by the CUDA major version their CuPy wheels are built for. A newer driver
# takes the newest of them (a driver runs every older CUDA).
EXTRAS = {12: "cuda12", 13: "cuda13"}
DRIVER_LIBRARIES = {"win32": ("nvcuda.dll",), "linux": ("libcuda.so.1", "libcuda.so")}


def driver_cuda_version(load=ctypes.CDLL) -> tuple[int, int] | None:
    """``(major, minor)`` of the newest CUDA the installed NVIDIA driver runs, or None without one
    (``load`` opens a shared library by name, as ``ctypes.CDLL`` does)."""
    for name in DRIVER_LIBRARIES.get(sys.platform, ()):
        try:
            library = load(name)
            version = ctypes.c_int(0)
            status = library.cuDriverGetVersion(ctypes.byref(version))
            if status != 0:  # documented to need no cuInit; ask again after one where a driver does
                library.cuInit(0)
                status = library.cuDriverGetVersion(ctypes.byref(version))
        except (OSError, AttributeError):  # no such library, or one without the driver's functions
            continue
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


def install_hint() -> str:
    """What to install for CuPy on this machine, for a message that says CuPy is missing: ``""``
    without an NVIDIA driver, else the driver's CUDA version and the extra for it."""
    try:
        version = driver_cuda_version()
    except Exception:  # noqa: BLE001 - only a hint: a driver that cannot be asked gives none
        return ""
    if version is None:
        return ""
    name = extra_for(version)[0]
    found = f"this machine has an NVIDIA driver for CUDA {version[0]}.{version[1]}"
    if not name:
        return f"{found}, older than CuPy 14 supports (CUDA {min(EXTRAS)} or newer)"
    return f"{found}: the '{name}' extra installs CuPy for it (pip install \".[{name}]\" in xpnet's checkout)"


def main() -> None:
    try:
        name, why = extra_for(driver_cuda_version())
    except Exception as error:  # noqa: BLE001 - a set-up command must go on, for the CPU at least
        name, why = "", f"could not ask the NVIDIA driver ({type(error).__name__}: {error}): installing for the CPU only"
    print(f"xpnet.cuda_extra: {why}", file=sys.stderr)
    print(f",{name}" if name else "")


if __name__ == "__main__":
    main()
