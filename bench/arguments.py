"""argparse types shared by the bench scripts: each refuses a bad value with a message that says
what was expected, before anything runs (``--epochs 0`` used to end in a StatisticsError after
the runs, ``--batch-size 0`` in every contestant failing). They are the ``xpnet`` command's own
types (``xpnet.cli``), so both say the same thing about the same mistake."""

from __future__ import annotations

import argparse

from xpnet.cli import _hidden, _non_negative_int, _positive_float, _positive_int

__all__ = ["positive_int", "non_negative_int", "positive_seconds", "widths", "batch_size_list", "networks"]

positive_int = _positive_int  # a whole number >= 1
non_negative_int = _non_negative_int  # a whole number >= 0
positive_seconds = _positive_float  # a finite number > 0


def widths(text: str) -> tuple[int, ...]:
    """An argparse type: comma-separated hidden widths, each >= 1 (``256,128``), as a tuple (a Task's)."""
    return tuple(_hidden(text))


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
