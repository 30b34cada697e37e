"""scikit-learn's own estimator checks pass with no failure for every xpnet estimator."""

from __future__ import annotations

import warnings

import pytest

import xpnet

sklearn = pytest.importorskip("sklearn")
from sklearn.utils.estimator_checks import check_estimator  # noqa: E402

ESTIMATORS = [
    xpnet.MLPClassifier(max_iter=100),
    xpnet.MLPRegressor(max_iter=100),
    xpnet.LogisticRegression(max_iter=50),
    xpnet.Perceptron(max_iter=20),
    xpnet.LinearRegression(max_iter=50),
]


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_check_estimator_has_no_failures(estimator):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at small max_iter, checks' own notes
        results = check_estimator(estimator, on_fail=None)
    failed = [f"{r['check_name']}: {str(r['exception']).splitlines()[0] if str(r['exception']) else type(r['exception']).__name__}"
              for r in results if r["status"] == "failed"]
    assert len(results) > 40  # the checks ran
    assert failed == []


def test_tags_declare_targets_and_array_api_support():
    from sklearn.utils import get_tags

    assert get_tags(xpnet.MLPClassifier()).classifier_tags.multi_label
    assert get_tags(xpnet.MLPRegressor()).target_tags.multi_output
    assert not get_tags(xpnet.LogisticRegression()).target_tags.multi_output
    assert all(get_tags(e).array_api_support for e in ESTIMATORS)
