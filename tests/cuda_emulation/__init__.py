"""CUDA kernels run on the CPU (``cuda_host.h``), to test their logic on machines without a GPU.

:func:`load` compiles ``.cu`` sources with ``g++`` (C++20) into a shared library exporting a
launcher for each name expression (``"xpnet_fused_gemm<float, 32, false, false>"``, as CuPy's
``RawModule`` takes them); :meth:`Emulator.launch` calls one with NumPy arrays where the GPU
would get device arrays, and NumPy scalars for the by-value parameters. Blocks run one after
another, each on ``blockDim`` threads with a real barrier (see ``cuda_host.h``).

What this checks: the kernels' indexing, tiling, epilogues, split-K finishing, reductions and
their arithmetic, and that each launch's arguments have exactly the kernel's parameter types (as
CuPy needs: it packs a scalar at its own size). What it cannot: timing, occupancy, register or
shared-memory limits, cache coherence, and races between blocks, except in a concurrent launch
(every block at once, for the persistent step's grid barrier). Those need a GPU run.
"""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

HEADER = Path(__file__).with_name("cuda_host.h")
GXX = shutil.which("g++")
_SCALARS = {np.dtype(np.int32): ctypes.c_int32, np.dtype(np.int64): ctypes.c_int64,
            np.dtype(np.float32): ctypes.c_float, np.dtype(np.float64): ctypes.c_double}


def _registry(names: Sequence[str]) -> str:
    table = ",\n".join(f'  {{"{name}", [](dim3 g, dim3 b, void** a, bool c) {{ emu_launch_kernel(&{name}, g, b, a, c); }}, '
                       f'[] {{ return emu_signature(&{name}); }}}}' for name in names)
    return (
        "#include <cstring>\n"
        "struct xpnet_emu_entry {\n"
        "  const char* name; void (*launch)(dim3, dim3, void**, bool); const char* (*signature)();\n};\n"
        f"static const xpnet_emu_entry xpnet_emu_entries[] = {{\n{table}\n}};\n"
        'extern "C" __attribute__((visibility("default"))) const char* xpnet_emu_signature(const char* name) {\n'
        "  for (const auto& e : xpnet_emu_entries)\n"
        "    if (std::strcmp(e.name, name) == 0) return e.signature();\n"
        "  return nullptr;\n}\n"
        'extern "C" __attribute__((visibility("default"))) int xpnet_emu_launch(const char* name, unsigned gx,\n'
        "                                unsigned gy, unsigned gz,\n"
        "                                unsigned bx, unsigned by, unsigned bz, void** args, int concurrent) {\n"
        "  for (const auto& e : xpnet_emu_entries)\n"
        "    if (std::strcmp(e.name, name) == 0) {\n"
        "      e.launch(dim3(gx, gy, gz), dim3(bx, by, bz), args, concurrent != 0);\n"
        "      return 0;\n"
        "    }\n"
        "  return 1;\n}\n"
    )


# cuda_host.h's emu_type_code of a NumPy dtype, by value; upper case for an array of it
_CODES = {np.dtype(np.int32): "i", np.dtype(np.int64): "l", np.dtype(np.float32): "f", np.dtype(np.float64): "d",
          np.dtype(np.bool_): "b"}


def _argument_code(a: Any) -> str:
    if isinstance(a, np.ndarray):
        return _CODES.get(a.dtype, "?").upper()
    return _CODES[a.dtype]


class Emulator:
    """The kernels named at :func:`load`, launchable on the CPU."""

    def __init__(self, library: Path, names: Sequence[str]) -> None:
        self._lib = ctypes.CDLL(str(library))
        self._lib.xpnet_emu_launch.restype = ctypes.c_int
        self._lib.xpnet_emu_signature.restype = ctypes.c_char_p
        self.names = tuple(names)
        self.launches: list[str] = []  # every kernel launched, in order

    def launch(self, name: str, grid: Sequence[int], block: Sequence[int], args: Sequence[Any],
               concurrent: bool = False) -> None:
        """Run kernel ``name`` on ``grid`` x ``block``; ``args``: NumPy arrays (their data pointer is
        passed) and NumPy scalars (passed by value with their own type), in the kernel's order.
        ``concurrent``: every block at once (``cuda_host.h``'s ``emu_launch_concurrent``), for a
        kernel whose blocks wait on each other; else one block after another."""
        holders = []
        for i, a in enumerate(args):
            if isinstance(a, np.ndarray):
                holders.append(ctypes.c_void_p(a.ctypes.data))
            elif isinstance(a, np.generic) and a.dtype in _SCALARS:
                holders.append(_SCALARS[a.dtype](a.item()))
            else:
                raise TypeError(f"argument {i} of {name}: a NumPy array or int32/int64/float32/float64 scalar, "
                                f"got {type(a).__name__}")
        signature = self._lib.xpnet_emu_signature(name.encode())
        if signature is None:
            raise KeyError(f"{name} is not among the emulated kernels {self.names}")
        given = "".join(_argument_code(a) for a in args)
        if given != signature.decode():  # CuPy would pass these, and the kernel read garbage
            raise TypeError(f"{name}: the arguments' types {given!r} differ from the parameters' "
                            f"{signature.decode()!r} (i int32, l int64, f float32, d float64; upper case: array)")
        pointers = (ctypes.c_void_p * len(holders))(*[ctypes.addressof(h) for h in holders])
        grid, block = (*grid, 1, 1)[:3], (*block, 1, 1)[:3]
        if self._lib.xpnet_emu_launch(name.encode(), *grid, *block, pointers, int(concurrent)) != 0:
            raise KeyError(f"{name} is not among the emulated kernels {self.names}")
        self.launches.append(name)


def load(sources: Sequence[Path], names: Sequence[str], build_dir: Path | None = None,
         defines: Sequence[str] = ()) -> Emulator:
    """Compile ``sources`` (concatenated) with the kernels ``names`` instantiated and the macros
    ``defines`` defined (as ``-D``: ``"NAME"`` or ``"NAME=VALUE"``); cached by content."""
    if GXX is None:
        raise RuntimeError("g++ is not on the PATH")
    text = (HEADER.read_text() + "".join(f"#define {d.partition('=')[0]} {d.partition('=')[2] or 1}\n" for d in defines)
            + "".join(Path(s).read_text() for s in sources) + _registry(names))
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    build_dir = Path(build_dir or Path(tempfile.gettempdir()) / "xpnet-cuda-emulation")
    build_dir.mkdir(parents=True, exist_ok=True)
    library = build_dir / f"emu-{key}.so"
    if not library.exists():
        source = build_dir / f"emu-{key}.cpp"
        source.write_text(text)
        partial = build_dir / f"emu-{key}.so.tmp"
        # Each library keeps its kernels and their __shared__ statics to itself: without these flags,
        # GCC makes a template's static variables process-wide (STB_GNU_UNIQUE), so a second
        # library built with other macros (another XPNET_MAX_BK) would use the first one's arrays.
        result = subprocess.run([GXX, "-std=c++20", "-O2", "-shared", "-fPIC", "-pthread", "-w", "-fno-gnu-unique",
                                 "-fvisibility=hidden", str(source), "-o", str(partial)],
                                capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f"g++ failed on the emulated kernels:\n{result.stderr[-4000:]}")
        partial.replace(library)  # atomic: a concurrent build never loads half a library
    return Emulator(library, names)
