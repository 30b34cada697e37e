"""The compiled CPU training step (xpnet.kernels.numba_step) against the reference path.

The reference is the eager step on the generic Array-API operations (``fused=False``); the
compiled step must train to the same parameters and report the same losses, in float32 and
float64, for every option it accepts. Where it does not apply, the model says why and runs
the eager step.
"""

import pickle

import numpy as np
import pytest

from xpnet import SGD, Adam, NonFiniteLossError, Sequential
from xpnet.layers import Dense, Layer, ReLU, Sigmoid, Tanh, dense_stack

numba_step = pytest.importorskip("xpnet.kernels.numba_step", reason="Numba is not importable")

TOL = {"float32": dict(rtol=2e-4, atol=2e-5), "float64": dict(rtol=1e-9, atol=1e-11)}


def _layers(kind):
    if kind == "mixed":  # every activation, and two Dense layers with none between them
        return [Dense(12, 16), Sigmoid(), Dense(16, 9), ReLU(), Dense(9, 8), Dense(8, 7), Tanh(), Dense(7, 3)]
    if kind == "final":  # an activation after the last Dense layer, before the loss
        return [Dense(12, 8), Tanh(), Dense(8, 3), Sigmoid()]
    return dense_stack([12, 10, 3], kind)


def _data(loss, n=90, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 12))
    if loss == "softmax_cross_entropy":
        y = rng.integers(0, 3, n)
    elif loss == "binary_cross_entropy":
        y = (rng.random((n, 3)) > 0.5).astype(float)  # three labels per row
    else:
        y = rng.normal(size=(n, 3))
    return X, y


def _fit_pair(loss="softmax_cross_entropy", dtype="float32", optimizer=lambda: Adam(0.01), kind="mixed", l2=0.0,
              epochs=4, batch_size=32, **fit_kw):
    """The same fit twice: compiled step, and reference (unfused eager) step."""
    X, y = _data(loss)
    models, histories = [], []
    for compiled, fused in ((True, True), (False, False)):
        model = Sequential(_layers(kind), loss=loss, dtype=dtype, seed=3, l2=l2, fused=fused,
                           compiled=compiled if fused else None)
        histories.append(model.fit(X, y, epochs=epochs, batch_size=batch_size, optimizer=optimizer(), **fit_kw))
        models.append(model)
    return models, histories


def _assert_same(models, histories, dtype):
    assert histories[0].training_step == "numba-compiled" and histories[1].training_step == "eager"
    for got, want in zip(models[0].parameters(), models[1].parameters()):
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_allclose(got, want, **TOL[dtype])
    np.testing.assert_allclose(histories[0].loss, histories[1].loss, **TOL[dtype])
    if "accuracy" in histories[1]:
        np.testing.assert_allclose(histories[0].accuracy, histories[1].accuracy, atol=1.5 / 90)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "binary_cross_entropy", "mse"])
@pytest.mark.parametrize("optimizer", [
    lambda: Adam(0.01), lambda: Adam(0.01, eps=1e-2, eps_form="scikit-learn"), lambda: SGD(0.05),
    lambda: SGD(0.05, momentum=0.9), lambda: SGD(0.05, momentum=0.9, nesterov=True),
], ids=["adam", "adam-scikit-learn-eps", "sgd", "momentum", "nesterov"])
def test_compiled_step_equals_the_reference(dtype, loss, optimizer):
    # 90 rows in batches of 32: the last batch is smaller; parameters move by far more than the tolerance
    models, histories = _fit_pair(loss, dtype, optimizer)
    start = Sequential(_layers("mixed"), loss=loss, dtype=dtype, seed=3)
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(models[0].parameters(), start.parameters()))
    assert moved > 1e-2
    _assert_same(models, histories, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["sigmoid", "relu", "tanh", None])
def test_each_activation_with_l2(dtype, kind):
    _assert_same(*_fit_pair(dtype=dtype, kind=kind, l2=0.3), dtype)


def test_an_activation_before_the_loss():
    # mse only: the classification losses take logits, and Sequential refuses an activation before them
    _assert_same(*_fit_pair("mse", "float64", kind="final"), "float64")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "binary_cross_entropy", "mse"])
def test_sample_weights_with_l2(dtype, loss):
    weights = np.random.default_rng(1).uniform(0, 3, 90)
    weights[:32] = 0  # a whole batch weighing nothing (shuffle off): no loss, no gradient from it
    _assert_same(*_fit_pair(loss, dtype, l2=0.2, sample_weight=weights, shuffle=False), dtype)


def test_learning_rate_schedule_and_stopping_rule():
    models, histories = _fit_pair(optimizer=lambda: SGD(0.1, momentum=0.5), lr_schedule="invscaling", power_t=0.5,
                                  epochs=5)
    _assert_same(models, histories, "float32")
    assert histories[0]["lr"][-1] < 0.1 and histories[0]["lr"] == pytest.approx(histories[1]["lr"])
    models, histories = _fit_pair(tol=1e-1, n_iter_no_change=1, epochs=30, early_stopping=True)
    assert histories[0].stop_message and len(histories[0].loss) == len(histories[1].loss) < 30
    _assert_same(models, histories, "float32")


def test_continuing_fits_and_streamed_data(tmp_path):
    # Two fits with one optimizer equal one longer fit; a memmap streams into the same step.
    X, y = _data("softmax_cross_entropy")
    one = Sequential(_layers("mixed"), seed=3)
    one.fit(X, y, epochs=4, batch_size=32, optimizer=Adam(0.01), shuffle=False)
    two = Sequential(_layers("mixed"), seed=3)
    opt = Adam(0.01)
    two.fit(X, y, epochs=2, batch_size=32, optimizer=opt, shuffle=False)
    two.fit(X, y, epochs=2, batch_size=32, optimizer=opt, shuffle=False)
    assert opt.iterations == 4 * 3
    for a, b in zip(one.parameters(), two.parameters()):
        np.testing.assert_array_equal(a, b)
    assert list(two._compiled_steps) == [32]  # one step, its buffers reused by the second fit
    buffers = two._compiled_steps[32].acts
    two.fit(X, y, epochs=1, batch_size=32, optimizer=SGD(0.01))  # another optimizer kind: same buffers
    assert two._compiled_steps[32].acts is buffers and two._compiled_steps[32].optimizer.lr == 0.01
    path = tmp_path / "X.f32"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    streamed = Sequential(_layers("mixed"), seed=3)
    history = streamed.fit(np.memmap(path, dtype=np.float32, mode="r", shape=X.shape), y, epochs=4, batch_size=32,
                           optimizer=Adam(0.01), shuffle=False)
    assert history.training_step == "numba-compiled"
    for a, b in zip(one.parameters(), streamed.parameters()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_a_non_finite_loss_stops_before_that_batch_update():
    # SGD with an absurd rate: the first batch's update overflows the weights, so the second batch's loss is inf
    X, y = _data("mse")
    params, errors = [], []
    for compiled, fused in ((True, True), (None, False)):
        model = Sequential(dense_stack([12, 10, 3], "relu"), loss="mse", seed=3, fused=fused, compiled=compiled)
        with np.errstate(all="ignore"), pytest.raises(NonFiniteLossError) as info:
            model.fit(X, y, epochs=1, batch_size=32, optimizer=SGD(1e30), shuffle=False)
        errors.append(info.value)
        params.append(model.parameters())
    assert [(e.epoch, e.batch) for e in errors] == [(1, 2), (1, 2)]
    assert isinstance(errors[0], ValueError)  # as scikit-learn's MLP raises for non-finite weights
    assert "before that batch's update" in str(errors[0])
    for a, b in zip(*params):
        np.testing.assert_allclose(a, b, rtol=1e-5)  # one update made, the bad batch's not


def test_where_it_applies_and_why_not():
    model = Sequential(dense_stack([12, 10, 3], "relu"), seed=0)
    assert model.uses_compiled_step() == (True, "")
    assert model.uses_compiled_step(SGD(0.1)) == (True, "")
    assert Sequential(dense_stack([12, 3], None), compiled=False).uses_compiled_step() == (False, "compiled=False")
    unfused = Sequential(dense_stack([12, 3], None), fused=False)
    assert unfused.uses_compiled_step() == (False, "fusion switched off")
    with pytest.raises(ValueError, match="compiled=True needs the NumPy backend with fused"):
        Sequential(dense_stack([12, 3], None), fused=False, compiled=True)
    with pytest.raises(ValueError, match="compiled must be True, False or None"):
        Sequential(dense_stack([12, 3], None), compiled="yes")

    class MyAdam(Adam):  # a subclass may change the update: never compiled in its place
        pass

    assert "MyAdam" in model.uses_compiled_step(MyAdam())[1]

    class Scale(Layer):
        def forward(self, x):
            return 2 * x

        def backward(self, grad_out, need_input_grad=True):
            return 2 * grad_out

    custom = Sequential([Dense(12, 4), Scale(), Dense(4, 3)], seed=0)
    ok, why = custom.uses_compiled_step()
    assert not ok and "layers[1] (Scale) has no compiled form" in why
    X, y = _data("softmax_cross_entropy")
    assert custom.fit(X, y, epochs=1).training_step == "eager"
    leading = Sequential([Sigmoid(), Dense(12, 3)], seed=0)
    assert "does not follow a Dense layer" in leading.uses_compiled_step()[1]
    strict = Sequential([Dense(12, 4), Scale(), Dense(4, 3)], seed=0, compiled=True)
    with pytest.raises(ValueError, match="compiled=True, but this fit has no compiled step"):
        strict.fit(X, y, epochs=1)


def test_pickles_and_buffers():
    X, y = _data("softmax_cross_entropy")
    model = Sequential(_layers("mixed"), seed=3, compiled=True)
    model.fit(X, y, epochs=1, batch_size=32)
    clone = pickle.loads(pickle.dumps(model))
    assert clone.compiled is True
    for a, b in zip(model.parameters(), clone.parameters()):
        np.testing.assert_array_equal(a, b)
    h1, h2 = (m.fit(X, y, epochs=1, batch_size=32, optimizer=Adam(0.01)) for m in (model, clone))
    assert h1.loss == h2.loss and h2.training_step == "numba-compiled"
    step = numba_step.CompiledStep(model, Adam(), batch_size=8)
    with pytest.raises(ValueError, match="buffers for 8"):
        step(model._check_data(X, y)[0][:9], np.zeros(9, dtype=np.int64))


def test_fast_exp_within_two_ulp_over_the_float32_range():
    import numba

    @numba.njit
    def exp_all(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = numba_step.fast_exp(x[i])
        return out

    x = np.concatenate([np.linspace(-110, 90, 2_000_001), [-np.inf, np.inf, np.nan, 0.0, -0.0, 88.72, 88.73]])
    x = x.astype(np.float32)
    got = exp_all(x).astype(np.float64)
    with np.errstate(over="ignore"):
        want = np.exp(x.astype(np.float64))
    normal = (want >= np.finfo(np.float32).tiny) & (want <= np.finfo(np.float32).max)
    ulp = np.spacing(want[normal].astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(got[normal] - want[normal]) / ulp) <= 2.0
    # overflow to inf, underflow through the denormals to 0, NaN stays NaN
    assert np.all(np.isinf(got[want > np.finfo(np.float32).max]))
    tiny = want < np.finfo(np.float32).tiny
    assert np.all(np.abs(got[tiny] - want[tiny]) <= np.finfo(np.float32).smallest_subnormal * 2)
    assert np.isnan(got[-5]) and got[-4] == 1.0 == got[-3]
    assert exp_all(np.array([1.0])).dtype == np.float64  # float64 keeps math.exp


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True)])
def test_both_product_routes(dtype, trans_a, trans_b, rng):
    # NumPy's own OpenBLAS through cblas (where NumPy's wheel ships it) and np.dot (SciPy's BLAS)
    a = rng.normal(size=(7, 5) if not trans_a else (5, 7)).astype(dtype)
    b = rng.normal(size=(5, 3) if not trans_b else (3, 5)).astype(dtype)
    want = (a.T if trans_a else a) @ (b.T if trans_b else b)
    routes = [numba_step._gemm_np_dot] + ([numba_step._gemm_numpy_blas] if numba_step.NUMPY_BLAS else [])
    for gemm in routes:
        out = np.full((7, 3), np.nan, dtype=dtype)
        gemm(a, trans_a, b, trans_b, out)
        np.testing.assert_allclose(out, want, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_numpy_wheels_use_numpy_blas():
    import importlib.metadata

    from threadpoolctl import threadpool_info

    numpy_libs = [i["filepath"] for i in threadpool_info() if "scipy_openblas64_" in i.get("filepath", "")]
    if not numpy_libs:
        pytest.skip("this NumPy does not bundle scipy-openblas64 (not a PyPI wheel): the step uses np.dot")
    assert numba_step.NUMPY_BLAS, f"NumPy {importlib.metadata.version('numpy')} bundles {numpy_libs} but it was not found"
    assert numba_step.train_step.__name__ == "train_step_numpy_blas"


def test_the_np_dot_step_trains_like_the_numpy_blas_step():
    step_np_dot = numba_step._step_with(numba_step._gemm_np_dot, "train_step_np_dot")
    X, y = _data("softmax_cross_entropy")
    results = []
    for fn in (numba_step.train_step, step_np_dot):
        model = Sequential(_layers("mixed"), seed=3, dtype="float64")
        step = numba_step.CompiledStep(model, Adam(0.01), batch_size=32)
        step.kernel = fn
        Xd, yd = model._check_data(X, y)
        losses = [step(Xd[lo:lo + 32], yd[lo:lo + 32])[0] for _ in range(3) for lo in range(0, 90, 32)]
        results.append((losses, model.parameters()))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-12)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


def test_the_step_sigmoid_within_three_ulp():
    # fast_exp as the step's bias + sigmoid pass compiles it (with that pass's fast-math flags)
    z = np.linspace(-30, 30, 1_000_000).astype(np.float32).reshape(1000, 1000)
    out = z.copy()
    numba_step._bias_activation(out, np.zeros(1000, dtype=np.float32), numba_step.SIGMOID)
    want = 1 / (1 + np.exp(-z.astype(np.float64)))
    assert np.max(np.abs(out - want) / np.spacing(want.astype(np.float32))) <= 3.0
