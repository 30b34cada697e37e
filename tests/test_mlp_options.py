"""scikit-learn's MLP options on xpnet's MLPClassifier/MLPRegressor, built once in the core
(``Sequential.fit``: stopping rule, early stopping, learning-rate schedules), and compared with
scikit-learn's own code where the algorithm is the same."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import xpnet
from xpnet import SGD, Dense, Sequential, Sigmoid
from xpnet.stopping import NoImprovement, scheduled_lr, validation_split

sklearn = pytest.importorskip("sklearn")
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLP  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkReg  # noqa: E402
from sklearn.neural_network._stochastic_optimizers import SGDOptimizer  # noqa: E402


def _blobs(n=300, d=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    X = rng.normal(size=(n, d)) + 1.5 * np.eye(k, d)[y]
    return X, y


# -- the stopping rule ----------------------------------------------------------------------
@pytest.mark.parametrize("patience", [1, 3, 10])
def test_stopping_epoch_equals_scikit_learns_for_the_same_loss_curve(patience):
    """scikit-learn's own counter (``_update_no_improvement_count``) and xpnet's NoImprovement
    stop at the same epoch on the same curves, plateaus within tol included."""
    rng = np.random.default_rng(patience)
    for _ in range(20):
        curve = list(np.cumsum(-np.abs(rng.normal(0, 1e-3, size=60)) * (rng.random(60) < 0.6)) + 1.0)
        sk = SkMLP(tol=1e-4, n_iter_no_change=patience)
        sk.best_loss_, sk._no_improvement_count, sk.loss_curve_ = np.inf, 0, []
        watch, sk_stop, xp_stop = NoImprovement(1e-4, patience), None, None
        for epoch, loss in enumerate(curve, 1):
            sk.loss_curve_.append(loss)
            sk._update_no_improvement_count(False, None, None, None)
            watch.update(loss)
            if sk_stop is None and sk._no_improvement_count > sk.n_iter_no_change:
                sk_stop = epoch
            if xp_stop is None and watch.stop:
                xp_stop = epoch
        assert xp_stop == sk_stop


def test_n_iter_no_change_inf_trains_every_epoch():
    X, y = _blobs()
    clf = xpnet.MLPClassifier(hidden_layer_sizes=(4,), max_iter=12, tol=10.0, n_iter_no_change=np.inf,
                              random_state=0)
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(12\) reached"):
        clf.fit(X, y)
    assert clf.n_iter_ == 12
    stopped = xpnet.MLPClassifier(hidden_layer_sizes=(4,), max_iter=12, tol=10.0, n_iter_no_change=2,
                                  random_state=0).fit(X, y)
    assert stopped.n_iter_ == 4  # nothing improves by tol=10 after epoch 1: the count reaches 3 > 2 at epoch 4


# -- learning-rate schedules ----------------------------------------------------------------
def test_invscaling_learning_rate_per_epoch_equals_scikit_learns():
    X, y = _blobs(n=250)
    model = Sequential([Dense(4, 5), Sigmoid(), Dense(5, 3)], seed=0)
    history = model.fit(X, y, epochs=6, batch_size=32, optimizer=SGD(0.3), lr_schedule="invscaling", power_t=0.4)
    sk = SGDOptimizer([np.zeros(2)], learning_rate_init=0.3, lr_schedule="invscaling", power_t=0.4)
    expected = []
    for epoch in range(6):
        expected.append(sk.learning_rate)
        sk.iteration_ends((epoch + 1) * 250)  # scikit-learn passes t_, the samples seen so far
    np.testing.assert_allclose(history.lr, expected, rtol=1e-15)
    assert scheduled_lr("constant", 0.3, 0.4, 1000) == 0.3


def test_adaptive_learning_rate_follows_scikit_learns_trigger():
    """Each time the rule fires the rate is divided by 5 and the count restarts; at 1e-6 or less it stops."""
    X, y = _blobs()
    model = Sequential([Dense(4, 5), Sigmoid(), Dense(5, 3)], seed=0)
    history = model.fit(X, y, epochs=500, optimizer=SGD(0.01), tol=100.0, n_iter_no_change=1, lr_schedule="adaptive")
    sk = SGDOptimizer([np.zeros(2)], learning_rate_init=0.01, lr_schedule="adaptive")
    rates = [0.01]
    while not sk.trigger_stopping("", verbose=False):
        rates.append(sk.learning_rate)
    observed = sorted(set(history.lr), reverse=True)
    np.testing.assert_allclose(observed, rates, rtol=1e-15)
    assert history.stop_message.endswith("Learning rate too small. Stopping.")
    # the first rate lasts 3 epochs (epoch 1 sets the best), each later one 2 (the count restarts at 0)
    assert len(history.loss) == 3 + 2 * (len(rates) - 1)


def test_schedule_is_applied_only_to_sgd_as_in_scikit_learn():
    X, y = _blobs()
    adam = xpnet.MLPClassifier(hidden_layer_sizes=(5,), learning_rate="invscaling", max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        adam.fit(X, y)
    assert adam._optimizer_.lr == adam.learning_rate_init
    sgd = xpnet.MLPClassifier(hidden_layer_sizes=(5,), solver="sgd", learning_rate="invscaling", max_iter=3,
                              learning_rate_init=0.1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sgd.fit(X, y)
    assert sgd._optimizer_.lr == pytest.approx(0.1 / (3 * 300 + 1) ** 0.5)
    assert sgd.t_ == 900


# -- the regressor's loss --------------------------------------------------------------------
def test_multi_output_regressor_loss_is_scikit_learns_squared_error():
    """For k outputs scikit-learn's loss_ is the mean over rows and outputs (/2), while its gradient
    is that of the sum over outputs (deltas = output - y, divided by N only). MLPRegressor used MSE,
    so loss_ was k times scikit-learn's; then a loss averaged over outputs in its gradient too, so
    sgd stepped k times shorter and lbfgs found another optimum. One output keeps MSE (the same
    loss) and its compiled step."""
    from sklearn.neural_network._base import squared_loss

    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 4))
    Y = np.c_[X @ np.arange(4.0), X[:, 0] ** 2, -X[:, 1]]
    loss = xpnet.losses.SquaredError()
    out = rng.normal(size=Y.shape)
    value, grad = loss.value_and_grad(out, Y, Sequential([Dense(4, 3)], loss="mse").ops)
    assert float(value) == pytest.approx(squared_loss(Y, out), rel=1e-12)
    np.testing.assert_allclose(grad, (out - Y) / Y.shape[0], rtol=1e-12)  # not / Y.size: scikit-learn's deltas
    alpha = 1e-3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        several = xpnet.MLPRegressor(hidden_layer_sizes=(8,), alpha=alpha, max_iter=200, random_state=0).fit(X, Y)
        one = xpnet.MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, Y[:, 0])
    assert type(several.model_.loss).__name__ == "SquaredError" and type(one.model_.loss).__name__ == "MSE"
    # loss_ is the last epoch's mean over its batches: close to, not equal to, the final weights' loss
    penalty = 0.5 * alpha * sum(float((w ** 2).sum()) for w in several.coefs_) / X.shape[0]
    assert several.loss_ == pytest.approx(squared_loss(Y, several.predict(X)) + penalty, rel=0.02)


@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
def test_multi_output_regressor_trains_as_scikit_learns_from_the_same_weights(solver):
    """From scikit-learn's weights, 30 more epochs (sgd with momentum, no shuffling) or lbfgs
    iterations with alpha > 0 on three outputs reach scikit-learn's weights and loss_."""
    from sklearn.neural_network import MLPRegressor as SkRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 5))
    Y = np.c_[X[:, 0], X[:, 1] ** 2, -X[:, 2]]
    kw = dict(hidden_layer_sizes=(7,), activation="tanh", solver=solver, alpha=0.5, batch_size=25, shuffle=False,
              learning_rate_init=0.05, momentum=0.9, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = SkRegressor(max_iter=1, **kw).fit(X, Y)
        ours = xpnet.MLPRegressor(max_iter=1, dtype="float64", **kw).fit(X, Y)
        ours.model_.set_parameters([w for pair in zip(sk.coefs_, sk.intercepts_) for w in pair])
        for est in (sk, ours):
            est.set_params(warm_start=True, max_iter=30).fit(X, Y)  # a warm fit starts a new optimizer in both
    for a, b in zip(ours.coefs_ + ours.intercepts_, sk.coefs_ + sk.intercepts_):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-9, atol=1e-11)
    assert ours.loss_ == pytest.approx(sk.loss_, rel=1e-10) and ours.n_iter_ == sk.n_iter_


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("kind", ["multiclass", "binary", "regression"])
def test_adam_trains_as_scikit_learns_from_the_same_weights(kind, fused):
    """scikit-learn adds Adam's epsilon to the uncorrected sqrt(v) (Adam(eps_form="scikit-learn")):
    from its weights, 40 adam epochs with epsilon=1e-3 reach its weights, on the reference path and
    in the compiled Numba step. With PyTorch's epsilon the weights differed by 0.14 to 0.19 here."""
    X, y = _blobs(n=100, k=2 if kind == "binary" else 3)
    if kind == "regression":
        y = X @ [1.0, -0.5, 2.0, 0.3] + X[:, 0] ** 2
    kw = dict(hidden_layer_sizes=(7,), activation="tanh", solver="adam", alpha=0.1, batch_size=25, shuffle=False,
              learning_rate_init=0.01, epsilon=1e-3, random_state=0)
    Sk, Ours = (SkReg, xpnet.MLPRegressor) if kind == "regression" else (SkMLP, xpnet.MLPClassifier)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = Sk(max_iter=1, **kw).fit(X, y)
        ours = Ours(max_iter=1, dtype="float64", fused=fused, **kw).fit(X, y)
        ours.model_.set_parameters([w for pair in zip(sk.coefs_, sk.intercepts_) for w in pair])
        for est in (sk, ours):
            est.set_params(warm_start=True, max_iter=40).fit(X, y)
    assert ours.model_.uses_compiled_step(ours._optimizer_)[0] == fused
    moved = max(float(np.abs(a - b).max()) for a, b in zip(sk.coefs_, Sk(max_iter=1, **kw).fit(X, y).coefs_))
    assert moved > 0.1
    for a, b in zip(ours.coefs_ + ours.intercepts_, sk.coefs_ + sk.intercepts_):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-10, atol=1e-12)
    assert ours.loss_ == pytest.approx(sk.loss_, rel=1e-12)


FROM_THE_SAME_SEED = {
    "binary-adam-early-stopping": ("binary", dict(solver="adam", early_stopping=True, activation="logistic")),
    "multiclass-adam-shuffled": ("multiclass", dict(solver="adam")),
    "multilabel-sgd-nesterov": ("multilabel", dict(solver="sgd", momentum=0.9, learning_rate="invscaling")),
    "regression-sgd-weighted-early": ("regression", dict(solver="sgd", early_stopping=True, weighted=True)),
    "regression-adam-unshuffled": ("regression", dict(solver="adam", shuffle=False)),
}


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("case", sorted(FROM_THE_SAME_SEED))
def test_the_same_random_state_gives_scikit_learns_fit(case, fused):
    """One generator, drawn in scikit-learn's order: its initial weights, its early-stopping split
    (train_test_split, stratified for one output unit) and its epoch orders (each epoch shuffles the
    last), so an estimator fitted with scikit-learn's random_state is scikit-learn's, to float64
    rounding; then a warm fit (the generator made anew, the order from the rows in order) and
    partial_fit calls stay so."""
    kind, options = FROM_THE_SAME_SEED[case]
    options = dict(options)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(150, 5))
    y = {"binary": (X[:, 0] > 0).astype(int), "multiclass": rng.integers(0, 3, 150),
         "multilabel": (rng.random((150, 3)) > 0.5).astype(int), "regression": X[:, 0] - X[:, 1] ** 2}[kind]
    sample_weight = rng.uniform(0.2, 2.0, 150) if options.pop("weighted", False) else None
    kw = dict(hidden_layer_sizes=(6, 4), batch_size=32, max_iter=20, learning_rate_init=0.01, random_state=3,
              warm_start=True, **options)
    Sk, Ours = (SkReg, xpnet.MLPRegressor) if kind == "regression" else (SkMLP, xpnet.MLPClassifier)
    sk, ours = Sk(**kw), Ours(dtype="float64", fused=fused, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for est in (sk, ours):
            est.fit(X, y, sample_weight=sample_weight)
            if not est.early_stopping:  # with it, a warm fit may end elsewhere: see the test below
                est.set_params(max_iter=5).fit(X, y, sample_weight=sample_weight)
                est.partial_fit(X, y)
    assert ours.n_iter_ == sk.n_iter_ and len(ours.loss_curve_) == len(sk.loss_curve_) > 5
    for a, b in zip(ours.coefs_ + ours.intercepts_, sk.coefs_ + sk.intercepts_):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(ours.loss_curve_, sk.loss_curve_, rtol=1e-10)
    if sk.early_stopping:
        np.testing.assert_allclose(ours.validation_scores_, sk.validation_scores_, rtol=1e-10)


def test_a_warm_fit_with_early_stopping_keeps_the_best_weights_so_far():
    """A warm fit whose epochs never beat the best validation score of the fits before it ends on
    that best epoch's weights. (scikit-learn 1.9 ends on its last epoch's instead: after its first
    restore, coefs_ is the very list it keeps the best weights in, so training moves them.)"""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(150, 5))
    y = (X[:, 0] > 0).astype(int)
    clf = xpnet.MLPClassifier(hidden_layer_sizes=(6, 4), activation="logistic", batch_size=32, max_iter=20,
                              learning_rate_init=0.01, random_state=3, warm_start=True, early_stopping=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
        best, best_score = [np.copy(c) for c in clf.coefs_], clf.best_validation_score_
        clf.set_params(max_iter=5).fit(X, y)
    assert clf.best_validation_score_ == best_score and max(clf.validation_scores_[-5:]) <= best_score
    assert len(clf.loss_curve_) == 25  # it trained: five more epochs
    for kept, before in zip(clf.coefs_, best):
        np.testing.assert_array_equal(np.asarray(kept), before)


# -- initial weights -------------------------------------------------------------------------
@pytest.mark.parametrize("activation, factor", [("relu", 6.0), ("tanh", 6.0), ("logistic", 2.0)])
def test_initial_weights_are_drawn_as_scikit_learns(activation, factor):
    """Weights and biases uniform in +-sqrt(factor / (fan_in + fan_out)), as scikit-learn's
    _init_coef (the estimators used He-normal weights before a ReLU and zero biases), drawn from
    the RandomState scikit-learn makes of random_state: its very values."""
    X, y = _blobs(n=60, d=30, k=3)
    clf = xpnet.MLPClassifier(hidden_layer_sizes=(40,), activation=activation, max_iter=1, random_state=0,
                              learning_rate_init=1e-12)  # one epoch that leaves the weights where they began
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    model = Sequential(xpnet.layers.dense_stack([30, 40, 3], activation), seed=0, dtype="float64")
    xpnet.estimators.scikit_learn_initial_weights(model, activation, np.random.RandomState(0))
    for (W, b), (fan_in, fan_out) in zip(zip(model.parameters()[0::2], model.parameters()[1::2]), [(30, 40), (40, 3)]):
        bound = (factor / (fan_in + fan_out)) ** 0.5
        for values in (W, b):
            assert np.abs(values).max() <= bound and np.all(values != 0)
            if values.size >= 40:  # enough draws to see the whole interval, centred
                assert np.abs(values).max() > 0.75 * bound and abs(values.mean()) < 0.25 * bound
    sk = SkMLP(hidden_layer_sizes=(40,), activation=activation, max_iter=1, random_state=0, learning_rate_init=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk.fit(X, y)
    for ours, drawn, theirs in zip([*clf.coefs_, *clf.intercepts_], [*model.parameters()[0::2], *model.parameters()[1::2]],
                                   [*sk.coefs_, *sk.intercepts_]):
        np.testing.assert_allclose(ours, drawn, atol=1e-9)  # the estimator starts from these,
        np.testing.assert_allclose(ours, theirs, atol=1e-9)  # which are scikit-learn's for the same random_state


def test_accuracy_early_in_training_matches_scikit_learns_on_digits():
    """The same options give scikit-learn's accuracy after 30 epochs of adam on unscaled digits
    (relu, mean of 3 seeds: 0.896 against 0.944 with the old initial weights, 0.946 now)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    scores = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for name, make in (("xpnet", xpnet.MLPClassifier), ("sklearn", SkMLP)):
            scores[name] = np.mean([make(hidden_layer_sizes=(64,), max_iter=30, random_state=seed).fit(X_tr, y_tr)
                                    .score(X_te, y_te) for seed in range(3)])
    assert abs(scores["xpnet"] - scores["sklearn"]) < 0.02, scores


# -- early stopping -------------------------------------------------------------------------
def test_validation_split_is_stratified_and_sized_like_scikit_learns():
    y = np.repeat([0, 1, 2], [50, 30, 20])
    train, val = validation_split(y, 0.1, np.random.default_rng(0), stratify=True)
    assert val.size == 10 and train.size == 90 and not set(train) & set(val)
    assert np.bincount(y[val]).tolist() == [5, 3, 2]
    with pytest.raises(ValueError, match="leaves no training rows"):
        validation_split(np.arange(3), 0.9, np.random.default_rng(0), stratify=False)


def test_a_validation_set_of_one_row_is_refused_as_scikit_learn_refuses_it():
    """10 samples at validation_fraction=0.1 held out one row, whose R^2 is undefined and whose
    accuracy is 0 or 1: early stopping followed noise. scikit-learn refuses it; so does xpnet now."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(10, 3)), rng.normal(size=10)
    for Estimator in (SkReg, xpnet.MLPRegressor):
        with pytest.raises(ValueError, match="validation set (is too small|needs at least 2)"):
            Estimator(early_stopping=True, validation_fraction=0.1, max_iter=3).fit(X, y)
    with pytest.raises(ValueError, match="holds out 1 row; the validation set needs at least 2"):
        Sequential([Dense(3, 1)], loss="mse").fit(X, y, epochs=1, early_stopping=True, tol=1e-4, validation_fraction=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert xpnet.MLPRegressor(early_stopping=True, validation_fraction=0.2, max_iter=3).fit(X, y).n_iter_ == 3


def test_a_binary_classifiers_split_is_stratified_like_scikit_learns():
    """A binary classifier trains one logistic unit on a 0/1 column ``(N, 1)``: that column is
    stratified (it was split at random), and the two-class splits scikit-learn's stratified
    ``train_test_split`` refuses are refused; multilabel and soft targets split at random."""
    rng = np.random.default_rng(0)
    column = np.repeat([0.0, 1.0], [80, 20]).reshape(-1, 1)
    for seed in range(5):
        val = validation_split(column, 0.1, np.random.default_rng(seed), stratify=True)[1]
        assert val.size == 10 and column[val, 0].sum() == 2
    soft = rng.random((100, 1))
    assert validation_split(soft, 0.1, np.random.default_rng(0), stratify=True)[1].size == 10
    X, y = rng.normal(size=(30, 3)), np.arange(30) % 2
    one_of_class_1 = np.r_[1, np.zeros(29, int)]
    for y_, fraction, message in [(y, 0.02, r"holds out 1 row; the validation set needs at least 2"),
                                  (y, 0.95, r"leaves 1 training row\(s\), fewer than the 2 classes"),
                                  (one_of_class_1, 0.1, "one of the two classes in y has only 1 sample")]:
        with pytest.raises(ValueError):  # scikit-learn refuses each of them too
            SkMLP(early_stopping=True, validation_fraction=fraction, max_iter=2).fit(X, y_)
        clf = xpnet.MLPClassifier(early_stopping=True, validation_fraction=fraction, max_iter=2)
        with pytest.raises(ValueError, match=message):
            clf.fit(X, y_)
        assert not hasattr(clf, "model_")
    # scikit-learn does not stratify three classes; neither refuses few held-out rows there
    xpnet.MLPClassifier(early_stopping=True, validation_fraction=0.05, max_iter=2).fit(X, np.arange(30) % 3)


def test_early_stopping_keeps_the_best_epoch():
    X, y = _blobs(n=600)
    clf = xpnet.MLPClassifier(hidden_layer_sizes=(16,), early_stopping=True, validation_fraction=0.2,
                              n_iter_no_change=3, max_iter=300, learning_rate_init=0.05, random_state=0)
    clf.fit(X, y)
    assert clf.n_iter_ < 300 and len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.best_loss_ is None and clf.loss_ == clf.loss_curve_[-1]
    # the kept weights are the best epoch's: rescoring the same held-out rows gives the best score
    # (the split is scikit-learn's, from its RandomState right after the weights, so a twin finds it;
    # three classes are not stratified, as in scikit-learn)
    from sklearn.model_selection import train_test_split

    draws = np.random.RandomState(0)
    twin = Sequential(xpnet.layers.dense_stack([4, 16, 3], "relu"), seed=0, dtype="float64")
    xpnet.estimators.scikit_learn_initial_weights(twin, "relu", draws)
    rows = train_test_split(np.arange(X.shape[0]), test_size=0.2, random_state=draws)[1]
    assert clf.model_.evaluate(X[rows], y[rows])["accuracy"] == pytest.approx(clf.best_validation_score_)


def test_early_stopping_r2_of_a_constant_target_is_r2_scores():
    """The validation R^2 of a constant target column is 1.0 when predicted exactly, else 0.0, as
    scikit-learn's r2_score (it was always 0.0); averaged uniformly with the other columns."""
    from sklearn.metrics import r2_score

    from xpnet.training import validation_score

    model = Sequential([Dense(2, 2)], loss="mse", seed=0, dtype="float64")
    model.set_parameters([np.zeros((2, 2)), np.array([3.0, 1.0])])  # predicts (3, 1) everywhere
    rng = np.random.default_rng(0)
    X = rng.random((10, 2))
    for constant in (3.0, 2.0):
        Y = np.c_[np.full(10, constant), rng.random(10)]
        assert validation_score(model, X, Y) == pytest.approx(r2_score(Y, model.predict(X)), rel=1e-12)


def test_early_stopping_regressor_scores_r2():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 3))
    y = X @ [1.0, -2.0, 0.5] + 0.1 * rng.normal(size=400)
    reg = xpnet.MLPRegressor(hidden_layer_sizes=(8,), early_stopping=True, max_iter=200, random_state=0,
                             learning_rate_init=0.01)
    reg.fit(X, y)
    assert 0.9 < reg.best_validation_score_ <= 1.0


# -- lbfgs -----------------------------------------------------------------------------------
def test_lbfgs_reaches_scikit_learns_loss_from_the_same_weights():
    """Both run scipy's L-BFGS-B from the same float64 weights; the loss and gradient come
    from each library's own backprop, so the final losses agree to 1e-6 relative."""
    X, y = _blobs(n=120)
    kw = dict(hidden_layer_sizes=(6,), activation="tanh", solver="lbfgs", alpha=1e-3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = SkMLP(max_iter=1, **kw).fit(X, y)
        ours = xpnet.MLPClassifier(max_iter=1, dtype="float64", **kw).fit(X, y)
    start = [w for pair in zip(sk.coefs_, sk.intercepts_) for w in pair]
    ours.model_.set_parameters(start)
    sk.set_params(warm_start=True, max_iter=60)
    ours.set_params(warm_start=True, max_iter=60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk.fit(X, y)
        ours.fit(X, y)
    assert ours.loss_ == pytest.approx(sk.loss_, rel=1e-6)
    for a, b in zip(ours.coefs_, sk.coefs_):
        assert a.shape == b.shape


def test_lbfgs_packs_its_vector_as_scikit_learn_and_takes_the_same_first_steps(monkeypatch):
    """L-BFGS-B gets scikit-learn's vector (every weight matrix, then every bias), so it sums its
    dot products in the same order and, from the same random_state, evaluates the same points:
    the first 12 evaluations' points, losses and gradients agree to rounding. (In layer order
    the vector is a permutation of scikit-learn's, and the points already differ at the start.)"""
    import scipy.optimize

    calls = []
    minimize = scipy.optimize.minimize

    def spy(fun, x0, args=(), **kw):
        seen = []
        calls.append(seen)

        def recorded(theta, *a):
            loss, grad = fun(theta, *a)
            seen.append((theta.copy(), float(loss), np.array(grad, dtype=np.float64)))
            return loss, grad
        return minimize(recorded, x0, args=args, **kw)

    monkeypatch.setattr(scipy.optimize, "minimize", spy)
    X, y = _blobs(n=120)
    kw = dict(hidden_layer_sizes=(6, 5), activation="tanh", solver="lbfgs", alpha=1e-3, random_state=0, max_iter=12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        xpnet.MLPClassifier(dtype="float64", **kw).fit(X, y)
        SkMLP(**kw).fit(X, y)
    ours, theirs = calls
    assert len(ours) >= 12 and len(theirs) >= 12
    for (t_a, l_a, g_a), (t_b, l_b, g_b) in zip(ours[:12], theirs[:12]):
        np.testing.assert_allclose(t_a, t_b, rtol=0, atol=1e-12)
        assert l_a == pytest.approx(l_b, rel=1e-12)
        np.testing.assert_allclose(g_a, g_b, rtol=0, atol=1e-12)


def test_lbfgs_records_what_scikit_learns_lbfgs_records():
    """lbfgs has no loss curve, best loss or validation scores (scikit-learn sets none) and counts
    no samples in t_; a refit with lbfgs drops an earlier adam fit's, and adam warm-started from
    lbfgs weights begins them."""
    X, y = _blobs(n=120)
    kw = dict(hidden_layer_sizes=(6,), max_iter=5, random_state=0)
    stochastic_only = {"loss_curve_", "best_loss_", "validation_scores_", "best_validation_score_"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = SkMLP(solver="lbfgs", **kw).fit(X, y)
        ours = xpnet.MLPClassifier(solver="adam", early_stopping=True, **kw).fit(X, y)
        assert stochastic_only <= set(vars(ours))
        ours.set_params(solver="lbfgs", early_stopping=False).fit(X, y)
        assert not stochastic_only & set(vars(sk)) and not stochastic_only & set(vars(ours))
        assert ours.n_iter_ == 5 and np.isfinite(ours.loss_)
        assert ours.t_ == sk.t_ == 0  # lbfgs counts no samples in scikit-learn
        ours.set_params(solver="adam", warm_start=True).fit(X, y)  # scikit-learn: AttributeError
        assert len(ours.loss_curve_) == 5 and ours.n_iter_ == 5 and ours.validation_scores_ is None
        assert ours.t_ == 5 * len(X)
        ours.set_params(solver="lbfgs").fit(X, y)  # a warm lbfgs fit keeps the count, as scikit-learn's
        assert ours.t_ == 5 * len(X)
        ours.set_params(solver="adam")
        ours.set_params(early_stopping=True).fit(X, y)  # scikit-learn: AttributeError on None
        assert len(ours.loss_curve_) == 10 and len(ours.validation_scores_) == 5
        assert ours.best_loss_ is None and ours.best_validation_score_ == max(ours.validation_scores_)


def test_partial_fit_exists_only_for_stochastic_solvers_as_in_scikit_learn():
    """scikit-learn hides MLPClassifier.partial_fit where the solver is not stochastic (available_if), so
    hasattr and its checks (check_fit_score_takes_y and two more, which failed on xpnet's lbfgs MLPs)
    skip it; xpnet's raised AttributeError only when called. MLPRegressor hides it too: scikit-learn
    1.9's regressor means to (the same available_if) but its lambda returns the check unevaluated, so
    there partial_fit with lbfgs runs a whole lbfgs fit."""
    for solver in ("lbfgs", "adam", "sgd", "newton"):
        assert hasattr(xpnet.MLPClassifier(solver=solver), "partial_fit") == hasattr(SkMLP(solver=solver), "partial_fit")
        assert hasattr(xpnet.MLPRegressor(solver=solver), "partial_fit") == (solver in ("adam", "sgd"))
    for est in (xpnet.MLPClassifier(solver="lbfgs"), xpnet.MLPRegressor(solver="lbfgs")):
        with pytest.raises(AttributeError, match="partial_fit") as caught:
            est.partial_fit
        assert "solver='lbfgs' is not" in str(caught.value.__cause__)
        assert hasattr(est.set_params(solver="sgd"), "partial_fit")


# -- shapes, warnings, verbose, warm start, partial_fit ---------------------------------------
@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel"])
def test_coefficient_shapes_and_output_activation_match_scikit_learn(kind):
    X, y = _blobs(k=3 if kind != "binary" else 2)
    if kind == "multilabel":
        y = np.stack([y == 0, y == 1, X[:, 3] > 0], axis=1).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = SkMLP(hidden_layer_sizes=(7,), max_iter=5, random_state=0).fit(X, y)
        ours = xpnet.MLPClassifier(hidden_layer_sizes=(7,), max_iter=5, random_state=0).fit(X, y)
    assert [c.shape for c in ours.coefs_] == [c.shape for c in sk.coefs_]
    assert ours.out_activation_ == sk.out_activation_ and ours.n_outputs_ == sk.n_outputs_
    assert np.asarray(ours.predict(X)).shape == sk.predict(X).shape
    proba = np.asarray(ours.predict_proba(X))
    assert proba.shape == sk.predict_proba(X).shape
    np.testing.assert_allclose(np.asarray(ours.predict_log_proba(X)), np.log(proba), rtol=1e-6)


def test_dtype_follows_the_input_unless_given():
    X, y = _blobs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert xpnet.MLPClassifier(max_iter=2).fit(X, y).coefs_[0].dtype == np.float64
        assert xpnet.MLPClassifier(max_iter=2).fit(X.astype(np.float32), y).coefs_[0].dtype == np.float32
        assert xpnet.MLPClassifier(max_iter=2, dtype="float32").fit(X, y).coefs_[0].dtype == np.float32


def test_float32_overflow_is_named():
    X, y = _blobs()
    X[3, 1] = 1e300
    with pytest.raises(ValueError, match=r"X holds values too large for float32 \(largest magnitude 1e\+300\)"):
        xpnet.MLPClassifier(dtype="float32").fit(X, y)


def test_verbose_prints_scikit_learns_lines(capsys):
    X, y = _blobs()
    clf = xpnet.MLPClassifier(hidden_layer_sizes=(4,), max_iter=50, tol=1.0, n_iter_no_change=2, verbose=True,
                              random_state=0).fit(X, y)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Iteration 1, loss = ") and len(out[0].split("= ")[1]) == 10
    assert sum(line.startswith("Iteration") for line in out) == clf.n_iter_ == 4
    assert out[-1] == "Training loss did not improve more than tol=1.000000 for 2 consecutive epochs. Stopping."


def test_n_iter_counts_each_call_as_scikit_learns_does(capsys):
    """n_iter_ and the verbose lines count the epochs of the last fit or partial_fit call (scikit-learn
    >= 1.3); they used to count every epoch since the first fit (8 after two warm fits of 4)."""
    X, y = _blobs()
    counts = {}
    for Estimator in (SkMLP, xpnet.MLPClassifier):
        est = Estimator(hidden_layer_sizes=(5,), max_iter=4, n_iter_no_change=np.inf, warm_start=True, verbose=True,
                        random_state=0)
        seen = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for _ in range(2):
                est.fit(X, y)
                seen.append(est.n_iter_)
            est.set_params(max_iter=3).fit(X, y)
            seen.append(est.n_iter_)
            est.partial_fit(X, y)
            seen.append(est.n_iter_)
        lines = [line.split(",")[0] for line in capsys.readouterr().out.splitlines() if line.startswith("Iteration")]
        counts[Estimator] = (seen, lines, len(est.loss_curve_), est.t_)
    assert counts[SkMLP] == counts[xpnet.MLPClassifier]
    assert counts[SkMLP][0] == [4, 4, 3, 1] and counts[SkMLP][2] == 12


def test_warm_start_continues_and_partial_fit_needs_classes():
    X, y = _blobs()
    clf = xpnet.MLPClassifier(hidden_layer_sizes=(5,), max_iter=4, n_iter_no_change=np.inf, warm_start=True,
                              random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
        first = [np.array(c) for c in clf.coefs_]
        clf.fit(X, y)
    # n_iter_ counts this call's epochs, as in scikit-learn >= 1.3; the loss curve and t_ go on counting
    assert clf.n_iter_ == 4 and len(clf.loss_curve_) == 8 and clf.t_ == 8 * 300
    assert clf.loss_curve_[4] < clf.loss_curve_[0]
    assert not np.array_equal(first[0], np.asarray(clf.coefs_[0]))
    inc = xpnet.MLPClassifier(hidden_layer_sizes=(5,), random_state=0)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        inc.partial_fit(X, y)
    inc.partial_fit(X[:100], y[:100], classes=[0, 1, 2])
    inc.partial_fit(X[100:], y[100:])
    assert inc.n_iter_ == 1 and inc.t_ == 300 and list(inc.classes_) == [0, 1, 2]
    with pytest.raises(ValueError, match=r"not in classes"):
        xpnet.MLPClassifier().partial_fit(X, y, classes=[0, 1])


def test_core_fit_options_are_checked_before_training():
    model = Sequential([Dense(4, 3)], seed=0)
    X, y = _blobs()
    for kwargs, message in [
        (dict(tol=-1), "tol must be None or a number >= 0"),
        (dict(n_iter_no_change=0), "n_iter_no_change must be an integer >= 1 or inf"),
        (dict(early_stopping=True, tol=1e-4, validation_fraction=1.0), r"validation_fraction must lie in \(0, 1\)"),
        (dict(early_stopping=True), "early_stopping=True stops on the validation score and needs tol"),
        (dict(lr_schedule="cosine"), "lr_schedule must be one of"),
        (dict(validation_data=(X, y), lr_schedule="adaptive", power_t=float("nan")), "power_t must be a finite number"),
        (dict(lr_schedule="invscaling", power_t=-0.5), r"power_t must be a finite number >= 0, got -0.5"),
    ]:
        before = [np.array(p) for p in model.parameters()]
        with pytest.raises(ValueError, match=message):
            model.fit(X, y, epochs=1, **kwargs)
        assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(before, model.parameters()))




def test_options_scikit_learn_takes_are_taken():
    """NumPy scalars (what a grid built with np.linspace or np.arange holds) and momentum=1, which
    scikit-learn's MLP accepts; np.float32(0.5) and np.int64(3) used to be refused by fit."""
    X, y = _blobs(n=120)
    options = dict(validation_fraction=np.float32(0.25), n_iter_no_change=np.int64(3), tol=np.float32(1e-4),
                   alpha=np.float32(1e-4), power_t=np.float64(0.5), momentum=1.0)
    for Estimator in (SkMLP, xpnet.MLPClassifier):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est = Estimator(solver="sgd", early_stopping=True, max_iter=3, random_state=0, **options).fit(X, y)
        assert est.n_iter_ == 3
    model = Sequential([Dense(4, 3)], seed=0, l2=np.float32(0.1))
    history = model.fit(X, y, epochs=2, optimizer=SGD(lr=0.1, momentum=1.0), tol=np.float32(1e-4),
                        n_iter_no_change=np.int64(1), early_stopping=True, validation_fraction=np.float32(0.25))
    assert len(history.loss) == 2


# -- sparse X ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_x_streams_and_equals_the_dense_fit(fmt, monkeypatch):
    """scipy.sparse X is densified a chunk at a time (never whole); without shuffling the fit
    equals the dense one, and predict takes sparse X too."""
    import scipy.sparse as sp

    from xpnet import sources

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 30)) * (rng.random((400, 30)) < 0.2)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    Xs = sp.csr_matrix(X) if fmt == "csr" else sp.csc_matrix(X)
    monkeypatch.setattr(sources, "DEFAULT_CHUNK_BYTES", 100 * 30 * 8)  # 100-row chunks: 4 per pass
    widest = []
    real_read = sources.DataSource.read
    monkeypatch.setattr(sources.DataSource, "read", lambda self, lo, hi: widest.append(hi - lo) or real_read(self, lo, hi))
    kw = dict(hidden_layer_sizes=(8,), max_iter=15, random_state=0, shuffle=False, n_iter_no_change=np.inf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sparse_fit = xpnet.MLPClassifier(**kw).fit(Xs, y)
        dense_fit = xpnet.MLPClassifier(**kw).fit(X, y)
    assert max(widest) == 100
    for a, b in zip(sparse_fit.coefs_, dense_fit.coefs_):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(sparse_fit.predict(Xs), dense_fit.predict(X))
    with pytest.raises(TypeError, match="Sparse data was passed"):
        xpnet.LogisticRegression().fit(Xs, y)


@pytest.mark.parametrize("weighted", [False, True])
def test_lbfgs_on_sparse_x_sums_chunks_to_the_dense_objective(weighted, monkeypatch):
    """solver='lbfgs' refused sparse X; it now evaluates the loss and gradient a chunk at a time
    (each chunk's mean weighted by its share of the rows or of the weight sum, the L2 term once),
    and reaches the dense fit's weights; a chunk whose weights are all zero adds nothing."""
    import scipy.sparse as sp

    from xpnet import sources

    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 12)) * (rng.random((300, 12)) < 0.3)
    y = X[:, 0] - 2 * X[:, 1] + 0.1 * rng.normal(size=300)
    sw = rng.uniform(0.5, 2.0, size=300) if weighted else None
    if weighted:
        sw[100:200] = 0.0  # the second 100-row chunk
    monkeypatch.setattr(sources, "DEFAULT_CHUNK_BYTES", 100 * 12 * 8)  # 100-row chunks: 3 per evaluation
    kw = dict(hidden_layer_sizes=(6,), activation="tanh", solver="lbfgs", alpha=0.5, max_iter=30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sparse_fit = xpnet.MLPRegressor(**kw).fit(sp.csr_matrix(X), y, sample_weight=sw)
        dense_fit = xpnet.MLPRegressor(**kw).fit(X, y, sample_weight=sw)
    assert sparse_fit.n_iter_ == dense_fit.n_iter_ and sparse_fit.loss_ == pytest.approx(dense_fit.loss_, rel=1e-9)
    for a, b in zip(sparse_fit.coefs_ + sparse_fit.intercepts_, dense_fit.coefs_ + dense_fit.intercepts_):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-7, atol=1e-9)
    assert sparse_fit.score(sp.csr_matrix(X), y) > 0.9


# -- sample_weight -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["multiclass", "binary", "regression"])
def test_lbfgs_with_sample_weight_matches_scikit_learn(kind):
    """Weighted loss and gradient: from the same weights, scipy's L-BFGS-B reaches scikit-learn's
    weighted loss to 1e-6 (binary, softmax and squared losses, with the L2 term over the weight sum)."""

    X, y = _blobs(n=120, k=2 if kind == "binary" else 3)
    sw = np.random.default_rng(5).uniform(0.1, 3.0, size=X.shape[0])
    if kind == "regression":
        y = X @ [1.0, -0.5, 2.0, 0.3]
    kw = dict(hidden_layer_sizes=(6,), activation="tanh", solver="lbfgs", alpha=1e-2, random_state=0)
    Sk, Ours = (SkReg, xpnet.MLPRegressor) if kind == "regression" else (SkMLP, xpnet.MLPClassifier)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = Sk(max_iter=1, **kw).fit(X, y, sample_weight=sw)
        ours = Ours(max_iter=1, dtype="float64", **kw).fit(X, y, sample_weight=sw)
        ours.model_.set_parameters([w for pair in zip(sk.coefs_, sk.intercepts_) for w in pair])
        sk.set_params(warm_start=True, max_iter=40)
        ours.set_params(warm_start=True, max_iter=40)
        sk.fit(X, y, sample_weight=sw)
        ours.fit(X, y, sample_weight=sw)
    assert ours.loss_ == pytest.approx(sk.loss_, rel=1e-6)


def test_integer_sample_weights_equal_repeated_rows():
    """Full-batch training with weight 2 on some rows equals training on those rows twice."""
    X, y = _blobs(n=60)
    sw = np.where(np.arange(60) % 3 == 0, 2.0, 1.0)
    repeat = np.repeat(np.arange(60), sw.astype(int))
    kw = dict(hidden_layer_sizes=(5,), batch_size=10**6, max_iter=15, n_iter_no_change=np.inf, random_state=0,
              shuffle=False, learning_rate_init=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted = xpnet.MLPClassifier(**kw).fit(X, y, sample_weight=sw)
        repeated = xpnet.MLPClassifier(**kw).fit(X[repeat], y[repeat])
    for a, b in zip(weighted.coefs_, repeated.coefs_):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(weighted.loss_curve_, repeated.loss_curve_, rtol=1e-10)


def test_sample_weight_is_checked():
    X, y = _blobs()
    for bad, message in [(np.ones(5), r"sample_weight must have shape \(300,\)"),
                         (-np.ones(300), "finite and >= 0"), (np.zeros(300), "not all zero")]:
        with pytest.raises(ValueError, match=message):
            xpnet.MLPClassifier(max_iter=2).fit(X, y, sample_weight=bad)


@pytest.mark.parametrize("sparse", [False, True])
def test_one_number_weights_every_sample_alike(sparse):
    """sample_weight=2.0 is scikit-learn's shorthand for a weight of 2 on every sample; it was refused
    (and crashed with sparse X and early stopping)."""
    X, y = _blobs(n=80)
    if sparse:
        X = pytest.importorskip("scipy.sparse").csr_matrix(X)
    kw = dict(hidden_layer_sizes=(5,), max_iter=3, early_stopping=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scalar = xpnet.MLPClassifier(**kw).fit(X, y, sample_weight=2.0)
        full = xpnet.MLPClassifier(**kw).fit(X, y, sample_weight=np.full(80, 2.0))
        SkMLP(**kw).fit(X, y, sample_weight=2.0)  # scikit-learn takes it too
    for a, b in zip(scalar.coefs_, full.coefs_):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert scalar.score(X, y, sample_weight=3) == scalar.score(X, y)
    with pytest.raises(ValueError, match="not all zero"):
        xpnet.MLPClassifier(max_iter=2).fit(X, y, sample_weight=0)


def test_a_batch_size_above_the_training_rows_warns_as_scikit_learns_does():
    """scikit-learn warns that a batch_size above the training rows (after early stopping's hold-out)
    is clipped; xpnet clipped it silently. Both warn at the same sizes now, at the caller's line."""
    X, y = _blobs(n=50)
    for batch_size, early, warns in [(50, False, False), (51, False, True), (46, True, True), (45, True, False)]:
        for Estimator in (SkMLP, xpnet.MLPClassifier):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                Estimator(max_iter=2, batch_size=batch_size, early_stopping=early).fit(X, y)
            clipped = [w for w in caught if "It is going to be clipped" in str(w.message)]
            assert len(clipped) == warns, (Estimator, batch_size, early)
            if Estimator is not SkMLP and warns:
                assert clipped[0].filename == __file__


def test_a_column_vector_target_warns_and_predicts_flat_as_scikit_learns_regressor():
    """MLPRegressor given y of shape (n, 1) trains one output and predicts (n,); scikit-learn
    warns that it took a column vector (DataConversionWarning), and now xpnet does too, for fit
    and partial_fit, at the caller's line."""
    from sklearn.exceptions import DataConversionWarning

    X, _ = _blobs(n=40)
    Y = X[:, :1] * 2.0
    for Estimator in (SkReg, xpnet.MLPRegressor):
        est = Estimator(hidden_layer_sizes=(4,), max_iter=2)
        for step in (est.fit, est.partial_fit):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                step(X, Y)
            column = [w for w in caught if issubclass(w.category, DataConversionWarning)]
            assert len(column) == 1, (Estimator, step)
            if Estimator is not SkReg:
                assert column[0].filename == __file__
        assert est.n_outputs_ == 1 and est.predict(X).shape == (40,)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataConversionWarning)
        xpnet.MLPRegressor(hidden_layer_sizes=(4,), max_iter=2).fit(X, Y[:, 0])  # a flat y: no warning


@pytest.mark.parametrize("kind", ["regression", "weighted-classification"])
def test_early_stopping_scores_the_validation_rows_with_one_forward_pass(kind, monkeypatch):
    """The validation loss and the early-stopping score (R^2, or a weighted accuracy) come from
    one forward pass over the held-out rows per epoch; the score was computed from a second one."""
    X, y = _blobs(n=71)
    Xv, yv = X[64:], y[64:]
    if kind == "regression":
        model, targets, val_targets, val = Sequential([Dense(4, 1)], loss="mse", seed=0), X[:64, :1], Xv[:, :1], ()
    else:
        model, targets, val_targets, val = Sequential([Dense(4, 3)], loss="softmax_cross_entropy", seed=0), y[:64], yv, (
            np.linspace(1.0, 2.0, 7),)
    seen = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda xb, *a, **k: (seen.append(xb.shape[0]), forward(xb, *a, **k))[1])
    history = model.fit(X[:64], targets, epochs=3, batch_size=16, optimizer=SGD(lr=0.05), early_stopping=True,
                        tol=1e-4, validation_data=(Xv, val_targets, *val))
    assert seen.count(7) == 3  # the 7 held-out rows, once per epoch (training batches are 16 rows)
    scores = history.val_score
    assert len(scores) == 3
    monkeypatch.setattr(model, "forward", forward)
    weights = model.backend.asarray(val[0], dtype=model.dtype) if val else None
    assert scores[-1] == pytest.approx(xpnet.training.validation_score(model, *model._check_data(Xv, val_targets), weights))
