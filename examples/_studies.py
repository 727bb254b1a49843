"""Shared helpers of the three studies (layers_one_model, two_modalities, scale_run).

Data: scikit-learn's 8×8 digits (shipped with scikit-learn, nothing is downloaded),
pixels scaled to [0, 1].  Networks: ``sklearn.neural_network.MLPClassifier`` (ReLU,
Adam), read layer by layer with :func:`bigalign.demo.forward_activations`.
"""

from __future__ import annotations

import os
import resource
import time
import warnings
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any, Iterator, Sequence

import numpy as np

from bigalign.demo import forward_activations

__all__ = [
    "digits",
    "forward_activations",
    "glorot_network",
    "layer_names",
    "offdiag",
    "peak_rss_mb",
    "spearman",
    "split_halves",
    "train_mlp",
    "Timer",
]


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digits: (x of shape (1797, 64) in [0, 1], integer labels)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data / 16.0).astype(np.float64), d.target.astype(np.int64)


def split_halves(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of range(n) into a training half and an evaluation half (sorted indices)."""
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2 :])


def train_mlp(x: np.ndarray, labels: np.ndarray, hidden: Sequence[int], seed: int, max_iter: int = 200) -> Any:
    """A fitted MLPClassifier (ReLU, Adam, sklearn defaults otherwise); convergence warnings silenced."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    mlp = MLPClassifier(hidden_layer_sizes=tuple(hidden), max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(x, labels)
    return mlp


def glorot_network(sizes: Sequence[int], seed: int) -> SimpleNamespace:
    """An untrained network with sklearn's initialisation for ReLU MLPs (Glorot uniform, weights and biases).

    Has ``coefs_`` and ``intercepts_`` like a fitted MLPClassifier, so
    :func:`forward_activations` reads it the same way.
    """
    rng = np.random.default_rng(seed)
    coefs, intercepts = [], []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        coefs.append(rng.uniform(-bound, bound, size=(fan_in, fan_out)))
        intercepts.append(rng.uniform(-bound, bound, size=fan_out))
    return SimpleNamespace(coefs_=coefs, intercepts_=intercepts)


def layer_names(n_hidden: int) -> list[str]:
    """The layer names :func:`forward_activations` produces for ``n_hidden`` hidden layers."""
    return ["input", *[f"hidden{k + 1}" for k in range(n_hidden)], "logits"]


def offdiag(m: np.ndarray) -> np.ndarray:
    """The strictly upper-triangular entries of a square matrix (i < j), row by row."""
    m = np.asarray(m)
    return m[np.triu_indices(m.shape[0], k=1)]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two equally long vectors."""
    from scipy.stats import spearmanr

    return float(spearmanr(np.ravel(a), np.ravel(b)).statistic)


def peak_rss_mb() -> float:
    """This process's peak resident set size since exec, in MiB: VmHWM of /proc/self/status
    (ru_maxrss where /proc is unavailable)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Timer:
    """Wall and CPU seconds (this process, all threads) of a ``with`` block: ``.wall``, ``.cpu``."""

    def __enter__(self) -> "Timer":
        self._w = time.perf_counter()
        self._c = _cpu()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall = time.perf_counter() - self._w
        self.cpu = _cpu() - self._c


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Pin BLAS to one thread: the matrices here are small (≤ 256 columns), and on a busy
    machine OpenBLAS's spinning helper threads made training ~70× slower (measured for
    examples/stitching_digits.py)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def load_average() -> float | None:
    """The 1-minute load average of the machine (it is shared; reported beside timings)."""
    try:
        return float(os.getloadavg()[0])
    except OSError:
        return None
