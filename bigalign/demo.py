"""The built-in demo data: layers of small networks trained on scikit-learn's digits.

Two multilayer perceptrons with the same architecture are trained from
different seeds on the 8×8 digits shipped with scikit-learn; their input,
hidden-layer and output activations on every image are written as two
activation stores with sample ids and the digit labels as ``targets``.
Nothing is downloaded.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from .io import ActivationWriter, open_activations

__all__ = ["build_demo_stores", "forward_activations"]

HIDDEN = (128, 64, 32)


def forward_activations(mlp, x: np.ndarray) -> dict[str, np.ndarray]:
    """Per-layer activations of a fitted ``sklearn.neural_network.MLPClassifier``."""
    acts = {"input": x.astype(np.float32)}
    h = x
    n_layers = len(mlp.coefs_)
    for k, (w, b) in enumerate(zip(mlp.coefs_, mlp.intercepts_)):
        h = h @ w + b
        if k < n_layers - 1:
            h = np.maximum(h, 0.0)  # relu
            acts[f"hidden{k + 1}"] = h.astype(np.float32)
        else:
            acts["logits"] = h.astype(np.float32)
    return acts


def build_demo_stores(
    directory: str | Path, seeds: tuple[int, int] = (0, 1), force: bool = False, say: Callable[[str], None] | None = None
) -> list[Path]:
    """Train one MLP per seed on digits and write its activations; reuse existing stores.

    ``say`` receives one line per step (e.g. ``print``), so a caller can narrate
    the training, which takes a while.  Returns the store paths (``model_seed<k>.zarr``).
    """
    say = say or (lambda msg: None)
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float64)
    ids = np.arange(x.shape[0])
    paths = []
    for seed in seeds:
        path = directory / f"model_seed{seed}.zarr"
        paths.append(path)
        if path.exists() and not force:
            try:
                old = open_activations(path)
                if old.n_samples == x.shape[0] and old.targets is not None:
                    say(f"seed {seed}: reusing {path}")
                    continue
            except Exception:
                pass
        say(f"seed {seed}: training an MLP{HIDDEN} on {x.shape[0]} digits images (up to 300 epochs) ...")
        t0 = time.perf_counter()
        mlp = MLPClassifier(hidden_layer_sizes=HIDDEN, max_iter=300, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            mlp.fit(x, digits.target)
        say(f"seed {seed}: trained in {time.perf_counter() - t0:.1f} s ({mlp.n_iter_} epochs, training accuracy "
            f"{mlp.score(x, digits.target):.3f}); writing its {len(mlp.coefs_) + 1} layers to {path}")
        acts = forward_activations(mlp, x)
        attrs = {"model": f"MLP{HIDDEN} on sklearn digits", "seed": seed, "train_accuracy": float(mlp.score(x, digits.target))}
        with ActivationWriter(path, mode="w", chunk_rows=256, attrs=attrs) as w:
            for start in range(0, x.shape[0], 500):
                sl = slice(start, start + 500)
                w.append({k: v[sl] for k, v in acts.items()}, sample_ids=ids[sl], targets=digits.target[sl])
    return paths
