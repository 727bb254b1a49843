"""Capture a PyTorch model's layers with bigalign.capture, then compare two models layer by layer.

    python examples/capture_torch.py [--epochs 20] [--out capture-out]

Needs PyTorch (pip install 'bigalign[torch]'). Two small MLPs that differ only in
their random seed are trained briefly on scikit-learn's digits; the activations
of every layer on all 1,797 images are written, batch by batch with sample ids,
by forward hooks; then the layer x layer CKA matrix between the two models is
printed. Runs in a few seconds on a CPU.
"""

import argparse
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import bigalign
from bigalign.capture import capture

LAYERS = ["fc1", "relu1", "fc2", "relu2", "logits"]


def make_model(seed):
    torch.manual_seed(seed)
    return nn.Sequential(
        OrderedDict(
            fc1=nn.Linear(64, 128),
            relu1=nn.ReLU(),
            fc2=nn.Linear(128, 64),
            relu2=nn.ReLU(),
            logits=nn.Linear(64, 10),
        )
    )


def train(model, x, y, epochs, seed):
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    with torch.no_grad():
        return (model.eval()(x).argmax(1) == y).float().mean().item()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--out", default="capture-out")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    torch.set_num_threads(1)  # tiny matrices: more threads only add overhead

    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    # The same samples, in the same order, for both models: shuffle=False, so the
    # running-index sample ids (0..1796) name the same images in both stores.
    loader = DataLoader(TensorDataset(x, y), batch_size=512, shuffle=False)

    stores = {}
    for name, seed in [("a", 0), ("b", 1)]:
        t0 = time.perf_counter()
        model = make_model(seed)
        acc = train(model, x, y, args.epochs, seed)
        stores[name] = capture(model, LAYERS, loader, out / f"{name}.zarr", mode="w", attrs={"seed": seed})
        print(f"model {name} (seed {seed}): train accuracy {acc:.3f}, captured in {time.perf_counter() - t0:.1f} s")
    a, b = stores["a"], stores["b"]
    print(a)

    t0 = time.perf_counter()
    m = bigalign.compare_layers(a, b, metric="cka")  # unbiased (debiased) linear CKA
    print(f"layer x layer CKA (rows: model a, columns: model b), {time.perf_counter() - t0:.1f} s:")
    print(" " * 8 + "".join(f"{lb:>8s}" for lb in m.layers_b))
    for la, row in zip(m.layers_a, m.values):
        print(f"{la:8s}" + "".join(f"{v:8.3f}" for v in np.ma.filled(row, np.nan)))


if __name__ == "__main__":
    main()
