"""The environment a benchmark ran in: machine, GPU, library versions, git commit, date, command."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Iterator

from xpnet.cuda_extra import driver_cuda_version

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("xpnet", "numpy", "array-api-compat", "numba", "llvmlite", "scikit-learn", "torch",
            "jax", "jaxlib", "cupy-cuda13x", "cupy-cuda12x", "matplotlib")


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity; ``bench.mnist --threads`` narrows it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _gpu() -> dict | None:
    from xpnet.backend import cupy_usable, get_backend

    ok, why = cupy_usable()
    if not ok:
        driver = driver_cuda_version()  # the reason then says what to install (xpnet.cuda_extra)
        return {"available": False, "reason": why, **({"driver_cuda": "%d.%d" % driver} if driver else {})}
    info = get_backend("cupy").describe()
    return {"available": True, "name": info["gpu_name"], "memory_bytes": info["gpu_memory_bytes"]}


def environment() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    commit = _git("rev-parse", "HEAD")
    # Result folders are rewritten by the benchmarks themselves; only code changes make a run "dirty".
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results", ":!bench/out"))
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": [Path(sys.executable).name, *sys.argv],
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "gpu": _gpu(),
        "versions": versions,
    }


def machine_markdown(env: dict) -> str:
    """The report line naming :func:`environment`'s machine, GPU, commit and date (with the threads
    each contestant had, where ``env["threads"]`` is set and fewer than the cores)."""
    gpu = env.get("gpu") or {}
    return (f"**Machine**: {env['cpu_model']}, {env['cpu_cores']} cores"
            + (f" ({env['threads']} per contestant)" if env.get("threads") not in (None, env["cpu_cores"]) else "")
            + (f"; GPU {gpu['name']}" if gpu.get("available") else
               f"; no usable GPU ({gpu['reason']})" if gpu.get("driver_cuda") else "; no usable GPU")
            + f".  **Commit** `{(env.get('git_commit') or 'unknown')[:10]}`"
            + (" (uncommitted changes)" if env.get("git_dirty") else "")
            + f", {env['date_utc']}.")


@contextlib.contextmanager
def temporary_environment(settings: dict[str, str]) -> Iterator[None]:
    """Set the environment variables ``settings`` for the block, then put back what was there
    (removing those that were not set)."""
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
