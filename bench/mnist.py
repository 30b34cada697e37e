"""MNIST on every device present, and against the peers, in one command.

    python -m bench.mnist                 # reference task, every contestant that can run here
    python -m bench.mnist --quick         # CI smoke test: a subset, CPU contestants
    python -m bench.mnist --sweep         # also epoch time against batch size and hidden width

Each contestant (xpnet on NumPy and CuPy, fused and unfused; scikit-learn's
MLPClassifier; PyTorch eager on the CPU and on CUDA) trains the task of
``bench/task.py`` in its own process. One that cannot run here is reported as
skipped, with the reason. Writes ``mnist.json`` (every figure and the
environment), ``mnist.md`` (the table, also printed), ``mnist.png`` (bar charts)
and, with ``--sweep``, ``sweep.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from .arguments import batch_size_list, networks, non_negative_int, positive_int, positive_seconds, widths
from .task import REFERENCE, Task

REPO = Path(__file__).resolve().parents[1]
SWEEP_BATCH_SIZES = (32, 128, 512, 2048, 4096)
SWEEP_HIDDEN = ((64, 32), (256, 128), (1024, 512), (2048, 1024), (4096, 2048))
# the compiled peers too (torch.compile, jax.jit): a performance-minded user's choice (the GPU ones skip without CUDA)
SWEEP_CONTESTANTS = ("xpnet-numpy-fused", "xpnet-cupy-fused", "xpnet-cupy-fused-eager", "xpnet-cupy-fused-step",
                     "xpnet-cupy-persistent-step", "xpnet-cupy-epoch-step", "xpnet-cupy-cublas-graph",
                     "torch-cpu", "torch-cpu-compiled", "torch-cuda", "torch-cuda-compiled", "torch-cuda-autotune",
                     "torch-cuda-graphed", "jax-cpu", "jax-gpu", "jax-gpu-scan")


# -- one contestant, in a child process ------------------------------------------------------
def run_one(name: str, task: Task) -> dict:
    from .contestants import CONTESTANTS, Unavailable

    try:
        return {"status": "ok", **CONTESTANTS[name](task)}
    except Unavailable as exc:
        return {"status": "skipped", "reason": str(exc)}
    except Exception as exc:  # reported, not fatal: the other contestants still run
        return {"status": "failed", "reason": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}


def thread_settings(threads: int | None) -> tuple[dict, list[int] | None]:
    """Environment variables and the CPU cores that hold a process to ``threads`` cores (None: all
    of them, ``({}, None)``). The process is pinned to the first ``threads`` cores, so no library can
    use more, and each thread pool is sized to match: OpenBLAS (NumPy's and SciPy's), MKL, OpenMP
    (PyTorch reads ``OMP_NUM_THREADS``), Numba, and XLA (one thread: no Eigen pool). The cores are
    None where this platform cannot pin."""
    if threads is None:
        return {}, None
    cores = sorted(os.sched_getaffinity(0))[:threads] if hasattr(os, "sched_getaffinity") else None
    env = {var: str(threads) for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}
    if threads == 1:
        env["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                            "intra_op_parallelism_threads=1").strip()
    return env, cores


# Pins the new interpreter to the cores in argv[1], then runs the module in argv[2] as `python -m`
# would, before any library has started a thread (threads inherit the affinity of their creator).
# Pinning in the child itself, not in a preexec_fn: no Python runs between fork and exec, which is
# unsafe where the parent has threads (JAX's, OpenBLAS's).
_PINNED_MODULE = ("import os, runpy, sys; os.sched_setaffinity(0, [int(c) for c in sys.argv.pop(1).split(',')]); "
                  "runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)")


def module_command(module: str, args: list[str], cores: list[int] | None = None) -> list[str]:
    """The command that runs ``python -m module *args``, pinned to ``cores`` where given."""
    if cores is None:
        return [sys.executable, "-m", module, *args]
    return [sys.executable, "-c", _PINNED_MODULE, ",".join(map(str, cores)), module, *args]


def run_in_child(name: str, task: Task, timeout: float, threads: int | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        limits, cores = thread_settings(threads)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), **limits)
        cmd = module_command("bench.mnist", ["--run-one", name, "--task-json", json.dumps(task.to_dict()),
                                             "--result-json", str(out)], cores)
        try:
            proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"status": "failed", "reason": f"timed out after {timeout:.0f} s"}
        if not out.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return {"status": "failed", "reason": f"exit status {proc.returncode}: {' | '.join(tail)}"}
        return json.loads(out.read_text())


# -- report ------------------------------------------------------------------------------------
# xpnet's default step on each device: what `import xpnet` trains with there
DEFAULT_STEPS = {"CPU": "xpnet-numpy-fused", "GPU": "xpnet-cupy-fused"}
NOT_TRAINERS = ("sgemm-floor",)  # the matrix products alone


def device_of(name: str) -> str:
    return "GPU" if any(word in name for word in ("cupy", "cuda", "gpu")) else "CPU"


def baseline_for(name: str) -> str:
    return "torch-cuda" if device_of(name) == "GPU" else "torch-cpu"


def peer_summary(results: dict) -> dict:
    """Per device where xpnet's default step ran: its epoch time against the fastest peer measured
    in the same run, the peer a performance-minded user would pick there (any trainer of another
    library, eager or compiled, at full float32 precision: the "-tf32"/"-bf16" variants are compared
    in the precision table), and xpnet's fastest step there against the same peer."""
    def ran(name: str) -> bool:
        return results.get(name, {}).get("status") == "ok"

    def seconds(name: str) -> float:
        return results[name]["median_epoch_seconds"]

    summary = {}
    for device, default in DEFAULT_STEPS.items():
        if not ran(default):
            continue
        full = [n for n in results if device_of(n) == device and not n.endswith(("-tf32", "-bf16"))]
        peers = [n for n in full if not n.startswith("xpnet-") and n not in NOT_TRAINERS]
        mine = min((n for n in full if n.startswith("xpnet-") and ran(n)), key=seconds)
        fastest = min((n for n in peers if ran(n)), key=seconds, default=None)
        summary[device] = {
            "xpnet": default, "epoch_seconds": seconds(default), "fastest_xpnet": mine,
            "fastest_xpnet_epoch_seconds": seconds(mine), "fastest_peer": fastest,
            "peer_epoch_seconds": seconds(fastest) if fastest else None,
            "vs_fastest_peer": seconds(default) / seconds(fastest) if fastest else None,
            "fastest_xpnet_vs_fastest_peer": seconds(mine) / seconds(fastest) if fastest else None,
            "peers_not_run": {n: results[n].get("reason", results[n]["status"]) for n in peers if not ran(n)},
        }
    return summary


def peer_markdown(summary: dict) -> str:
    lines = ["Against the fastest peer on each device, measured in this run (float32, full precision; below 1 means "
             "xpnet is faster):", "",
             "| device | xpnet's default step | s/epoch | fastest peer | s/epoch | xpnet / peer | xpnet's fastest step "
             "| s/epoch | it / peer |",
             "|---|---|---:|---|---:|---:|---|---:|---:|"]
    for device, row in summary.items():
        peer = row["fastest_peer"] or "none ran"
        cells = ((f"{row['peer_epoch_seconds']:.4f}", f"{row['vs_fastest_peer']:.2f}x",
                  f"{row['fastest_xpnet_vs_fastest_peer']:.2f}x") if row["fastest_peer"] else ("", "n/a", "n/a"))
        lines.append(f"| {device} | {row['xpnet']} | {row['epoch_seconds']:.4f} | {peer} | {cells[0]} | {cells[1]} | "
                     f"{row['fastest_xpnet']} | {row['fastest_xpnet_epoch_seconds']:.4f} | {cells[2]} |")
    for device, row in summary.items():
        by_reason: dict = {}
        for name, reason in row["peers_not_run"].items():
            by_reason.setdefault(reason, []).append(name)
        if by_reason:
            lines.append(f"\n{device} peers that did not run: "
                         + "; ".join(f"{', '.join(names)} ({reason})" for reason, names in by_reason.items()) + ".")
    return "\n".join(lines) + "\n"


def _accuracy(result: dict) -> str:
    """A contestant's test accuracy for the report; blank for the sgemm floor, which trains nothing."""
    return "" if result.get("test_accuracy") is None else f"{result['test_accuracy']:.4f}"


def markdown_table(results: dict, task: Task, environment: dict) -> str:
    from .env import machine_markdown

    lines = [
        f"**Task**: {task.describe()}.  ",
        machine_markdown(environment),
        "",
        "| contestant | s/epoch (median) | samples/s | vs PyTorch same device | test accuracy | peak host MiB | peak GPU MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        if r["status"] != "ok":
            lines.append(f"| {name} | {r['status']}: {r['reason']} | | | | | |")
            continue
        base = results.get(baseline_for(name), {})
        ratio = (f"{r['median_epoch_seconds'] / base['median_epoch_seconds']:.2f}x"
                 if base.get("status") == "ok" else "n/a")
        gpu_mem = f"{r['peak_gpu_memory_bytes'] / 2**20:.0f}" if "peak_gpu_memory_bytes" in r else ""
        lines.append(
            f"| {name} | {r['median_epoch_seconds']:.3f} | {r['samples_per_second']:,.0f} | {ratio} | "
            f"{_accuracy(r)} | {r['peak_host_memory_bytes'] / 2**20:.0f} | {gpu_mem} |"
        )
    lines.append("")
    lines.append("Ratios are epoch-time ratios against PyTorch eager on the same device, measured in the same run "
                 "(below 1 means faster than PyTorch).")
    if environment.get("rounds", 1) > 1:
        lines.append(f"Each contestant ran {environment['rounds']} times, interleaved with the others in a rotating "
                     f"order; the medians are over all {environment['rounds'] * task.epochs} epochs.")
    floor = results.get("sgemm-floor", {})
    if floor.get("status") == "ok":
        line = (f"`sgemm-floor` is not a trainer: one epoch's matrix products alone ({floor['gflop_per_second']:.0f} "
                f"GFLOP/s, {floor['blas']}), the least time any step can take here")
        fused = results.get("xpnet-numpy-fused", {})
        if fused.get("status") == "ok":
            line += f"; xpnet-numpy-fused takes {fused['median_epoch_seconds'] / floor['median_epoch_seconds']:.2f}x it"
        lines.append("")
        lines.append(line + ".")
    return "\n".join(lines) + "\n"


def precision_summary(results: dict) -> dict:
    """Per ``matmul_precision`` that xpnet ran at: its epoch and accuracy, the fastest peer at the
    matching setting (``contestants.PRECISION_CONTESTANTS``) and xpnet's time as a multiple of it,
    the same against the fastest peer at any setting (a lower precision that only slow peers
    offer must not look like a win), and xpnet's accuracy minus compiled PyTorch's in points
    (issue 12: within 0.3)."""
    from .contestants import PRECISION_CONTESTANTS

    every_peer = {p for _, peers in PRECISION_CONTESTANTS.values() for p in peers
                  if results.get(p, {}).get("status") == "ok"}
    fastest = min(every_peer, key=lambda p: results[p]["median_epoch_seconds"]) if every_peer else None
    summary = {}
    for precision, (mine, peers) in PRECISION_CONTESTANTS.items():
        r = results.get(mine, {})
        if r.get("status") != "ok":
            continue
        ran = {p: results[p] for p in peers if results.get(p, {}).get("status") == "ok"}
        row = {"xpnet": mine, "epoch_seconds": r["median_epoch_seconds"], "accuracy": r["test_accuracy"],
               "best_peer": None, "vs_best_peer": None, "torch_accuracy": None, "accuracy_minus_torch_points": None,
               "fastest_peer_any_setting": fastest, "vs_fastest_peer_any_setting": None}
        if fastest:
            row["vs_fastest_peer_any_setting"] = r["median_epoch_seconds"] / results[fastest]["median_epoch_seconds"]
        if ran:
            best = min(ran, key=lambda p: ran[p]["median_epoch_seconds"])
            row.update(best_peer=best, vs_best_peer=r["median_epoch_seconds"] / ran[best]["median_epoch_seconds"])
        torch_peer = ran.get(peers[0])
        if torch_peer:
            row.update(torch_accuracy=torch_peer["test_accuracy"],
                       accuracy_minus_torch_points=100 * (r["test_accuracy"] - torch_peer["test_accuracy"]))
        summary[precision] = row
    return summary


def precision_markdown(summary: dict, epochs: int) -> str:
    lines = [f"Matrix-product precision (`matmul_precision`), each against the peers at the matching setting; "
             f"accuracy after {epochs} epochs:", "",
             "| precision | xpnet | s/epoch | fastest peer | xpnet / peer | fastest peer at any setting | xpnet / it "
             "| accuracy | compiled PyTorch's | difference (points) |",
             "|---|---|---:|---|---:|---|---:|---:|---:|---:|"]
    for precision, row in summary.items():
        peer = f"{row['best_peer']}" if row["best_peer"] else "none ran"
        ratio = f"{row['vs_best_peer']:.2f}x" if row["vs_best_peer"] is not None else "n/a"
        torch_acc = f"{row['torch_accuracy']:.4f}" if row["torch_accuracy"] is not None else "n/a"
        diff = f"{row['accuracy_minus_torch_points']:+.2f}" if row["accuracy_minus_torch_points"] is not None else "n/a"
        fastest = row["fastest_peer_any_setting"] or "none ran"
        vs_fastest = f"{row['vs_fastest_peer_any_setting']:.2f}x" if row["vs_fastest_peer_any_setting"] is not None else "n/a"
        lines.append(f"| {precision} | {row['xpnet']} | {row['epoch_seconds']:.4f} | {peer} | {ratio} | {fastest} | "
                     f"{vs_fastest} | {row['accuracy']:.4f} | {torch_acc} | {diff} |")
    return "\n".join(lines) + "\n"


def bar_chart(results: dict, path: Path, title: str) -> None:
    from xpnet.plotting import _pyplot, save_figure

    plt = _pyplot()
    ok = {k: v for k, v in results.items() if v["status"] == "ok"}
    if not ok:
        return
    names = list(ok)
    fig, (ax_t, ax_a) = plt.subplots(1, 2, figsize=(12, 0.6 * len(names) + 2))
    colors = ["tab:orange" if ("cupy" in n or "cuda" in n) else "tab:blue" for n in names]
    ax_t.barh(names, [ok[n]["median_epoch_seconds"] for n in names], color=colors)
    ax_t.set(xlabel="seconds per epoch (median, lower is better)")
    trained = [ok[n]["test_accuracy"] for n in names if ok[n]["test_accuracy"] is not None]  # the floor has none
    ax_a.barh(names, [ok[n]["test_accuracy"] or 0.0 for n in names], color=colors)
    lo = min(trained, default=0.0)
    ax_a.set(xlabel="test accuracy", xlim=(max(0.0, lo - 0.02), 1.0))
    for ax in (ax_t, ax_a):
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    ax_a.set_yticklabels([])
    fig.suptitle(title)
    save_figure(fig, path)


def crossover(points: list[dict], axis: str, key: str, cpu: str = "xpnet-numpy-fused", gpu: str = "xpnet-cupy-fused"):
    """The smallest sweep value at which the GPU contestant's epoch is faster than the CPU one's, or None."""
    times = {}
    for p in points:
        if p["axis"] == axis and p["status"] == "ok" and p["contestant"] in (cpu, gpu):
            times.setdefault(p[key], {})[p["contestant"]] = p["median_epoch_seconds"]
    for value in sorted(times):
        pair = times[value]
        if cpu in pair and gpu in pair and pair[gpu] < pair[cpu]:
            return value
    return None


def sweep_chart(points: list[dict], path: Path, title: str) -> None:
    from xpnet.plotting import _pyplot, save_figure

    plt = _pyplot()
    fig, (ax_b, ax_h) = plt.subplots(1, 2, figsize=(12, 4.5))
    for axis, key, ax in (("batch_size", "batch_size", ax_b), ("hidden", "hidden_total", ax_h)):
        for name in sorted({p["contestant"] for p in points}):
            pts = sorted((p for p in points if p["axis"] == axis and p["contestant"] == name and p["status"] == "ok"),
                         key=lambda p: p[key])
            if pts:
                ax.plot([p[key] for p in pts], [p["median_epoch_seconds"] for p in pts], "o-", label=name)
        where = crossover(points, axis, key)
        if where is not None:
            ax.axvline(where, color="grey", linestyle=":")
            ax.annotate(f"GPU faster from {where}", (where, 0.95), xycoords=("data", "axes fraction"),
                        ha="left", va="top", fontsize=9)
        ax.set(xscale="log", yscale="log", ylabel="seconds per epoch")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    ax_b.set(xlabel="batch size (hidden 256,128)")
    ax_h.set(xlabel="hidden units in total (two layers; batch 128)")
    fig.suptitle(title)
    save_figure(fig, path)


# -- main ---------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.mnist", description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=positive_int, default=None, help=f"measured epochs (default {REFERENCE.epochs}; quick: 2)")
    p.add_argument("--batch-size", type=positive_int, default=REFERENCE.batch_size)
    p.add_argument("--hidden", type=widths, default=REFERENCE.hidden, help="hidden widths, e.g. 256,128")
    p.add_argument("--seed", type=non_negative_int, default=REFERENCE.seed,
                   help="seeds every contestant's initial weights and shuffling (default %(default)s)")
    p.add_argument("--contestants", default="all",
                   help="comma-separated names, 'all', 'cpu' or 'precision' (each matmul_precision and its peers)")
    p.add_argument("--out", default=str(REPO / "bench" / "out"), help="output folder")
    p.add_argument("--quick", action="store_true", help="CI smoke test: 6000 training images, CPU contestants, 2 epochs")
    p.add_argument("--sweep", action="store_true", help="also time epochs over batch sizes and hidden widths")
    p.add_argument("--sweep-batch-sizes", type=batch_size_list, default=",".join(map(str, SWEEP_BATCH_SIZES)),
                   help="batch sizes for --sweep (default %(default)s)")
    p.add_argument("--sweep-hidden", type=networks, default=";".join(",".join(map(str, h)) for h in SWEEP_HIDDEN),
                   help="hidden widths for --sweep, networks separated by ';' (default %(default)s)")
    p.add_argument("--sweep-contestants", default=",".join(SWEEP_CONTESTANTS),
                   help="contestants timed in --sweep, of those that ran (default %(default)s)")
    p.add_argument("--timeout", type=positive_seconds, default=1800, help="seconds allowed per contestant")
    p.add_argument("--rounds", type=positive_int, default=1,
                   help="run every contestant this many times, interleaved, and pool the epochs (default 1)")
    p.add_argument("--threads", default="all",
                   help="CPU cores each contestant may use: a number, or 'all' (default); see thread_settings")
    p.add_argument("--run-one", help=argparse.SUPPRESS)
    p.add_argument("--task-json", help=argparse.SUPPRESS)
    p.add_argument("--result-json", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def parse_threads(spec: str) -> int | None:
    """``--threads``: None for 'all', else a core count between 1 and this machine's."""
    from .env import usable_cores

    available = usable_cores()
    if spec.strip().lower() == "all":
        return None
    try:
        threads = int(spec)
    except ValueError:
        threads = 0
    if not 1 <= threads <= available:
        raise SystemExit(f"bench.mnist: --threads must be 'all' or a whole number from 1 to {available}, got {spec!r}")
    return threads


def rotated(names: list, k: int) -> list:
    """``names`` starting at position ``k`` (mod its length): each round starts with another contestant."""
    k %= max(1, len(names))
    return names[k:] + names[:k]


def pool_rounds(runs: list[dict], task: Task) -> dict:
    """One contestant's rounds as one result: the first successful round's fields, with every
    round's epochs pooled into ``epoch_seconds`` and the median, rates and peak memory over all."""
    import statistics

    ok = [r for r in runs if r["status"] == "ok"]
    if not ok:
        return runs[0]
    pooled = dict(ok[0])
    seconds = [s for r in ok for s in r["epoch_seconds"]]
    median = statistics.median(seconds)
    pooled.update(epoch_seconds=seconds, median_epoch_seconds=median, samples_per_second=task.train_samples / median,
                  round_medians=[r["median_epoch_seconds"] for r in ok], rounds=len(runs),
                  peak_host_memory_bytes=max(r["peak_host_memory_bytes"] for r in ok))
    if "flop_per_epoch" in pooled:
        pooled["gflop_per_second"] = pooled["flop_per_epoch"] / median / 1e9
    if len(ok) < len(runs):
        pooled["failed_rounds"] = [r.get("reason") for r in runs if r["status"] != "ok"]
    return pooled


def gpu_rooflines(results: dict, task: Task) -> tuple[dict, dict | None]:
    """Each GPU contestant's roofline per step (``bench.roofline``) against limits measured now,
    once every contestant's process has ended; ``({}, None)`` where no GPU contestant ran."""
    from .roofline import machine_limits, report

    if not any(r.get("status") == "ok" and any(w in n for w in ("cupy", "cuda", "gpu")) for n, r in results.items()):
        return {}, None
    try:
        limits = machine_limits()
    except Exception as exc:  # reported, not fatal: the timings stand without it
        print(f"bench.mnist: no roofline ({type(exc).__name__}: {exc})", file=sys.stderr)
        return {}, None
    return report(results, task, limits), limits


def choose_contestants(spec: str, quick: bool) -> list[str]:
    from .contestants import CONTESTANTS, CPU_CONTESTANTS, PRECISION_CONTESTANTS

    if quick and spec == "all":
        spec = "cpu"
    if spec == "all":
        return list(CONTESTANTS)
    if spec == "cpu":
        return list(CPU_CONTESTANTS)
    if spec == "precision":  # xpnet at each matmul_precision and its peers at the matching setting
        return [name for mine, peers in PRECISION_CONTESTANTS.values() for name in (mine, *peers)]
    return contestant_names(spec, "contestant(s)")


def choose_sweep_contestants(spec: str) -> list[str]:
    """``--sweep-contestants``: names of contestants (those that ran are timed at every point)."""
    names = contestant_names(spec, "--sweep-contestants")
    if not names:
        raise SystemExit(f"bench.mnist: --sweep-contestants names no contestant: {spec!r}")
    return names


def contestant_names(spec: str, what: str) -> list[str]:
    """The comma-separated names in ``spec``; a name that is no contestant ends the run, naming ``what``."""
    from .contestants import CONTESTANTS

    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONTESTANTS]
    if unknown:
        raise SystemExit(f"bench.mnist: unknown {what} {unknown}; choose from {list(CONTESTANTS)}")
    return names


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.run_one:  # child process
        result = run_one(args.run_one, Task.from_dict(json.loads(args.task_json)))
        Path(args.result_json).write_text(json.dumps(result))
        return 0

    from tqdm.auto import tqdm

    from xpnet._io import atomic_write

    from .env import environment

    task = REFERENCE.but(batch_size=args.batch_size, hidden=args.hidden, seed=args.seed)
    if args.quick:
        task = task.but(train_samples=6000, test_samples=2000, epochs=2)
    if args.epochs is not None:
        task = task.but(epochs=args.epochs)
    names = choose_contestants(args.contestants, args.quick)
    threads = parse_threads(args.threads)
    sweep_names = choose_sweep_contestants(args.sweep_contestants) if args.sweep else []  # checked before any run
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    env = environment()
    env["threads"] = threads or env.get("cpu_cores")
    env["rounds"] = args.rounds
    print(f"bench.mnist: {task.describe()}; {env['threads']} CPU thread(s) per contestant", flush=True)

    # --rounds: every contestant runs once per round, in an order rotated each round, and its
    # epochs are pooled. This VM's speed drifts over minutes, so interleaving is what makes the
    # same-run ratios fair; the sweep interleaves its contestants at every point likewise.
    runs: dict = {name: [] for name in names}
    partial = out / "mnist.partial.json"  # every run so far, raw: what a run killed part-way (a stage's timeout) keeps

    def keep_partial(sweep_runs: list | None = None) -> None:
        record = {"task": task.to_dict(), "environment": env, "runs": runs, "sweep_runs": sweep_runs or []}
        atomic_write(partial, lambda fh: fh.write(json.dumps(record, indent=2, default=str).encode()))

    with tqdm(total=len(names) * args.rounds, desc="contestants", unit="run", file=sys.stderr) as bar:
        for round_no in range(args.rounds):
            for name in rotated(names, round_no):
                bar.set_postfix_str(name)
                runs[name].append(r := run_in_child(name, task, args.timeout, threads))
                if r["status"] == "ok":
                    accuracy = _accuracy(r)  # blank for the floor
                    status = f"{r['median_epoch_seconds']:.3f} s/epoch" + (f", accuracy {accuracy}" if accuracy else "")
                else:
                    status = f"{r['status']}: {r['reason']}"
                tqdm.write(f"  {name:<24} {status}", file=sys.stdout)
                keep_partial()
                bar.update()
    results = {name: pool_rounds(rs, task) for name, rs in runs.items()}

    sweep = []
    if args.sweep:
        sweep_names = [n for n in sweep_names if results.get(n, {}).get("status") == "ok"]
        base = task.but(epochs=2, train_samples=min(task.train_samples, 20000))
        batch_sizes, hidden_widths = args.sweep_batch_sizes, args.sweep_hidden
        grid = [("batch_size", base.but(batch_size=b)) for b in batch_sizes]
        grid += [("hidden", base.but(hidden=h)) for h in hidden_widths]
        point_runs: dict = {}
        jobs = [(name, axis, t, i) for i, (axis, t) in enumerate(grid) for round_no in range(args.rounds)
                for name in rotated(sweep_names, round_no + i)]
        done: list = []
        for name, axis, t, i in tqdm(jobs, desc="sweep", unit="run", file=sys.stderr):
            point_runs.setdefault((i, name), (axis, t, []))[2].append(r := run_in_child(name, t, args.timeout, threads))
            done.append({"contestant": name, "axis": axis, "batch_size": t.batch_size, "hidden": list(t.hidden), **r})
            keep_partial(done)
        for (i, name), (axis, t, rs) in point_runs.items():
            sweep.append({"contestant": name, "axis": axis, "batch_size": t.batch_size, "hidden": list(t.hidden),
                          "hidden_total": sum(t.hidden), "train_samples": t.train_samples, **pool_rounds(rs, t)})

    crossovers = {axis: crossover(sweep, axis, key) for axis, key in (("batch_size", "batch_size"), ("hidden", "hidden_total"))}
    rooflines, limits = gpu_rooflines(results, task)
    precisions = precision_summary(results)
    peers = peer_summary(results)
    report = {
        "gpu_faster_from": crossovers if sweep else None,
        "task": task.to_dict(),
        "task_description": task.describe(),
        "environment": env,
        "results": results,
        "sweep": sweep,
        "roofline": rooflines,
        "machine_limits": limits,
        "matmul_precision": precisions,
        "vs_fastest_peer": peers,
        "total_seconds": time.perf_counter() - started,
    }
    table = markdown_table(results, task, env)
    if peers:
        table += "\n" + peer_markdown(peers)
    if rooflines:
        from .roofline import markdown

        table += "\n\n" + markdown(rooflines, limits) + "\n"
    if precisions:
        table += "\n" + precision_markdown(precisions, task.epochs)
    atomic_write(out / "mnist.json", lambda fh: fh.write(json.dumps(report, indent=2).encode()))
    atomic_write(out / "mnist.md", lambda fh: fh.write(table.encode()))
    partial.unlink(missing_ok=True)  # the whole report is written
    try:
        bar_chart(results, out / "mnist.png", task.describe())
        if sweep:
            sweep_chart(sweep, out / "sweep.png", "epoch time against batch size and width (20k images)")
    except ImportError as exc:
        print(f"bench.mnist: no charts ({exc})", file=sys.stderr)
    print()
    print(table)
    print(f"wrote {out / 'mnist.json'}, {out / 'mnist.md'}, {out / 'mnist.png'}"
          + (f", {out / 'sweep.png'}" if sweep else "") + f" in {report['total_seconds']:.0f} s")
    return 0 if any(r["status"] == "ok" for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
