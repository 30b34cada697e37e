"""Cold start: a fresh Python process that imports the library and fits a small MLP.

    python -m bench.coldstart                 # 5 processes each, median, table + JSON
    python -m bench.coldstart --repeats 9 --out bench/results/cpu

This is what every ``GridSearchCV(n_jobs=...)`` worker and every short script pays. Each run is
a new interpreter (``sys.executable -c ...``) that loads scikit-learn's digits, builds the
estimator and fits 20 epochs of a 64-32-10 MLP (Adam, batch 200); the wall time of the whole
process is measured from outside. xpnet and scikit-learn alternate, so drift in the machine's
speed hits both alike. The import time alone (``import xpnet`` / ``import sklearn.neural_network``)
is measured the same way, and so is a small ``GridSearchCV(n_jobs=2)`` (4 settings x 3 folds on
digits), whose worker processes each pay the start-up again.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .arguments import positive_int

REPO = Path(__file__).resolve().parents[1]

FIT = """
import warnings
warnings.simplefilter("ignore")
from sklearn.datasets import load_digits
X, y = load_digits(return_X_y=True)
{make}
clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=20, random_state=0).fit(X, y)
assert clf.score(X, y) > 0.8
"""
GRID = """
import warnings
warnings.simplefilter("ignore")
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
X, y = load_digits(return_X_y=True)
{make}
grid = GridSearchCV(MLPClassifier(hidden_layer_sizes=(32,), max_iter=20, random_state=0),
                    {{"alpha": [1e-4, 1e-3], "learning_rate_init": [1e-3, 1e-2]}}, cv=3, n_jobs=2).fit(X, y)
assert grid.best_score_ > 0.8
"""
PROGRAMS = {
    "xpnet fit": FIT.format(make="from xpnet import MLPClassifier"),
    "scikit-learn fit": FIT.format(make="from sklearn.neural_network import MLPClassifier"),
    "xpnet grid (n_jobs=2)": GRID.format(make="from xpnet import MLPClassifier"),
    "scikit-learn grid (n_jobs=2)": GRID.format(make="from sklearn.neural_network import MLPClassifier"),
    "xpnet import": "import xpnet, xpnet.estimators",
    "scikit-learn import": "import sklearn.neural_network",
}


def time_process(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, capture_output=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=positive_int, default=5, help="processes per program (median reported)")
    p.add_argument("--out", type=Path, default=None, help="folder for coldstart.json")
    args = p.parse_args(argv)
    for code in PROGRAMS.values():  # one untimed run each: the OS file cache and Numba's disk cache warm
        time_process(code)
    seconds: dict[str, list[float]] = {name: [] for name in PROGRAMS}
    for _ in range(args.repeats):
        for name, code in PROGRAMS.items():
            seconds[name].append(time_process(code))
    median = {name: statistics.median(values) for name, values in seconds.items()}
    for name in PROGRAMS:
        print(f"{name:29s} {median[name]:.3f} s (median of {args.repeats}; runs {', '.join(f'{v:.2f}' for v in seconds[name])})")
    gap = median["xpnet fit"] - median["scikit-learn fit"]
    print(f"xpnet fit - scikit-learn fit: {gap:+.3f} s (target: within +0.3 s)")
    if args.out is not None:
        from .env import environment

        args.out.mkdir(parents=True, exist_ok=True)
        record = {"seconds": seconds, "median_seconds": median, "fit_gap_seconds": gap,
                  "environment": environment()}
        (args.out / "coldstart.json").write_text(json.dumps(record, indent=2))
        print(f"wrote {args.out / 'coldstart.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
