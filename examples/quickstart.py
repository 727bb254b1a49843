"""Quick start: write two activation stores, compare them exactly, layer by layer.

    python examples/quickstart.py [--n 200000] [--out quickstart-out]

Two toy "models" share a latent signal; their layers are written batch by batch
(as a capture hook would) with sample ids, then compared with exact linear CKA,
streamed block by block — memory stays O(d²) whatever --n is.
"""

import argparse
import time
from pathlib import Path

import numpy as np

import bigalign


def write_model(path, seed, n, batch=20_000, d_latent=32):
    rng_w = np.random.default_rng(seed)
    w1 = rng_w.normal(size=(d_latent, 256)) / np.sqrt(d_latent)
    w2 = rng_w.normal(size=(256, 128)) / 16
    with bigalign.ActivationWriter(path, mode="w", attrs={"model": f"toy-{seed}"}) as writer:
        for start in range(0, n, batch):
            stop = min(start + batch, n)
            rng = np.random.default_rng([7, start])  # the same inputs for both models
            z = rng.normal(size=(stop - start, d_latent))
            h1 = np.maximum(z @ w1, 0)
            h2 = np.tanh(h1 @ w2)
            writer.append(
                {"block1": h1.astype(np.float32), "block2": h2.astype(np.float32)},
                sample_ids=np.arange(start, stop),
            )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--out", default="quickstart-out")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    write_model(out / "a.zarr", seed=0, n=args.n)
    write_model(out / "b.zarr", seed=1, n=args.n)
    print(f"wrote two stores of {args.n} samples in {time.perf_counter() - t0:.1f} s")

    a = bigalign.open_activations(out / "a.zarr")
    b = bigalign.open_activations(out / "b.zarr")
    print(a)

    t0 = time.perf_counter()
    r = bigalign.cka(a["block2"], b["block2"])  # unbiased (debiased) CKA by default
    print(f"{r}  ({time.perf_counter() - t0:.1f} s)")

    t0 = time.perf_counter()
    m = bigalign.compare_layers(a, b, metric="cka")
    print(f"layer x layer CKA in {m.n_passes} pass(es), {time.perf_counter() - t0:.1f} s:")
    for la, row in zip(m.layers_a, m.values):
        print(f"  {la:8s}", "  ".join(f"{v:.4f}" for v in row))


if __name__ == "__main__":
    main()
