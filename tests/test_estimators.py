"""The seed models: the classic demos, and scikit-learn's conventions."""

import functools

import numpy as np
import pytest

import xpnet

sklearn = pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.model_selection import cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402


@pytest.fixture(scope="module")
def iris_pair():
    iris = load_iris()
    keep = iris.target < 2  # setosa vs versicolor
    return iris.data[keep][:, :2], iris.target[keep]


def test_logistic_regression_defaults_separate_setosa_from_versicolor(iris_pair):
    X, y = iris_pair
    clf = xpnet.LogisticRegression().fit(X, y)
    assert clf.score(X, y) == 1.0
    assert clf.coef_.shape == (1, 2) and clf.intercept_.shape == (1,)
    # coef_/intercept_ are in the original feature space: they reproduce decision_function.
    np.testing.assert_allclose(X @ clf.coef_[0] + clf.intercept_[0], clf.decision_function(X), rtol=1e-8, atol=1e-8)
    proba = clf.predict_proba(X)
    assert proba.shape == (100, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.array_equal(clf.classes_, [0, 1])


def test_logistic_regression_multiclass_and_string_labels():
    iris = load_iris()
    names = np.array(["setosa", "versicolor", "virginica"])[iris.target]
    clf = xpnet.LogisticRegression().fit(iris.data, names)
    assert clf.coef_.shape == (3, 4)
    assert clf.score(iris.data, names) > 0.95
    assert set(clf.predict(iris.data[:5])) <= set(names)


@pytest.mark.parametrize("kind", ["object", "pandas string", "pandas category"])
def test_object_labels_give_scikit_learns_classes_and_prediction_dtype(kind):
    """Labels held as Python objects (what pandas hands over) come back as scikit-learn returns them,
    '<U' strings rather than an object array; partial_fit's classes= may be objects too."""
    from sklearn.neural_network import MLPClassifier as SkMLP

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = np.array(["a", "b", "c"], dtype=object)[rng.integers(0, 3, 60)]
    if kind != "object":
        pd = pytest.importorskip("pandas")
        y = pd.Series(y, dtype="string" if kind == "pandas string" else "category")
    sk = SkMLP(max_iter=2, random_state=0).fit(X, y)
    for est in (xpnet.MLPClassifier(max_iter=2, random_state=0).fit(X, y), xpnet.LogisticRegression().fit(X, y),
                xpnet.MLPClassifier(random_state=0).partial_fit(X, y, classes=np.array(["c", "b", "a"], dtype=object))):
        assert est.classes_.dtype == sk.classes_.dtype and est.classes_.tolist() == ["a", "b", "c"]
        assert est.predict(X).dtype == sk.predict(X).dtype

def test_perceptron_converges_on_separable_data(iris_pair):
    """tol=None runs all max_iter epochs, as scikit-learn's: after the first epoch without mistakes
    the weights stay, so the later ones are counted (no mistake, no loss), not run. The default tol
    stops by scikit-learn's rule, at scikit-learn's epoch (xpnet had stopped at the first epoch
    without mistakes: 445 of 1000 here)."""
    from sklearn.linear_model import Perceptron as SkPerceptron

    X, y = iris_pair
    p = xpnet.Perceptron(random_state=0, tol=None).fit(X, y)
    settled = p.errors_.index(0)
    theirs = SkPerceptron(random_state=0, tol=None).fit(X, y)
    assert 100 < settled < p.max_iter == p.n_iter_ == len(p.errors_) == theirs.n_iter_
    counted = p.max_iter - settled
    assert p.errors_[settled:] == [0] * counted and p.loss_curve_[settled:] == [0.0] * counted
    assert min(p.errors_[:settled]) > 0 and p.t_ == 1 + p.max_iter * len(y)
    default = xpnet.Perceptron(random_state=0).fit(X, y)
    assert default.n_iter_ == SkPerceptron(random_state=0).fit(X, y).n_iter_ < settled
    assert p.score(X, y) == 1.0
    margins = (2 * y - 1) * p.decision_function(X)
    assert np.all(margins > 0)


def test_perceptron_multiclass_one_vs_rest():
    rng = np.random.default_rng(0)
    centers = np.array([[0, 10], [10, 0], [-10, -10]])
    y = rng.integers(0, 3, size=150)
    X = centers[y] + rng.normal(size=(150, 2))
    p = xpnet.Perceptron(random_state=0).fit(X, y)
    assert p.coef_.shape == (3, 2) and p.score(X, y) == 1.0


def test_linear_regression_matches_least_squares():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 4)) * [1.0, 5.0, 0.2, 2.0] + [3.0, -1.0, 0.0, 10.0]
    y = X @ np.array([1.5, -2.0, 0.5, 0.25]) + 4.0 + 0.1 * rng.normal(size=300)
    reg = xpnet.LinearRegression().fit(X, y)
    solution, *_ = np.linalg.lstsq(np.c_[X, np.ones(300)], y, rcond=None)
    np.testing.assert_allclose(reg.coef_, solution[:4], rtol=1e-5, atol=1e-6)
    assert abs(reg.intercept_ - solution[4]) < 1e-5
    assert reg.n_iter_ < reg.max_iter
    assert reg.score(X, y) > 0.99


def test_linear_regression_several_targets():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 3))
    W = rng.normal(size=(3, 2))
    Y = X @ W + [1.0, -1.0]
    reg = xpnet.LinearRegression().fit(X, Y)
    assert reg.coef_.shape == (2, 3)
    np.testing.assert_allclose(reg.coef_, W.T, atol=1e-5)
    assert reg.predict(X).shape == (200, 2)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_linear_regression_fits_targets_at_any_scale_as_at_one(dtype):
    """Targets in units of 1e-30 or 1e20 give the fit of the same targets in units of 1, scaled,
    after as many epochs (float64), and the loss curve scaled by the square: the descent runs on y
    over a power of two and tol is relative to the loss of predicting y's mean. Before, float32
    targets of 1e20 overflowed the loss (NonFiniteLossError), 1e-30 underflowed it and stopped after
    12 epochs, and float64 1e20 ran all 10,000 epochs."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = X @ [1.0, -0.5, 0.2] + 0.3
    at_one = xpnet.LinearRegression(dtype=dtype).fit(X, y)
    rtol = 1e-12 if dtype == "float64" else 2e-6
    for scale in (1e-30, 1e20):
        scaled = xpnet.LinearRegression(dtype=dtype).fit(X, y * scale)
        np.testing.assert_allclose(scaled.coef_ / scale, at_one.coef_, rtol=rtol)
        np.testing.assert_allclose(scaled.intercept_ / scale, at_one.intercept_, rtol=rtol)
        np.testing.assert_allclose(np.array(scaled.loss_curve_[:5]) / scale**2, at_one.loss_curve_[:5], rtol=rtol)
        np.testing.assert_allclose(scaled.predict(X) / scale, at_one.predict(X), rtol=rtol, atol=rtol)
        np.testing.assert_allclose(scaled.predict(X) / scale, y, atol=1e-5 if dtype == "float32" else 1e-7)
        if dtype == "float64":
            assert scaled.n_iter_ == at_one.n_iter_ < 200


def test_linear_regression_says_when_nearly_collinear_features_keep_it_from_the_fit():
    """A feature twice another plus noise of 1e-5: the least-squares fit uses that direction
    (scikit-learn's too), which plain descent needs far more than max_iter epochs to follow. The fit
    warns (ConvergenceWarning); before, a rule on the loss's progress stopped it after 45 epochs,
    0.26 of y's spread away from the least-squares predictions, in silence. With noise of 1e-6 the
    direction lies below what scikit-learn resolves by default (its tol=1e-6 drops it) and both
    agree, without a warning; so do one-hot columns of every category beside the intercept
    (exactly collinear)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LinearRegression as SkLinearRegression

    def problem(seed, noise):
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(60, 3))
        X[:, 2] = 2 * X[:, 0] + noise * rng.normal(size=60)
        return X, X @ [1.0, -1.0, 0.5] + 0.5 * rng.normal(size=60) + 2.0

    X, y = problem(0, 1e-5)
    with pytest.warns(ConvergenceWarning, match="maximum iterations"):
        xpnet.LinearRegression().fit(X, y)
    rng = np.random.default_rng(0)
    one_hot = np.c_[np.eye(4)[rng.integers(0, 4, 300)], rng.normal(size=(300, 2))]
    for X, y in (problem(1, 1e-6), (one_hot, one_hot @ [1, 2, 3, 4, 0.5, -0.5] + 0.1 * rng.normal(size=300))):
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            ours = xpnet.LinearRegression().fit(X, y)
        theirs = SkLinearRegression().fit(X, y)
        assert np.max(np.abs(ours.predict(X) - theirs.predict(X))) < 1e-5 * np.std(y)


def test_linear_models_warn_where_max_iter_ends_the_descent():
    """Unstandardised features in the thousands with an intercept of 50,000: the descent cannot
    reach the least-squares fit in max_iter steps, and says so (ConvergenceWarning, as scikit-learn's
    estimators), where it used to return the far-off fit in silence; the standardised default
    converges without a warning. The same for LogisticRegression's max_iter."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    rng = np.random.default_rng(0)
    X = rng.uniform(500, 3000, size=(200, 2))
    y = X @ [100.0, 20.0] + 50000 + rng.normal(size=200) * 1000
    with pytest.warns(ConvergenceWarning, match=r"LinearRegression: maximum iterations \(10000\) reached.*"
                                                r"standardize=True"):
        far = xpnet.LinearRegression(standardize=False).fit(X, y)
    assert far.n_iter_ == 10000 and abs(far.intercept_ - 50000) > 10000
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        near = xpnet.LinearRegression().fit(X, y)
        xpnet.LogisticRegression().fit(X, y > np.median(y))
    assert near.n_iter_ < 10000 and abs(near.intercept_ - 50000) < 2000
    with pytest.warns(ConvergenceWarning, match=r"LogisticRegression: maximum iterations \(3\) reached"):
        xpnet.LogisticRegression(max_iter=3).fit(X, y > np.median(y))


def test_linear_models_solver_lbfgs_reaches_the_fit_where_descent_warns():
    """Unstandardised features leave gradient descent warning at max_iter, far from the fit (the
    diabetes features are about 0.05 beside the intercept's 1; iris's are shifted); solver="lbfgs"
    (scipy's L-BFGS-B on xpnet's full-batch gradient, as the MLP's lbfgs) reaches it without a
    warning: LinearRegression the exact least-squares fit, LogisticRegression scikit-learn's plain
    LogisticRegression. Where L-BFGS-B stops above the gradient rule (float32's loss is too coarse
    for its line search), it says so."""
    import warnings

    from sklearn.datasets import load_diabetes, load_iris
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression as SkLogistic

    X, y = load_diabetes(return_X_y=True)
    A = np.c_[X, np.ones(X.shape[0])]
    exact = A @ np.linalg.lstsq(A, y, rcond=None)[0]
    Xi, yi = load_iris(return_X_y=True)
    with pytest.warns(ConvergenceWarning, match="or use solver='lbfgs'"):
        far = xpnet.LinearRegression(standardize=False).fit(X, y)
    assert np.max(np.abs(far.predict(X) - exact)) > 0.1 * np.std(y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        linear = xpnet.LinearRegression(standardize=False, solver="lbfgs").fit(X, y)
        logistic = xpnet.LogisticRegression(standardize=False, solver="lbfgs", tol=1e-8).fit(Xi, yi)
    np.testing.assert_allclose(linear.predict(X), exact, atol=1e-5 * np.std(y))
    assert linear.n_iter_ == len(linear.loss_curve_) < 200
    theirs = SkLogistic(tol=1e-12, max_iter=10000).fit(Xi, yi)
    np.testing.assert_allclose(logistic.predict_proba(Xi), theirs.predict_proba(Xi), atol=1e-5)
    with pytest.warns(ConvergenceWarning, match=r"lbfgs stopped after \d+ iterations with the largest gradient entry"):
        xpnet.LinearRegression(solver="lbfgs", dtype="float32").fit(X.astype(np.float32), y)


@pytest.mark.parametrize("scale", [1e20, 1e-30])
@pytest.mark.parametrize("cls", ["LinearRegression", "LogisticRegression"])
def test_float32_features_far_from_one_are_standardised_as_at_one(cls, scale):
    """float32 features of 1e20 (whose squares overflow) or 1e-30 (whose squares underflow) get
    their spread: the fit's coefficients are those at scale 1, divided by the scale. Before, the
    standard deviation came out infinite or zero and the fit trained nothing (coef_ 0). Unscaled,
    LinearRegression's automatic step at 1e20 is refused by name instead of descending on NaN."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = X @ [1.0, -0.5, 0.2] + 0.3 * rng.normal(size=40)
    target = y if cls == "LinearRegression" else y > 0
    make = getattr(xpnet, cls)
    at_one = make(dtype="float32").fit(X, target)
    far = make(dtype="float32").fit(X * scale, target)
    np.testing.assert_allclose(np.asarray(far.coef_) * scale, at_one.coef_, rtol=1e-4)
    np.testing.assert_allclose(far.intercept_, at_one.intercept_, rtol=1e-4, atol=1e-6)
    if cls == "LinearRegression" and scale > 1:
        with pytest.raises(ValueError, match=r"learning_rate_init='auto' gives a step of .*, below the smallest normal "
                                             r"float32 .*largest magnitude .*e\+20"):
            make(dtype="float32", standardize=False).fit(X * scale, target)


def test_small_mlp_learns_xor():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 25, dtype=float)
    y = np.array([0, 1, 1, 0] * 25)
    clf = xpnet.MLPClassifier(hidden_layer_sizes=(8,), activation="tanh", learning_rate_init=0.05,
                              max_iter=300, random_state=0).fit(X, y)
    assert clf.score(X, y) == 1.0
    assert len(clf.coefs_) == 2 and clf.coefs_[0].shape == (2, 8)
    assert clf.n_iter_ == len(clf.loss_curve_) and clf.loss_curve_[-1] < clf.loss_curve_[0]


def test_mlp_regressor_fits_a_curve():
    rng = np.random.default_rng(3)
    X = rng.uniform(-2, 2, size=(300, 1))
    y = X[:, 0] ** 2
    reg = xpnet.MLPRegressor(hidden_layer_sizes=(32,), activation="tanh", learning_rate_init=0.01,
                             max_iter=300, random_state=0).fit(X, y)
    assert reg.score(X, y) > 0.95 and reg.predict(X).shape == (300,)


def test_sklearn_clone_pipeline_and_cross_val_score():
    iris = load_iris()
    est = xpnet.MLPClassifier(hidden_layer_sizes=(16,), max_iter=60, learning_rate_init=0.01, random_state=0)
    assert clone(est).get_params() == est.get_params()
    est.set_params(alpha=0.001)
    assert est.alpha == 0.001
    scores = cross_val_score(make_pipeline(StandardScaler(), est), iris.data, iris.target, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.85
    from sklearn.linear_model import LinearRegression as SkLinearRegression

    ours = cross_val_score(xpnet.LinearRegression(), iris.data[:, :3], iris.data[:, 3], cv=3)
    theirs = cross_val_score(SkLinearRegression(), iris.data[:, :3], iris.data[:, 3], cv=3)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4)


def test_score_is_scikit_learns_metric_with_sample_weight():
    """score(X, y, sample_weight) equals accuracy_score / r2_score on predict(X). A multilabel
    score is the share of rows predicted exactly (it was the share of labels), and score took
    no sample_weight at all."""
    from sklearn.metrics import accuracy_score, r2_score

    rng = np.random.default_rng(0)
    X, w = rng.normal(size=(80, 4)), rng.random(80)
    Y = (X[:, :3] > 0).astype(int)
    multilabel = xpnet.MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0).fit(X, Y)
    P = multilabel.predict(X)
    assert (P == Y).all(axis=1).mean() < (P == Y).mean()  # the two readings differ here
    assert multilabel.score(X, Y) == pytest.approx(accuracy_score(Y, P))
    assert multilabel.score(X, Y, sample_weight=w) == pytest.approx(accuracy_score(Y, P, sample_weight=w))
    for clf in (xpnet.LogisticRegression(), xpnet.Perceptron(random_state=0)):
        clf.fit(X, Y[:, 0])
        assert clf.score(X, Y[:, 0], w) == pytest.approx(accuracy_score(Y[:, 0], clf.predict(X), sample_weight=w))
    t = X @ np.arange(4.0) + rng.normal(size=80)
    targets = np.c_[t, np.full(80, 2.0)]  # a constant column: r2_score's 1.0 or 0.0
    for reg, y in [(xpnet.MLPRegressor(max_iter=20, random_state=0), t), (xpnet.LinearRegression(), targets)]:
        reg.fit(X, y)
        assert reg.score(X, y) == pytest.approx(r2_score(y, reg.predict(X)))
        assert reg.score(X, y, sample_weight=w) == pytest.approx(r2_score(y, reg.predict(X), sample_weight=w))
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(80,\)"):
        multilabel.score(X, Y, sample_weight=w[:3])


def test_score_refuses_labels_it_could_only_count_wrong():
    """Scoring with string labels against numeric classes (or the reverse) returned 0.0, every row
    counted wrong; scikit-learn's accuracy_score refuses the mix, and so does score now. y of
    another shape than predict's is named too (it was NumPy's reshape error)."""
    from sklearn.metrics import accuracy_score

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    numeric = xpnet.LogisticRegression().fit(X, y)
    named = xpnet.MLPClassifier(max_iter=3, random_state=0).fit(X, np.array(["no", "yes"])[y])
    with pytest.raises(ValueError, match="Mix of label input types"):
        accuracy_score(y.astype(str), numeric.predict(X))
    with pytest.raises(ValueError, match=r"y holds strings but the classes are \[0, 1\]: mix of label types"):
        numeric.score(X, y.astype(str))
    with pytest.raises(ValueError, match=r"y holds numbers but the classes are \['no', 'yes'\]"):
        named.score(X, y)
    assert numeric.score(X, y.astype(object)) == numeric.score(X, y.astype(float)) == numeric.score(X, y)
    assert named.score(X, np.array(["no", "yes"], dtype=object)[y]) == named.score(X, np.array(["no", "yes"])[y])
    with pytest.raises(ValueError, match="y mixes strings and numbers"):  # NumPy would make "1" of 1
        named.score(X, np.array(["no", 1], dtype=object)[y])
    with pytest.raises(ValueError, match=r"y must have the shape of predict\(X\), \(40,\), got \(40, 2\)"):
        numeric.score(X, np.c_[y, y])
    regressor = xpnet.LinearRegression().fit(X, X[:, 0])
    with pytest.raises(TypeError, match="y must be numeric, got dtype <U"):
        regressor.score(X, X[:, 0].astype(str))


def test_probabilistic_classifiers_have_predict_log_proba_and_the_perceptron_has_neither():
    """LogisticRegression had predict_proba but no predict_log_proba (scikit-learn's has both)."""
    X, y = load_iris(return_X_y=True)
    for clf in (xpnet.LogisticRegression().fit(X, y), xpnet.LogisticRegression().fit(X, y == 0),
                xpnet.MLPClassifier(max_iter=20, random_state=0).fit(X, y)):
        np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), clf.predict_proba(X), rtol=1e-10)
    perceptron = xpnet.Perceptron().fit(X, y)
    assert not hasattr(perceptron, "predict_proba") and not hasattr(perceptron, "predict_log_proba")


def test_constructor_only_stores_and_fit_returns_self(iris_pair):
    X, y = iris_pair
    est = xpnet.MLPClassifier(hidden_layer_sizes="nonsense")  # no check before fit
    assert est.hidden_layer_sizes == "nonsense"
    with pytest.raises(TypeError, match="hidden_layer_sizes"):
        est.fit(X, y)
    clf = xpnet.LogisticRegression()
    assert clf.fit(X, y) is clf


def test_unfitted_estimator_raises():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError, match="not fitted"):
        xpnet.MLPClassifier().predict(np.zeros((1, 2)))


def test_single_class_is_refused():
    with pytest.raises(ValueError, match="only one class"):
        xpnet.LogisticRegression().fit(np.zeros((4, 2)), [1, 1, 1, 1])


def _fitted_state(est):
    """Every attribute, arrays as host copies, to compare before and after a failed fit."""
    return {k: [np.array(a) for a in v] if k in ("coefs_", "intercepts_") else
            np.array(v) if isinstance(v, np.ndarray) else v for k, v in vars(est).items()}


def _same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if k in ("coefs_", "intercepts_"):
            assert len(a[k]) == len(b[k]) and all(np.array_equal(x, y) for x, y in zip(a[k], b[k])), k
        elif isinstance(a[k], np.ndarray):
            assert np.array_equal(a[k], b[k]), k
        else:
            assert a[k] is b[k] or a[k] == b[k], k


@pytest.mark.parametrize("make", [
    lambda: xpnet.MLPClassifier(hidden_layer_sizes=(5,), max_iter=3),
    lambda: xpnet.MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, warm_start=True),
    lambda: xpnet.LogisticRegression(max_iter=3),
    lambda: xpnet.Perceptron(max_iter=3),
], ids=["mlp", "mlp-warm", "logistic", "perceptron"])
def test_a_refit_that_raises_leaves_the_fitted_estimator_as_it_was(make, iris_pair):
    """The checks run as fit goes, each setting what it checked (classes_, n_features_in_): a
    refused refit used to keep the new classes_ beside the old network, so predict failed."""
    import warnings

    X, y = load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = make().fit(X, y)
    before, predicted = _fitted_state(est), np.asarray(est.predict(X))
    bad_refits = [(X[:, :3], np.zeros(150)),                      # one class, and another width
                  (X, np.where(y == 2, 0.5, y)),                   # continuous labels
                  (np.where(X > 7, np.nan, X), y + 1)]             # NaN in X, after new classes
    if est.get_params().get("warm_start"):
        bad_refits += [(X, y + 5), (X, y % 2), (X, np.eye(3, dtype=int)[y])]
    for bad_X, bad_y in bad_refits:
        with pytest.raises(ValueError):
            est.fit(bad_X, bad_y)
        _same_state(before, _fitted_state(est))
        np.testing.assert_array_equal(np.asarray(est.predict(X)), predicted)


def test_partial_fit_refuses_other_classes_as_scikit_learn_does():
    """A later partial_fit given other classes= used to ignore them silently."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 3)), np.arange(30) % 3
    clf = xpnet.MLPClassifier(random_state=0).partial_fit(X, y, classes=[2, 0, 1])
    clf.partial_fit(X, y, classes=np.array([0, 1, 2]))  # the same classes, in any order
    before = [np.array(c) for c in clf.coefs_]
    with pytest.raises(ValueError, match=r"classes=\[0, 1\] is not the same as on the last call .* was \[0, 1, 2\]"):
        clf.partial_fit(X, y % 2, classes=[0, 1])
    assert all(np.array_equal(a, b) for a, b in zip(before, clf.coefs_)) and clf.classes_.tolist() == [0, 1, 2]


def test_warm_start_refuses_other_classes_as_scikit_learn_does():
    X, y = load_iris(return_X_y=True)
    clf = xpnet.MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, warm_start=True)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
        with pytest.raises(ValueError, match=r"same classes .* previously \[0, 1, 2\], y has \[5, 6, 7\]"):
            clf.fit(X, y + 5)  # the same number of classes: it trained on, silently relabelled
        with pytest.raises(ValueError, match="previously class labels, now a multilabel indicator"):
            clf.fit(X, np.eye(3, dtype=int)[y])
        clf.fit(X, y)  # the same classes continue
    assert len(clf.loss_curve_) == 4
    with pytest.raises(ValueError, match=r"y holds labels \[3\] not in classes=\[0, 1, 2\]"):
        clf.partial_fit(X, y + 1)
    assert len(clf.loss_curve_) == 4 and list(clf.classes_) == [0, 1, 2]


def test_estimators_on_array_api_strict(iris_pair):
    X, y = iris_pair
    clf = xpnet.LogisticRegression(backend="array_api_strict").fit(X, y)
    assert clf.score(X, y) == 1.0
    assert type(clf.coef_).__module__.startswith("array_api_strict")


def test_perceptron_compiled_epoch_equals_the_reference_and_stops_like_scikit_learn():
    """Digits (integer features, eta0=1: exact arithmetic) through the Numba epoch and the
    Array-API reference give identical weights; the default tol rule stops long before max_iter,
    each one-vs-rest unit by its own loss, as scikit-learn's: in a fixed order the weights and
    n_iter_ are scikit-learn's. (Units trained together, stopped by their summed loss, ended
    elsewhere: 6 of 40 random multiclass fits differed, by up to 7.5, 2026-11-24.)"""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import Perceptron as SkPerceptron

    X, y = load_digits(return_X_y=True)
    fused = xpnet.Perceptron(random_state=0, max_iter=4, tol=None).fit(X, y)
    reference = xpnet.Perceptron(random_state=0, max_iter=4, tol=None, fused=False).fit(X, y)
    np.testing.assert_array_equal(fused.coef_, reference.coef_)
    assert fused.errors_ == reference.errors_ and fused.loss_curve_ == reference.loss_curve_
    p = xpnet.Perceptron(random_state=0).fit(X, y)
    assert p.n_iter_ < 100 and p.score(X, y) > 0.9
    for kw in (dict(shuffle=False), dict(shuffle=False, tol=0.1, n_iter_no_change=2, eta0=0.5)):
        ours, theirs = xpnet.Perceptron(**kw).fit(X, y), SkPerceptron(**kw).fit(X, y)
        np.testing.assert_array_equal(ours.coef_, theirs.coef_)
        np.testing.assert_array_equal(ours.intercept_, theirs.intercept_)
        assert ours.n_iter_ == theirs.n_iter_ < 100 and len(ours.errors_) == len(ours.loss_curve_) == ours.n_iter_


@pytest.mark.parametrize("random_state", [3, "RandomState", None])
def test_shuffled_perceptron_visits_scikit_learns_epoch_orders(random_state):
    """shuffle=True (the default) visits the samples in scikit-learn's SGD orders, their seeds drawn
    from random_state as scikit-learn draws them (a seed, a RandomState, or None: NumPy's global
    generator): on digits (integer features: exact arithmetic), for 2 and 10 classes, the weights,
    n_iter_ and t_ are scikit-learn's, and max_iter with tol set warns as scikit-learn's does. (The
    orders had been xpnet's own: 63 of 80 random fits ended elsewhere than scikit-learn's, 2026-11-24.)"""
    import warnings

    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import Perceptron as SkPerceptron

    X, y = load_digits(return_X_y=True)
    settings = ((y, {}), (y % 2, dict(eta0=0.5, n_iter_no_change=3)), (y, dict(max_iter=3)),
                (y % 2, dict(max_iter=2, tol=None)))
    for labels, kw in settings:
        fits = []
        for cls in (xpnet.Perceptron, SkPerceptron):
            np.random.seed(11)  # for random_state=None
            seed = np.random.RandomState(5) if random_state == "RandomState" else random_state
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                est = cls(random_state=seed, **kw).fit(X, labels)
            fits.append((est, [w for w in caught if issubclass(w.category, ConvergenceWarning)]))
        (ours, our_warnings), (theirs, their_warnings) = fits
        np.testing.assert_array_equal(ours.coef_, theirs.coef_)
        np.testing.assert_array_equal(ours.intercept_, theirs.intercept_)
        assert (ours.n_iter_, ours.t_) == (theirs.n_iter_, theirs.t_)
        assert len(our_warnings) == len(their_warnings) == (1 if kw.get("max_iter") == 3 else 0)
    assert not np.array_equal(ours.coef_, xpnet.Perceptron(random_state=4, max_iter=2, tol=None).fit(X, y % 2).coef_)


def test_perceptron_takes_scikit_learns_other_options():
    """The default random_state (0), fit_intercept, class_weight (a dict, or "balanced"),
    warm_start and partial_fit mean what they mean in scikit-learn's Perceptron: on digits the
    weights, n_iter_ and t_ are scikit-learn's (exactly with dyadic class weights; "balanced" ones
    are not, so there to rounding: the sums run in another order)."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import Perceptron as SkPerceptron

    X, y = load_digits(return_X_y=True)
    half = len(y) // 2

    def assert_same(ours, theirs, exact=True):
        check = np.testing.assert_array_equal if exact else functools.partial(np.testing.assert_allclose, rtol=1e-12)
        check(ours.coef_, theirs.coef_)
        check(ours.intercept_, theirs.intercept_)
        assert (ours.n_iter_, ours.t_) == (theirs.n_iter_, theirs.t_)

    assert xpnet.Perceptron().get_params()["random_state"] == SkPerceptron().get_params()["random_state"] == 0
    assert_same(xpnet.Perceptron().fit(X, y), SkPerceptron().fit(X, y))
    for labels in (y, y % 2):
        for kw in (dict(fit_intercept=False), dict(class_weight={0: 4.0, 1: 0.5}),
                   dict(class_weight="balanced", tol=None, max_iter=5)):
            ours, theirs = xpnet.Perceptron(**kw).fit(X, labels), SkPerceptron(**kw).fit(X, labels)
            assert_same(ours, theirs, exact=kw.get("class_weight") != "balanced")
            assert not np.array_equal(ours.coef_, xpnet.Perceptron().fit(X, labels).coef_)
        assert not np.any(xpnet.Perceptron(fit_intercept=False).fit(X, labels).intercept_)
        fits = []
        for cls in (xpnet.Perceptron, SkPerceptron):  # a warm fit starts from the last fit's weights
            est = cls(warm_start=True, max_iter=3, tol=None).fit(X[:half], labels[:half])
            fits.append(est.fit(X, labels))
        assert_same(*fits)
        assert not np.array_equal(fits[0].coef_, xpnet.Perceptron(max_iter=3, tol=None).fit(X, labels).coef_)
        fits = []
        for cls in (xpnet.Perceptron, SkPerceptron):  # one epoch per call, t_ counting on
            est = cls(class_weight={1: 2.0}).partial_fit(X[:half], labels[:half], classes=np.unique(labels))
            fits.append(est.partial_fit(X[half:], labels[half:]).partial_fit(X, labels))
        assert_same(*fits)
        assert fits[0].n_iter_ == 1 and fits[0].t_ == 1 + 2 * len(y)


@pytest.mark.parametrize("penalty, alpha, l1_ratio", [("l2", 1e-3, 0.15), ("l2", 0.1, 0.15), ("l1", 1e-3, 0.15),
                                                      ("elasticnet", 1e-3, 0.5)])
def test_perceptron_penalties_equal_scikit_learns(penalty, alpha, l1_ratio):
    """penalty, alpha and l1_ratio as scikit-learn's SGD applies them: each sample shrinks the
    weights (as a scale, reset below 1e-9: alpha=0.1 shrinks by 0.9 a sample, so the reset runs),
    then L1's truncation; the stopping rule reads the objective with the penalty. On digits the
    compiled epoch and the Array-API reference reach scikit-learn's weights (to rounding: the
    scale's products round apart from a plain sum), n_iter_ and t_, for 2 and 10 classes."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import Perceptron as SkPerceptron

    X, y = load_digits(return_X_y=True)
    X, y = X[:600] / 16, y[:600]
    kw = dict(penalty=penalty, alpha=alpha, l1_ratio=l1_ratio)
    for labels in (y % 2, y):
        theirs = SkPerceptron(**kw).fit(X, labels)
        for fused in (True, False):
            ours = xpnet.Perceptron(fused=fused, **kw).fit(X, labels)
            np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=0, atol=1e-12)
            np.testing.assert_allclose(ours.intercept_, theirs.intercept_, rtol=0, atol=1e-12)
            assert (ours.n_iter_, ours.t_) == (theirs.n_iter_, theirs.t_)
        assert not np.allclose(ours.coef_, xpnet.Perceptron().fit(X, labels).coef_)
    if penalty != "l2":  # L1 zeroes weights, as there
        assert np.count_nonzero(ours.coef_ == 0) == np.count_nonzero(theirs.coef_ == 0) > 0


@pytest.mark.parametrize("random_state", [0, "RandomState"])
def test_perceptron_early_stopping_equals_scikit_learns(random_state):
    """early_stopping holds out scikit-learn's stratified split (drawn where scikit-learn draws it:
    a RandomState given as random_state is shared with the epoch orders), does not train on it, and
    stops each unit on its held-out accuracy: weights, n_iter_ and t_ are scikit-learn's, with no
    penalty and with L1, for 2 and 10 classes. partial_fit refuses it, as scikit-learn's does, and
    a held-out set of zero weight is refused."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import Perceptron as SkPerceptron

    X, y = load_digits(return_X_y=True)
    X, y = X[:600] / 16, y[:600]

    def state():
        return np.random.RandomState(5) if random_state == "RandomState" else random_state

    for labels in (y % 2, y):
        for kw in (dict(), dict(penalty="l1", alpha=1e-4), dict(validation_fraction=0.3, n_iter_no_change=2)):
            kw.update(early_stopping=True)
            ours = xpnet.Perceptron(random_state=state(), **kw).fit(X, labels)
            theirs = SkPerceptron(random_state=state(), **kw).fit(X, labels)
            np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=0, atol=1e-12)
            np.testing.assert_allclose(ours.intercept_, theirs.intercept_, rtol=0, atol=1e-12)
            assert (ours.n_iter_, ours.t_) == (theirs.n_iter_, theirs.t_)
        plain = xpnet.Perceptron(random_state=state(), max_iter=ours.n_iter_, tol=None).fit(X, labels)
        assert not np.allclose(ours.coef_, plain.coef_)  # the held-out rows were not trained on
    with pytest.raises(ValueError, match="early_stopping should be False with partial_fit, on its first call"):
        xpnet.Perceptron(early_stopping=True).partial_fit(X, y, classes=np.arange(10))
    weights = np.zeros(len(y))
    weights[:3] = 1.0
    with pytest.raises(ValueError, match="sample weights of the validation set are all zero"):
        xpnet.Perceptron(early_stopping=True).fit(X, y % 2, sample_weight=weights)


def test_perceptron_partial_fit_after_a_fit_takes_early_stopping_and_balanced_weights_as_scikit_learn():
    """scikit-learn refuses early_stopping=True and class_weight="balanced" on the first partial_fit only:
    after a fit, an epoch holds out the validation rows, and "balanced" counts the classes of that
    call's y (xpnet refused both on every call, so check_fit_score_takes_y failed on it). The weights
    equal scikit-learn's after the fit and two partial_fit calls; a y without some class is refused."""
    from sklearn.linear_model import Perceptron as SkPerceptron

    rng = np.random.RandomState(0)
    for k in (2, 3):
        X, y, X2, y2 = rng.normal(size=(120, 4)), rng.randint(0, k, 120), rng.normal(size=(80, 4)), rng.randint(0, k, 80)
        for kw in (dict(early_stopping=True), dict(class_weight="balanced"), dict(early_stopping=True, class_weight="balanced")):
            ours = xpnet.Perceptron(random_state=1, max_iter=30, **kw).fit(X, y)
            theirs = SkPerceptron(random_state=1, max_iter=30, **kw).fit(X, y)
            for _ in range(2):
                ours.partial_fit(X2, y2)
                theirs.partial_fit(X2, y2)
            np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=0, atol=1e-12)
            np.testing.assert_allclose(ours.intercept_, theirs.intercept_, rtol=0, atol=1e-12)
            assert (ours.n_iter_, ours.t_) == (theirs.n_iter_, theirs.t_) == (1, theirs.t_)
        with pytest.raises(ValueError, match="class_weight='balanced' needs every class in y; y has no 0"):
            xpnet.Perceptron(class_weight="balanced").fit(X, y).partial_fit(X2[y2 != 0], y2[y2 != 0])
    with pytest.raises(ValueError, match="class_weight 'balanced' is not supported for partial_fit"):
        xpnet.Perceptron(class_weight="balanced").partial_fit(X, y, classes=np.arange(3))


def test_perceptron_verbose_prints_scikit_learns_lines(capsys):
    """verbose=1 prints scikit-learn's epoch lines (norm, nonzero weights, bias, samples seen,
    mean loss and objective, the validation score with early stopping), the same text apart from
    the times, for epochs that ran and epochs counted after one without mistakes."""
    import re

    from sklearn.datasets import load_digits
    from sklearn.linear_model import Perceptron as SkPerceptron

    X, y = load_digits(return_X_y=True)
    X, y = X[:400] / 16, y[:400] % 2
    for kw in (dict(tol=None, max_iter=6), dict(early_stopping=True, penalty="l1", n_iter_no_change=2)):
        printed = []
        for cls in (xpnet.Perceptron, SkPerceptron):
            cls(verbose=1, **kw).fit(X, y)
            printed.append(re.sub(r"\d+\.\d\d seconds", "_ seconds", capsys.readouterr().out))
        assert printed[0] == printed[1]
        assert printed[0].count("-- Epoch") == kw.get("max_iter", printed[0].count("-- Epoch")) > 1


def test_perceptron_refuses_what_scikit_learns_refuses():
    """A warm start on other classes or features, partial_fit without classes on its first call or
    with other ones later, and "balanced" class weights in partial_fit, each refused, the fitted
    perceptron unchanged."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    warm = xpnet.Perceptron(warm_start=True, max_iter=2, tol=None).fit(X, y)
    coef = warm.coef_.copy()
    with pytest.raises(ValueError, match="warm_start can only be used where X and y are shaped as in the previous"):
        warm.fit(X, y % 2)
    with pytest.raises(ValueError, match="previously 64 features .* now 5 features"):
        warm.fit(X[:, :5], y)
    np.testing.assert_array_equal(warm.coef_, coef)
    assert warm.classes_.size == 10 and warm.n_features_in_ == 64
    with pytest.raises(ValueError, match="classes must be passed on the first call to partial_fit"):
        xpnet.Perceptron().partial_fit(X, y)
    with pytest.raises(ValueError, match="class_weight 'balanced' is not supported for partial_fit"):
        xpnet.Perceptron(class_weight="balanced").partial_fit(X, y, classes=np.arange(10))
    with pytest.raises(ValueError, match=r"is not the same as on the last call to partial_fit or fit"):
        warm.partial_fit(X, y, classes=np.arange(11))
    with pytest.raises(ValueError, match=r"y holds labels \[10\] not in classes"):
        warm.partial_fit(X, y + 1)
    np.testing.assert_array_equal(warm.coef_, coef)


@pytest.mark.parametrize("fused", [None, False])
def test_perceptron_refuses_weights_that_overflow_at_scikit_learns_epoch(fused):
    """A step so large that the weights become infinite is refused at the epoch where
    scikit-learn's SGD refuses it (its words), for one unit and one-vs-rest, in float64 and float32,
    on the compiled epoch and the reference; the fitted perceptron is left as it was. Without the
    check the fit returned infinite coef_."""
    from sklearn.linear_model import Perceptron as SkPerceptron

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    y[:3] = 1 - y[:3]
    fitted = xpnet.Perceptron(fused=fused).fit(X, y)
    coef = fitted.coef_.copy()
    for eta0, dtype, labels in ((1e308, "float64", y), (1e38, "float32", y), (1e38, "float32", np.arange(40) % 3)):
        Xt = X.astype(dtype)
        with pytest.raises(ValueError, match=r"epoch #(\d+)") as theirs:
            SkPerceptron(eta0=eta0).fit(Xt, labels)
        epoch = theirs.value.args[0].split("#")[1].split(".")[0]
        assert int(epoch) > (1 if dtype == "float32" else 0)
        fitted.set_params(eta0=eta0, dtype=dtype)
        with pytest.raises(ValueError, match=rf"Floating-point under-/overflow occurred at epoch #{epoch}\b.*"
                                             rf"NaN or infinite in {dtype}.*StandardScaler"):
            fitted.fit(Xt, labels)
        np.testing.assert_array_equal(fitted.coef_, coef)
        assert fitted.n_features_in_ == 3 and fitted.classes_.size == 2


def test_weighted_perceptron_equals_scikit_learns_and_the_reference():
    """sample_weight scales each sample's step, as scikit-learn's SGD update does: in a fixed order
    the compiled epoch, the Array-API reference and scikit-learn's Perceptron reach identical weights
    (integer features and weights: exact arithmetic). Perceptron took no sample_weight."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import Perceptron as SkPerceptron

    X, y = load_digits(return_X_y=True)
    w = np.random.default_rng(0).integers(0, 4, size=len(y)).astype(float)
    kw = dict(shuffle=False, max_iter=3, tol=None)
    fused = xpnet.Perceptron(**kw).fit(X, y, sample_weight=w)
    reference = xpnet.Perceptron(fused=False, **kw).fit(X, y, sample_weight=w)
    theirs = SkPerceptron(**kw).fit(X, y, sample_weight=w)
    np.testing.assert_array_equal(fused.coef_, reference.coef_)
    np.testing.assert_array_equal(fused.coef_, theirs.coef_)
    np.testing.assert_array_equal(fused.intercept_, theirs.intercept_)
    assert not np.array_equal(fused.coef_, xpnet.Perceptron(**kw).fit(X, y).coef_)
    kw = dict(random_state=0, max_iter=3, tol=None)  # shuffled: scikit-learn's orders
    np.testing.assert_array_equal(xpnet.Perceptron(**kw).fit(X, y, sample_weight=w).coef_,
                                  SkPerceptron(**kw).fit(X, y, sample_weight=w).coef_)


def test_constant_features_get_zero_coefficients_and_all_constant_x_fits():
    rng = np.random.default_rng(0)
    X = np.hstack([rng.normal(size=(80, 2)), np.full((80, 1), 3.0)])
    y_reg, y_cls = X[:, 0] * 2 + 1, (X[:, 0] > 0).astype(int)
    assert xpnet.LinearRegression().fit(X, y_reg).coef_[-1] == 0.0
    assert xpnet.LogisticRegression().fit(X, y_cls).coef_[0, -1] == 0.0
    constant = np.ones((10, 2))
    np.testing.assert_allclose(xpnet.LinearRegression().fit(constant, np.arange(10.0)).predict(constant), 4.5)
    assert np.all(xpnet.LogisticRegression().fit(constant, np.arange(10) % 2).coef_ == 0.0)


def test_logistic_regression_stops_on_tol_and_matches_scikit_learn(iris_pair):
    from sklearn.linear_model import LogisticRegression as SkLogistic
    from sklearn.preprocessing import StandardScaler

    X, y = iris_pair
    clf = xpnet.LogisticRegression().fit(X, y)
    assert clf.n_iter_ < clf.max_iter and clf.score(X, y) == 1.0
    Xs = StandardScaler().fit_transform(X)
    ours = xpnet.LogisticRegression(standardize=False, tol=1e-8).fit(Xs, y)  # alpha=1.0 is C=1.0
    theirs = SkLogistic(C=1.0, tol=1e-10).fit(Xs, y)
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=1e-6)
    np.testing.assert_allclose(ours.intercept_, theirs.intercept_, rtol=1e-6)


@pytest.mark.parametrize("classes,C,weighted", [(2, 0.1, False), (2, 10.0, True), (3, 1.0, False), (3, 1.0, True)])
def test_logistic_regression_standardized_by_default_is_scikit_learns_scaled_pipeline(classes, C, weighted):
    """standardize=True (the default) penalises the coefficients of the standardised features: the
    fit is scikit-learn's make_pipeline(StandardScaler(), LogisticRegression(C=1 / alpha)), its
    coefficients carried back to the raw features (sample weights in both steps). It is not
    LogisticRegression(C) on the raw features, whose penalty weighs each feature by its scale."""
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression as SkLogistic
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = make_classification(120, 5, n_informative=3, n_redundant=0, n_classes=classes, random_state=classes)
    X = X * np.arange(1, 6) + 3.0  # features of different scales and means
    w = np.random.default_rng(0).random(120) * 2 if weighted else None
    ours = xpnet.LogisticRegression(alpha=1 / C, tol=1e-10, max_iter=20000).fit(X, y, sample_weight=w)
    pipe = make_pipeline(StandardScaler(), SkLogistic(C=C, tol=1e-12, max_iter=5000))
    pipe.fit(X, y, standardscaler__sample_weight=w, logisticregression__sample_weight=w)
    scaler, theirs = pipe
    coef = theirs.coef_ / scaler.scale_
    np.testing.assert_allclose(ours.coef_, coef, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours.intercept_, theirs.intercept_ - coef @ scaler.mean_, rtol=1e-5, atol=1e-7)
    raw = SkLogistic(C=C, tol=1e-12, max_iter=5000).fit(X, y, sample_weight=w)
    assert np.max(np.abs(ours.coef_ - raw.coef_)) > 1e-3  # another objective


def _scaled_pipeline_fit(X, y, C, w=None):
    """scikit-learn's tight StandardScaler + LogisticRegression(C) fit: xpnet's default objective."""
    from sklearn.linear_model import LogisticRegression as SkLogistic
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), SkLogistic(C=C, tol=1e-12, max_iter=10000))
    return pipe.fit(X, y, standardscaler__sample_weight=w, logisticregression__sample_weight=w)


@pytest.mark.parametrize("alpha", [1e3, 1e4])
@pytest.mark.parametrize("binary", [True, False])
def test_logistic_regression_steps_from_curvature_so_strong_penalties_converge(alpha, binary):
    """A fixed step of 0.5 made scikit-learn's C=1e-3 (alpha=1e3) on iris oscillate until max_iter
    (probabilities 0.5 off) and C=1e-4 diverge (NonFiniteLossError). The "auto" step, 1/L for a
    bound L on the curvature (alpha / N included), converges to scikit-learn's fit in silence."""
    import warnings

    from sklearn.datasets import load_iris
    from sklearn.exceptions import ConvergenceWarning

    X, y = load_iris(return_X_y=True)
    y = (y == 2).astype(int) if binary else y
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        ours = xpnet.LogisticRegression(alpha=alpha).fit(X, y)
    assert ours.learning_rate_init == "auto"
    theirs = _scaled_pipeline_fit(X, y, 1 / alpha)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-4)


@pytest.mark.parametrize("batch_size", [7, 32])
def test_linear_models_end_at_the_full_batch_fit_at_any_batch_size(batch_size):
    """Mini-batches returned fits far from the objective's optimum without a word: the loss rule
    stopped a constant-step descent in its noise floor (LinearRegression 0.8 of y's spread off on
    diabetes at batch 16) and each batch's L2 term was over its own rows, a penalty N / B times
    too strong. Now each step carries the whole data's penalty, a full-batch pass checks the
    gradient rule after each epoch, and full batches finish the descent: every batch size ends at
    the full-batch fit, weighted or not."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LinearRegression as SkLinear

    rng = np.random.default_rng(1)
    X = rng.normal(size=(150, 3)) * [1.0, 4.0, 0.3] + [0.0, 2.0, -1.0]
    w = rng.integers(0, 4, size=150).astype(float)
    y = X @ [1.0, -0.5, 2.0] + rng.normal(size=150)
    labels = np.digitize(X[:, 0] + 0.3 * X[:, 1] + rng.normal(size=150), [0.0, 1.0])  # 3 classes
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        for weights in (None, w):
            linear = xpnet.LinearRegression(batch_size=batch_size, random_state=0).fit(X, y, sample_weight=weights)
            np.testing.assert_allclose(linear.coef_, SkLinear().fit(X, y, sample_weight=weights).coef_, rtol=1e-6)
            logistic = xpnet.LogisticRegression(batch_size=batch_size, tol=1e-8, max_iter=5000, random_state=0)
            logistic.fit(X, labels, sample_weight=weights)
            assert logistic.n_iter_ < 5000
            np.testing.assert_allclose(logistic.predict_proba(X),
                                       _scaled_pipeline_fit(X, labels, 1.0, weights).predict_proba(X), atol=1e-6)


def test_linear_models_take_sample_weight_as_scikit_learns_do():
    """LinearRegression and LogisticRegression took no sample_weight. Integer weights now equal
    repeated rows (the standardisation is weighted too), and the fits equal scikit-learn's weighted
    least squares and weighted, C-penalised logistic regression."""
    from sklearn.linear_model import LinearRegression as SkLinear
    from sklearn.linear_model import LogisticRegression as SkLogistic

    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 3)) * [1.0, 4.0, 0.3] + [0.0, 2.0, -1.0]
    w = rng.integers(0, 4, size=150).astype(float)  # zeros too: those rows count for nothing
    repeat = np.repeat(np.arange(150), w.astype(int))
    y = X @ [1.0, -0.5, 2.0] + rng.normal(size=150)
    weighted = xpnet.LinearRegression().fit(X, y, sample_weight=w)
    np.testing.assert_allclose(weighted.coef_, xpnet.LinearRegression().fit(X[repeat], y[repeat]).coef_, rtol=1e-7)
    np.testing.assert_allclose(weighted.coef_, SkLinear().fit(X, y, sample_weight=w).coef_, rtol=1e-7)
    labels = (X[:, 0] + 0.3 * X[:, 1] + rng.normal(size=150) > 0.6).astype(int)
    for standardize in (True, False):
        kw = dict(standardize=standardize, tol=1e-10, max_iter=50000)
        ours = xpnet.LogisticRegression(**kw).fit(X, labels, sample_weight=w)
        np.testing.assert_allclose(ours.coef_, xpnet.LogisticRegression(**kw).fit(X[repeat], labels[repeat]).coef_,
                                   rtol=1e-6)
    theirs = SkLogistic(C=1.0, tol=1e-12).fit(X, labels, sample_weight=w)  # alpha=1.0 over the weight sum is C=1.0
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=1e-5)
    np.testing.assert_allclose(ours.intercept_, theirs.intercept_, rtol=1e-5)
    with pytest.raises(ValueError, match="sample_weight must be finite and >= 0"):
        xpnet.LogisticRegression().fit(X, labels, sample_weight=-w)

def test_mlp_stopping_rule_waits_until_the_count_exceeds_n_iter_no_change():
    """scikit-learn stops when the no-improvement count *exceeds* n_iter_no_change: with tol so
    large that no epoch after the first counts as an improvement, both run n_iter_no_change + 2 epochs."""
    import warnings

    from sklearn.neural_network import MLPClassifier as SkMLP

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 3)), rng.integers(0, 2, size=60)
    for patience in (1, 3):
        ours = xpnet.MLPClassifier(hidden_layer_sizes=(4,), tol=1e9, n_iter_no_change=patience, max_iter=50).fit(X, y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = SkMLP(hidden_layer_sizes=(4,), tol=1e9, n_iter_no_change=patience, max_iter=50).fit(X, y)
        assert ours.n_iter_ == theirs.n_iter_ == patience + 2


def test_small_fits_skip_loading_the_numba_kernels(monkeypatch):
    """fused=None: a small estimator fit in a process without the Numba kernels runs the reference
    path (loading Numba would cost more than it saves); a large one, or a process that has them
    loaded, uses them; an explicit fused= is kept."""
    import sys

    from xpnet.backend import get_backend
    from xpnet.estimators.mlp import FUSED_AUTO_MIN_WORK, _fused_for_fit

    numpy_backend = get_backend("numpy")
    monkeypatch.delitem(sys.modules, "xpnet.kernels.numba_cpu", raising=False)
    assert _fused_for_fit(None, numpy_backend, 1797, [64, 32, 10], 200) is False
    assert _fused_for_fit(None, numpy_backend, 60000, [784, 100, 10], 200) is None  # None: fused, the default
    assert 1797 * 106 * 200 < FUSED_AUTO_MIN_WORK < 60000 * 894 * 200
    assert _fused_for_fit(True, numpy_backend, 10, [2, 2], 1) is True
    monkeypatch.setitem(sys.modules, "xpnet.kernels.numba_cpu", object())
    assert _fused_for_fit(None, numpy_backend, 1797, [64, 32, 10], 200) is None
