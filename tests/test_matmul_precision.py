"""``matmul_precision``: tensor-core products where a GPU runs the captured step, a clear refusal
everywhere else (never a silent fallback to another precision). The kernels themselves are
checked in test_fused_step.py (CPU emulation) and test_gpu_graphs.py (GPU)."""

import pickle
import warnings

import numpy as np
import pytest

from xpnet import Sequential
from xpnet.estimators import MLPClassifier, MLPRegressor
from xpnet.kernels import cuda_step
from xpnet.layers import dense_stack
from xpnet.network import MATMUL_PRECISIONS


def _model(**kw):
    return Sequential(dense_stack([6, 5, 3], "sigmoid"), seed=0, **kw)


def test_the_model_and_the_kernels_know_the_same_precisions():
    assert set(MATMUL_PRECISIONS) == set(cuda_step.PRECISIONS)
    assert _model().matmul_precision == "highest"


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_numpy_refuses_tensor_core_products(precision):
    with pytest.raises(ValueError, match=f"matmul_precision='{precision}' needs the tensor cores of the captured "
                                         "CUDA-graph step.*no captured CUDA-graph step"):
        _model(matmul_precision=precision)


def test_float64_refuses_them_first():
    with pytest.raises(ValueError, match="dtype is 'float64'"):
        _model(dtype="float64", matmul_precision="tf32")


@pytest.mark.parametrize("value", ["high", "TF32", None, 32])
def test_unknown_precisions_are_refused(value):
    with pytest.raises(ValueError, match="matmul_precision must be one of"):
        _model(matmul_precision=value)


def test_set_matmul_precision_leaves_the_model_as_it_was_when_it_refuses():
    model = _model()
    with pytest.raises(ValueError, match="tensor cores"):
        model.set_matmul_precision("bf16")
    assert model.matmul_precision == "highest" and model._requested["matmul_precision"] == "highest"
    model.set_matmul_precision("highest")


def test_pickle_keeps_the_precision_and_a_gpu_only_one_falls_back_loudly():
    model = _model()
    assert pickle.loads(pickle.dumps(model)).matmul_precision == "highest"
    state = model.__getstate__()
    state["options"]["matmul_precision"] = "tf32"  # as pickled on a GPU machine
    clone = Sequential.__new__(Sequential)
    with pytest.warns(UserWarning, match="matmul_precision='tf32'.*trains at 'highest' precision"):
        clone.__setstate__(state)
    assert clone.matmul_precision == "highest"
    for a, b in zip(model.parameters(), clone.parameters()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_estimators_take_the_option_and_refuse_it_off_the_gpu_before_any_change(Estimator):
    X = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    est = Estimator(hidden_layer_sizes=(5,), max_iter=3, matmul_precision="tf32")
    assert est.get_params()["matmul_precision"] == "tf32"
    with pytest.raises(ValueError, match="matmul_precision='tf32' needs the tensor cores"):
        est.fit(X, y)
    assert not hasattr(est, "model_")
    with pytest.raises(ValueError, match="solver='lbfgs' has none"):
        Estimator(solver="lbfgs", matmul_precision="bf16").fit(X, y)
    with pytest.raises(ValueError, match="matmul_precision must be one of"):
        Estimator(matmul_precision="medium").fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 3 iterations do not converge
        fitted = Estimator(hidden_layer_sizes=(5,), max_iter=3).fit(X, y)
    assert fitted.model_.matmul_precision == "highest"


def test_warm_start_refuses_a_precision_change_it_cannot_run_before_any_change():
    X = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, warm_start=True).fit(X, y)
    before = [p.copy() for p in est.model_.parameters()]
    est.set_params(matmul_precision="tf32")
    with pytest.raises(ValueError, match="tensor cores"):
        est.fit(X, y)
    assert est.model_.matmul_precision == "highest" and est.n_iter_ == 2
    for a, b in zip(before, est.model_.parameters()):
        np.testing.assert_array_equal(a, b)
