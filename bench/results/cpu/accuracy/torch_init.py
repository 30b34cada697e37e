"""Does the initial draw explain an accuracy gap between xpnet and PyTorch? xpnet-numpy-fused on
the reference task (10 epochs, Adam 1e-3, batch 128), started from weights and biases drawn as
``torch.nn.Linear`` draws them, U(-1/sqrt(fan_in), +1/sqrt(fan_in)), instead of xpnet's Glorot
uniform with zero biases. Shuffles are the model's own, from its seed, as in ``bench.accuracy``.

    PYTHONPATH=. python bench/results/cpu/accuracy/torch_init.py > bench/results/cpu/accuracy/torch_init.txt
"""
import numpy as np

from bench.task import REFERENCE, load_data
from xpnet import Adam, Sequential
from xpnet.layers import dense_stack

task = REFERENCE.but(epochs=10)
X_train, y_train, X_test, y_test = load_data(task)
accuracies = []
for seed in range(10):
    model = Sequential(dense_stack(task.widths, task.activation), loss=task.loss, backend="numpy", seed=seed)
    rng = np.random.default_rng(1000 + seed)  # not the model's generator: its shuffles stay as they were
    params = []
    for fan_in, fan_out in zip(task.widths, task.widths[1:]):
        bound = 1 / np.sqrt(fan_in)
        params += [rng.uniform(-bound, bound, (fan_in, fan_out)), rng.uniform(-bound, bound, fan_out)]
    model.set_parameters([p.astype(np.float32) for p in params])
    model.fit(X_train, y_train, epochs=task.epochs, batch_size=task.batch_size, optimizer=Adam(task.lr))
    accuracies.append(model.evaluate(X_test, y_test)["accuracy"])
    print(f"seed {seed}: {accuracies[-1]:.4f}", flush=True)
print(f"mean {np.mean(accuracies):.4f}, sample std {100 * np.std(accuracies, ddof=1):.2f} points")
