"""Atomic file writes: a temporary file in the same folder, fsync, then rename."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import threading
from pathlib import Path
from typing import Callable, IO, Iterator


@contextlib.contextmanager
def _ctrl_c_held() -> Iterator[Callable[[], None]]:
    """Hold SIGINT (Ctrl-C) during the block; yields ``deliver()``, which hands a held one to the
    handler the program had (Python's raises KeyboardInterrupt). Off the main thread, where signals
    cannot be handled, nothing is held."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    held: list[tuple[int, object]] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append((signum, frame)))

    def deliver() -> None:
        signal.signal(signal.SIGINT, previous)
        if held and callable(previous):
            previous(*held.pop())

    try:
        yield deliver
    finally:
        signal.signal(signal.SIGINT, previous)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(fileobj)`` on a temporary file and move it onto ``path`` in one step.

    A crash or error part-way leaves any existing ``path`` untouched. Ctrl-C is held while the
    temporary file is written, so it never lands inside ``write`` (a library's half-closed file
    would turn it into another error); it is delivered before the move, and then cancels it.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give the path of a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created like any new file (mode 0o666 less the umask), unlike mkstemp's private 0o600.
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with _ctrl_c_held() as deliver_ctrl_c:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            deliver_ctrl_c()  # KeyboardInterrupt here leaves path as it was
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path
