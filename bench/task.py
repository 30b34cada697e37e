"""The MNIST reference task, written down in one place.

MNIST 60k/10k, pixels / 255, network 784-256-128-10, sigmoid, softmax
cross-entropy, Adam lr 1e-3, batch 128, float32, shuffled each epoch, seed 0.
Every contestant trains exactly this unless the command line overrides a field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

MNIST_DIR = Path(__file__).resolve().parent / "data" / "mnist"


@dataclass(frozen=True)
class Task:
    hidden: tuple[int, ...] = (256, 128)
    activation: str = "sigmoid"
    loss: str = "softmax_cross_entropy"
    optimizer: str = "adam"
    lr: float = 1e-3
    batch_size: int = 128
    dtype: str = "float32"
    seed: int = 0
    epochs: int = 5
    train_samples: int = 60000
    test_samples: int = 10000
    data_dir: str = str(MNIST_DIR)
    n_features: int = 784
    n_classes: int = 10
    extra: dict = field(default_factory=dict)

    @property
    def widths(self) -> list[int]:
        return [self.n_features, *self.hidden, self.n_classes]

    def describe(self) -> str:
        return (f"MNIST {self.train_samples // 1000}k/{self.test_samples // 1000}k, "
                f"{'-'.join(map(str, self.widths))} {self.activation}, softmax CE, {self.optimizer} lr {self.lr:g}, "
                f"batch {self.batch_size}, {self.dtype}, seed {self.seed}, {self.epochs} epochs")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Task":
        d = dict(d)
        d["hidden"] = tuple(d["hidden"])
        return cls(**d)

    def but(self, **changes) -> "Task":
        return replace(self, **changes)


REFERENCE = Task()


def load_data(task: Task):
    """``(X_train, y_train, X_test, y_test)`` as NumPy float32/int64, cut to the task's sizes."""
    from xpnet.datasets import load_mnist

    X_train, y_train, X_test, y_test = load_mnist(task.data_dir, download=False)
    return X_train[: task.train_samples], y_train[: task.train_samples], X_test[: task.test_samples], y_test[: task.test_samples]
