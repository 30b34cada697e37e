"""The seed models as scikit-learn-style estimators, trained by xpnet's own backprop.

Conventions follow scikit-learn: the constructor only stores its arguments;
``fit`` checks them and the data, returns ``self`` and sets attributes ending
in ``_``; ``get_params``/``set_params`` make the estimators clone-able, so they
work in ``Pipeline`` and ``cross_val_score``. A ``fit`` that raises leaves the
attributes as they were. When scikit-learn is installed
the estimators derive from its ``BaseEstimator`` and mixins (tags, repr,
clone); without it a minimal base with the same methods stands in.

Parameter names are scikit-learn's where they overlap, plus ``backend=``,
``dtype=`` and ``fused=``, and for the MLPs ``matmul_precision=`` (see
:class:`~xpnet.network.Sequential`: "tf32" or "bf16" products on a GPU's tensor cores).
``dtype`` is "float32" or "float64" (or NumPy's types), or None to follow X: float32 X trains
in float32, anything else in float64 (the MLPs' default; the linear models default to "float64").

Modules: ``_base`` (what every estimator shares), ``linear`` (``LinearRegression``,
``LogisticRegression``, ``Perceptron``), ``mlp`` (``MLPClassifier``, ``MLPRegressor``).
"""

from . import linear as _linear
from .linear import LinearRegression, LogisticRegression, Perceptron
from .mlp import MLPClassifier, MLPRegressor, scikit_learn_initial_weights

__all__ = ["LinearRegression", "LogisticRegression", "Perceptron", "MLPClassifier", "MLPRegressor",
           "scikit_learn_initial_weights"]

# A Perceptron pickled before the estimators became a package names its fitted state here.
_LinearScorer = _linear._LinearScorer
