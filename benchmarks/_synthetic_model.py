"""A deterministic synthetic "language model": L layers of width d in bfloat16, generated block by block.

Layer l of sample i is   x_l(i) = F(i)·diag(w_l)·B_l + noise_l(i) + μ_l   where

* F(i) are K latent factors shared by every layer (a seeded generator per row chunk);
* w_l weights the factors by depth (factor k peaks at depth k/(K−1); three factors weigh the same
  everywhere), so neighbouring layers
  share almost all of their signal and distant ones little: CKA spans ≈ 0.1–0.99;
* B_l is a layer's own random K × d read-out with orthogonal rows (every layer has its own basis);
* the noise has a power-law spectrum (column scales ∝ (c+1)^−½, as residual streams do),
  96% of it shared by all layers (a residual stream carries it along) and 4% the layer's own;
  it is drawn from a fixed pool of rows at seeded offsets, so generating costs a gather, not
  a Gaussian per entry;
* μ_l has three "massive activation" coordinates of 30 and small offsets elsewhere.

Every block is a pure function of (seed, layer, chunk), so any reader, pass or worker sees
the same data; a dask array of each layer wraps the generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import dask.array as da
import ml_dtypes
import numpy as np

BF16 = np.dtype(ml_dtypes.bfloat16)


@dataclass(frozen=True)
class Model:
    n: int
    d: int
    layers: int = 33
    factors: int = 24
    floor: float = 0.7  # weight of the first 3 factors in every layer (a shared floor of CKA)
    own: float = 0.04  # share of the noise variance that is the layer's own
    chunk: int = 2048
    seed: int = 0
    pool_rows: int = 8192
    noise: float = 0.35
    width: float = 0.18
    dtype: str = "bfloat16"


@lru_cache(maxsize=4)
def _pool(m: Model) -> np.ndarray:
    rng = np.random.default_rng([m.seed, 1])
    scale = m.noise * (np.arange(m.d) + 1.0) ** -0.5 * np.sqrt(m.d / np.sum(1.0 / (np.arange(m.d) + 1.0)))
    return (rng.standard_normal((m.pool_rows, m.d), dtype=np.float32) * scale.astype(np.float32)).astype(np.float32)


@lru_cache(maxsize=256)
def _layer_params(m: Model, l: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([m.seed, 2, l])
    centres = np.linspace(0, 1, m.factors)
    depth = l / max(m.layers - 1, 1)
    w = np.exp(-((depth - centres) ** 2) / (2 * m.width**2))
    w[:3] = m.floor
    readout = np.linalg.qr(rng.standard_normal((m.d, m.factors)))[0].T * np.sqrt(m.d / m.factors)  # orthogonal rows
    mix = (w[:, None] * readout).astype(np.float32)
    mu = (0.1 * rng.standard_normal(m.d)).astype(np.float32)
    mu[:3] = 30.0
    return mix, mu


def _rows(pool: np.ndarray, offset: int, rows: int) -> np.ndarray:
    idx = (offset + np.arange(rows)) % pool.shape[0]
    return pool[idx]


def block(m: Model, l: int, c: int) -> np.ndarray:
    """Rows [c·chunk, (c+1)·chunk) of layer l, in the model's dtype."""
    start = c * m.chunk
    rows = min(m.chunk, m.n - start)
    f = np.random.default_rng([m.seed, 3, c]).standard_normal((rows, m.factors), dtype=np.float32)
    o_shared = int(np.random.default_rng([m.seed, 4, c]).integers(m.pool_rows))
    o_own = int(np.random.default_rng([m.seed, 5, l, c]).integers(m.pool_rows))
    pool = _pool(m)
    mix, mu = _layer_params(m, l)
    x = f @ mix
    x += np.float32(np.sqrt(1 - m.own)) * _rows(pool, o_shared, rows)
    x += np.float32(np.sqrt(m.own)) * _rows(pool, o_own, rows)
    x += mu
    return x.astype(BF16 if m.dtype == "bfloat16" else np.dtype(m.dtype))


def _gen(m: Model, l: int, block_id=None):  # noqa: ANN001 - dask's map_blocks signature
    return block(m, l, block_id[0])


def layer_array(m: Model, l: int) -> da.Array:
    full, rem = divmod(m.n, m.chunk)
    chunks = ((m.chunk,) * full + ((rem,) if rem else ()), (m.d,))
    dt = BF16 if m.dtype == "bfloat16" else np.dtype(m.dtype)
    return da.map_blocks(_gen, m, l, chunks=chunks, dtype=dt, meta=np.empty((0, 0), dtype=dt),
                         name=f"synthetic-{m.seed}-{m.n}-{m.d}-{l}")  # fmt: skip


def model_layers(m: Model) -> dict[str, da.Array]:
    return {f"layer{l:02d}": layer_array(m, l) for l in range(m.layers)}
