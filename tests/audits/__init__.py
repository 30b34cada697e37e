"""Differential audits of xpnet's estimators against scikit-learn's: tools run by hand
(``python -m tests.audits.<name> --help``), not tests pytest collects."""

from __future__ import annotations

import argparse
import warnings
from collections import Counter
from typing import Callable


def run(description: str, audit: Callable[[int, int, bool], Counter], switch: str, switch_help: str) -> int:
    """The audits' command line: ``--settings N --seed K [switch]``; prints the outcome counts and
    returns 1 if any outcome is an unexplained ``DIFF``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--settings", type=int, default=100, help="how many random settings (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the settings' draws (default 0)")
    parser.add_argument(switch, action="store_true", help=switch_help)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    outcomes = audit(args.settings, args.seed, getattr(args, switch.lstrip("-")))
    print(dict(outcomes))
    return 1 if outcomes["DIFF"] else 0
