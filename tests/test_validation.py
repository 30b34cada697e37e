"""Bad input: a clear error naming the argument, raised before any state changes."""

import numpy as np
import pytest

import xpnet
from xpnet import Adam, Dense, Sequential, Sigmoid

X_OK = np.random.default_rng(0).normal(size=(10, 3))
Y_OK = np.arange(10) % 2
X_NAN = X_OK.copy()
X_NAN[3, 1] = np.nan
X_INF = X_OK.copy()
X_INF[7, 2] = -np.inf


def fresh():
    return Sequential([Dense(3, 4), Sigmoid(), Dense(4, 2)], seed=0)


BAD_FIT = [
    ("mismatched lengths", dict(X=X_OK, y=Y_OK[:9]), ValueError, "X has 10 samples but y has 9"),
    ("1-D X", dict(X=X_OK[:, 0], y=Y_OK), ValueError, r"X must be 2-D .*reshape"),
    ("3-D X", dict(X=X_OK.reshape(10, 3, 1), y=Y_OK), ValueError, "X must be 2-D"),
    ("strings", dict(X=np.array([["a", "b", "c"]] * 10), y=Y_OK), TypeError, "X must be numeric"),
    ("NaN", dict(X=X_NAN, y=Y_OK), ValueError, "X contains NaN or infinity"),
    ("inf", dict(X=X_INF, y=Y_OK), ValueError, "X contains NaN or infinity"),
    ("label too big", dict(X=X_OK, y=Y_OK * 2), ValueError, r"y holds class labels in \[0, 2\].*\[0, 1\]"),
    ("negative label", dict(X=X_OK, y=Y_OK - 1), ValueError, "y holds class labels in"),
    ("fractional labels", dict(X=X_OK, y=Y_OK + 0.5), ValueError, "y must hold integer class labels"),
    ("string labels", dict(X=X_OK, y=np.array(["a"] * 10)), TypeError, "y must hold integer class labels"),
    ("empty", dict(X=np.zeros((0, 3)), y=np.zeros(0, int)), ValueError, "X is empty"),
    ("wrong width", dict(X=np.zeros((10, 4)), y=Y_OK), ValueError, "X has 4 features but the model expects 3"),
    ("ragged", dict(X=[[1.0, 2.0, 3.0], [1.0]], y=[0, 1]), ValueError, "X must be a rectangular array"),
    ("None", dict(X=None, y=Y_OK), TypeError, "X must be an array"),
    ("batch_size 0", dict(X=X_OK, y=Y_OK, batch_size=0), ValueError, "batch_size must be >= 1"),
    ("batch_size float", dict(X=X_OK, y=Y_OK, batch_size=2.5), TypeError, "batch_size must be an integer"),
    ("epochs -1", dict(X=X_OK, y=Y_OK, epochs=-1), ValueError, "epochs must be >= 0"),
    ("verbose 7", dict(X=X_OK, y=Y_OK, verbose=7), ValueError, "verbose must be"),
    ("bad validation pair", dict(X=X_OK, y=Y_OK, validation_data=(X_OK,)), ValueError, "validation_data must be a pair"),
    ("bad validation X", dict(X=X_OK, y=Y_OK, validation_data=(X_OK[:, :2], Y_OK)), ValueError,
     r"validation_data\[0\] has 2 features"),
    ("unknown optimizer", dict(X=X_OK, y=Y_OK, optimizer="rmsprop"), ValueError, "optimizer must be"),
    # a string is not taken as true: shuffle="no" used to shuffle
    ("shuffle string", dict(X=X_OK, y=Y_OK, shuffle="no"), ValueError, "shuffle must be True or False, got str 'no'"),
    ("restore_best string", dict(X=X_OK, y=Y_OK, restore_best="x"), ValueError, "restore_best must be True or False"),
    ("early_stopping string", dict(X=X_OK, y=Y_OK, early_stopping="no", tol=1e-4), ValueError,
     "early_stopping must be True or False"),
]


@pytest.mark.parametrize("case, kwargs, exc, message", BAD_FIT, ids=[c[0] for c in BAD_FIT])
def test_fit_rejects_bad_input_before_changing_state(case, kwargs, exc, message):
    model = fresh()
    before = [p.copy() for p in model.parameters()]
    optimizer = Adam()
    kwargs = dict(kwargs)
    X, y = kwargs.pop("X"), kwargs.pop("y")
    kwargs.setdefault("optimizer", optimizer)
    kwargs.setdefault("epochs", 1)
    with pytest.raises(exc, match=message):
        model.fit(X, y, **kwargs)
    for p, b in zip(model.parameters(), before):
        np.testing.assert_array_equal(p, b)
    assert optimizer.iterations == 0 and optimizer.state == {}
    assert model.epochs_trained == 0


def test_regression_targets_are_checked():
    model = Sequential([Dense(3, 1)], loss="mse")
    with pytest.raises(ValueError, match="y contains NaN"):
        model.fit(X_OK, np.full(10, np.nan), epochs=1)
    with pytest.raises(ValueError, match=r"y must have shape \(10, 1\)"):
        model.fit(X_OK, np.zeros((10, 2)), epochs=1)


def test_binary_targets_must_be_in_unit_interval():
    model = Sequential([Dense(3, 1)], loss="binary_cross_entropy")
    with pytest.raises(ValueError, match=r"binary targets in \[0, 1\]"):
        model.fit(X_OK, Y_OK * 3, epochs=1)


def test_one_hot_must_be_one_hot():
    with pytest.raises(ValueError, match="one-hot rows"):
        fresh().fit(X_OK, np.full((10, 2), 0.5), epochs=1)


@pytest.mark.parametrize(
    "build, exc, message",
    [
        (lambda: Sequential([Dense(3, 2)], loss="hinge"), ValueError, "loss must be"),
        (lambda: Sequential([Dense(3, 2)], backend="tensorflow"), ValueError, "backend must be one of"),
        (lambda: Sequential([Dense(3, 2)], dtype="float16"), ValueError, "dtype must be"),
        (lambda: Sequential([]), ValueError, "layers must be a non-empty"),
        (lambda: Sequential([Dense(3, 2), "relu"]), TypeError, r"layers\[1\] must be a Layer"),
        (lambda: Sequential([Dense(3, 2), Dense(3, 2)]), ValueError, "layer widths do not chain"),
        (lambda: Sequential([Sigmoid()]), ValueError, "at least one Dense"),
        # the losses take logits: a final Sigmoid (Keras' and PyTorch's BCELoss idiom) was applied twice,
        # so every prediction was class 1 while the loss still fell
        (lambda: Sequential([Dense(3, 4), Sigmoid(), Dense(4, 1), Sigmoid()], loss="binary_cross_entropy"), ValueError,
         r"takes the last Dense layer's logits and applies the sigmoid itself, but the layers end with Sigmoid\(\) "
         r"\(the sigmoid is applied twice"),
        (lambda: Sequential([Dense(3, 4), Sigmoid(), Dense(4, 3), xpnet.Tanh()]), ValueError,
         "applies the softmax itself, but the layers end with Tanh"),
        # one softmax output is always 1: the loss is 0 and the fit trained nothing
        (lambda: Sequential([Dense(3, 4), Sigmoid(), Dense(4, 1)]), ValueError,
         "loss='softmax_cross_entropy' needs at least 2 outputs, but the last Dense layer has 1"),
        (lambda: Dense(0, 2), ValueError, "n_in must be a positive integer"),
        (lambda: Dense(2, 2, init="ones"), ValueError, "init must be"),
        (lambda: Adam(lr=-1), ValueError, "lr must lie in"),
        (lambda: Adam(eps_form="keras"), ValueError, r"eps_form must be one of \('pytorch', 'scikit-learn'\)"),
        (lambda: xpnet.SGD(lr=0.1, momentum=1.5), ValueError, "momentum must lie in"),
        (lambda: xpnet.SGD(lr=0.1, nesterov=True), ValueError, "nesterov=True needs momentum"),
        (lambda: xpnet.SGD(lr=0.1, momentum=0.9, nesterov="no"), ValueError, "nesterov must be True or False"),
        (lambda: Sequential([Dense(3, 2)], fused="no"), ValueError, "fused must be True, False or None, got str 'no'"),
        (lambda: Sequential([Dense(3, 2)], graphs="auto"), ValueError, "graphs must be True, False or None"),
        (lambda: Sequential([Dense(3, 2)], l2=-1.0), ValueError, "l2 must be"),
        (lambda: Sequential([Dense(3, 2)], seed=-1), ValueError, "seed must be None, an integer >= 0 or a NumPy random"),
        (lambda: Sequential([Dense(3, 2)], seed="a"), TypeError, "seed must be None, an integer >= 0 or a NumPy random"),
    ],
)
def test_construction_errors(build, exc, message):
    with pytest.raises(exc, match=message):
        build()


def test_predict_checks_input():
    model = fresh()
    with pytest.raises(ValueError, match="X has 2 features but the model expects 3"):
        model.predict(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="X contains NaN"):
        model.predict(np.full((1, 3), np.nan))


@pytest.mark.parametrize(
    "est, X, y, exc, message",
    [
        (xpnet.MLPClassifier(activation="swish"), X_OK, Y_OK, ValueError, "activation must be one of"),
        (xpnet.MLPClassifier(solver="newton"), X_OK, Y_OK, ValueError, "solver must be one of"),
        (xpnet.MLPClassifier(batch_size=0), X_OK, Y_OK, ValueError, "batch_size must be >= 1"),
        (xpnet.MLPClassifier(max_iter=0), X_OK, Y_OK, ValueError, "max_iter must be >= 1"),
        (xpnet.MLPClassifier(power_t=-1), X_OK, Y_OK, ValueError, "power_t must be >= 0.0, got -1"),
        (xpnet.MLPRegressor(power_t="x"), X_OK, Y_OK, TypeError, "power_t must be a finite number, got 'x'"),
        (xpnet.MLPClassifier(hidden_layer_sizes=None), X_OK, Y_OK, TypeError,
         "hidden_layer_sizes must be an integer or a sequence of integers .*, got NoneType None"),
        (xpnet.MLPClassifier(hidden_layer_sizes="5"), X_OK, Y_OK, TypeError, "hidden_layer_sizes must be an integer or"),
        (xpnet.MLPClassifier(hidden_layer_sizes=(5, 0)), X_OK, Y_OK, ValueError, "hidden_layer_sizes entries must be >= 1"),
        (xpnet.MLPClassifier(backend="tensorflow"), X_OK, Y_OK, ValueError, "backend must be one of"),
        (xpnet.MLPClassifier(), X_OK, Y_OK[:5], ValueError, r"inconsistent numbers of samples: \[10, 5\]"),
        (xpnet.MLPClassifier(), X_INF, Y_OK, ValueError, "X contains NaN"),
        (xpnet.MLPClassifier(), X_OK, np.where(Y_OK > 0, np.nan, 0.0), ValueError, "y contains NaN"),
        (xpnet.MLPRegressor(), np.zeros((0, 3)), np.zeros(0), ValueError, r"Found array with 0 sample\(s\)"),
        (xpnet.LogisticRegression(learning_rate_init=0), X_OK, Y_OK, ValueError, "learning_rate_init must be > 0"),
        (xpnet.LogisticRegression(learning_rate_init="fast"), X_OK, Y_OK, ValueError,
         "learning_rate_init must be 'auto' or a finite number > 0, got 'fast'"),
        (xpnet.LinearRegression(learning_rate_init=None), X_OK, Y_OK, TypeError, "learning_rate_init must be a finite number"),
        (xpnet.LinearRegression(solver="adam"), X_OK, Y_OK, ValueError, "solver must be 'gd' or 'lbfgs', got 'adam'"),
        (xpnet.Perceptron(eta0=-1), X_OK, Y_OK, ValueError, "eta0 must be > 0"),
        # scikit-learn's names, not the optimizers' (beta1, eps)
        (xpnet.MLPClassifier(beta_1=1.0), X_OK, Y_OK, ValueError, r"beta_1 must lie in \[0.0, 1.0\), got 1.0"),
        (xpnet.MLPClassifier(beta_2=-0.5), X_OK, Y_OK, ValueError, r"beta_2 must lie in \[0.0, 1.0\), got -0.5"),
        (xpnet.MLPClassifier(epsilon=0), X_OK, Y_OK, ValueError, r"epsilon must be > 0"),
        (xpnet.MLPClassifier(solver="sgd", momentum=2), X_OK, Y_OK, ValueError, r"momentum must lie in \[0.0, 1.0\], got 2.0"),
        # every solver's options are checked whichever solver runs, as scikit-learn checks them
        (xpnet.MLPClassifier(solver="sgd", beta_1=2), X_OK, Y_OK, ValueError, r"beta_1 must lie in \[0.0, 1.0\), got 2.0"),
        (xpnet.MLPRegressor(solver="lbfgs", epsilon=0), X_OK, Y_OK, ValueError, "epsilon must be > 0"),
        (xpnet.MLPClassifier(solver="adam", momentum=-0.5), X_OK, Y_OK, ValueError, r"momentum must lie in \[0.0, 1.0\]"),
        (xpnet.MLPClassifier(solver="adam", max_fun=0), X_OK, Y_OK, ValueError, "max_fun must be >= 1"),
        (xpnet.MLPClassifier(solver="lbfgs", learning_rate_init=0), X_OK, Y_OK, ValueError, "learning_rate_init must be > 0"),
        (xpnet.MLPClassifier(validation_fraction=5), X_OK, Y_OK, ValueError, r"validation_fraction must lie in \[0.0, 1.0\), got 5.0"),
        (xpnet.MLPRegressor(random_state=-1), X_OK, Y_OK, ValueError, "random_state must be None, an integer >= 0"),
        (xpnet.Perceptron(random_state="a"), X_OK, Y_OK, TypeError, "random_state must be None, an integer >= 0"),
        (xpnet.LinearRegression(), X_OK, np.zeros((10, 1, 1)), ValueError, "Found array with dim 3"),
        # flags: "no" is a string, not False (early_stopping="no" used to turn early stopping on)
        (xpnet.MLPClassifier(early_stopping="no"), X_OK, Y_OK, ValueError, "early_stopping must be True or False, got str"),
        (xpnet.MLPClassifier(shuffle="yes"), X_OK, Y_OK, ValueError, "shuffle must be True or False"),
        (xpnet.MLPRegressor(warm_start="no"), X_OK, Y_OK, ValueError, "warm_start must be True or False"),
        (xpnet.MLPClassifier(solver="sgd", nesterovs_momentum="x"), X_OK, Y_OK, ValueError,
         "nesterovs_momentum must be True or False"),
        (xpnet.MLPClassifier(verbose=-1), X_OK, Y_OK, ValueError, "verbose must be True, False or an integer >= 0"),
        (xpnet.MLPClassifier(fused="no"), X_OK, Y_OK, ValueError, "fused must be True, False or None"),
        (xpnet.Perceptron(shuffle="no"), X_OK, Y_OK, ValueError, "shuffle must be True or False"),
        (xpnet.Perceptron(fused="no"), X_OK, Y_OK, ValueError, "fused must be True, False or None"),
        (xpnet.Perceptron(fit_intercept="no"), X_OK, Y_OK, ValueError, "fit_intercept must be True or False"),
        (xpnet.Perceptron(warm_start="no"), X_OK, Y_OK, ValueError, "warm_start must be True or False"),
        (xpnet.Perceptron(class_weight="even"), X_OK, Y_OK, ValueError,
         "class_weight must be None, 'balanced' or a dict of class label to weight, got 'even'"),
        (xpnet.Perceptron(class_weight={0: 2.0, 7: 1.0}), X_OK, Y_OK, ValueError,
         r"class_weight names labels \[7\] that are not classes of y \(\[0, 1\]\)"),
        (xpnet.Perceptron(penalty="l3"), X_OK, Y_OK, ValueError, "penalty must be None, 'l2', 'l1' or 'elasticnet', got 'l3'"),
        (xpnet.Perceptron(alpha=-1), X_OK, Y_OK, ValueError, "alpha must be >= 0.0, got -1"),
        (xpnet.Perceptron(l1_ratio=1.5), X_OK, Y_OK, ValueError, r"l1_ratio must lie in \[0.0, 1.0\], got 1.5"),
        (xpnet.Perceptron(early_stopping="no"), X_OK, Y_OK, ValueError, "early_stopping must be True or False"),
        (xpnet.Perceptron(validation_fraction=1.0), X_OK, Y_OK, ValueError, r"validation_fraction must lie in \(0.0, 1.0\)"),
        (xpnet.Perceptron(verbose=-1), X_OK, Y_OK, ValueError, "verbose must be True, False or an integer >= 0"),
        (xpnet.Perceptron(n_jobs="all"), X_OK, Y_OK, TypeError, "n_jobs must be None or an integer, got str 'all'"),
        (xpnet.Perceptron(early_stopping=True, validation_fraction=0.01), X_OK, Y_OK, ValueError,  # scikit-learn's split's
         "test_size = 1 should be greater or equal to the number of classes = 2"),
        (xpnet.LogisticRegression(standardize="no"), X_OK, Y_OK, ValueError, "standardize must be True or False"),
        (xpnet.LinearRegression(standardize="no"), X_OK, Y_OK, ValueError, "standardize must be True or False"),
    ],
)
def test_estimator_errors(est, X, y, exc, message):
    with pytest.raises(exc, match=message):
        est.fit(X, y)
    assert not hasattr(est, "model_")


def test_estimator_predict_checks_width():
    clf = xpnet.LogisticRegression().fit(X_OK, Y_OK)
    with pytest.raises(ValueError, match="X has 2 features, but LogisticRegression is expecting 3 features"):
        clf.predict(X_OK[:, :2])
