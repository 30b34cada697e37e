"""Plots are real PNG files with the expected content."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")
import xpnet  # noqa: E402
from xpnet.datasets import load_iris_binary  # noqa: E402
from xpnet.plotting import plot_decision_boundary, plot_history  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    import matplotlib.image as mpimg

    return mpimg.imread(path).shape


def test_history_plot(tmp_path):
    hist = {"loss": [1.0, 0.5, 0.3], "val_loss": [1.1, 0.6, 0.4], "accuracy": [0.5, 0.8, 0.9], "val_accuracy": [0.4, 0.7, 0.85]}
    path = plot_history(hist, tmp_path / "h.png", title="test")
    assert path.read_bytes()[:8] == PNG
    h, w, _ = png_size(path)
    assert w > h > 200


def test_iris_decision_boundary(tmp_path):
    X_tr, y_tr, X_te, y_te = load_iris_binary()
    X, y = np.vstack([X_tr, X_te]), np.concatenate([y_tr, y_te])
    clf = xpnet.LogisticRegression().fit(X, y)
    path = plot_decision_boundary(clf, X, y, tmp_path / "boundary.png", feature_names=("sepal length (cm)", "sepal width (cm)"))
    assert path.read_bytes()[:8] == PNG
    image = png_size(path)
    assert image[0] > 200 and image[1] > 200
    with pytest.raises(ValueError, match="shape \\(n_samples, 2\\)"):
        plot_decision_boundary(clf, np.zeros((3, 3)), np.zeros(3))
