"""argparse types shared by the bench scripts: each refuses a bad value with a message that says
what was expected, before anything runs (``--epochs 0`` used to end in a StatisticsError after
the runs, ``--batch-size 0`` in every contestant failing)."""

from __future__ import annotations

import argparse
import math

__all__ = ["positive_int", "positive_seconds", "widths", "batch_size_list", "networks"]


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def positive_seconds(text: str) -> float:
    """An argparse type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def widths(text: str) -> tuple[int, ...]:
    """An argparse type: comma-separated hidden widths, each >= 1 (``256,128``)."""
    parts = [w.strip() for w in text.split(",")]
    if not all(w.isdigit() and int(w) >= 1 for w in parts):
        raise argparse.ArgumentTypeError(f"expected comma-separated widths >= 1 such as 256,128, got {text!r}")
    return tuple(int(w) for w in parts)


def batch_size_list(text: str) -> list[int]:
    """An argparse type: comma-separated batch sizes, each >= 1."""
    try:
        return [positive_int(b.strip()) for b in text.split(",")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected comma-separated batch sizes >= 1 such as 32,128, got {text!r}") from None


def networks(text: str) -> list[tuple[int, ...]]:
    """An argparse type: hidden widths of several networks, separated by ';' (``64,32;256,128``)."""
    try:
        return [widths(net) for net in text.split(";")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected networks separated by ';', each comma-separated widths >= 1 "
                                         f"such as 64,32;256,128, got {text!r}") from None
