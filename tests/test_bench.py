"""The benchmark harness in quick mode (CPU contestants): every field is there, skips carry a reason."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.mnist


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    contestants = ("xpnet-numpy-fused,xpnet-numpy-unfused,xpnet-cupy-fused,sklearn-mlp,torch-cpu,torch-cpu-compiled,"
                   "jax-cpu,jax-cpu-scan,xpnet-cupy-tf32,torch-cuda-compiled-bf16,sgemm-floor")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.mnist", "--quick", "--epochs", "1", "--seed", "1", "--contestants", contestants,
         "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, json.loads((out / "mnist.json").read_text()), proc.stdout


def test_report_has_every_field(quick_run):
    out, report, stdout = quick_run
    assert report["task"]["hidden"] == [256, 128] and report["task"]["train_samples"] == 6000
    assert report["task"]["seed"] == 1  # --seed reaches the task every contestant is given
    env = report["environment"]
    for key in ("cpu_model", "cpu_cores", "gpu", "versions", "git_commit", "date_utc", "command", "python"):
        assert key in env
    assert env["versions"]["numpy"]
    for name in ("xpnet-numpy-fused", "xpnet-numpy-unfused"):
        r = report["results"][name]
        assert r["status"] == "ok", r
        for key in ("epoch_seconds", "median_epoch_seconds", "samples_per_second", "test_accuracy",
                    "peak_host_memory_bytes", "warmup_seconds"):
            assert key in r
        assert r["median_epoch_seconds"] > 0 and 0.5 < r["test_accuracy"] <= 1.0
        assert r["peak_host_memory_bytes"] < 2**30
    assert report["results"]["xpnet-numpy-fused"]["fused"] is True
    assert report["results"]["xpnet-numpy-fused"]["training_step"] == "numba-compiled"
    assert report["results"]["xpnet-numpy-unfused"]["training_step"] == "eager"
    assert report["results"]["xpnet-numpy-unfused"]["fused"] is False
    table = (out / "mnist.md").read_text()
    assert "| xpnet-numpy-fused |" in table and table in stdout
    assert not (out / "mnist.partial.json").exists()  # the runs so far, only while the report is not written
    assert (out / "mnist.png").read_bytes()[:4] == b"\x89PNG"
    floor = report["results"]["sgemm-floor"]  # not a trainer: no accuracy, a blank in the table
    assert floor["status"] == "ok" and floor["test_accuracy"] is None and floor["gflop_per_second"] > 0
    assert [line for line in table.splitlines() if line.startswith("| sgemm-floor |")][0].split(" | ")[4] == ""


def test_torch_compiled_cpu_step_trains_as_the_eager_one(quick_run):
    _, report, _ = quick_run
    eager, compiled = report["results"]["torch-cpu"], report["results"]["torch-cpu-compiled"]
    if eager["status"] != "ok":
        pytest.skip(f"torch-cpu did not run: {eager.get('reason')}")
    assert compiled["status"] == "ok", compiled
    assert compiled["warmup_seconds"] > 0 and compiled["median_epoch_seconds"] > 0
    # the same initial weights and batches (the warm-ups draw the same shuffle): only rounding differs
    assert abs(compiled["test_accuracy"] - eager["test_accuracy"]) <= 0.005


def test_unavailable_contestants_are_skipped_with_a_reason(quick_run):
    _, report, _ = quick_run
    from xpnet.backend import cupy_usable

    gpu = report["results"]["xpnet-cupy-fused"]
    if cupy_usable()[0]:
        assert gpu["status"] == "ok"
    else:
        assert gpu["status"] == "skipped" and gpu["reason"]
    for name, r in report["results"].items():
        assert r["status"] in ("ok", "skipped"), (name, r)
    if not cupy_usable()[0]:  # tensor-core contestants refuse, saying why, rather than run another precision
        for name in ("xpnet-cupy-tf32", "torch-cuda-compiled-bf16"):
            assert report["results"][name]["status"] == "skipped" and report["results"][name]["reason"]
        assert report["matmul_precision"] == {}


def test_jax_scan_epoch_trains_as_the_jit_step(quick_run):
    # one lax.scan per epoch runs the same steps as one jit call per batch: same accuracy
    _, report, _ = quick_run
    step, scan = report["results"]["jax-cpu"], report["results"]["jax-cpu-scan"]
    if step["status"] != "ok":
        pytest.skip(f"jax-cpu did not run: {step.get('reason')}")
    assert scan["status"] == "ok" and scan["lax_scan"] is True and step["lax_scan"] is False
    assert scan["jax_default_matmul_precision"] == step["jax_default_matmul_precision"] == "float32"
    assert abs(scan["test_accuracy"] - step["test_accuracy"]) <= 0.005


def test_precision_summary_compares_with_the_fastest_peer_at_the_same_setting():
    from bench.mnist import precision_markdown, precision_summary

    def ok(seconds, accuracy):
        return {"status": "ok", "median_epoch_seconds": seconds, "test_accuracy": accuracy}

    results = {"xpnet-cupy-fused": ok(0.02, 0.975), "torch-cuda-compiled": ok(0.05, 0.977),
               "torch-cuda-autotune": ok(0.04, 0.976), "jax-gpu": {"status": "skipped", "reason": "no GPU"},
               "xpnet-cupy-bf16": ok(0.01, 0.970), "torch-cuda-compiled-bf16": ok(0.03, 0.975)}
    summary = precision_summary(results)
    assert set(summary) == {"highest", "bf16"}  # tf32 did not run
    assert summary["highest"]["best_peer"] == "torch-cuda-autotune"
    assert summary["highest"]["vs_best_peer"] == pytest.approx(0.5)
    assert summary["highest"]["accuracy_minus_torch_points"] == pytest.approx(-0.2)
    assert summary["bf16"]["accuracy_minus_torch_points"] == pytest.approx(-0.5)
    # the fastest peer at any setting: the bf16 one is faster than every "highest" peer
    assert summary["highest"]["fastest_peer_any_setting"] == "torch-cuda-compiled-bf16"
    assert summary["highest"]["vs_fastest_peer_any_setting"] == pytest.approx(0.02 / 0.03)
    assert summary["bf16"]["vs_fastest_peer_any_setting"] == pytest.approx(0.01 / 0.03)
    table = precision_markdown(summary, 10)
    assert "after 10 epochs" in table
    assert "| bf16 | xpnet-cupy-bf16 | 0.0100 | torch-cuda-compiled-bf16 | 0.33x | torch-cuda-compiled-bf16 | 0.33x |" in table
    assert "| highest | xpnet-cupy-fused | 0.0200 | torch-cuda-autotune | 0.50x | torch-cuda-compiled-bf16 | 0.67x |" in table


def test_the_report_sets_the_default_step_against_the_fastest_peer_of_its_device(quick_run):
    out, report, stdout = quick_run
    results, summary = report["results"], report["vs_fastest_peer"]
    assert "CPU" in summary and ("GPU" in summary) == (results["xpnet-cupy-fused"]["status"] == "ok")
    row = summary["CPU"]
    assert row["xpnet"] == "xpnet-numpy-fused" and row["epoch_seconds"] == results["xpnet-numpy-fused"]["median_epoch_seconds"]
    peers = ("sklearn-mlp", "torch-cpu", "torch-cpu-compiled", "jax-cpu", "jax-cpu-scan")  # of this run's contestants
    ran = {p: results[p]["median_epoch_seconds"] for p in peers if results[p]["status"] == "ok"}
    assert row["fastest_peer"] == min(ran, key=ran.get)  # sklearn-mlp at least runs everywhere
    assert row["vs_fastest_peer"] == pytest.approx(row["epoch_seconds"] / ran[row["fastest_peer"]])
    assert set(row["peers_not_run"]) == set(peers) - set(ran)
    assert "Against the fastest peer on each device" in stdout and "| CPU | xpnet-numpy-fused |" in stdout


def test_peer_summary_takes_other_libraries_at_full_precision_on_the_same_device():
    from bench.mnist import peer_markdown, peer_summary

    def ok(seconds):
        return {"status": "ok", "median_epoch_seconds": seconds, "test_accuracy": 0.97}

    results = {"xpnet-numpy-fused": ok(0.5), "xpnet-numpy-fused-eager": ok(0.4), "sgemm-floor": ok(0.1),
               "torch-cpu": ok(0.9), "jax-cpu-scan": ok(0.6), "torch-cpu-compiled": {"status": "failed", "reason": "boom"},
               "xpnet-cupy-fused": ok(0.05), "xpnet-cupy-bf16": ok(0.01), "torch-cuda-compiled-bf16": ok(0.02),
               "torch-cuda": ok(0.8), "jax-gpu-scan": {"status": "skipped", "reason": "JAX has no GPU"},
               "jax-gpu": {"status": "skipped", "reason": "JAX has no GPU"}}
    summary = peer_summary(results)
    cpu, gpu = summary["CPU"], summary["GPU"]
    # the floor is not a trainer, and xpnet's own steps are not peers
    assert cpu["fastest_peer"] == "jax-cpu-scan" and cpu["vs_fastest_peer"] == pytest.approx(0.5 / 0.6)
    assert cpu["fastest_xpnet"] == "xpnet-numpy-fused-eager"
    assert cpu["fastest_xpnet_vs_fastest_peer"] == pytest.approx(0.4 / 0.6)
    assert cpu["peers_not_run"] == {"torch-cpu-compiled": "boom"}
    # bf16 peers and steps belong to the precision table, not here
    assert gpu["fastest_peer"] == "torch-cuda" and gpu["fastest_xpnet"] == "xpnet-cupy-fused"
    table = peer_markdown(summary)
    assert "| CPU | xpnet-numpy-fused | 0.5000 | jax-cpu-scan | 0.6000 | 0.83x | xpnet-numpy-fused-eager | 0.4000 | 0.67x |" in table
    assert "GPU peers that did not run: jax-gpu-scan, jax-gpu (JAX has no GPU)." in table
    # no peer ran: said, not divided by
    alone = peer_summary({"xpnet-numpy-fused": ok(0.5), "torch-cpu": {"status": "skipped", "reason": "no torch"}})
    assert alone["CPU"]["fastest_peer"] is None and alone["CPU"]["vs_fastest_peer"] is None
    assert "| CPU | xpnet-numpy-fused | 0.5000 | none ran |  | n/a |" in peer_markdown(alone)
    assert peer_summary({"xpnet-numpy-fused": {"status": "skipped", "reason": "x"}}) == {}


def test_crossover_finds_where_the_gpu_overtakes():
    from bench.mnist import crossover

    def point(name, batch, seconds):
        return {"contestant": name, "axis": "batch_size", "batch_size": batch, "status": "ok", "median_epoch_seconds": seconds}

    points = [point("xpnet-numpy-fused", 32, 1.0), point("xpnet-cupy-fused", 32, 2.0),
              point("xpnet-numpy-fused", 128, 0.5), point("xpnet-cupy-fused", 128, 0.4),
              point("xpnet-numpy-fused", 512, 0.3), point("xpnet-cupy-fused", 512, 0.1)]
    assert crossover(points, "batch_size", "batch_size") == 128
    assert crossover(points[:2], "batch_size", "batch_size") is None


def test_kernel_benchmark_quick(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench.kernels", "--quick", "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "kernels.json").read_text())
    cpu_rows = [r for r in report["rows"] if r["device"] == "cpu"]
    assert {r["kernel"] for r in cpu_rows} == {"sigmoid_backward", "softmax_cross_entropy", "bias_sigmoid", "adam_update"}
    for r in cpu_rows:
        assert r["fused_seconds"] > 0 and r["reference_seconds"] > 0 and r["first_call_seconds"] >= 0
    assert "| cpu | sigmoid_backward |" in (tmp_path / "kernels.md").read_text()


def test_rounds_pool_and_rotate():
    from bench.mnist import pool_rounds, rotated
    from bench.task import REFERENCE

    assert rotated(["a", "b", "c"], 1) == ["b", "c", "a"] and rotated(["a", "b", "c"], 3) == ["a", "b", "c"]
    run = lambda seconds: {"status": "ok", "epoch_seconds": seconds, "median_epoch_seconds": sorted(seconds)[1],  # noqa: E731
                           "peak_host_memory_bytes": 10 * len(seconds), "test_accuracy": 0.9}
    pooled = pool_rounds([run([1.0, 2.0, 3.0]), {"status": "failed", "reason": "boom"}, run([5.0, 6.0, 7.0, 8.0])],
                         REFERENCE)
    assert pooled["epoch_seconds"] == [1.0, 2.0, 3.0, 5.0, 6.0, 7.0, 8.0] and pooled["median_epoch_seconds"] == 5.0
    assert pooled["rounds"] == 3 and pooled["failed_rounds"] == ["boom"] and pooled["round_medians"] == [2.0, 6.0]
    assert pooled["peak_host_memory_bytes"] == 40 and pooled["samples_per_second"] == REFERENCE.train_samples / 5.0
    skipped = {"status": "skipped", "reason": "no GPU"}
    assert pool_rounds([skipped, skipped], REFERENCE) == skipped


def test_a_run_cut_short_keeps_the_contestants_it_ran(monkeypatch, tmp_path):
    """A device stage's timeout kills bench.mnist part-way; mnist.partial.json then holds every
    contestant's run so far (the report is written only at the end)."""
    import bench.mnist

    def run_in_child(name, task, timeout, threads):
        if name == "sklearn-mlp":
            raise KeyboardInterrupt  # as the timeout's kill
        return {"status": "ok", "median_epoch_seconds": 0.5, "test_accuracy": 0.9, "epoch_seconds": [0.5]}

    monkeypatch.setattr(bench.mnist, "run_in_child", run_in_child)
    with pytest.raises(KeyboardInterrupt):
        bench.mnist.main(["--contestants", "xpnet-numpy-fused,sklearn-mlp", "--out", str(tmp_path)])
    kept = json.loads((tmp_path / "mnist.partial.json").read_text())
    assert kept["runs"] == {"xpnet-numpy-fused": [run_in_child("xpnet-numpy-fused", None, 0, None)], "sklearn-mlp": []}
    assert kept["task"]["hidden"] == [256, 128] and "versions" in kept["environment"] and kept["sweep_runs"] == []
    assert not (tmp_path / "mnist.json").exists()


def test_bad_arguments_are_refused_before_anything_runs(capsys):
    """--epochs 0 used to run every contestant and then raise StatisticsError; --batch-size 0
    ran them all to a ZeroDivisionError each; a misspelt --sweep-contestants name was dropped.
    The messages are the xpnet command's (its argparse types)."""
    from bench.mnist import main, parse_args

    args = parse_args(["--hidden", "64,32", "--sweep-batch-sizes", "32,4096", "--sweep-hidden", "64,32;4096,2048",
                       "--timeout", "1.5"])
    assert args.hidden == (64, 32) and args.sweep_batch_sizes == [32, 4096] and args.timeout == 1.5
    assert args.sweep_hidden == [(64, 32), (4096, 2048)] and parse_args([]).sweep_batch_sizes[0] == 32
    assert parse_args([]).seed == 0 and parse_args(["--seed", "3"]).seed == 3
    for argv, message in [(["--epochs", "0"], "--epochs: expected a positive integer, got 0"),
                          (["--seed", "-1"], "--seed: expected an integer >= 0, got -1"),
                          (["--batch-size", "0"], "--batch-size: expected a positive integer, got 0"),
                          (["--rounds", "x"], "--rounds: expected a positive integer, got 'x'"),
                          (["--hidden", "256,,128"], "--hidden: expected comma-separated layer widths such as 256,128, got '256,,128'"),
                          (["--timeout", "nan"], "--timeout: expected a positive number, got nan"),
                          (["--sweep-batch-sizes", "0,32"], "--sweep-batch-sizes: expected comma-separated batch sizes"),
                          (["--sweep-hidden", "64,32;"], "--sweep-hidden: expected networks separated by ';'")]:
        with pytest.raises(SystemExit) as info:
            parse_args(argv)
        assert info.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit, match=r"unknown --sweep-contestants \['torch-cuda-compield'\]"):
        main(["--sweep", "--sweep-contestants", "xpnet-cupy-fused,torch-cuda-compield", "--out", "/nonexistent/never"])


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_setaffinity"), reason="no CPU affinity on this platform")
def test_threads_pin_the_child_and_size_its_pools(tmp_path):
    import os

    from bench.mnist import module_command, parse_threads, thread_settings

    assert parse_threads("all") is None and parse_threads("1") == 1
    for bad in ("0", "x", "999"):
        with pytest.raises(SystemExit, match="--threads"):
            parse_threads(bad)
    env, cores = thread_settings(1)
    assert env["OPENBLAS_NUM_THREADS"] == env["OMP_NUM_THREADS"] == "1" and "XLA_FLAGS" in env
    assert cores == sorted(os.sched_getaffinity(0))[:1]
    (tmp_path / "show_threads.py").write_text(  # what the child sees, as a module run with -m would
        "import os, sys\n"
        "print(__name__, sorted(os.sched_getaffinity(0)), os.environ['OPENBLAS_NUM_THREADS'], sys.argv[1:])\n")
    out = subprocess.run(module_command("show_threads", ["--run-one", "x y"], cores), cwd=tmp_path,
                         env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout
    assert out == f"__main__ {cores} 1 ['--run-one', 'x y']\n"
    assert module_command("show_threads", ["a"]) == [sys.executable, "-m", "show_threads", "a"]
    assert thread_settings(None) == ({}, None)


def test_steps_alternate_the_step_kinds(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bench.steps", "--train-samples", "1024", "--hidden", "16", "--rounds", "2",
         "--threads", "1", "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "steps-b128-h16-t1.json").read_text())
    results = report["results"]
    assert report["threads"] == 1
    assert [results[k]["training_step"] for k in ("compiled", "eager", "reference")] == ["numba-compiled", "eager", "eager"]
    assert all(len(r["epoch_seconds"]) == 2 for r in results.values())
    assert results["compiled"]["median_ratio_to_eager"] > 0 and "median_ratio_to_eager" not in results["eager"]
    proc = subprocess.run(
        [sys.executable, "-m", "bench.steps", "--train-samples", "1024", "--hidden", "16", "--rounds", "2",
         "--kinds", "compiled,eager", "--blas-threads", "1,2", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "steps-b128-h16-tall-blas1-2.json").read_text())["results"]
    assert sorted(results) == ["compiled @1", "compiled @2", "eager @1", "eager @2"]
    assert results["compiled @2"]["median_ratio_to_first_thread_count"] > 0
    assert "median_ratio_to_first_thread_count" not in results["compiled @1"]


def test_roofline_step_work_and_fractions():
    from bench.roofline import markdown, report, roofline, step_work

    work = step_work([784, 256, 128, 10], 128)
    products = 784 * 256 + 256 * 128 + 128 * 10
    assert work["flop"] == 2 * 128 * (2 * products + 256 * 128 + 128 * 10)  # ~0.15 GFLOP, no input gradient for layer 0
    assert work["parameters"] == products + 256 + 128 + 10
    assert work["bytes"] > 7 * 4 * work["parameters"]  # Adam's passes alone
    assert step_work([784, 256, 128, 10], 128, itemsize=8)["bytes"] == 2 * work["bytes"]
    limits = {"copy_bytes_per_second": 3e12, "fp32_flops": 50e12}
    r = roofline(100e-6, work, limits)
    assert r["achieved_tflops"] == pytest.approx(work["flop"] / 100e-6 / 1e12)
    assert r["bound_seconds"] == pytest.approx(max(work["flop"] / 50e12, work["bytes"] / 3e12))
    assert r["times_the_bound"] == pytest.approx(100e-6 / r["bound_seconds"])

    from bench.task import REFERENCE

    results = {"xpnet-cupy-fused": {"status": "ok", "median_epoch_seconds": 0.0469},
               "torch-cpu": {"status": "ok", "median_epoch_seconds": 2.0},
               "jax-gpu": {"status": "skipped"}}
    rooflines = report(results, REFERENCE, limits)
    assert list(rooflines) == ["xpnet-cupy-fused"]  # GPU contestants that ran, only
    assert rooflines["xpnet-cupy-fused"]["step_seconds"] == pytest.approx(0.0469 / 469)
    assert "| xpnet-cupy-fused | 100.0 |" in markdown(rooflines, limits)


def test_launches_per_kernel_per_step():
    # bench.launches' arithmetic, from profiler-like events: per step, per kernel, the slowest first;
    # kernels that ran once per epoch in both profiles drop out, and launch calls are not kernels
    from types import SimpleNamespace

    from bench.launches import kernel_name, kernel_tables, per_step, summarise

    def kernel(name, us):
        return SimpleNamespace(name=name, device_type="DeviceType.CUDA", device_time=us)

    gemm = "void xpnet_fused_gemm<float, 32, true, false>(float const*, float const*, float*, int)"
    update, shuffle = "void xpnet_update_step<float>(float*, long long)", "cupy_random_permutation"

    def epoch(steps):
        events = [kernel(shuffle, 9.0), SimpleNamespace(name="cudaGraphLaunch", device_type="DeviceType.CPU")]
        for _ in range(steps):
            events += [kernel(gemm, 6.0), kernel(gemm, 4.0), kernel(update, 3.0)]
        return summarise(events)

    short, long = epoch(2), epoch(12)
    assert short["kernels"] == 7 and short["host_launches"] == 1 and short["gpu_busy_us"] == pytest.approx(35.0)
    step = per_step(short, long, 10)
    assert step["kernels"] == pytest.approx(3.0) and step["gpu_busy_us"] == pytest.approx(13.0)
    assert step["host_launches"] == 0  # the one launch call was per epoch
    assert list(step["by_kernel"]) == ["xpnet_fused_gemm<float, 32, true, false>", "xpnet_update_step<float>"]
    assert step["by_kernel"]["xpnet_fused_gemm<float, 32, true, false>"] == {"launches": 2.0, "us": 10.0}
    assert kernel_name("ampere_sgemm_32x32_sliced1x4_nn") == "ampere_sgemm_32x32_sliced1x4_nn"
    table = "\n".join(kernel_tables({"mode": step}))
    assert "| `xpnet_update_step<float>` | 1.00 | 3.0 |" in table
    # the epoch step: one launch per epoch, whose time grows with its steps, stays in by_kernel
    persistent = "void xpnet_persistent_step<float, long long>(long long const*, int, int, int*)"
    short, long = (summarise([kernel(shuffle, 9.0), kernel(persistent, 30.0 * steps)]) for steps in (2, 12))
    step = per_step(short, long, 10)
    assert step["kernels"] == 0 and step["gpu_busy_us"] == pytest.approx(30.0)
    assert step["by_kernel"] == {"xpnet_persistent_step<float, long long>": {"launches": 0.0, "us": 30.0}}


def test_the_persistent_steps_phases_are_tabled_with_their_sum():
    # bench.launches' phase table: a row per phase (a shared phase names both launches), a column per
    # blocks per multiprocessor, and the sum of each column
    from bench.launches import at_one_and_two_blocks_per_sm, phase_table_lines

    gather, gw, gx = "xpnet_gather_batch<float, long long>", "xpnet_fused_gemm<float, 32, true, false>", \
        "xpnet_fused_gemm<float, 32, false, true>"
    one = [{"kernels": [gather], "blocks": [132], "us": 1.5}, {"kernels": [gw, gx], "blocks": [10, 16], "us": 2.25}]
    two = [{"kernels": [gather], "blocks": [264], "us": 1.0}, {"kernels": [gw, gx], "blocks": [10, 16], "us": 3.0}]
    lines = phase_table_lines({2: two, 1: one})
    assert lines[3] == "| phase | kernels (blocks) | 1 per multiprocessor | 2 per multiprocessor |"
    assert lines[5] == f"| 0 | `{gather}` (132) | 1.50 | 1.00 |"
    assert lines[6] == f"| 1 | `{gw}` (10) + `{gx}` (16) | 2.25 | 3.00 |"
    assert lines[7] == "| | sum | 3.75 | 4.00 |"
    assert phase_table_lines({}) == []
    # each measurement at 1 and 2 blocks per multiprocessor; one that fails is reported, the other kept

    def measure(per_sm):
        if per_sm == 2:
            raise RuntimeError("2 blocks per multiprocessor asked, only 1 fit")
        return [per_sm]

    assert at_one_and_two_blocks_per_sm(measure) == (
        {1: [1]}, {2: "RuntimeError: 2 blocks per multiprocessor asked, only 1 fit"})


def test_launches_writes_after_every_measurement_with_the_persistent_kernels_last(monkeypatch, tmp_path):
    """bench.launches on a GPU run cut short (a persistent kernel that never finished, killed by the
    stage's timeout; here an interrupt): its files hold every measurement made before, marked
    incomplete. The barrier alone runs before the first persistent mode, the phases last."""
    import bench.env
    import bench.launches as launches
    import xpnet.backend

    ran = []
    monkeypatch.setattr(xpnet.backend, "cupy_usable", lambda: (True, ""))
    monkeypatch.setattr(bench.env, "environment", lambda: {"machine": "test"})
    monkeypatch.setattr(launches, "_modes", lambda: {name: (lambda name=name: name) for name in (
        "xpnet-cupy-fused (CUDA graph)", "torch-cuda eager", "xpnet-cupy-persistent-step", "xpnet-cupy-epoch-step")})

    def count(mode, n1, n2):
        ran.append(mode)
        if mode == "xpnet-cupy-epoch-step":
            raise KeyboardInterrupt  # as the timeout's kill: nothing after it runs
        if mode == "torch-cuda eager":
            raise RuntimeError("no torch")
        return {"kernels": 3.0, "host_launches": 1.0, "gpu_busy_us": 9.5, "by_kernel": {}}

    monkeypatch.setattr(launches, "count_per_step", count)
    monkeypatch.setattr(launches, "barrier_cost", lambda per_sm: ran.append(f"barrier {per_sm}") or {
        "blocks": 132 * per_sm, "barriers": 1999, "launch_us": 2000.0, "us_per_barrier": 1.0})
    monkeypatch.setattr(launches, "phase_times", lambda per_sm: ran.append(f"phases {per_sm}") or [])
    with pytest.raises(KeyboardInterrupt):
        launches.main(["--out", str(tmp_path)])
    assert ran == ["xpnet-cupy-fused (CUDA graph)", "torch-cuda eager", "barrier 1", "barrier 2",
                   "xpnet-cupy-persistent-step", "xpnet-cupy-epoch-step"]
    report = json.loads((tmp_path / "launches.json").read_text())
    assert not report["complete"] and list(report["results"]) == ["xpnet-cupy-fused (CUDA graph)", "xpnet-cupy-persistent-step"]
    assert report["failed"] == {"torch-cuda eager": "RuntimeError: no torch"} and set(report["barriers"]) == {"1", "2"}
    table = (tmp_path / "launches.md").read_text()
    assert "| xpnet-cupy-persistent-step | 3.0 | 1.0 | 9.5 |" in table and "| 2 | 264 | 1999 | 1.00 |" in table
    assert "(incomplete: the run stopped before its last measurement)" in table
    # run to its end: the phases last, the report complete, a failed mode in the exit status
    ran.clear()
    monkeypatch.setattr(launches, "count_per_step", lambda mode, n1, n2: ran.append(mode) or {
        "kernels": 1.0, "host_launches": 1.0, "gpu_busy_us": 1.0, "by_kernel": {}})
    monkeypatch.setattr(launches, "barrier_cost", lambda per_sm: 1 / 0)
    assert launches.main(["--out", str(tmp_path)]) == 1
    assert ran[-3:] == ["xpnet-cupy-epoch-step", "phases 1", "phases 2"]
    report = json.loads((tmp_path / "launches.json").read_text())
    assert report["complete"] and len(report["results"]) == 4 and report["barriers"] == {}
    assert report["failed"]["grid barrier, 2 blocks per multiprocessor"] == "ZeroDivisionError: division by zero"
    assert "incomplete" not in (tmp_path / "launches.md").read_text()


def test_accuracy_compares_means_with_welch_intervals():
    """bench.accuracy's interval is Welch's, as SciPy computes it, and the verdict follows it."""
    from scipy import stats

    from bench.accuracy import compare, summarise

    a, b = [0.9755, 0.9764, 0.9750, 0.9748, 0.9778], [0.9771, 0.9766, 0.9789, 0.9771, 0.9750, 0.9760]
    row = compare(a, b, 0.3)
    expected = stats.ttest_ind([100 * x for x in a], [100 * x for x in b], equal_var=False).confidence_interval(0.95)
    assert row["difference_points"] == pytest.approx(100 * (sum(a) / 5 - sum(b) / 6))
    assert row["interval_points"] == pytest.approx([expected.low, expected.high])
    assert row["verdict"] == "within"  # about [-0.26, +0.09]
    assert compare(a[:3], b[:3], 0.3)["verdict"] == "undecided"  # fewer seeds: about [-0.44, +0.06]
    assert compare(a, [x + 0.01 for x in a], 0.3)["verdict"] == "outside"  # one point apart, same spread
    assert compare(a, [], 0.3)["verdict"] == "not run" and compare([0.9], [0.8], 0.3)["interval_points"] is None
    s = summarise(a)
    assert s["n"] == 5 and s["min"] == 0.9748 and s["max"] == 0.9778 and s["std"] == pytest.approx(stats.tstd(a))


def test_accuracy_pairs_and_a_quick_run(tmp_path, capsys):
    """Default pairs put each xpnet contestant against each peer; a bad pair is refused before any
    run. A quick run over two seeds: the fused and the reference NumPy paths start from the same
    weights and shuffle alike, so each seed's accuracies agree closely (2000 test images: one image
    is 0.05 points)."""
    from bench.accuracy import main, parse_pairs

    names = ["xpnet-numpy-fused", "xpnet-numpy-unfused", "torch-cpu", "jax-cpu"]
    assert parse_pairs("", names) == [("xpnet-numpy-fused", "torch-cpu"), ("xpnet-numpy-fused", "jax-cpu"),
                                      ("xpnet-numpy-unfused", "torch-cpu"), ("xpnet-numpy-unfused", "jax-cpu")]
    assert parse_pairs(" torch-cpu : jax-cpu ", names) == [("torch-cpu", "jax-cpu")]
    for spec, message in [("torch-cpu", "expects comma-separated A:B"), ("torch-cpu:sklearn-mlp", "not among")]:
        with pytest.raises(SystemExit, match=message):
            parse_pairs(spec, names)
    assert main(["--quick", "--seeds", "2", "--first-seed", "3", "--contestants", "xpnet-numpy-fused,xpnet-numpy-unfused",
                 "--pairs", "xpnet-numpy-fused:xpnet-numpy-unfused", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "accuracy.json").read_text())
    assert report["seeds"] == [3, 4] and report["task"]["epochs"] == 2
    fused = report["contestants"]["xpnet-numpy-fused"]
    assert fused["summary"]["n"] == 2 and 0.7 < fused["summary"]["mean"] < 1
    assert set(fused["runs"]) == {"3", "4"}  # JSON keys
    [pair] = report["pairs"]
    assert pair["a"] == "xpnet-numpy-fused" and pair["b"] == "xpnet-numpy-unfused" and len(pair["per_seed_points"]) == 2
    assert max(abs(d) for d in pair["per_seed_points"]) <= 0.25
    assert "| xpnet-numpy-fused - xpnet-numpy-unfused |" in (tmp_path / "accuracy.md").read_text()


def test_temporary_environment_restores_what_was_there(monkeypatch):
    """The contestants and bench.launches set XPNET_GRAPH_STEP / XPNET_GRAPH_GEMM this way."""
    import os

    from bench.env import temporary_environment

    monkeypatch.setenv("XPNET_GRAPH_STEP", "fused")
    monkeypatch.delenv("XPNET_GRAPH_GEMM", raising=False)
    with pytest.raises(RuntimeError, match="inside"):
        with temporary_environment({"XPNET_GRAPH_STEP": "", "XPNET_GRAPH_GEMM": "cublas"}):
            assert os.environ["XPNET_GRAPH_STEP"] == "" and os.environ["XPNET_GRAPH_GEMM"] == "cublas"
            raise RuntimeError("inside")
    assert os.environ["XPNET_GRAPH_STEP"] == "fused" and "XPNET_GRAPH_GEMM" not in os.environ


def test_captured_step_mismatch_says_when_a_step_is_not_the_one_asked_for():
    """bench.mnist's contestants and bench.launches never count one captured step as another; an
    eager run (no graph) asked for nothing is fine (bench.launches' eager cases)."""
    from types import SimpleNamespace

    from bench.contestants import captured_step_mismatch

    def captured(kind, products="xpnet", blocks_per_sm=1):
        fused = kind != "generic"
        return SimpleNamespace(fused=fused, persistent=kind == "persistent", products="fused plan" if fused else products,
                               fused_why="" if fused else "XPNET_GRAPH_STEP is 'generic'",
                               persistent_blocks_per_sm=blocks_per_sm if kind == "persistent" else 0)

    assert captured_step_mismatch(None) == ""
    assert captured_step_mismatch(captured("generic")) == ""
    assert captured_step_mismatch(captured("fused"), "fused") == ""
    assert captured_step_mismatch(captured("persistent"), "persistent") == ""
    assert captured_step_mismatch(captured("generic", "cublas"), "", "cublas") == ""
    assert captured_step_mismatch(captured("fused"), "", "", "tf32") == ""
    assert "did not run: no graph" in captured_step_mismatch(None, "fused")
    assert "did not run: XPNET_GRAPH_STEP is 'generic'" in captured_step_mismatch(captured("generic"), "persistent")
    assert "did not run" in captured_step_mismatch(captured("generic"), "", "", "bf16")
    assert "not as the persistent step" in captured_step_mismatch(captured("fused"), "persistent")
    assert captured_step_mismatch(captured("persistent", blocks_per_sm=2), "persistent", blocks_per_sm=2) == ""
    assert captured_step_mismatch(captured("persistent"), "persistent", blocks_per_sm=None) == ""
    assert "blocks per multiprocessor were 1, not 2" in captured_step_mismatch(captured("persistent"), "persistent",
                                                                              blocks_per_sm=2)
    assert "not cublas's: xpnet" in captured_step_mismatch(captured("generic"), "", "cublas")
    assert "not cublas's: no graph" in captured_step_mismatch(None, "", "cublas")
