"""Test accuracy over several seeds: is xpnet as accurate as its peers, beyond one seed's luck?

    python -m bench.accuracy                      # 10 seeds, 10 epochs: xpnet-numpy-fused, torch-cpu, jax-cpu
    python -m bench.accuracy --seeds 5 --contestants xpnet-cupy-fused,xpnet-cupy-tf32,torch-cuda,torch-cuda-tf32 \\
        --pairs xpnet-cupy-fused:torch-cuda,xpnet-cupy-tf32:torch-cuda-tf32

One seed's test accuracy after 10 epochs is one draw: on the CPU, xpnet-numpy-fused minus
torch-cpu ranged from -0.39 to +0.31 points over seeds 0-9 (``bench/results/cpu/accuracy``),
while the means over those seeds differ by 0.00. So a single seed cannot say whether two
trainers are within 0.3 points of each other (issue 12's accuracy target); this script trains
every contestant once per seed, each in its own process (``bench.mnist.run_in_child``), and
compares means.

For each pair ``A:B`` it reports mean(A) - mean(B) in points and a 95% interval for it
(Welch's t, since A and B are separate samples: each library draws its own initial weights
and shuffles), and the verdict against ``--tolerance``: "within" where the whole interval
lies inside +-tolerance, "outside" where it lies wholly outside, else "undecided" (more seeds
would tell), or "not run" where either side has no run. Writes ``accuracy.json`` (every run,
the environment) and ``accuracy.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

from .arguments import non_negative_int, positive_int, positive_seconds
from .task import REFERENCE

DEFAULT_CONTESTANTS = ("xpnet-numpy-fused", "torch-cpu", "jax-cpu")


def summarise(accuracies: list[float]) -> dict:
    """Mean and sample standard deviation of one contestant's accuracies (fractions), and their count."""
    n = len(accuracies)
    return {"n": n, "mean": statistics.fmean(accuracies) if n else None,
            "std": statistics.stdev(accuracies) if n > 1 else None,
            "min": min(accuracies, default=None), "max": max(accuracies, default=None)}


def compare(a: list[float], b: list[float], tolerance_points: float) -> dict:
    """mean(a) - mean(b) in points, its 95% Welch interval, and the verdict against +-tolerance_points."""
    from scipy import stats

    diff = 100 * (statistics.fmean(a) - statistics.fmean(b)) if a and b else None
    row = {"difference_points": diff, "interval_points": None, "verdict": "undecided" if diff is not None else "not run"}
    if len(a) < 2 or len(b) < 2:
        return row  # no spread to judge by
    va, vb = ((100 * statistics.stdev(x)) ** 2 / len(x) for x in (a, b))  # squared standard errors, points
    se = math.sqrt(va + vb)
    if se == 0:
        low = high = diff
    else:
        dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
        half = float(stats.t.ppf(0.975, dof)) * se
        low, high = diff - half, diff + half
    row["interval_points"] = [low, high]
    if -tolerance_points <= low and high <= tolerance_points:
        row["verdict"] = "within"
    elif high < -tolerance_points or low > tolerance_points:
        row["verdict"] = "outside"
    return row


def parse_pairs(spec: str, names: list[str]) -> list[tuple[str, str]]:
    """``--pairs``: "A:B,C:D", each side one of ``names``; empty: every xpnet contestant against
    every contestant that is not xpnet's."""
    if not spec.strip():
        mine = [n for n in names if n.startswith("xpnet")]
        return [(a, b) for a in mine for b in names if not b.startswith("xpnet")]
    pairs = []
    for item in spec.split(","):
        sides = [s.strip() for s in item.split(":")]
        if len(sides) != 2 or not all(sides):
            raise SystemExit(f"bench.accuracy: --pairs expects comma-separated A:B, got {item!r}")
        unknown = [s for s in sides if s not in names]
        if unknown:
            raise SystemExit(f"bench.accuracy: --pairs names {unknown}, which are not among --contestants {names}")
        pairs.append((sides[0], sides[1]))
    return pairs


def build_report(runs: dict, pairs: list[tuple[str, str]], tolerance_points: float) -> dict:
    """``runs[name][seed]``: a run's status, reason, test_accuracy and median_epoch_seconds ->
    each contestant's runs and summary, and each pair's comparison with its per-seed differences."""
    def accuracies(name: str) -> dict:
        return {s: r["test_accuracy"] for s, r in runs[name].items() if r["status"] == "ok"}

    contestants = {name: {"runs": runs[name], "summary": summarise(list(accuracies(name).values())),
                          "reasons": sorted({r["reason"] for r in runs[name].values() if r["status"] != "ok"})}
                   for name in runs}
    compared = []
    for a, b in pairs:
        acc_a, acc_b = accuracies(a), accuracies(b)
        both = sorted(set(acc_a) & set(acc_b))
        compared.append({"a": a, "b": b, **compare(list(acc_a.values()), list(acc_b.values()), tolerance_points),
                         "per_seed_points": [100 * (acc_a[s] - acc_b[s]) for s in both]})
    return {"tolerance_points": tolerance_points, "contestants": contestants, "pairs": compared}


def markdown(report: dict) -> str:
    from .env import machine_markdown

    seeds = report["seeds"]
    lines = [f"**Task**: {report['task_description']}; seeds {seeds[0]}-{seeds[-1]} ({len(seeds)}), each contestant "
             f"once per seed, in its own process.  ", machine_markdown(report["environment"]), "",
             "| contestant | runs | mean accuracy | std (points) | min | max |", "|---|---:|---:|---:|---:|---:|"]
    for name, c in report["contestants"].items():
        s = c["summary"]
        if not s["n"]:
            lines.append(f"| {name} | 0 | {c['reasons'][0] if c['reasons'] else 'no run'} | | | |")
            continue
        std = f"{100 * s['std']:.2f}" if s["std"] is not None else ""
        lines.append(f"| {name} | {s['n']} | {s['mean']:.4f} | {std} | {s['min']:.4f} | {s['max']:.4f} |")
    lines += ["", f"Differences of means, in points, with 95% intervals (Welch); verdict against "
              f"+-{report['tolerance_points']:g} points:", "",
              "| pair | mean difference | 95% interval | verdict | single-seed differences (min, max) |",
              "|---|---:|---|---|---|"]
    for p in report["pairs"]:
        diff = "n/a" if p["difference_points"] is None else f"{p['difference_points']:+.2f}"
        interval = "" if p["interval_points"] is None else "[{:+.2f}, {:+.2f}]".format(*p["interval_points"])
        spread = "" if not p["per_seed_points"] else "{:+.2f}, {:+.2f}".format(min(p["per_seed_points"]),
                                                                              max(p["per_seed_points"]))
        lines.append(f"| {p['a']} - {p['b']} | {diff} | {interval} | {p['verdict']} | {spread} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.accuracy", description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=positive_int, default=10, help="seeds 0..N-1 (default %(default)s)")
    p.add_argument("--first-seed", type=non_negative_int, default=0, help="start the seeds here (default %(default)s)")
    p.add_argument("--epochs", type=positive_int, default=10, help="epochs per run (default %(default)s)")
    p.add_argument("--contestants", default=",".join(DEFAULT_CONTESTANTS),
                   help="comma-separated names, as bench.mnist's (default %(default)s)")
    p.add_argument("--pairs", default="", help="comma-separated A:B to compare (default: each xpnet contestant "
                                                "against each other one)")
    p.add_argument("--tolerance", type=positive_seconds, default=0.3, help="points (default %(default)s)")
    p.add_argument("--timeout", type=positive_seconds, default=900, help="seconds allowed per run")
    p.add_argument("--quick", action="store_true", help="smoke test: 6000 training images, 2000 test, 2 epochs")
    p.add_argument("--out", default=None, help="folder for accuracy.json and accuracy.md (default: print only)")
    args = p.parse_args(argv)

    from xpnet._io import atomic_write

    from .env import environment
    from .mnist import contestant_names, rotated, run_in_child

    names = contestant_names(args.contestants, "contestant(s)")
    if not names:
        raise SystemExit("bench.accuracy: --contestants names no contestant")
    pairs = parse_pairs(args.pairs, names)
    task = REFERENCE.but(epochs=args.epochs)
    if args.quick:
        task = task.but(train_samples=6000, test_samples=2000, epochs=2)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    described = task.describe().replace(f", seed {task.seed}", "")  # the seeds vary
    env = environment()
    started = time.perf_counter()
    print(f"bench.accuracy: {described}; seeds {seeds[0]}-{seeds[-1]}", flush=True)

    runs: dict = {name: {} for name in names}
    for i, seed in enumerate(seeds):
        for name in rotated(names, i):  # each seed starts with another contestant: drift spreads evenly
            r = run_in_child(name, task.but(seed=seed), args.timeout)
            runs[name][seed] = {k: r.get(k) for k in ("status", "reason", "test_accuracy", "median_epoch_seconds")}
            shown = f"{r['test_accuracy']:.4f}" if r["status"] == "ok" else f"{r['status']}: {r['reason']}"
            print(f"  seed {seed:<3} {name:<26} {shown}", flush=True)
        report = build_report(runs, pairs, args.tolerance)
        report.update(task=task.to_dict(), task_description=described, seeds=seeds[: i + 1], environment=env,
                      total_seconds=time.perf_counter() - started)
        table = markdown(report)
        if args.out:  # after every seed: a run cut short keeps the seeds it finished
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            atomic_write(out / "accuracy.json", lambda fh: fh.write(json.dumps(report, indent=2).encode()))
            atomic_write(out / "accuracy.md", lambda fh: fh.write(table.encode()))
    print()
    print(table)
    if args.out:
        print(f"wrote {out / 'accuracy.json'}, {out / 'accuracy.md'} in {report['total_seconds']:.0f} s")
    return 0 if all(c["summary"]["n"] for c in report["contestants"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
