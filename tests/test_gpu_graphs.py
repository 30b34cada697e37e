"""CUDA-graph replay of whole training steps (kernels/cupy_graph.py) against the eager CuPy path.

Skipped, with the reason, where CuPy is missing or ``cupy.is_available()`` is False.
"""

import numpy as np
import pytest

from xpnet import SGD, Adam, Dense, ReLU, Sequential, Sigmoid
from xpnet.backend import cupy_usable
from xpnet.network import NonFiniteLossError
from xpnet.optim import Optimizer

GPU_OK, WHY = cupy_usable()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not GPU_OK, reason=f"needs a CUDA GPU: {WHY}")]


@pytest.fixture
def cp():
    import cupy

    return cupy


@pytest.fixture(params=["generic", "fused", "persistent", "epoch", "cublas"])
def graph_step(request, monkeypatch):
    """Each replay test runs with the generic captured step, with cuda_step's fused plan
    (XPNET_GRAPH_STEP=fused), with that plan as one launch (XPNET_GRAPH_STEP=persistent), with that
    launch running an epoch's full batches (XPNET_GRAPH_STEP=epoch), and with the generic step's
    products by cuBLAS (XPNET_GRAPH_GEMM=cublas), each of which must train to the same parameters."""
    monkeypatch.setenv("XPNET_GRAPH_STEP", "generic" if request.param == "cublas" else request.param)
    if request.param == "cublas":
        monkeypatch.setenv("XPNET_GRAPH_GEMM", "cublas")
    else:
        monkeypatch.delenv("XPNET_GRAPH_GEMM", raising=False)
    return request.param


def _check_step_kind(model, graph_step):
    captured = model._captured
    assert captured is not None and captured.fused == (graph_step in ("fused", "persistent", "epoch")), captured.fused_why
    assert captured.persistent == (graph_step in ("persistent", "epoch"))
    assert captured.whole_epoch == (graph_step == "epoch")
    assert captured.step_kind == ("generic" if graph_step == "cublas" else graph_step)
    assert captured.products == {"fused": "fused plan", "persistent": "fused plan", "epoch": "fused plan",
                                 "cublas": "cublas", "generic": "xpnet"}[graph_step]


@pytest.fixture
def graph():
    from xpnet.kernels import cupy_graph

    return cupy_graph


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (3, 5, 7), (33, 65, 17), (128, 784, 256), (784, 128, 256),
                                   (128, 256, 784), (2048, 1024, 512), (5, 4000, 3)])
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("products", ["xpnet", "cublas"])
def test_gemm_equals_numpy_for_every_layout(cp, graph, m, k, n, ta, tb, dtype, products, rng):
    """gemm.cu's products, and cuBLAS's as the captured step calls it (XPNET_GRAPH_GEMM=cublas)."""
    gemm, gemm_into = (graph.cublas_gemm, graph.cublas_gemm_into) if products == "cublas" else (graph.gemm, graph.gemm_into)
    a = rng.normal(size=(k, m) if ta else (m, k)).astype(dtype)
    b = rng.normal(size=(n, k) if tb else (k, n)).astype(dtype)
    da, db = cp.asarray(a), cp.asarray(b)
    a, b = (a.T if ta else a), (b.T if tb else b)
    da, db = (da.T if ta else da), (db.T if tb else db)
    expected = a.astype(np.float64) @ b.astype(np.float64)
    tol = dict(rtol=1e-4, atol=1e-4 * np.sqrt(k)) if dtype == "float32" else dict(rtol=1e-11, atol=1e-11 * np.sqrt(k))
    np.testing.assert_allclose(gemm(da, db).get(), expected, **tol)
    flat = cp.zeros(m * n + 3, dtype=dtype)  # into a view of a flat buffer, as the gradients are
    view = flat[3:].reshape(m, n)
    gemm_into(da, db, view)
    np.testing.assert_allclose(view.get(), expected, **tol)
    assert float(cp.abs(flat[:3]).sum()) == 0.0


def test_cublas_gemm_is_captured_and_replays_on_new_inputs(cp, graph, rng):
    """cuBLAS in a stream capture, through xpnet's own handle: the replay reads the operands'
    current values and writes the product in place."""
    a = cp.asarray(rng.normal(size=(784, 128)).astype("float32")).T  # (128, 784), a transposed view
    b = cp.asarray(rng.normal(size=(784, 256)).astype("float32"))
    out = cp.zeros((128, 256), dtype=cp.float32)
    graph._cublas_handle(out.device.id)  # made before the capture, as CapturedTraining makes it
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        graph.cublas_gemm_into(a, b, out)
        stream.begin_capture()
        graph.cublas_gemm_into(a, b, out)
        captured = stream.end_capture()
    stream.synchronize()
    a[...] = cp.asarray(rng.normal(size=(128, 784)).astype("float32"))
    out.fill(cp.nan)
    captured.launch()
    expected = a.get().astype(np.float64) @ b.get().astype(np.float64)
    np.testing.assert_allclose(out.get(), expected, rtol=1e-4, atol=1e-4 * np.sqrt(784))


def test_gemm_refuses_bad_arguments(cp, graph):
    a = cp.zeros((3, 4), dtype=cp.float32)
    with pytest.raises(ValueError, match="gemm needs"):
        graph.gemm(a, a)
    with pytest.raises(TypeError, match="one dtype"):
        graph.gemm(a, cp.zeros((4, 2), dtype=cp.float64))
    with pytest.raises(ValueError, match="out must be"):
        graph.gemm(a, cp.zeros((4, 2), dtype=cp.float32), out=cp.zeros((2, 3), dtype=cp.float32).T)


def test_gemm_plan_splits_small_products_and_keeps_whole_slabs(graph):
    tile, splits, k_per_split = graph.gemm_plan(128, 256, 784, 132)
    assert tile == 32 and splits > 1 and k_per_split % 16 == 0 and splits * k_per_split >= 784
    assert graph.gemm_plan(4096, 4096, 64, 132)[:2] == (64, 1)


def _pair(layers, loss="softmax_cross_entropy", dtype="float64", **kw):
    eager = Sequential(layers(), loss=loss, backend="cupy", dtype=dtype, seed=3, graphs=False, **kw)
    replayed = Sequential(layers(), loss=loss, backend="cupy", dtype=dtype, seed=3, graphs=True, **kw)
    return eager, replayed


@pytest.mark.parametrize("make_optimizer", [lambda: Adam(3e-3), lambda: Adam(3e-3, eps=1e-2, eps_form="scikit-learn"),
                                            lambda: SGD(0.05, momentum=0.9, nesterov=True), lambda: SGD(0.1)])
@pytest.mark.parametrize("shuffle", [True, False])
def test_replayed_training_equals_eager_training(cp, graph_step, make_optimizer, shuffle, rng):
    layers = lambda: [Dense(20, 16), Sigmoid(), Dense(16, 12), ReLU(), Dense(12, 5)]  # noqa: E731
    eager, replayed = _pair(layers, l2=0.01)
    X, y = rng.normal(size=(1000, 20)), rng.integers(0, 5, size=1000)  # 15 full batches of 64 and one of 40
    opt_e, opt_r = make_optimizer(), make_optimizer()
    h_e = eager.fit(X, y, epochs=3, batch_size=64, optimizer=opt_e, shuffle=shuffle)
    h_r = replayed.fit(X, y, epochs=2, batch_size=64, optimizer=opt_r, shuffle=shuffle)
    h_r2 = replayed.fit(X, y, epochs=1, batch_size=64, optimizer=opt_r, shuffle=shuffle)  # a new capture, same optimizer
    if graph_step == "epoch":  # the 15 full batches in one launch, the last batch eager
        assert replayed._captured.epoch_launches == 1 and replayed._captured.launches == 0
    else:
        assert replayed._captured.launches == 14  # batch 1 eager, batch 2 captured, 14 replays, last batch eager
    _check_step_kind(replayed, graph_step)
    assert opt_r.iterations == opt_e.iterations == 48
    for a, b in zip(eager.parameters(), replayed.parameters()):
        np.testing.assert_allclose(b.get(), a.get(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(h_r.loss + h_r2.loss, h_e.loss, rtol=1e-9)
    assert h_r.accuracy + h_r2.accuracy == h_e.accuracy


@pytest.mark.parametrize("loss,targets", [("mse", "regression"), ("binary_cross_entropy", "binary")])
def test_replayed_training_equals_eager_for_float_targets(cp, graph_step, loss, targets, rng):
    layers = lambda: [Dense(6, 8), Sigmoid(), Dense(8, 2)]  # noqa: E731
    eager, replayed = _pair(layers, loss=loss)
    X = rng.normal(size=(300, 6))
    y = rng.normal(size=(300, 2)) if targets == "regression" else (rng.uniform(size=(300, 2)) > 0.5).astype(float)
    h_e = eager.fit(X, y, epochs=2, batch_size=32, optimizer=Adam(1e-2))
    h_r = replayed.fit(X, y, epochs=2, batch_size=32, optimizer=Adam(1e-2))
    _check_step_kind(replayed, graph_step)
    for a, b in zip(eager.parameters(), replayed.parameters()):
        np.testing.assert_allclose(b.get(), a.get(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(h_r.loss, h_e.loss, rtol=1e-9)


def test_float32_replay_tracks_eager_training(cp, graph_step, rng):
    layers = lambda: [Dense(50, 64), Sigmoid(), Dense(64, 10)]  # noqa: E731
    eager, replayed = _pair(layers, dtype="float32")
    X, y = rng.normal(size=(4096, 50)).astype("float32"), rng.integers(0, 10, size=4096)
    h_e = eager.fit(X, y, epochs=2, batch_size=128)
    h_r = replayed.fit(X, y, epochs=2, batch_size=128)
    _check_step_kind(replayed, graph_step)
    np.testing.assert_allclose(h_r.loss, h_e.loss, rtol=1e-4)
    for a, b in zip(eager.parameters(), replayed.parameters()):
        np.testing.assert_allclose(b.get(), a.get(), rtol=1e-3, atol=1e-5)


def test_nonfinite_loss_is_reported_at_the_same_batch_as_eager(cp, graph_step, rng):
    layers = lambda: [Dense(4, 4), Sigmoid(), Dense(4, 1)]  # noqa: E731
    X, y = rng.normal(size=(256, 4)) * 100, rng.normal(size=(256, 1)) * 100
    where = {}
    for model in _pair(layers, loss="mse"):
        with pytest.raises(NonFiniteLossError) as info:
            model.fit(X, y, epochs=3, batch_size=16, optimizer=SGD(1e6), shuffle=False)
        where[model.graphs] = (info.value.epoch, info.value.batch)
    assert where[True] == where[False]


def test_graphs_true_refuses_an_optimizer_it_cannot_capture_before_any_change(cp, rng):
    class Custom(Optimizer):
        def step(self, params, grads, ops, flat=None):  # pragma: no cover - never reached
            raise AssertionError

        def hyperparameters(self):
            return {}

    model = Sequential([Dense(3, 2)], backend="cupy", seed=0, graphs=True)
    before = [p.get() for p in model.parameters()]
    with pytest.raises(ValueError, match="graphs=True.*Custom"):
        model.fit(rng.normal(size=(8, 3)), rng.integers(0, 2, size=8), optimizer=Custom(), batch_size=4)
    for a, b in zip(before, model.parameters()):
        np.testing.assert_array_equal(a, b.get())


def test_auto_mode_replays_small_batches_only(cp):
    model = Sequential([Dense(784, 256), Sigmoid(), Dense(256, 10)], backend="cupy", seed=0)
    assert model.uses_graphs(Adam(), 128, 60000) == (True, "")
    use, why = model.uses_graphs(Adam(), 4096, 60000)
    assert not use and "cuBLAS" in why
    assert not model.uses_graphs(Adam(), 128, 100)[0]


def test_one_host_launch_per_replayed_step(cp, graph_step, rng):
    pytest.importorskip("torch")
    from bench.launches import count_per_step

    model = Sequential([Dense(30, 20), Sigmoid(), Dense(20, 4)], backend="cupy", seed=0, graphs=True)
    X, y = cp.asarray(rng.normal(size=(64 * 40, 30))), cp.asarray(rng.integers(0, 4, size=64 * 40))
    counts = count_per_step(lambda n: model.fit(X[: n * 64], y[: n * 64], epochs=1, batch_size=64), 5, 25)
    _check_step_kind(model, graph_step)
    if graph_step == "epoch":  # one launch per epoch, whatever its batches: nothing added per step but time
        assert counts["host_launches"] == pytest.approx(0.0, abs=0.05) and counts["kernels"] == pytest.approx(0.0, abs=0.05)
        assert set(counts["by_kernel"]) == {"xpnet_persistent_step<float, long long>"}
        assert counts["by_kernel"]["xpnet_persistent_step<float, long long>"]["us"] == pytest.approx(
            counts["gpu_busy_us"], rel=0.05)
        assert model._captured.epoch_launches == 1 and model._captured.launches == 0  # no graph
        return
    assert counts["host_launches"] == pytest.approx(1.0, abs=0.05)  # one cudaGraphLaunch
    # the per-kernel breakdown accounts for every kernel and its time
    assert sum(k["launches"] for k in counts["by_kernel"].values()) == pytest.approx(counts["kernels"])
    # (to timing noise: kernels run once per epoch in both profiles are left out, their time too)
    assert sum(k["us"] for k in counts["by_kernel"].values()) == pytest.approx(counts["gpu_busy_us"], rel=0.05)
    if graph_step == "fused":  # cuda_step's plan for 2 Dense layers: 3 * 2 + 2 kernels, all inside the graph
        assert counts["kernels"] == pytest.approx(8.0, abs=0.05)
    elif graph_step == "persistent":  # that plan as one kernel
        assert counts["kernels"] == pytest.approx(1.0, abs=0.05)
        assert set(counts["by_kernel"]) == {"xpnet_persistent_step<float, long long>"}
    else:
        assert counts["kernels"] >= 10  # the step's kernels all still run, inside the graph


# ||persistent - fused|| / ||fused - initial|| per parameter: emulated on the CPU (the two plans'
# products, 784-256-128-10, random inputs, 2026-11-24) it was at most 7e-14 after 4 steps in float64
# and 6e-6 after 8 in float32. Elementwise, float32 Adam turns an ulp in a gradient near zero into a
# different first step (1.0e-5 apart after 2 steps). A stale read across the barrier is order 1e-2 or more.
@pytest.mark.parametrize("dtype,change_rtol,loss_rtol", [("float64", 1e-9, 1e-9), ("float32", 1e-3, 1e-4)])
def test_persistent_step_computes_what_the_fused_plan_computes(cp, dtype, change_rtol, loss_rtol, rng, monkeypatch):
    """The plan as one launch (persistent_step.cu) against the plan launched kernel by kernel, on the
    reference network. The persistent step's plan is made for its grid (``plan_step``'s
    ``resident_blocks``: K split otherwise, grid-stride loops over fewer blocks), so its sums run in
    another order: equal to rounding. (The CPU emulation holds the persistent step to its own plan
    bit for bit.) On the GPU, unlike the emulation, a stale L1 line read across the grid barrier
    would show here."""
    X = cp.asarray(rng.normal(size=(128 * 12 + 50, 784)))
    y = cp.asarray(rng.integers(0, 10, size=X.shape[0]))
    trained = {}
    for step in ("fused", "persistent", "epoch"):
        monkeypatch.setenv("XPNET_GRAPH_STEP", step)
        model = Sequential([Dense(784, 256), Sigmoid(), Dense(256, 128), Sigmoid(), Dense(128, 10)], backend="cupy",
                           dtype=dtype, seed=0, graphs=True)
        initial = [p.get() for p in model.parameters()]  # seed 0: the same for each step
        history = model.fit(X, y, epochs=2, batch_size=128, optimizer=Adam(1e-3))
        assert model._captured.persistent == (step != "fused")
        assert model._captured.epoch_launches == (2 if step == "epoch" else 0)  # 12 full batches in one launch, twice
        if step != "fused":  # its launch bounds let cuda_step's blocks per multiprocessor run at once
            from xpnet.kernels import cuda_step

            sms = cp.cuda.Device().attributes["MultiProcessorCount"]
            assert model._captured.persistent_blocks_per_sm == cuda_step.PERSISTENT_BLOCKS_PER_SM
            assert {launch.grid[0] <= sms * cuda_step.PERSISTENT_BLOCKS_PER_SM
                    for launch in model._captured._persistent_launches.values()} == {True}
            plan = model._captured._plans[128]  # the gather and update loop over no more blocks than the grid has
            assert plan[0].grid[0] <= sms * cuda_step.PERSISTENT_BLOCKS_PER_SM >= plan[-1].grid[0]
        trained[step] = ([p.get() for p in model.parameters()], history)
    fused, h_fused = trained["fused"]
    for step in ("persistent", "epoch"):
        params, history = trained[step]
        for got, want, start in zip(params, fused, initial):
            assert np.linalg.norm(got - want) <= change_rtol * np.linalg.norm(want - start), step
        np.testing.assert_allclose(history.loss, h_fused.loss, rtol=loss_rtol)


@pytest.mark.parametrize("blocks_per_sm", [1, 2])
def test_persistent_kernel_launch_bounds_fit_its_blocks(cp, blocks_per_sm, monkeypatch):
    """The driver's occupancy of the compiled persistent kernel: the blocks per multiprocessor its
    launch bounds were compiled for fit at once (else a fit would launch fewer, and bench.launches
    would refuse to report the 2-block case as such)."""
    from xpnet.kernels import cuda_step

    monkeypatch.setattr(cuda_step, "PERSISTENT_BLOCKS_PER_SM", blocks_per_sm)
    assert cuda_step.CudaKernels.blocks_per_multiprocessor("xpnet_persistent_step<float, long long>") >= blocks_per_sm


def test_persistent_step_refuses_tensor_core_products(cp, monkeypatch):
    monkeypatch.setenv("XPNET_GRAPH_STEP", "persistent")
    model = Sequential([Dense(8, 6), Sigmoid(), Dense(6, 3)], backend="cupy", seed=0, graphs=True,
                       matmul_precision="tf32")
    before = [p.get() for p in model.parameters()]
    X, y = cp.asarray(np.ones((64, 8), np.float32)), cp.asarray(np.zeros(64, np.int64))
    with pytest.raises(ValueError, match="XPNET_GRAPH_STEP=persistent runs highest-precision products only"):
        model.fit(X, y, epochs=1, batch_size=16)
    for got, want in zip(model.parameters(), before):
        np.testing.assert_array_equal(got.get(), want)


# -- matmul_precision: tensor-core products (kernels/fused_step.cu, PREC 1 and 2) ------------------------
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
@pytest.mark.parametrize("tile,splits", [(32, 1), (64, 3)])
@pytest.mark.parametrize("m,k,n", [(128, 785, 256), (70, 150, 45)])
def test_tensor_core_product_is_the_product_of_rounded_inputs(cp, precision, tile, splits, m, k, n, rng):
    # the forward product [h, 1] @ [W; b] (no activation), against NumPy on the inputs as the
    # kernel rounds them (cuda_step.round_inputs), summed in float64
    from xpnet.kernels import cuda_step

    h = rng.normal(size=(m, k)).astype(np.float32)
    W = (rng.normal(size=(k, n)) * 0.05).astype(np.float32)
    b = rng.normal(size=n).astype(np.float32)
    r = lambda x: cuda_step.round_inputs(x, precision).astype(np.float64)  # noqa: E731
    want = r(h) @ r(W) + r(b)
    exact = h.astype(np.float64) @ W + b
    k_per_split = -(-(k + 1) // splits)  # the bias is one more k
    k_per_split = -(-k_per_split // 16) * 16  # whole wmma steps (k = 16 for bfloat16)
    grid = (-(-n // tile), -(-m // tile), -(-(k + 1) // k_per_split))
    out = cp.full((m, n), cp.nan, dtype=cp.float32)  # every element must be written
    dummy = cp.zeros(1, dtype=cp.float32)
    partial = cp.full(grid[2] * m * n, cp.nan, dtype=cp.float32)
    counters = cp.zeros(grid[0] * grid[1], dtype=cp.int32)
    i32 = np.int32
    kernel = cuda_step.CudaKernels.function(cuda_step._gemm_name("float", tile, False, False, precision))
    kernel(grid, (256,), (cp.asarray(h), cp.asarray(W), out, i32(m), i32(n), i32(k), i32(k), i32(n), i32(n),
                          cp.asarray(b), i32(cuda_step.BIAS_IN), i32(cuda_step.EPI_NONE), i32(0), dummy, i32(0),
                          np.float32(0), partial, counters, i32(k_per_split)))
    got = out.get()
    assert np.isfinite(got).all() and not counters.get().any()
    # float32 sums of the same (exact) products, against the rounding's own error: about 2^-11
    # relative for TF32 and 2^-8 for bfloat16
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 5e-5
    assert np.linalg.norm(got - exact) / np.linalg.norm(exact) > 1e-4, "the inputs were not rounded"


@pytest.mark.parametrize("precision,bound", [("tf32", 0.05), ("bf16", 0.1)])
def test_tensor_core_training_tracks_highest_precision(cp, precision, bound, rng):
    # the fused captured step at "highest" and at a tensor-core precision, same data and seed:
    # the parameters' change stays close (bounds as the CPU emulation's), in 8 kernels per step
    layers = lambda: [Dense(50, 64), Sigmoid(), Dense(64, 10)]  # noqa: E731
    X, y = rng.normal(size=(4096, 50)).astype("float32"), rng.integers(0, 10, size=4096)
    start = Sequential(layers(), backend="cupy", seed=4)
    base = [p.get() for p in start.parameters()]
    highest = Sequential(layers(), backend="cupy", seed=4, graphs=True)
    reduced = Sequential(layers(), backend="cupy", seed=4, matmul_precision=precision)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XPNET_GRAPH_STEP", "fused")
        h_hi = highest.fit(X, y, epochs=2, batch_size=128)
    h_lo = reduced.fit(X, y, epochs=2, batch_size=128)
    assert reduced._captured.fused and reduced._captured.precision == precision
    assert h_lo.training_step == "cuda-graph"
    change = np.concatenate([(p.get() - q).ravel() for p, q in zip(reduced.parameters(), base)])
    want = np.concatenate([(p.get() - q).ravel() for p, q in zip(highest.parameters(), base)])
    assert np.linalg.norm(change - want) / np.linalg.norm(want) < bound
    np.testing.assert_allclose(h_lo.loss, h_hi.loss, rtol=1e-2)


def test_tensor_core_precision_refuses_what_the_captured_step_cannot_do_before_any_change(cp, rng):
    with pytest.raises(ValueError, match=r"graphs=False \(or XPNET_CUDA_GRAPHS=0\) turns the captured step off"):
        Sequential([Dense(3, 2)], backend="cupy", graphs=False, matmul_precision="tf32")
    model = Sequential([Dense(3, 2), Sigmoid(), Dense(2, 2)], backend="cupy", seed=0, matmul_precision="tf32")
    before = [p.get() for p in model.parameters()]
    X, y = rng.normal(size=(64, 3)), rng.integers(0, 2, size=64)
    with pytest.raises(ValueError, match="matmul_precision='tf32', but lr_schedule='adaptive'"):
        model.fit(X, y, batch_size=8, optimizer=SGD(0.1), lr_schedule="adaptive")
    with pytest.raises(ValueError, match="matmul_precision='tf32', but the captured CUDA-graph step has no sample weights"):
        model.fit(X, y, batch_size=8, sample_weight=np.ones(64))
    with pytest.raises(ValueError, match="matmul_precision='tf32', but this fit cannot replay a CUDA graph: no full batch"):
        model.fit(X, y, batch_size=128)
    for a, b in zip(before, model.parameters()):
        np.testing.assert_array_equal(a, b.get())
    # a batch too large for the automatic choice still replays: the size rule is for the SIMT product
    assert model.uses_graphs(Adam(), 4096, 60000) == (True, "")
