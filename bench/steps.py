"""xpnet's CPU training steps against each other, epoch by epoch in one process.

    python -m bench.steps                                   # reference task, 6 rounds
    python -m bench.steps --batch-size 32 --hidden 1024,512 --rounds 4 --out bench/results/cpu/steps

``bench.mnist`` runs each contestant in its own process, one after another. On a VM whose
speed drifts over minutes, that cannot resolve a 10-20% difference between two of xpnet's own
steps. This script trains one model per step kind from the same weights, in one process, and
alternates them epoch by epoch (in a rotating order each round), so every round sees each kind
under the same conditions. It reports each kind's median epoch and the median of the per-round
ratios to the eager fused step (paired, so drift cancels). ``--blas-threads 1,2`` also
alternates BLAS thread counts, paired the same way, which separate processes cannot compare on
this VM either. The kinds:

- ``compiled``: the whole step as one Numba function (``compiled=None``, the default);
- ``eager``: the eager step with fused kernels (``compiled=False``);
- ``reference``: the generic Array-API path (``fused=False``).

Writes ``steps-b<batch>-h<hidden>-t<threads>.json`` (every epoch, the environment) and ``.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

from .arguments import positive_int, widths
from .task import REFERENCE

KINDS = {"compiled": dict(compiled=None), "eager": dict(compiled=False), "reference": dict(fused=False)}


def blas_limit(threads: int | None):
    """A context holding BLAS to ``threads`` threads (None: no limit)."""
    import contextlib

    if threads is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(threads, user_api="blas")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.steps", description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=positive_int, default=REFERENCE.batch_size)
    p.add_argument("--hidden", type=widths, default=REFERENCE.hidden, help="hidden widths, e.g. 256,128")
    p.add_argument("--train-samples", type=positive_int, default=REFERENCE.train_samples)
    p.add_argument("--rounds", type=positive_int, default=6, help="epochs per kind, alternated (default 6)")
    p.add_argument("--kinds", default=",".join(KINDS), help="comma-separated, of " + ", ".join(KINDS))
    p.add_argument("--threads", default="all", help="CPU cores to use: a number, or 'all' (default)")
    p.add_argument("--blas-threads", default="",
                   help="also alternate BLAS thread counts, e.g. 1,2 (threadpoolctl limits within this process)")
    p.add_argument("--out", default=None, help="folder for the .json and .md (default: print only)")
    args = p.parse_args(argv)
    from .mnist import parse_threads, rotated, thread_settings

    threads = parse_threads(args.threads)
    if threads is not None:  # before NumPy loads: OpenBLAS sizes its pool once, from the environment
        if "numpy" in sys.modules:
            raise SystemExit("bench.steps: --threads must be set before NumPy is imported; run it as its own process")
        limits, cores = thread_settings(threads)
        os.environ.update(limits)
        if cores is not None:
            os.sched_setaffinity(0, cores)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if not kinds or any(k not in KINDS for k in kinds):
        raise SystemExit(f"bench.steps: --kinds must name some of {list(KINDS)}, got {args.kinds!r}")

    import xpnet
    from xpnet.layers import dense_stack

    from .env import environment
    from .task import load_data

    task = REFERENCE.but(batch_size=args.batch_size, hidden=args.hidden, train_samples=args.train_samples, epochs=args.rounds)
    X, y, _, _ = load_data(task)
    # Variants: each step kind, at each BLAS thread count of --blas-threads (threadpoolctl limits
    # NumPy's OpenBLAS, which both the compiled and the eager step call, epoch by epoch).
    counts = [None] if not args.blas_threads else [int(t) for t in args.blas_threads.split(",") if t.strip()]
    variants = [(kind, t) for t in counts for kind in kinds]
    label = {v: v[0] if v[1] is None else f"{v[0]} @{v[1]}" for v in variants}
    models, optimizers = {}, {}
    for v in variants:
        models[v] = xpnet.Sequential(dense_stack(task.widths, task.activation), seed=task.seed, **KINDS[v[0]])
        optimizers[v] = xpnet.Adam(task.lr)
        models[v].fit(X[:2048], y[:2048], epochs=1, batch_size=task.batch_size)  # warm-up: compile, load caches
    seconds: dict = {v: [] for v in variants}
    steps = {}
    for round_no in range(args.rounds):
        for v in rotated(variants, round_no):
            with blas_limit(v[1]):
                history = models[v].fit(X, y, epochs=1, batch_size=task.batch_size, optimizer=optimizers[v])
            seconds[v].append(history.seconds[0])
            steps[v] = history.training_step
    env = environment()
    summary = {}
    for v in variants:
        kind, t = v
        row = {"kind": kind, "blas_threads": t, "training_step": steps[v], "epoch_seconds": seconds[v],
               "median_epoch_seconds": statistics.median(seconds[v])}
        if ("eager", t) in seconds and kind != "eager":
            row["median_ratio_to_eager"] = statistics.median(a / b for a, b in zip(seconds[v], seconds[("eager", t)]))
        if len(counts) > 1 and t != counts[0]:
            row["median_ratio_to_first_thread_count"] = statistics.median(
                a / b for a, b in zip(seconds[v], seconds[(kind, counts[0])]))
        summary[label[v]] = row
    lines = [
        f"**Task**: {task.describe().replace(f'{task.epochs} epochs', f'{args.rounds} epochs per step, alternated')}.  ",
        f"**Machine**: {env['cpu_model']}, {env['cpu_cores']} cores, {threads or env['cpu_cores']} used.  **Commit** `{(env.get('git_commit') or 'unknown')[:10]}`"
        + (" (uncommitted changes)" if env.get("git_dirty") else "") + f", {env['date_utc']}.",
        "",
        "| step | training_step | s/epoch (median) | epochs | median ratio to eager, paired by round |"
        + (f" ratio to {counts[0]} BLAS thread(s), paired |" if len(counts) > 1 else ""),
        "|---|---|---:|---|---:|" + ("---:|" if len(counts) > 1 else ""),
    ]
    for name, row in summary.items():
        ratio = f"{row['median_ratio_to_eager']:.2f}x" if "median_ratio_to_eager" in row else ""
        epochs = ", ".join(f"{s:.3f}" for s in row["epoch_seconds"])
        line = f"| {name} | {row['training_step']} | {row['median_epoch_seconds']:.3f} | {epochs} | {ratio} |"
        if len(counts) > 1:
            gain = row.get("median_ratio_to_first_thread_count")
            line += f" {gain:.2f}x |" if gain is not None else " |"
        lines.append(line)
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        from xpnet._io import atomic_write

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"steps-b{task.batch_size}-h{'-'.join(map(str, args.hidden))}-t{threads or 'all'}"
        if args.blas_threads:
            stem += "-blas" + "-".join(map(str, counts))
        report = {"task": task.to_dict(), "rounds": args.rounds, "threads": threads or env["cpu_cores"], "environment": env,
                  "results": summary}
        atomic_write(out / f"{stem}.json", lambda fh: fh.write(json.dumps(report, indent=2).encode()))
        atomic_write(out / f"{stem}.md", lambda fh: fh.write(table.encode()))
        print(f"wrote {out / stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
