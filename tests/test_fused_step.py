"""The fused captured GPU step (kernels/cuda_step.py, kernels/fused_step.cu), checked on the CPU.

Its launch plan is plain Python, so the kernel count per step is checked everywhere. Its
kernels run here through a CPU emulation of CUDA (``tests/cuda_emulation``, g++): each one
against NumPy, and whole plans (gather, forward, loss, backward, update, statistics) against
the reference training step (``fused=False``), for every loss, activation and optimizer the
plan accepts, in float32 and float64. What the emulation cannot show (timing, and blocks
racing on a GPU) is for ``tests/test_gpu_graphs.py`` on a GPU.
"""

import dataclasses
import functools
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from xpnet import SGD, Adam, Sequential
from xpnet.kernels import cuda_step, persistent_step
from xpnet.kernels.step_spec import describe
from xpnet.layers import Dense, ReLU, Sigmoid, Tanh, dense_stack

H100_SMS = 132
needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not on the PATH (the CUDA emulation needs it)")


def _numpy_device():
    return dict(empty=lambda shape, dt: np.empty(shape, dtype=dt), zeros=lambda shape, dt: np.zeros(shape, dtype=dt),
                to_device=np.asarray)


def _plan(model, optimizer, X, Y, rows, batch_stride=None, sm_count=H100_SMS, precision="highest", resident_blocks=None):
    """A plan over NumPy buffers for ``model`` (fused, so its parameters are flat) and its optimizer."""
    optimizer._ensure_state(model.parameters(), np, flat=True)
    state = optimizer._flat_state
    slot1 = state.get("m", state.get("velocity", np.zeros(1, model._flat[0].dtype)))
    slot2 = state.get("v", slot1)
    buffers = cuda_step.StepBuffers(
        X=X, Y=Y if Y.ndim == 2 else Y.reshape(-1, 1), order=np.arange(X.shape[0], dtype=np.int64),
        counters=np.array([0, 0, -1, optimizer.iterations], dtype=np.int64), sums=np.zeros(2),
        params=model._flat[0], grads=model._flat[1], slot1=slot1, slot2=slot2)
    launches = cuda_step.plan_step(describe(model), buffers, rows=rows, batch_stride=batch_stride or rows,
                                   optimizer=optimizer, l2=model.l2, sm_count=sm_count, precision=precision,
                                   resident_blocks=resident_blocks, **_numpy_device())
    return launches, buffers


# -- the launch count, on any machine ----------------------------------------------------------
@pytest.mark.parametrize("hidden", [(256, 128), (64,), (512, 256, 128, 64)])
def test_a_step_is_3L_plus_2_kernels(hidden):
    model = Sequential(dense_stack([784, *hidden, 10], "sigmoid"), seed=0)
    X = np.zeros((256, 784), dtype=np.float32)
    launches, _ = _plan(model, Adam(1e-3), X, np.zeros(256, dtype=np.int64), rows=128)
    n_layers = len(hidden) + 1
    assert len(launches) == 3 * n_layers + 2
    kinds = [launch.kernel.split("<")[0] for launch in launches]
    assert kinds == (["xpnet_gather_batch"] + ["xpnet_fused_gemm"] * n_layers + ["xpnet_loss_grad"]
                     + ["xpnet_fused_gemm"] * (2 * n_layers - 1) + ["xpnet_update_step"])
    assert set(launch.kernel for launch in launches) <= set(cuda_step.kernel_names("float"))


def test_reference_network_meets_the_kernel_budget():
    # issue 12: at most 12 kernels per step on 784-256-128-10 (the generic captured step runs 33)
    model = Sequential(dense_stack([784, 256, 128, 10], "sigmoid"), seed=0)
    launches, _ = _plan(model, Adam(1e-3), np.zeros((128, 784), np.float32), np.zeros(128, np.int64), rows=128)
    assert len(launches) == 11 <= 12
    # the products of a batch of 128 fill the H100's 132 multiprocessors by splitting K, finished in-kernel
    assert max(launch.grid[2] for launch in launches if "gemm" in launch.kernel) > 1


def test_unsupported_says_why():
    model = Sequential(dense_stack([4, 3, 2], "sigmoid"), seed=0)
    assert cuda_step.unsupported(model, Adam()) == ""

    class MyAdam(Adam):
        pass

    assert "MyAdam" in cuda_step.unsupported(model, MyAdam())
    assert "flat" in cuda_step.unsupported(Sequential(dense_stack([4, 3, 2], "sigmoid"), seed=0, fused=False), Adam())


def test_plan_refuses_targets_of_the_wrong_kind():
    model = Sequential(dense_stack([4, 3, 2], "sigmoid"), seed=0)
    with pytest.raises(TypeError, match="2-D int64"):
        _plan(model, Adam(), np.zeros((8, 4), np.float32), np.zeros((8, 1), np.int32), rows=4)


@pytest.mark.parametrize("precision,code", [("tf32", 1), ("bf16", 2)])
def test_a_tensor_core_plan_names_its_precision_in_the_products_only(precision, code):
    model = Sequential(dense_stack([784, 256, 128, 10], "sigmoid"), seed=0)
    launches, _ = _plan(model, Adam(), np.zeros((128, 784), np.float32), np.zeros(128, np.int64), rows=128,
                        precision=precision)
    assert len(launches) == 11
    products = [launch.kernel for launch in launches if "gemm" in launch.kernel]
    assert len(products) == 8 and all(name.endswith(f", {code}>") for name in products)
    assert set(launch.kernel for launch in launches) <= set(cuda_step.kernel_names("float", precision))


def test_plan_refuses_a_precision_it_cannot_run():
    model = Sequential(dense_stack([4, 3, 2], "sigmoid"), seed=0, dtype="float64")
    X, y = np.zeros((8, 4)), np.zeros(8, np.int64)
    with pytest.raises(ValueError, match="float32 products on the tensor cores; these parameters are float64"):
        _plan(model, Adam(), X, y, rows=4, precision="tf32")
    with pytest.raises(ValueError, match="precision must be one of"):
        _plan(model, Adam(), X, y, rows=4, precision="high")


def test_fused_step_is_opt_in(monkeypatch):
    monkeypatch.delenv("XPNET_GRAPH_STEP", raising=False)
    assert not cuda_step.fused_step_requested() and cuda_step.graph_step_requested() == "generic"
    monkeypatch.setenv("XPNET_GRAPH_STEP", "fused")
    assert cuda_step.fused_step_requested()
    monkeypatch.setenv("XPNET_GRAPH_STEP", " Persistent ")  # the plan as one launch: the plan too
    assert cuda_step.fused_step_requested() and cuda_step.graph_step_requested() == "persistent"
    monkeypatch.setenv("XPNET_GRAPH_STEP", "epoch")  # that launch for an epoch's batches: the plan too
    assert cuda_step.fused_step_requested() and cuda_step.graph_step_requested() == "epoch"
    monkeypatch.setenv("XPNET_GRAPH_STEP", "generic")
    assert not cuda_step.fused_step_requested()


def test_a_misspelt_graph_step_is_refused(monkeypatch):
    # it used to mean "generic", silently
    monkeypatch.setenv("XPNET_GRAPH_STEP", "persistant")
    with pytest.raises(ValueError, match=r"XPNET_GRAPH_STEP must be one of \('generic', 'fused', 'persistent', 'epoch'\), "
                                         r"got 'persistant'"):
        cuda_step.graph_step_requested()


@pytest.mark.parametrize("whole_epoch,count,expected", [(False, 3, ["step"] * 3), (True, 1, ["step"]), (False, 0, [])])
def test_captured_steps_are_single_steps_unless_the_epoch_step_runs_several(whole_epoch, count, expected):
    """CapturedTraining.steps: one launch for ``count`` steps only with XPNET_GRAPH_STEP=epoch and more
    than one step; otherwise ``step`` (a graph replay) per batch. (The one launch needs a GPU:
    tests/test_gpu_graphs.py.)"""
    from xpnet.kernels.cupy_graph import CapturedTraining

    captured = object.__new__(CapturedTraining)  # no CuPy here: only what steps reads
    calls = []
    captured.whole_epoch, captured.step = whole_epoch, lambda rows: calls.append(("step", rows))
    captured.steps(128, count)
    assert calls == [(kind, 128) for kind in expected]


# -- the persistent step: the plan as one launch (kernels/persistent_step.py) --------------------------
def _persistent(launches, blocks, steps=1):
    device = _numpy_device()
    return persistent_step.persistent_launch(launches, blocks=blocks, steps=steps, to_device=device["to_device"],
                                             zeros=device["zeros"])


def test_persistent_step_is_one_launch_of_the_plans_launches():
    model = Sequential(dense_stack([784, 256, 128, 10], "sigmoid"), seed=0, l2=0.5)
    launches, buffers = _plan(model, Adam(1e-3), np.zeros((256, 784), np.float32), np.zeros(256, np.int64), rows=128)
    launch = _persistent(launches, blocks=H100_SMS, steps=2)
    assert launch.kernel == "xpnet_persistent_step<float, long long>"
    assert launch.kernel in cuda_step.persistent_kernel_names("float")
    assert launch.grid == (H100_SMS, 1, 1) and launch.block == (256, 1, 1)
    table, n_phases, steps, barrier = launch.args
    assert table.shape == (11, persistent_step.PHASE_SLOTS) and table.dtype == np.int64
    assert (n_phases, steps) == (11, 2) and barrier.tolist() == [0, 0]
    kinds = {"xpnet_gather_batch": persistent_step.PHASE_GATHER, "xpnet_fused_gemm": persistent_step.PHASE_PRODUCT,
             "xpnet_loss_grad": persistent_step.PHASE_LOSS, "xpnet_update_step": persistent_step.PHASE_UPDATE}
    args = persistent_step.PHASE_ARGS
    for row, planned in zip(table, launches):
        assert row[0] == kinds[planned.kernel.split("<")[0]] and tuple(row[1:4]) == planned.grid
        for slot, value in zip(row[args:], planned.args):  # each argument as the kernel reads it back
            if isinstance(value, np.ndarray):
                assert slot == value.ctypes.data
            elif isinstance(value, np.floating):
                assert np.int64(slot).view(np.float64) == value
            else:
                assert slot == value
        assert not row[args + len(planned.args):].any()
    forward = table[1]  # tile 32, op(A) and op(B) as stored; its K and its lam (no L2 term forward)
    assert tuple(forward[4:7]) == (32, 0, 0) and forward[args + 5] == 784
    weight_gradient = table[5]  # the last layer's [gW; gb] = [h^T; 1^T] @ d + l2 / rows * W
    assert tuple(weight_gradient[4:7]) == (32, 1, 0)
    assert np.int64(weight_gradient[args + 15]).view(np.float64) == np.float32(0.5 / 128)
    assert tuple(table[6][4:7]) == (32, 0, 1)  # the input gradient d @ W^T
    # fewer blocks than the multiprocessors where no phase of the plan has as many: here every launch
    # is one block, and the largest phase the last layer's two gradients, run at once
    small = Sequential(dense_stack([6, 5, 3], "sigmoid"), seed=0)
    few, _ = _plan(small, Adam(), np.zeros((8, 6), np.float32), np.zeros(8, np.int64), rows=4)
    assert {int(np.prod(f.grid)) for f in few} == {1} and [f.with_next for f in few].count(True) == 1
    assert persistent_step.phase_blocks(few) == [1, 1, 1, 1, 2, 1, 1]
    assert _persistent(few, blocks=H100_SMS).grid[0] == 2
    assert _persistent(few, blocks=1).grid[0] == 1  # never more than asked: the phase then takes two turns


@pytest.mark.parametrize("hidden", [(256, 128), (64,), (512, 256, 128, 64)])
def test_a_layers_weight_and_input_gradients_may_run_at_once(hidden):
    """Each layer's input gradient (but the first layer's, which has none) is marked to run with its
    weight gradient, the launch before it: both read the layer's signal d and write different
    buffers, and the input gradient has its own split-K scratch. Nothing else is marked."""
    model = Sequential(dense_stack([784, *hidden, 10], "sigmoid"), seed=0)
    launches, _ = _plan(model, Adam(1e-3), np.zeros((256, 784), np.float32), np.zeros(256, np.int64), rows=128)
    n_layers = len(hidden) + 1
    backward = launches[n_layers + 2: -1]  # after the gather, the forward products and the loss
    assert [launch.with_next for launch in launches] == (
        [False] * (n_layers + 2) + [True, False] * (n_layers - 1) + [False, False])
    for weight_gradient, input_gradient in zip(backward[0::2], backward[1::2]):
        assert weight_gradient.kernel.endswith("true, false>") and input_gradient.kernel.endswith("false, true>")
        signal = weight_gradient.args[1]
        assert input_gradient.args[0] is signal  # the same d in
        assert input_gradient.args[2] is not signal and weight_gradient.args[2] is not input_gradient.args[2]
        for scratch in (16, 17):  # split-K partials and tile counters: not shared
            assert input_gradient.args[scratch] is not weight_gradient.args[scratch]
            assert weight_gradient.args[scratch] is launches[1].args[scratch]  # the lane of the rest
    assert len({id(launch.args[16]) for launch in launches if "gemm" in launch.kernel}) == (1 if n_layers == 1 else 2)
    table = _persistent(launches, blocks=H100_SMS).args[0]
    assert table[:, persistent_step.PHASE_WITH_NEXT].tolist() == [int(launch.with_next) for launch in launches]
    gradients = n_layers + 2 + 2 * (n_layers - 1)  # the first launch after the pairs: the first layer's weight gradient
    assert persistent_step.phase_spans(launches) == (
        [(i, i + 1) for i in range(n_layers + 2)] + [(i, i + 2) for i in range(n_layers + 2, gradients, 2)]
        + [(gradients, gradients + 1), (gradients + 1, gradients + 2)])
    marked_last = dataclasses.replace(launches[-1], with_next=True)
    with pytest.raises(ValueError, match=r"the plan's last launch \(xpnet_update_step<float>\) cannot share a phase"):
        persistent_step.phase_table([*launches[:-1], marked_last])


def test_persistent_step_refuses_what_it_cannot_run():
    model = Sequential(dense_stack([784, 64, 10], "sigmoid"), seed=0)
    X, y = np.zeros((128, 784), np.float32), np.zeros(128, np.int64)
    tensor_cores, _ = _plan(model, Adam(), X, y, rows=128, precision="tf32")
    with pytest.raises(ValueError, match="highest-precision forward, weight-gradient and input-gradient products, "
                                         "not xpnet_fused_gemm<float, 32, false, false, 1>"):
        _persistent(tensor_cores, blocks=H100_SMS)
    launches, _ = _plan(model, Adam(), X, y, rows=128)
    product = launches[1]
    short = cuda_step.Launch(product.kernel, product.grid, product.block, product.args[:-1])
    with pytest.raises(ValueError, match="18 arguments, the persistent step reads 19"):
        persistent_step.phase_row(short)
    wrong = cuda_step.Launch(product.kernel, product.grid, product.block, (*product.args[:3], np.float32(1), *product.args[4:]))
    with pytest.raises(TypeError, match="argument 3: an integer was expected, got float32"):
        persistent_step.phase_row(wrong)
    with pytest.raises(ValueError, match="the persistent step runs"):
        persistent_step.phase_row(cuda_step.Launch("xpnet_step_stats<float>", (1, 1, 1), (1, 1, 1), ()))
    with pytest.raises(ValueError, match="blocks and steps must be at least 1"):
        _persistent(launches, blocks=0)
    # the epoch step: the same table, grid and barrier, for more steps
    one = _persistent(launches, blocks=H100_SMS)
    many = persistent_step.with_steps(one, 468)
    assert many.args[2] == 468 and many.args[2].dtype == np.int32 and one.args[2] == 1
    assert (many.kernel, many.grid, many.block) == (one.kernel, one.grid, one.block)
    assert many.args[0] is one.args[0] and many.args[1] == one.args[1] and many.args[3] is one.args[3]
    with pytest.raises(ValueError, match="steps must be at least 1"):
        persistent_step.with_steps(one, 0)


def test_persistent_grid_never_has_more_blocks_than_run_at_once():
    """The grid barrier needs every block resident: the blocks asked for per multiprocessor, fewer
    where the compiled kernel's occupancy is lower, and a refusal (not a launch that would wait
    forever) where no block fits."""
    name = "xpnet_persistent_step<float, long long>"
    assert persistent_step.resident_blocks_per_sm(1, 1, name) == 1
    assert persistent_step.resident_blocks_per_sm(1, 3, name) == 1
    assert persistent_step.resident_blocks_per_sm(2, 2, name) == 2
    assert persistent_step.resident_blocks_per_sm(2, 1, name) == 1
    with pytest.raises(RuntimeError, match=r"xpnet_persistent_step<float, long long>: no block of 256 threads fits.*"
                                           r"XPNET_GRAPH_STEP=fused"):
        persistent_step.resident_blocks_per_sm(1, 0, name)


def _rounds(tile, splits, k_per_split, m, n, resident):
    """Rounds of staged k on the busiest real block of a grid of ``resident`` blocks."""
    waves = -(-(-(-m // tile) * -(-n // tile) * splits) // resident)
    return waves * -(-k_per_split // min(2048 // tile, cuda_step.MAX_STAGED_K))


def test_resident_plan_splits_k_for_the_fewest_waves_of_the_persistent_grid():
    # 784-256-128-10 at batch 128 on 132 blocks: the first product split 4 ways (128 blocks, one wave of 4
    # rounds), not 9 (288 blocks, 3 waves of 2 rounds); the first layer's weight gradient not split at all
    assert cuda_step.gemm_plan(128, 256, 785, H100_SMS) == (32, 9, 96)
    assert cuda_step.resident_gemm_plan(128, 256, 785, H100_SMS, H100_SMS) == (32, 4, 208)
    assert cuda_step.gemm_plan(785, 256, 128, H100_SMS) == (32, 2, 64)
    assert cuda_step.resident_gemm_plan(785, 256, 128, H100_SMS, H100_SMS) == (32, 1, 128)
    assert cuda_step.resident_gemm_plan(128, 256, 785, H100_SMS, 2 * H100_SMS) == (32, 7, 128)
    for m, n, k in [(128, 10, 129), (40, 16, 0), (1, 1, 1), (4096, 2048, 4097), (70, 45, 150), (257, 128, 128)]:
        for resident in (1, 3, 4, 64, 132, 264):
            tile, splits, k_per_split = cuda_step.resident_gemm_plan(m, n, k, H100_SMS, resident)
            generic = cuda_step.gemm_plan(m, n, k, H100_SMS)
            assert tile == generic[0] and 1 <= splits <= max(1, k // 64)
            assert k_per_split % 16 == 0 and splits * k_per_split >= k > (splits - 1) * k_per_split or k == 0
            assert _rounds(tile, splits, k_per_split, m, n, resident) <= _rounds(*generic, m, n, resident)
    with pytest.raises(ValueError, match="resident_blocks must be at least 1"):
        cuda_step.resident_gemm_plan(128, 256, 785, H100_SMS, 0)


def test_a_plan_for_the_persistent_grid_keeps_its_launches_and_fits_its_loops_to_the_grid():
    model = Sequential(dense_stack([784, 256, 128, 10], "sigmoid"), seed=0)
    X, y = np.zeros((256, 784), np.float32), np.zeros(256, np.int64)
    ordinary, _ = _plan(model, Adam(1e-3), X, y, rows=128)
    resident, _ = _plan(model, Adam(1e-3), X, y, rows=128, resident_blocks=H100_SMS)
    assert [launch.kernel for launch in resident] == [launch.kernel for launch in ordinary]
    grids = [(o.grid, r.grid) for o, r in zip(ordinary, resident)]
    assert grids[0] == ((393, 1, 1), (132, 1, 1))  # the gather: 128 * 785 values, a grid-stride loop
    assert grids[1] == ((8, 4, 9), (8, 4, 4))  # the first product
    assert grids[-2] == ((8, 25, 2), (8, 25, 1))  # the first layer's weight gradient
    assert grids[-1] == ((528, 1, 1), (132, 1, 1))  # the update of 235,146 parameters: a grid-stride loop
    assert max(int(np.prod(launch.grid)) for launch in resident) == 200  # 8 x 25 tiles, in two waves


# -- the kernels, emulated on the CPU ----------------------------------------------------------------
def _emulate(max_staged_k=cuda_step.MAX_STAGED_K):
    """Every kernel of the fused plans, emulated, staging at most ``max_staged_k`` values of k per round."""
    if shutil.which("g++") is None:
        pytest.skip("g++ is not on the PATH (the CUDA emulation needs it)")
    # the tests run in importlib mode (tests/ is not on sys.path): load the emulation by its path
    where = Path(__file__).with_name("cuda_emulation") / "__init__.py"
    spec = importlib.util.spec_from_file_location("cuda_emulation", where)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names = {*cuda_step.kernel_names("double"), *cuda_step.persistent_kernel_names("double"),
             *cuda_step.persistent_kernel_names("float")}
    for precision in cuda_step.PRECISIONS:
        names.update(cuda_step.kernel_names("float", precision))
    return module.load([cuda_step.GATHER_SOURCE, cuda_step.FUSED_SOURCE, cuda_step.PERSISTENT_SOURCE], sorted(names),
                       defines=["XPNET_TENSOR_CORES", f"XPNET_MAX_BK={max_staged_k}"])


@pytest.fixture(scope="module")
def emulator():
    return _emulate()


@pytest.fixture(scope="module", params=[16, 32, 64], ids=lambda k: f"max_staged_k={k}")
def staged_emulator(request):
    """The emulation at each staging depth bench.launches may time (the products' rounds differ)."""
    return _emulate(request.param)


def _run(emulator, launches):
    for launch in launches:
        emulator.launch(launch.kernel, launch.grid, launch.block, launch.args)


def _act(z, code):
    return [z, 1 / (1 + np.exp(-z)), np.tanh(z), np.maximum(z, 0)][code]


def _act_grad(d, y, code):
    return [d, d * y * (1 - y), d * (1 - y * y), np.where(y > 0, d, 0)][code]


ROUNDING = {p: functools.partial(cuda_step.round_inputs, precision=p) for p in cuda_step.PRECISIONS}


def _run_product(emulator, product, dtype, tile, splits, precision="highest", seed=0):
    """One xpnet_fused_gemm launch of kind ``product`` on ragged shapes; returns what it wrote,
    what NumPy computes from the inputs as ``precision`` rounds them, and from the inputs as given."""
    rng = np.random.default_rng(seed)
    i32, s = np.int32, dtype
    rows, k, m = 70, 150, 45  # ragged against both tiles and every round of k (16, 32, 64)
    h = rng.standard_normal((rows, k)).astype(dtype)
    W = rng.standard_normal((k, m)).astype(dtype) * 0.1
    b = rng.standard_normal(m).astype(dtype)
    d = rng.standard_normal((rows, m)).astype(dtype)
    y_prev = _act(rng.standard_normal((rows, k)), 1).astype(dtype)
    dummy = np.zeros(1, dtype)
    counters = np.zeros(64, np.int32)

    def expected(r):  # r rounds the product's inputs (the bias and the bias gradient's d too)
        if product == "forward":  # sigmoid([h, 1] @ [W; b])
            return _act(r(h).astype(float) @ r(W) + r(b), 1), None
        if product == "weight_gradient":  # [gW; gb] = [h^T; 1] @ d + lam * W
            return r(h).T.astype(float) @ r(d) + 0.3 * W, r(d).astype(float).sum(axis=0)
        return _act_grad(r(d).astype(float) @ r(W).T, y_prev, 1), None  # (d @ W^T) * sigmoid'(y_prev)

    if product == "forward":
        A, B, C, M, N, K, lda, ldb, ta, tb = h, W, np.zeros((rows, m), dtype), rows, m, k, k, m, False, False
        bias, mode, epi, code, aux, ld_aux, lam = b, cuda_step.BIAS_IN, cuda_step.EPI_ACT, 1, dummy, 0, 0.0
    elif product == "weight_gradient":
        A, B, C, M, N, K, lda, ldb, ta, tb = h, d, np.zeros((k, m), dtype), k, m, rows, k, m, True, False
        bias, mode, epi, code, aux, ld_aux, lam = np.zeros(m, dtype), cuda_step.BIAS_OUT, cuda_step.EPI_L2, 0, W, m, 0.3
    else:
        A, B, C, M, N, K, lda, ldb, ta, tb = d, W, np.zeros((rows, k), dtype), rows, k, m, m, m, False, True
        bias, mode, epi, code, aux, ld_aux, lam = dummy, cuda_step.BIAS_NONE, cuda_step.EPI_ACT_GRAD, 1, y_prev, k, 0.0
    want, exact = expected(ROUNDING[precision]), expected(lambda x: x)
    m_rows, k_all = M + (mode == cuda_step.BIAS_OUT), K + (mode == cuda_step.BIAS_IN)
    k_per_split = -(-k_all // splits)
    k_per_split = -(-k_per_split // 16) * 16
    grid = (-(-N // tile), -(-m_rows // tile), -(-k_all // k_per_split))
    partial = np.full(grid[2] * m_rows * N, np.nan, dtype)  # stale partials must never be read
    ctype = "float" if dtype == np.float32 else "double"
    emulator.launch(cuda_step._gemm_name(ctype, tile, ta, tb, precision), grid, (256,), [
        A, B, C, i32(M), i32(N), i32(K), i32(lda), i32(ldb), i32(N), bias, i32(mode), i32(epi), i32(code), aux,
        i32(ld_aux), s(lam), partial, counters, i32(k_per_split)])
    assert not counters.any(), "the split-K tile counters must be left at zero for the next launch"
    got_bias = bias if mode == cuda_step.BIAS_OUT else None
    return (C, got_bias), want, exact


@needs_gxx
@pytest.mark.parametrize("wrong", ["int64 for int", "float64 for float", "float64 array for float*"])
def test_the_emulation_refuses_arguments_cupy_would_misplace(emulator, wrong):
    # CuPy packs a scalar at its own size, so a wrong type shifts every parameter after it on a GPU;
    # the emulation would read the first bytes and pass. It checks the kernel's parameter types.
    i32, f32 = np.int32, np.float32
    x, c, counters = np.zeros(64, f32), np.zeros(64, f32), np.zeros(4, np.int32)
    args = [x, x, c, i32(4), i32(4), i32(4), i32(4), i32(4), i32(4), x, i32(0), i32(0), i32(0), x, i32(0),
            f32(0), x, counters, i32(16)]
    name = cuda_step._gemm_name("float", 32, False, False)
    emulator.launch(name, (1, 1, 1), (256,), args)  # as given: accepted
    if wrong == "int64 for int":
        args[3] = np.int64(4)
    elif wrong == "float64 for float":
        args[15] = np.float64(0)
    else:
        args[0] = np.zeros(64, np.float64)
    with pytest.raises(TypeError, match="differ from the parameters'"):
        emulator.launch(name, (1, 1, 1), (256,), args)


def _assert_product(got, want, **tol):
    np.testing.assert_allclose(got[0], want[0], **tol)
    if want[1] is not None:
        np.testing.assert_allclose(got[1], want[1], **tol)


@needs_gxx
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("product", ["forward", "weight_gradient", "input_gradient"])
@pytest.mark.parametrize("tile,splits", [(32, 1), (32, 3), (64, 2)])
def test_fused_gemm_against_numpy(staged_emulator, dtype, product, tile, splits):
    got, want, _ = _run_product(staged_emulator, product, dtype, tile, splits, seed=tile + splits)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    _assert_product(got, want, **tol)


@needs_gxx
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
@pytest.mark.parametrize("product", ["forward", "weight_gradient", "input_gradient"])
@pytest.mark.parametrize("tile,splits", [(32, 1), (32, 3), (64, 2)])
def test_tensor_core_gemm_rounds_its_inputs_and_sums_in_float32(staged_emulator, precision, product, tile, splits):
    # matmul_precision "tf32" / "bf16": the product of the rounded inputs, summed in float32
    got, want, exact = _run_product(staged_emulator, product, np.float32, tile, splits, precision, seed=tile + splits)
    _assert_product(got, want, rtol=2e-5, atol=2e-5)
    # and not the unrounded product: the rounding is real (TF32 keeps 10 mantissa bits, bf16 7)
    gap = max(float(np.abs(g - e).max()) for g, e in zip(got, exact) if e is not None)
    assert gap > (1e-4 if precision == "tf32" else 1e-3)


def test_bf16_rounding_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal(10_000).astype(np.float32) * 100
    x[:4] = [np.float32(1 + 2**-8), np.float32(1 + 3 * 2**-8), np.inf, -0.0]  # ties to even, both ways
    want = torch.from_numpy(x).to(torch.bfloat16).to(torch.float32).numpy()
    np.testing.assert_array_equal(cuda_step.round_inputs(x, "bf16"), want)


def test_tf32_rounding_is_to_nearest_ties_away():
    one_ulp = 2.0**-10  # TF32 keeps 10 mantissa bits
    x = np.array([1 + one_ulp / 2, 1 + 3 * one_ulp / 2, -(1 + one_ulp / 2), 1 + one_ulp / 2 - 2**-23, np.nan],
                 np.float32)
    got = cuda_step.round_inputs(x, "tf32")
    np.testing.assert_array_equal(got[:4], np.array([1 + one_ulp, 1 + 2 * one_ulp, -(1 + one_ulp), 1], np.float32))
    assert np.isnan(got[4])


@needs_gxx
@pytest.mark.parametrize("loss,out_code", [("ce", 0), ("bce", 0), ("mse", 0), ("mse", 2), ("ce", 1)])
def test_loss_kernel_against_numpy(emulator, loss, out_code):
    rng = np.random.default_rng(1)
    n, c = 300, 7  # more rows than threads
    z = rng.standard_normal((n, c)) * 3
    z[0, 2] = 80.0  # a large logit: the shifted exponentials must not overflow
    out = _act(z, out_code)
    if loss == "ce":
        y = rng.integers(0, c, (n, 1)).astype(np.int64)
        logp = out - out.max(axis=1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
        value = -logp[np.arange(n), y[:, 0]].mean()
        dout = (np.exp(logp) - np.eye(c)[y[:, 0]]) / n
        right = (out.argmax(axis=1) == y[:, 0]).sum()
        name, code = "xpnet_loss_grad<double, long long>", 0
    elif loss == "bce":
        y = (rng.random((n, c)) > 0.5).astype(float)
        value = (np.maximum(out, 0) + np.log1p(np.exp(-np.abs(out))) - out * y).sum() / n
        dout = (1 / (1 + np.exp(-out)) - y) / n
        right = ((out > 0) == (y > 0.5)).all(axis=1).sum()
        name, code = "xpnet_loss_grad<double, double>", 1
    else:
        y = rng.standard_normal((n, c))
        value, dout, right = 0.5 * ((out - y) ** 2).sum() / n, (out - y) / n, 0
        name, code = "xpnet_loss_grad<double, double>", 2
    grad = np.zeros((n, c))
    result = np.zeros(2)
    emulator.launch(name, (1,), (256,), [out, y, grad, np.int32(n), np.int32(c), np.int32(code), np.int32(out_code), result])
    np.testing.assert_allclose(result, [value, right], rtol=1e-12)
    np.testing.assert_allclose(grad, _act_grad(dout, out, out_code), rtol=1e-10, atol=1e-15)


@needs_gxx
@pytest.mark.parametrize("blocks", [1, 7, 300])
def test_update_kernel_finishes_the_penalty_and_statistics_once(emulator, blocks):
    # SGD with an L2 penalty over two weight segments, on more blocks than the last block has
    # threads (300 > 256): it sums every block's penalty, records the step once and leaves its
    # block counter at zero for the next launch
    rng = np.random.default_rng(3)
    size = 256 * blocks + 77  # a ragged last round of the grid-stride loop
    params, grads = rng.standard_normal(size), rng.standard_normal(size)
    segments = np.array([[5, size // 3], [size - size // 4, size // 4]], dtype=np.int64)  # to the last block's
    weights = np.concatenate([params[lo:lo + n] for lo, n in segments])
    loss_result, sums = np.array([0.75, 31.0]), np.array([2.0, 0.0])
    counters, block_counter = np.array([4, 100, -1, 9], dtype=np.int64), np.zeros(1, np.int32)
    lr, l2_scale, rows = 0.1, 0.02, 64.0
    want_params = params - lr * grads
    d = np.float64
    emulator.launch("xpnet_update_step<double>", (blocks,), (256,), [
        params, grads, np.zeros(1), np.zeros(1), np.int64(size), np.int32(cuda_step.OPT_SGD), d(lr), d(0), d(0), d(0),
        d(0), segments, np.int32(2), d(l2_scale), loss_result, d(rows), np.full(blocks, np.nan), block_counter, sums,
        counters])
    np.testing.assert_allclose(params, want_params, rtol=1e-15)
    value = 0.75 + 0.5 * l2_scale * float(np.sum(weights ** 2))
    np.testing.assert_allclose(sums, [2.0 + value * rows, 0.0], rtol=1e-13)
    assert counters.tolist() == [5, 131, -1, 10] and block_counter[0] == 0


# -- whole plans against the reference step ---------------------------------------------------------
def _data(loss, n, width, rng):
    X = rng.normal(size=(n, width))
    if loss == "softmax_cross_entropy":
        return X, rng.integers(0, 3, n)
    if loss == "binary_cross_entropy":
        return X, (rng.random((n, 3)) > 0.5).astype(float)
    return X, rng.normal(size=(n, 3))


CASES = {
    "sigmoid-ce-adam": ("softmax_cross_entropy", lambda w: dense_stack([w, 16, 8, 3], "sigmoid"), lambda: Adam(0.01), 0.0),
    "mixed-ce-nesterov-l2": ("softmax_cross_entropy",
                             lambda w: [Dense(w, 16), Tanh(), Dense(16, 9), ReLU(), Dense(9, 8), Dense(8, 3)],
                             lambda: SGD(0.05, momentum=0.9, nesterov=True), 0.3),
    "relu-bce-momentum": ("binary_cross_entropy", lambda w: dense_stack([w, 10, 3], "relu"),
                          lambda: SGD(0.05, momentum=0.9), 0.1),
    "tanh-mse-sgd-final-sigmoid": ("mse", lambda w: [Dense(w, 10), Tanh(), Dense(10, 3), Sigmoid()],
                                   lambda: SGD(0.1), 0.0),
    "sigmoid-ce-adam-l2": ("softmax_cross_entropy", lambda w: dense_stack([w, 16, 3], "sigmoid"), lambda: Adam(0.01), 1e-2),
    # eps near sqrt(v): scikit-learn's epsilon steps differently from PyTorch's (opt_code 4)
    "tanh-mse-adam-scikit-learn-eps": ("mse", lambda w: dense_stack([w, 12, 3], "tanh"),
                                       lambda: Adam(0.01, eps=1e-2, eps_form="scikit-learn"), 0.0),
}


TOLERANCE = {("float32", "highest"): dict(rtol=2e-4, atol=2e-5), ("float64", "highest"): dict(rtol=1e-10, atol=1e-12)}
# Tensor-core plans against the float32 reference, over these cases: the parameters' change in 3 steps
# ||fused - reference|| / ||reference|| was at most 0.021 (tf32) and 0.043 (bf16), the loss sum's
# relative error 5e-5 and 6e-4, and the correct counts equal (g++ emulation, 2026-11-24). A wrong
# product (a transposed tile, unrounded inputs) is off by order 1.
REDUCED_PRECISION_BOUNDS = {"tf32": {"update": 0.05, "loss": 2e-4}, "bf16": {"update": 0.1, "loss": 3e-3}}


@needs_gxx
@pytest.mark.parametrize("dtype,precision", [*TOLERANCE, ("float32", "tf32"), ("float32", "bf16")])
@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_trains_like_the_reference(emulator, case, dtype, precision):
    loss, layers, make_optimizer, l2 = CASES[case]
    rng = np.random.default_rng(5)
    width, rows, steps = 140, 40, 3  # 140 inputs: the first layer's products split K
    X, y = _data(loss, rows * steps + 7, width, rng)
    fused = Sequential(layers(width), loss=loss, dtype=dtype, seed=2, l2=l2)
    reference = Sequential(layers(width), loss=loss, dtype=dtype, seed=2, l2=l2, fused=False)
    Xd, yd = fused._check_data(X, y)
    opt_fused, opt_ref = make_optimizer(), make_optimizer()
    launches, buffers = _plan(fused, opt_fused, Xd, yd, rows, sm_count=H100_SMS, precision=precision)
    order = rng.permutation(Xd.shape[0]).astype(np.int64)
    buffers.order[...] = order
    losses, correct = [], 0
    for step in range(steps):
        _run(emulator, launches)
        idx = order[step * rows:(step + 1) * rows]
        Xr, yr = reference._check_data(X[idx], y[idx])
        value, out = reference._loss_and_backward(Xr, yr)
        if reference.loss.is_classifier:
            correct += int(reference.loss.n_correct(out, yr, np))
        opt_ref.step(reference.parameters(), reference._grads(), reference.ops)
        losses.append(float(value))
    start = Sequential(layers(width), loss=loss, dtype=dtype, seed=2).parameters()
    moved = max(float(np.abs(p - q).max()) for p, q in zip(fused.parameters(), start))
    assert moved > 1e-3  # the step did train
    counters, sums = buffers.counters, buffers.sums
    assert counters[0] == steps and counters[3] == steps and counters[2] == -1
    if precision == "highest":  # the same arithmetic, summed in another order
        tol = TOLERANCE[dtype, precision]
        for got, want in zip(fused.parameters(), reference.parameters()):
            np.testing.assert_allclose(got, want, **tol)
        np.testing.assert_allclose(sums[0], sum(v * rows for v in losses), **tol)
        assert counters[1] == correct
        return
    # Rounded products: a gradient near zero can change sign, and Adam or momentum turn that into a
    # full step the other way for that one weight, so the updates are compared as a whole.
    change = np.concatenate([(p - q).ravel() for p, q in zip(fused.parameters(), start)])
    want_change = np.concatenate([(p - q).ravel() for p, q in zip(reference.parameters(), start)])
    error = np.linalg.norm(change - want_change) / np.linalg.norm(want_change)
    bound = REDUCED_PRECISION_BOUNDS[precision]
    assert error < bound["update"]
    np.testing.assert_allclose(sums[0], sum(v * rows for v in losses), rtol=bound["loss"])
    assert abs(int(counters[1]) - correct) <= 2


@needs_gxx
def test_a_non_finite_loss_is_recorded(emulator):
    model = Sequential(dense_stack([6, 5, 3], "sigmoid"), seed=0)
    X = np.ones((8, 6), dtype=np.float32)
    X[3, 2] = np.nan  # row 3 is in the first batch
    launches, buffers = _plan(model, Adam(), X, np.zeros(8, np.int64), rows=4)
    _run(emulator, launches)
    _run(emulator, launches)
    assert buffers.counters[2] == 0 and not np.isfinite(buffers.sums[1])


@pytest.fixture
def recorded_modules(monkeypatch):
    """A ``cupy`` whose ``RawModule`` records what it is asked to compile, and compiles nothing."""
    import sys
    import types

    compiled = []

    class RawModule:
        def __init__(self, code, options, name_expressions):
            compiled.append((code, options, name_expressions))

        def get_function(self, name):
            return name

    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(RawModule=RawModule))
    cuda_step._function.cache_clear()
    cuda_step._module.cache_clear()
    yield compiled
    cuda_step._function.cache_clear()
    cuda_step._module.cache_clear()


def test_the_persistent_kernel_compiles_alone_in_a_module_of_its_own(recorded_modules, monkeypatch):
    monkeypatch.setattr(cuda_step, "PERSISTENT_BLOCKS_PER_SM", 2)
    name = "xpnet_persistent_step<float, long long>"
    assert cuda_step.CudaKernels.function(name) == name
    code, options, names = recorded_modules[-1]
    assert names == (name,) and "-DXPNET_PERSISTENT_BLOCKS_PER_SM=2" in options
    assert "xpnet_persistent_step(" in code and "xpnet_fused_gemm(" in code  # it runs the plan's device code
    cuda_step.CudaKernels.function("xpnet_update_step<float>")  # the plan's module: without it
    code, options, names = recorded_modules[-1]
    assert "xpnet_persistent_step" not in code and "xpnet_update_step<float>" in names
    assert not any(n.startswith("xpnet_persistent_step") for n in names)
    with pytest.raises(ValueError, match="is not one of the persistent step's kernels"):
        cuda_step.CudaKernels.function("xpnet_persistent_step<float, int>")


# The persistent step against the plan it runs, emulated: the same blocks and sums in the same order,
# so the same bits. With blocks=1 one real block runs every launch's blocks in turn; with blocks=3,
# three real blocks run at once (cuda_emulation's concurrent launch) and meet at the grid barrier,
# three training steps in one launch. Without the barrier the concurrent runs differ (2026-11-24,
# checked by deleting it): the later phases read what the earlier ones have not yet written.
# "resident": the plan made for the grid, as CapturedTraining makes it (plan_step's resident_blocks),
# which also trains as the plan made for kernel-by-kernel launches, to rounding.
PERSISTENT_RUNS = [(case, "float64", 3, False) for case in sorted(CASES)] + [
    ("sigmoid-ce-adam", "float32", 1, False), ("mixed-ce-nesterov-l2", "float32", 1, False),
    ("sigmoid-ce-adam-l2", "float32", 3, False), ("sigmoid-ce-adam-l2", "float64", 4, True),
    ("mixed-ce-nesterov-l2", "float32", 4, True)]


@needs_gxx
@pytest.mark.parametrize("case,dtype,blocks,resident", PERSISTENT_RUNS)
def test_persistent_step_equals_the_plan_bit_for_bit(emulator, case, dtype, blocks, resident):
    loss, layers, make_optimizer, l2 = CASES[case]
    rng = np.random.default_rng(7)
    width, rows, steps = 140, 40, 3
    X, y = _data(loss, rows * steps + 7, width, rng)
    order = rng.permutation(X.shape[0]).astype(np.int64)
    trained = []
    for persistent in (False, True, "ordinary plan") if resident else (False, True):
        model = Sequential(layers(width), loss=loss, dtype=dtype, seed=2, l2=l2)
        optimizer = make_optimizer()
        launches, buffers = _plan(model, optimizer, *model._check_data(X, y), rows,
                                  resident_blocks=blocks if resident and persistent != "ordinary plan" else None)
        buffers.order[...] = order
        if persistent == "ordinary plan":
            assert [launch.grid for launch in launches] != [launch.grid for launch in trained[0][-1]]
            for _ in range(steps):
                _run(emulator, launches)
        elif not persistent:
            for _ in range(steps):
                _run(emulator, launches)
        elif blocks == 1:  # a launch per step
            for _ in range(steps):
                launch = _persistent(launches, blocks=1)
                emulator.launch(launch.kernel, launch.grid, launch.block, launch.args)
        else:  # every step in one launch, its blocks at once
            launch = _persistent(launches, blocks=blocks, steps=steps)
            assert launch.grid == (blocks, 1, 1)
            emulator.launch(launch.kernel, launch.grid, launch.block, launch.args, concurrent=True)
            phases = len(launches) - sum(planned.with_next for planned in launches)  # a layer's two gradients: one
            assert launch.args[3][0] == 0 and launch.args[3][1] == steps * phases - 1  # every barrier passed
        state = optimizer._flat_state
        trained.append([*model.parameters(), model._flat[1], *state.values(), buffers.sums, buffers.counters,
                        launches])  # model._flat[1]: the flat gradients the plan writes
    plan, persistent = trained[0][:-1], trained[1][:-1]
    assert plan[-1].tolist()[0] == steps and plan[-1][2] == -1
    for got, want in zip(persistent, plan):
        np.testing.assert_array_equal(got, want)
    if resident:  # the sums in another order, the same training
        for got, want in zip(trained[2][:-1], plan):
            np.testing.assert_allclose(got, want, **TOLERANCE[(dtype, "highest")])


@needs_gxx
@pytest.mark.parametrize("phases,steps,blocks", [(1, 1, 1), (8, 5, 6), (3, 40, 16)])
def test_a_launch_of_empty_phases_passes_only_its_barriers(emulator, phases, steps, blocks):
    """bench.launches times the grid barrier alone with this launch: every block at once passes
    phases * steps - 1 barriers (the counter back at 0, the generation counting them) and runs no
    phase's work (the table holds no arrays for it to touch)."""
    launch = persistent_step.barrier_launch("xpnet_persistent_step<float, long long>", phases=phases, steps=steps,
                                            blocks=blocks, **{k: v for k, v in _numpy_device().items() if k != "empty"})
    table, n_phases, n_steps, barrier = launch.args
    assert launch.grid == (blocks, 1, 1) and (n_phases, n_steps) == (phases, steps) and table.shape[0] == phases
    assert not table[:, 1].any() and not table[:, persistent_step.PHASE_ARGS:].any()
    emulator.launch(launch.kernel, launch.grid, launch.block, launch.args, concurrent=True)
    assert barrier.tolist() == [0, phases * steps - 1]
    with pytest.raises(ValueError, match="phases must be at least 1"):
        persistent_step.barrier_launch(launch.kernel, phases=0, steps=1, blocks=1, to_device=np.asarray, zeros=np.zeros)


@needs_gxx
def test_the_phases_launched_alone_one_after_another_are_the_step(emulator):
    """bench.launches times each phase of the persistent step alone (persistent_step.phase_alone).
    Launched in order, once each, they are one step of the plan, bit for bit: the same rows of the
    same table, a layer's two gradients still in one phase. Launched for several steps, one phase
    passes only its own barriers."""
    loss, layers, make_optimizer, l2 = CASES["mixed-ce-nesterov-l2"]
    rng = np.random.default_rng(5)
    X, y = _data(loss, 2 * 40 + 3, 140, rng)
    trained = []
    for alone in (False, True):
        model = Sequential(layers(140), loss=loss, dtype="float64", seed=2, l2=l2)
        launches, buffers = _plan(model, make_optimizer(), *model._check_data(X, y), 40)
        launch = _persistent(launches, blocks=6)
        if alone:
            spans = persistent_step.phase_spans(launches)
            assert len(spans) == len(launches) - sum(planned.with_next for planned in launches)
            for first, stop in spans:
                one = persistent_step.phase_alone(launch, first, stop, 1, np.zeros)
                assert one.grid == launch.grid and one.args[1] == stop - first
                emulator.launch(one.kernel, one.grid, one.block, one.args, concurrent=True)
                assert one.args[3].tolist() == [0, 0]  # no barrier within one phase run once
        else:
            emulator.launch(launch.kernel, launch.grid, launch.block, launch.args, concurrent=True)
        trained.append([*model.parameters(), model._flat[1], buffers.sums, buffers.counters])
    for got, want in zip(*trained):
        np.testing.assert_array_equal(got, want)
    pair = next(span for span in spans if span[1] - span[0] == 2)
    repeated = persistent_step.phase_alone(launch, *pair, 3, np.zeros)
    emulator.launch(repeated.kernel, repeated.grid, repeated.block, repeated.args, concurrent=True)
    assert repeated.args[3].tolist() == [0, 2]
    for first, stop, steps in [(0, 0, 1), (3, 2, 1), (0, len(launches) + 1, 1), (0, 1, 0)]:
        with pytest.raises(ValueError, match="need 0 <= first < stop"):
            persistent_step.phase_alone(launch, first, stop, steps, np.zeros)


@needs_gxx
def test_bench_times_each_phase_of_the_persistent_step(emulator, monkeypatch):
    """bench.launches.phase_times end to end, on the emulation with CuPy played by NumPy and a clock
    that counts the rows a launch runs: a row per phase of the plan, each launched for its steps
    with its own barriers, its time the clock's per step; the epoch's counters put back to the
    epoch's start after every launch (left at batch 7, the gather would read past X)."""
    import sys
    from types import SimpleNamespace

    import bench.launches

    loss, layers, make_optimizer, l2 = CASES["sigmoid-ce-adam"]
    X, y = _data(loss, 2 * 40, 140, np.random.default_rng(6))
    model = Sequential(layers(140), loss=loss, dtype="float32", seed=2)
    launches, buffers = _plan(model, make_optimizer(), *model._check_data(X, y), 40)
    buffers.counters[...] = [7, 3, 5, 2]  # as a fit leaves them: batch 7 next, Adam's 2 steps taken
    captured = SimpleNamespace(_persistent_launches={40: _persistent(launches, blocks=4)},
                               _fused_plan=lambda rows: launches, counters=buffers.counters)
    run = type("Run", (), {"model": SimpleNamespace(_captured=captured), "__call__": lambda self, n: None})()
    monkeypatch.setattr(bench.launches, "xpnet_case", lambda **options: run)
    clock, launched = [], []

    class Event:
        def record(self):
            self.at = len(clock)

        def synchronize(self):
            pass

    cupy = SimpleNamespace(cuda=SimpleNamespace(Event=Event, get_elapsed_time=lambda a, b: float(b.at - a.at)),
                           zeros=lambda shape, dtype: np.zeros(shape, dtype), asarray=np.asarray)
    monkeypatch.setitem(sys.modules, "cupy", cupy)

    def on_the_emulation(self, planned):
        for launch in planned:
            table, n_phases, steps, barrier = launch.args
            assert buffers.counters[0] == 0  # the first batch
            clock.extend(range(int(steps) * int(np.prod(table[:, 1:4], axis=1).sum())))
            emulator.launch(launch.kernel, launch.grid, launch.block, launch.args, concurrent=True)
            launched.append((int(n_phases), int(steps), barrier.tolist()))

    monkeypatch.setattr(cuda_step.CudaKernels, "__call__", on_the_emulation)
    phases = bench.launches.phase_times(1, steps=3, repeats=2)
    spans = persistent_step.phase_spans(launches)
    assert [phase["kernels"] for phase in phases] == [[p.kernel for p in launches[a:b]] for a, b in spans]
    assert [phase["blocks"] for phase in phases] == [[int(np.prod(p.grid)) for p in launches[a:b]] for a, b in spans]
    assert [phase["us"] for phase in phases] == [1e3 * sum(phase["blocks"]) for phase in phases]  # the clock's ms
    # a warm-up and 2 timed launches per phase, 2 barriers each; one barrier per phase, its generation counting on
    assert launched == [(b - a, 3, [0, 2 * (i + 1)]) for a, b in spans for i in range(3)]
    assert buffers.counters.tolist() == [0, 0, -1, 2] and cuda_step.PERSISTENT_BLOCKS_PER_SM == 1


@needs_gxx
def test_a_layers_two_gradients_split_k_at_once_each_in_its_own_scratch(emulator):
    """784-...-style shapes made small: at batch 128 the second layer's weight gradient (21 x 128,
    K = 128) and input gradient (128 x 20, K = 128) each split K in two (the usual plan, for 132
    multiprocessors), 8 blocks each. The persistent step runs them in one phase on a grid of 16
    blocks, all at once: each must finish its own partial sums, with its own tile counters. (With
    one split-K scratch for both, every parameter differed, 3 runs of 3, 2026-11-24.)"""
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(256 + 9, 24)), rng.integers(0, 3, 256 + 9)
    trained = []
    for persistent in (False, True):
        model = Sequential(dense_stack([24, 20, 128, 3], "sigmoid"), dtype="float64", seed=4)
        launches, buffers = _plan(model, Adam(0.01), *model._check_data(X, y), 128)
        pairs = [(a, b) for a, b in zip(launches, launches[1:]) if a.with_next]
        assert [(np.prod(a.grid), np.prod(b.grid)) for a, b in pairs] == [(10, 16), (8, 8)]
        if persistent:
            launch = _persistent(launches, blocks=16, steps=2)
            emulator.launch(launch.kernel, launch.grid, launch.block, launch.args, concurrent=True)
        else:
            for _ in range(2):
                _run(emulator, launches)
        trained.append([*model.parameters(), model._flat[1], buffers.sums])
    for got, want in zip(*trained):
        np.testing.assert_array_equal(got, want)
