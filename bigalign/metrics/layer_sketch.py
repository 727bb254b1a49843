"""Linear CKA layer matrices of wide, many-layer models: projected cross-moments with error bars.

The exact layer matrix of L layers of width d costs about n·d²·L²  flops
(every pair's d×d cross-moment) — at d = 4,096, L = 33 and n = 10⁵ some 10¹⁵
flops. This road replaces each layer by a small streamed summary and still
reports, for every cell, how far it can be from the exact value on the same rows.

Per layer k (centred rows uᵢ, co-moment M_k = Σ uᵢuᵢᵀ, cross-moment M_kl = Σ uᵢvᵢᵀ):

1. **Subspace passes.** A randomized range finder (Halko, Martinsson & Tropp 2011)
   on the streamed sketch M_k·Ω_k (Ω_k a seeded d×r Gaussian), optionally
   refined by power passes M_k·Q, gives an orthonormal basis Q_k (d×r) of the
   layer's dominant directions (P_k = Q_kQ_kᵀ). The same pass gives the exact means.
   A layer with d ≤ r keeps all of its coordinates (Q_k = I): exact.
2. **One projection pass.** Every block is centred with the exact means and
   projected on W_k = [Q_k, (I − P_k)G_k] (G_k a fresh seeded d×m Gaussian, the
   *probes*); one Gram matrix of all projections Σ yᵢyᵢᵀ is accumulated, with
   the exact row norms pᵢ = ‖uᵢ‖² of every layer (Σ pᵢ⁽ᵏ⁾pᵢ⁽ˡ⁾, Σ pᵢ⁽ᵏ⁾).

With R_k the part of the rows outside span Q_k, ‖M_kl‖²_F splits *exactly*
into four non-negative orthogonal blocks:

    ‖M_kl‖² = ‖Q_kᵀM_klQ_l‖²  (head, exact from the Gram)
            + ‖Q_kᵀM_kl(I−P_l)‖² + ‖(I−P_k)M_klQ_l‖²  (head–tail)
            + ‖(I−P_k)M_kl(I−P_l)‖²                  (tail–tail)

The three discarded blocks are *estimated* without bias from the probes (each
probe column gives an independent unbiased estimate of a head–tail block; each
pair of probe columns of the tail–tail block), with a standard error from the
spread of those estimates. They are also *bounded*: writing K_kh, K_kt for the
n×n Gram matrices of the head and tail parts (both PSD),
tr(K_kh·K_lt) ≤ λ_max(K_kh)·tr(K_lt) = ‖B_k‖₂·t_l, with B_k = Q_kᵀM_kQ_k and
t_l = tr M_l − tr B_l the tail trace (exact), and tr(K_kt·K_lt) ≤ t_k·t_l. So

    head ≤ ‖M_kl‖² ≤ head + ‖B_k‖₂·t_l + t_k·‖B_l‖₂ + t_k·t_l      (certified)

and for a layer with itself ‖B_k‖² + t_k²/min(d−r, n) ≤ ‖M_k‖² ≤ ‖B_k‖² + 2‖B_k‖₂t_k + t_k².
Everything else in CKA is exact: the unbiased HSIC (Song et al. 2007)

    HSIC_u = [‖M_kl‖² − n/(n−2)·Σpᵢqᵢ + Σpᵢ·Σqᵢ/((n−1)(n−2))] / (n(n−3))

needs only ‖M_kl‖² beyond the exact row-norm sums, so bounds and standard
errors carry over to HSIC_u linearly, and to CKA by interval arithmetic (bounds)
and the first-order delta method (standard errors, summed rather than added in
quadrature, which covers any correlation between them). The biased (V-statistic)
CKA ‖M_kl‖²/(‖M_k‖‖M_l‖) is supported the same way.

The certified bounds are tight only when the discarded tail is small; for the
heavy-tailed spectra of real activations they are wide, and the standard error
is the working accuracy (it shrinks as 1/√m in the probes and with the tail's
share of ‖M_kl‖²).

Precision: float16/bfloat16/float32 inputs are converted once per block to
float32, products are float32 per block and every sum across blocks is float64;
float64 inputs are computed in float64 throughout (a layer with d ≤ rank is
then exact to rounding).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence, Unpack

import numpy as np
from dask.sizeof import sizeof
from threadpoolctl import threadpool_limits

from .._checks import raise_nonfinite
from ..engine import run, task_budget
from ..errors import DegenerateInputError, InvalidInputError
from ..io import ActivationStore, Representation, as_representation, check_pairing, open_activations
from ..result import Result
from ._common import ESTIMATORS, check_choice, check_int, check_unbiased_n, engine_parameters
from ..options import EngineKwargs, EngineOptions

__all__ = [
    "DEFAULT_PROBES",
    "DEFAULT_RANK",
    "SketchedCKAMatrix",
    "SketchedResult",
    "choose_layer_road",
    "cka_matrix_sketched",
    "predict_layer_matrix_seconds",
    "sketched_cka_cells",
]

METHOD = "sketch"
DEFAULT_RANK = 128
DEFAULT_PROBES = 32
#: the projected road's sizes, as keyword arguments (also through compare_layers' ``metric_options``)
SKETCH_OPTIONS = ("rank", "n_probes", "n_power_iter")
#: rows of every layer read once to fix the provisional shift of the sketch passes
SHIFT_ROWS = 1024


# --------------------------------------------------------------------------- #
# result types
# --------------------------------------------------------------------------- #


def _finite_or_none(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


@dataclass(frozen=True)
class SketchedResult(Result):
    """A :class:`~bigalign.result.Result` with a certified interval for the exact value.

    ``bounds`` = (lo, hi) contains the exact (same rows, float64) value of the
    estimator; ``-inf``/``inf`` where nothing finite is certified. ``stderr`` is
    the standard error of ``value`` against that exact value.
    """

    bounds: tuple[float, float] = (-math.inf, math.inf)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["bounds"] = [_finite_or_none(self.bounds[0]), _finite_or_none(self.bounds[1])]
        return out


@dataclass(frozen=True)
class SketchedCKAMatrix:
    """The layer × layer CKA matrix from :func:`cka_matrix_sketched`.

    ``values``, ``stderr``, ``lower`` and ``upper`` are (L, L) float arrays
    (NaN where a cell is undefined, see ``undefined``); ``results[i][j]`` is the
    cell's :class:`SketchedResult` or None.
    """

    layers: list[str]
    results: list[list[SketchedResult | None]]
    undefined: dict[tuple[int, int], str] = field(default_factory=dict)
    n_samples: int = 0
    estimator: str = "unbiased"
    n_passes: int = 0
    parameters: Mapping[str, Any] = field(default_factory=dict)

    def _grid(self, get: Any) -> np.ndarray:
        return np.array([[np.nan if r is None else get(r) for r in row] for row in self.results], dtype=float)

    @property
    def values(self) -> np.ndarray:
        return self._grid(lambda r: r.value)

    @property
    def stderr(self) -> np.ndarray:
        return self._grid(lambda r: r.stderr)

    @property
    def lower(self) -> np.ndarray:
        return self._grid(lambda r: r.bounds[0])

    @property
    def upper(self) -> np.ndarray:
        return self._grid(lambda r: r.bounds[1])

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": "cka",
            "method": METHOD,
            "estimator": self.estimator,
            "n_samples": self.n_samples,
            "layers": list(self.layers),
            "n_passes": self.n_passes,
            "results": [[None if r is None else r.to_dict() for r in row] for row in self.results],
            "undefined": {f"{self.layers[i]}|{self.layers[j]}": why for (i, j), why in self.undefined.items()},
        }


# --------------------------------------------------------------------------- #
# block helpers
# --------------------------------------------------------------------------- #


def compute_dtype(reps: Sequence[Representation]) -> np.dtype:
    """float64 when any input is float64 (exactness), else float32 (bfloat16/float16/float32/int)."""
    return np.dtype(np.float64) if any(r.dtype == np.float64 for r in reps) else np.dtype(np.float32)


def _as_compute(block: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The block in the compute dtype, converted once (bfloat16 → float32 is exact)."""
    return np.asarray(block).astype(dtype, copy=False)


def _centred(block: np.ndarray, shift: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """block − shift in the compute dtype: one converted copy, centred in place (the raw block can go)."""
    u = np.array(block, dtype=dtype, copy=True)
    u -= shift.astype(dtype)
    return u


def _check_rows(x: np.ndarray, p: np.ndarray, name: str, start: int) -> None:
    """Raise for non-finite rows, or for finite rows whose squares overflow the compute dtype."""
    if np.isfinite(p).all():
        return
    if not np.isfinite(x).all():
        raise_nonfinite(x, name, start)
    raise InvalidInputError(
        f"{name} has values too large for {x.dtype} products (rows {start}..{start + x.shape[0] - 1}: squared "
        "row norms overflow). Rescale the input (CKA is scale invariant), or pass float64 data, which is "
        "computed in float64."
    )


# --------------------------------------------------------------------------- #
# pass 1 (and power passes): M·Ω of every layer, with the means and traces
# --------------------------------------------------------------------------- #


@dataclass
class _SketchState:
    n: int
    colsum: list[np.ndarray]  # Σ (xᵢ − s)          float64
    sq: list[float]  # Σ ‖xᵢ − s‖²
    S: list[np.ndarray]  # Σ (xᵢ − s)(xᵢ − s)ᵀΩ  float64 (d × ℓ)


@dataclass(frozen=True, eq=False)
class _SketchStatistic:
    """Σ (x−s)(x−s)ᵀΩ per layer about a fixed provisional shift s: plain sums, so merging is addition."""

    names: tuple[str, ...]
    shifts: tuple[np.ndarray, ...]
    tests: tuple[np.ndarray, ...]  # compute dtype, d × ℓ (ℓ = 0: means and trace only)
    dtype: Any
    #: the engine hands blocks that are read when indexed: a task holds one layer's block at a time
    lazy_blocks: ClassVar[bool] = True

    def partial(self, blocks: Sequence[np.ndarray], start: int) -> _SketchState:
        colsum, sq, S = [], [], []
        rows = 0
        for k in range(len(blocks)):
            u = _centred(blocks[k], self.shifts[k], self.dtype)
            rows = u.shape[0]
            p = np.einsum("ij,ij->i", u, u)
            _check_rows(u, p, self.names[k], start)
            colsum.append(u.sum(axis=0, dtype=np.float64))
            sq.append(float(p.sum(dtype=np.float64)))
            om = self.tests[k]
            S.append((u.T @ (u @ om)).astype(np.float64) if om.shape[1] else np.zeros((u.shape[1], 0)))
            del u
        return _SketchState(n=rows, colsum=colsum, sq=sq, S=S)

    def combine(self, a: _SketchState, b: _SketchState) -> _SketchState:
        return _SketchState(
            n=a.n + b.n,
            colsum=[x + y for x, y in zip(a.colsum, b.colsum)],
            sq=[x + y for x, y in zip(a.sq, b.sq)],
            S=[x + y for x, y in zip(a.S, b.S)],
        )

    def finalize(self, state: _SketchState) -> _SketchState:
        return state


@sizeof.register(_SketchState)
def _sizeof_sketch(s: _SketchState) -> int:
    return int(sum(a.nbytes for a in s.colsum) + sum(a.nbytes for a in s.S)) + 8 * len(s.sq) + 64


def _centred_sketch(state: _SketchState, k: int, shift: np.ndarray, omega: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(mean, M·Ω, tr M) of layer k: Σ(x−s)(x−s)ᵀ = M + n·δδᵀ with δ = mean − s."""
    n = state.n
    delta = state.colsum[k] / n
    mean = shift + delta
    MO = state.S[k] - n * np.outer(delta, delta @ omega.astype(np.float64)) if omega.shape[1] else state.S[k]
    return mean, MO, state.sq[k] - n * float(delta @ delta)


# --------------------------------------------------------------------------- #
# the projection pass: one Gram of every layer's [head | probes] coordinates
# --------------------------------------------------------------------------- #


@dataclass
class _GramState:
    """Σ yᵢyᵢᵀ of all layers' projections stacked (float64), kept as its upper block triangle:
    ``strips[k]`` = the rows of layer k, columns of layers k, k+1, … (half the memory of the full matrix)."""

    n: int
    strips: list[np.ndarray]
    pp: np.ndarray  # (L, L)  Σ pᵢ⁽ᵏ⁾pᵢ⁽ˡ⁾
    psum: np.ndarray  # (L,)   Σ pᵢ⁽ᵏ⁾

    @property
    def gram(self) -> np.ndarray:
        """The full symmetric Gram matrix."""
        width = self.strips[0].shape[1]
        g = np.empty((width, width))
        off = 0
        for s in self.strips:
            w = s.shape[0]
            g[off : off + w, off:] = s
            g[off + w :, off : off + w] = s[:, w:].T
            off += w
        return g


@dataclass(frozen=True, eq=False)
class _GramStatistic:
    names: tuple[str, ...]
    means: tuple[np.ndarray, ...]
    bases: tuple[Any, ...]  # per layer: W_k (d × w_k, compute dtype) or None (identity: all coordinates)
    dtype: Any
    #: the engine hands blocks that are read when indexed: a task holds one layer's block at a time
    lazy_blocks: ClassVar[bool] = True

    def partial(self, blocks: Sequence[np.ndarray], start: int) -> _GramState:
        L = len(blocks)
        widths = [m.shape[0] if b is None else b.shape[1] for m, b in zip(self.means, self.bases)]
        offs = np.concatenate([[0], np.cumsum(widths)]).astype(int)
        y = P = None
        for k in range(L):
            u = _centred(blocks[k], self.means[k], self.dtype)
            p = np.einsum("ij,ij->i", u, u)
            _check_rows(u, p, self.names[k], start)
            if y is None:  # all projections side by side, filled layer by layer
                y = np.empty((u.shape[0], offs[-1]), dtype=self.dtype)
                P = np.empty((u.shape[0], L))
            y[:, offs[k] : offs[k + 1]] = u if self.bases[k] is None else u @ self.bases[k]
            P[:, k] = p
            del u
        strips = [(y[:, offs[k] : offs[k + 1]].T @ y[:, offs[k] :]).astype(np.float64) for k in range(L)]
        return _GramState(n=y.shape[0], strips=strips, pp=P.T @ P, psum=P.sum(axis=0))

    def combine(self, a: _GramState, b: _GramState) -> _GramState:
        return _GramState(n=a.n + b.n, strips=[x + y for x, y in zip(a.strips, b.strips)], pp=a.pp + b.pp,
                          psum=a.psum + b.psum)  # fmt: skip

    def finalize(self, state: _GramState) -> _GramState:
        return state


@sizeof.register(_GramState)
def _sizeof_gram(s: _GramState) -> int:
    return int(sum(x.nbytes for x in s.strips) + s.pp.nbytes + s.psum.nbytes) + 64


# --------------------------------------------------------------------------- #
# estimates of the discarded blocks
# --------------------------------------------------------------------------- #


def _colmean_se(c: np.ndarray) -> tuple[float, float]:
    """Mean of iid probe estimates cᵦ = ‖W g̃ᵦ‖² and its standard error.

    The sample spread under-states the error when W has few large singular
    values (cᵦ is then nearly χ²₁, skewed); for Gaussian probes Var cᵦ =
    2‖WᵀW‖²_F ≤ 2(E cᵦ)², so the standard error is at most √(2/m)·E c.
    We report the larger of the sample value and that worst case
    at the estimate (honest for any tail spectrum).
    """
    m = c.size
    if m == 0:
        return 0.0, 0.0
    est = float(c.mean())
    emp = float(c.std(ddof=1) / math.sqrt(m)) if m > 1 else math.inf
    return est, max(emp, math.sqrt(2.0 / m) * est)


def _two_sample_se(x2: np.ndarray) -> tuple[float, float]:
    """Mean of x2[a, b] over independent probe columns a (rows) and b (columns), and its standard error.

    First-order (Hoeffding) variance of a two-sample mean: Var(row means)/m_a + Var(column means)/m_b.
    """
    ma, mb = x2.shape
    if ma == 0 or mb == 0:
        return 0.0, 0.0
    est = float(x2.mean())
    if ma < 2 or mb < 2:
        return est, math.inf
    var = x2.mean(axis=1).var(ddof=1) / ma + x2.mean(axis=0).var(ddof=1) / mb
    # worst case over tail spectra (rank one): Var ≤ (2/m_a + 2/m_b + 8/(m_a·m_b))·(E x)²
    worst = (2.0 / ma + 2.0 / mb + 8.0 / (ma * mb)) * est * est
    return est, float(math.sqrt(max(var, worst)))


def _one_sample_se(x2: np.ndarray) -> tuple[float, float]:
    """Mean of x2[a, b] over a ≠ b for symmetric x2 (the same probes on both sides), and its standard error.

    A U-statistic of order 2 in the probe columns: Var ≈ 4·Var(h₁)/m, h₁(a) the mean over b ≠ a.
    """
    m = x2.shape[0]
    if m < 2:
        return 0.0, (0.0 if m == 0 else math.inf)
    off = x2.sum(axis=1) - np.diag(x2)
    est = float(off.sum() / (m * (m - 1)))
    if m < 3:
        return est, math.inf
    h1 = off / (m - 1)
    # worst case over tail spectra (rank one): Var h₁ ≤ 2(E x)², plus the degenerate part 8(E x)²/(m(m−1))
    worst = (8.0 / m + 16.0 / (m * (m - 1))) * est * est
    return est, float(math.sqrt(max(4.0 * h1.var(ddof=1) / m, worst)))


@dataclass
class _Layer:
    """What the passes know about one layer: its slice of the Gram, head size, tail trace."""

    name: str
    d: int
    head: slice
    probes: slice
    trace: float  # tr M (exact)
    head_norm2: float  # ‖B‖₂ (B = QᵀMQ)
    head_frob2: float  # ‖B‖²_F
    tail: float  # t = tr M − tr B ≥ 0 (up to rounding)
    full: bool  # all coordinates kept: exact


def _pair_frob2(g: np.ndarray, a: _Layer, b: _Layer, same: bool, n: int) -> tuple[float, float, float, float]:
    """(estimate, stderr, certified lo, certified hi) of ‖M_ab‖²_F from the Gram."""
    hh = g[a.head, b.head]
    head = float(np.vdot(hh, hh))
    ht = g[a.head, b.probes]  # Q_aᵀ M (I−P_b) G_b
    th = g[a.probes, b.head]
    tt = g[a.probes, b.probes]
    e_ht, s_ht = _colmean_se((ht * ht).sum(axis=0))
    e_th, s_th = _colmean_se((th * th).sum(axis=1))
    e_tt, s_tt = (_one_sample_se if same else _two_sample_se)(tt * tt)
    tail_a, tail_b = max(a.tail, 0.0), max(b.tail, 0.0)
    if same:
        est = head + 2.0 * e_ht + e_tt
        se = 2.0 * s_ht + s_tt
        rank_c = min(a.d - (a.head.stop - a.head.start), n)
        lo = head + (tail_a * tail_a / rank_c if rank_c > 0 else 0.0)
        hi = head + 2.0 * a.head_norm2 * tail_a + tail_a * tail_a
    else:
        est = head + e_ht + e_th + e_tt
        se = s_ht + s_th + s_tt
        lo = head
        hi = head + a.head_norm2 * tail_b + tail_a * b.head_norm2 + tail_a * tail_b
    # the estimate of a non-negative sum of squares never leaves the certified interval
    return min(max(est, lo), hi), se, lo, hi


def _ratio_bounds(num: tuple[float, float], da: tuple[float, float], db: tuple[float, float]) -> tuple[float, float]:
    """Interval of num/√(da·db) for intervals num, da, db (da, db must be positive to be finite)."""
    if da[0] <= 0 or db[0] <= 0:
        return -math.inf, math.inf
    dlo, dhi = math.sqrt(da[0] * db[0]), math.sqrt(da[1] * db[1])
    return min(num[0] / dlo, num[0] / dhi), max(num[1] / dlo, num[1] / dhi)


# --------------------------------------------------------------------------- #
# the driver
# --------------------------------------------------------------------------- #


def _shift(rep: Representation, dtype: np.dtype) -> np.ndarray:
    """Provisional shift for the sketch passes: the float64 mean of the first rows (keeps float32 sums centred)."""
    blk = _as_compute(rep.read(0, min(rep.n, SHIFT_ROWS)), dtype)
    s = blk.mean(axis=0, dtype=np.float64)
    if not np.isfinite(s).all():
        raise_nonfinite(blk, rep.name, 0)
    return s.astype(dtype).astype(np.float64)  # representable in the compute dtype: the shift itself is exact


def _one_blas_thread() -> Any:
    return threadpool_limits(limits=1, user_api="blas")


def _block_rows(reps: Sequence[Representation], projected_width: int, memory_per_worker: int | None) -> int:
    """Rows per block for this road's own memory: the raw blocks of every layer, one layer in the compute
    dtype at a time, and the projections — far less per row than the exact moments' float64 copies.

    Blocks are whole stored chunks when one chunk costs at most 4× the budget (re-reading a chunk per
    sub-block costs more than the memory: dask-generated or compressed inputs are recomputed).
    """
    n = reps[0].n
    budget = task_budget(os.cpu_count() or 1, memory_per_worker)
    # raw blocks of all layers; one layer converted and centred at a time; the projections and their concatenation
    row_bytes = sum(r.d * r.dtype.itemsize for r in reps) + 3 * 8 * max(r.d for r in reps) + 2 * 8 * projected_width
    rows = max(64, budget // max(1, row_bytes))
    native = max((r.native_rows for r in reps if r.native_rows), default=None)
    if native and native <= 4 * rows:
        rows = native * max(1, rows // native)
    return int(min(rows, n))


def _rng(seed: int, purpose: int, key: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), 0x1A7E5, int(purpose), int(key)])


def sketched_cka_cells(
    reps: Sequence[Representation],
    wanted: Sequence[tuple[int, int]],
    *,
    estimator: str = "unbiased",
    rank: int = DEFAULT_RANK,
    n_probes: int = DEFAULT_PROBES,
    n_power_iter: int = 1,
    seed: int = 0,
    options: EngineOptions | None = None,
    method_reason: str | None = None,
) -> tuple[dict[tuple[int, int], SketchedResult | DegenerateInputError], int, dict[str, Any]]:
    """CKA of the pairs ``wanted`` of paired representations ``reps`` by the projected road.

    Returns ``(values, n_passes, info)``: ``values[(i, j)]`` and ``values[(j, i)]``
    hold the cell's :class:`SketchedResult` (or the :class:`DegenerateInputError`
    that makes it undefined), shaped like compare_layers' cells; ``info`` has
    the per-layer head sizes and tail shares. The caller has checked pairing.
    ``method_reason`` (e.g. the auto rule's reason) is recorded in every
    cell's parameters.
    """
    check_choice("cka_matrix_sketched", "estimator", estimator, ESTIMATORS)
    rank = check_int("cka_matrix_sketched", "rank", rank, 1)
    n_probes = check_int("cka_matrix_sketched", "n_probes", n_probes, 2)
    n_power_iter = check_int("cka_matrix_sketched", "n_power_iter", n_power_iter, 0)
    seed = check_int("cka_matrix_sketched", "seed", seed, 0)
    n = reps[0].n
    check_unbiased_n("cka_matrix_sketched", n, estimator)
    options = options or EngineOptions()
    dtype = compute_dtype(reps)
    names = tuple(r.name for r in reps)
    L = len(reps)
    full = [r.d <= rank for r in reps]
    widths = [0 if f else rank for f in full]
    if options.block_size is None:  # the sketches, not the inputs, size the blocks
        width = sum(r.d if f else rank + n_probes for r, f in zip(reps, full))
        options = options.replace(block_size=_block_rows(reps, width, options.memory_per_worker))
    options = options.replace(memory_per_worker=None)

    # subspace passes (a layer that keeps all coordinates only needs its mean)
    shifts = tuple(_shift(r, dtype) for r in reps)
    tests = [
        _rng(seed, 0, k).standard_normal((r.d, w)).astype(dtype) for k, (r, w) in enumerate(zip(reps, widths))
    ]
    n_passes = 0
    plan = None
    Qs: list[np.ndarray | None] = [None] * L
    means: list[np.ndarray] = []
    traces: list[float] = []
    for it in range(n_power_iter + 1 if any(widths) else 1):
        stat = _SketchStatistic(names=names, shifts=shifts, tests=tuple(tests), dtype=dtype)
        state, plan = run(stat, list(reps), check_pairing=False, options=options)
        n_passes += 1
        means, traces = [], []
        for k in range(L):
            mean, MO, tr = _centred_sketch(state, k, shifts[k], tests[k])
            means.append(mean)
            traces.append(tr)
            if widths[k]:
                with _one_blas_thread():  # small dense QR: 2 BLAS threads on a loaded machine ran 200× slower
                    q, _ = np.linalg.qr(MO)
                Qs[k] = q
                tests[k] = q.astype(dtype)

    # the projection pass
    bases: list[np.ndarray | None] = []
    layers: list[_Layer] = []
    off = 0
    for k, r in enumerate(reps):
        if full[k]:
            bases.append(None)
            head, probes = slice(off, off + r.d), slice(off + r.d, off + r.d)
            off += r.d
        else:
            Q = Qs[k]
            G = _rng(seed, 1, k).standard_normal((r.d, n_probes))
            G -= Q @ (Q.T @ G)  # probes of the complement of span Q
            bases.append(np.concatenate([Q, G], axis=1).astype(dtype))
            head, probes = slice(off, off + rank), slice(off + rank, off + rank + n_probes)
            off += rank + n_probes
        layers.append(_Layer(name=r.name, d=r.d, head=head, probes=probes, trace=0.0, head_norm2=0.0,
                             head_frob2=0.0, tail=0.0, full=full[k]))  # fmt: skip
    gstat = _GramStatistic(names=names, means=tuple(means), bases=tuple(bases), dtype=dtype)
    gs, plan = run(gstat, list(reps), check_pairing=False, options=options)
    n_passes += 1
    g = gs.gram
    for k, lay in enumerate(layers):
        B = g[lay.head, lay.head]
        lay.trace = float(gs.psum[k])
        lay.head_frob2 = float(np.vdot(B, B))
        with _one_blas_thread():
            lay.head_norm2 = float(np.linalg.eigvalsh(0.5 * (B + B.T))[-1]) if B.size else 0.0
        lay.tail = 0.0 if lay.full else lay.trace - float(np.trace(B))

    params = {
        "kernel": "linear",
        "rank": rank,
        "n_probes": n_probes,
        "n_power_iter": n_power_iter,
        "seed": seed,
        "compute_dtype": str(dtype),
        "n_passes": n_passes,
        **(engine_parameters(plan) if plan is not None else {}),
        **({"method_reason": method_reason} if method_reason else {}),
    }
    values: dict[tuple[int, int], Any] = {}
    self_terms: dict[int, Any] = {}

    def hsic(i: int, j: int) -> tuple[float, float, float, float]:
        est, se, lo, hi = _pair_frob2(g, layers[i], layers[j], i == j, n)
        if estimator == "biased":
            c = 1.0 / (n - 1) ** 2
            return est * c, se * c, lo * c, hi * c
        c = 1.0 / (n * (n - 3))
        shift = -n / (n - 2) * float(gs.pp[i, j]) + float(gs.psum[i]) * float(gs.psum[j]) / ((n - 1) * (n - 2))
        return (est + shift) * c, se * c, (lo + shift) * c, (hi + shift) * c

    for k in sorted({k for pr in wanted for k in pr}):
        if layers[k].trace <= 0:
            self_terms[k] = DegenerateInputError(
                f"CKA is undefined: {layers[k].name} is constant (every sample has the same representation), so "
                "its centred kernel is zero and CKA is 0/0. Drop the constant layer.",
                reason="x_constant",
            )
            continue
        h = hsic(k, k)
        if h[0] <= 0:
            self_terms[k] = DegenerateInputError(
                f"unbiased CKA is undefined here: the unbiased HSIC of {layers[k].name} with itself is not "
                f"positive ({h[0]:.3g}; n = {n}). Use more samples or estimator='biased'.",
                reason="nonpositive_self_hsic",
            )
            continue
        self_terms[k] = h
    for i, j in wanted:
        bad = next((self_terms[k] for k in (i, j) if isinstance(self_terms[k], DegenerateInputError)), None)
        if bad is not None:
            values[(i, j)] = values[(j, i)] = bad
            continue
        hij = hsic(i, j) if i != j else self_terms[i]
        hii, hjj = self_terms[i], self_terms[j]
        den = math.sqrt(hii[0] * hjj[0])
        value = hij[0] / den
        se = hij[1] / den + abs(value) * (hii[1] / (2 * hii[0]) + hjj[1] / (2 * hjj[0]))
        lo, hi = _ratio_bounds((hij[2], hij[3]), (hii[2], hii[3]), (hjj[2], hjj[3]))
        exact = layers[i].full and layers[j].full
        if i == j:
            value, se, lo, hi = 1.0, 0.0, 1.0, 1.0
        flags: tuple[str, ...] = ("all_coordinates_kept",) if exact else ()
        if value < 0:
            flags += ("negative_unbiased_estimate",)
        tail_share = {
            "tail_share_x": layers[i].tail / layers[i].trace,
            "tail_share_y": layers[j].tail / layers[j].trace,
        }
        res = SketchedResult(
            metric="cka",
            value=value,
            estimator=estimator,
            method=METHOD,
            n_samples=n,
            terms={"hsic_xy": hij[0], "hsic_xx": hii[0], "hsic_yy": hjj[0], **tail_share},
            parameters=params,
            stderr=0.0 if exact else se,
            flags=flags,
            bounds=(value, value) if exact else (lo, hi),
        )
        values[(i, j)] = res
        if i != j:
            values[(j, i)] = SketchedResult(
                metric="cka", value=value, estimator=estimator, method=METHOD, n_samples=n,
                terms={"hsic_xy": hij[0], "hsic_xx": hjj[0], "hsic_yy": hii[0],
                       "tail_share_x": tail_share["tail_share_y"], "tail_share_y": tail_share["tail_share_x"]},
                parameters=params, stderr=res.stderr, flags=flags, bounds=res.bounds,
            )  # fmt: skip
    info = {
        "heads": [None if lay.full else rank for lay in layers],
        "tail_share": [lay.tail / lay.trace if lay.trace > 0 else 0.0 for lay in layers],
        "compute_dtype": str(dtype),
        "plan": plan,
    }
    return values, n_passes, info


def _layers_of(x: Any, layers: Sequence[str] | None) -> tuple[list[str], list[Any]]:
    if isinstance(x, str) or hasattr(x, "__fspath__"):
        x = open_activations(x)
    if isinstance(x, ActivationStore):
        names, arrs = list(x.layers), [x[l] for l in x.layers]
    elif isinstance(x, Mapping):
        names, arrs = [str(k) for k in x], list(x.values())
    elif isinstance(x, (list, tuple)):
        names, arrs = [f"layer{k}" for k in range(len(x))], list(x)
    else:
        raise InvalidInputError(
            f"layers must come as an ActivationStore, a path to one, a mapping of layer name to array, or a list "
            f"of arrays; got {type(x).__name__}."
        )
    if layers is not None:
        missing = [l for l in layers if l not in names]
        if missing:
            raise InvalidInputError(f"layers names {missing} that do not exist; available: {names}.")
        arrs = [arrs[names.index(l)] for l in layers]
        names = list(layers)
    if not names:
        raise InvalidInputError("no layers to compare: pass at least one layer.")
    return names, arrs


def cka_matrix_sketched(
    model: Any,
    layers: Sequence[str] | None = None,
    *,
    estimator: str = "unbiased",
    rank: int = DEFAULT_RANK,
    n_probes: int = DEFAULT_PROBES,
    n_power_iter: int = 1,
    seed: int = 0,
    **engine: Unpack[EngineKwargs],
) -> SketchedCKAMatrix:
    """Linear CKA between every pair of layers of one model, by projected cross-moments.

    For wide layers (d > ``rank``) each cell comes with a standard error and a
    certified interval for the exact value on the same rows (module docstring);
    layers with d ≤ ``rank`` are kept whole, and a matrix of such layers is exact.
    Cost: ``n_power_iter + 2`` passes over the data, about
    4·n·d·rank·(n_power_iter + 1) + 2·n·d·(rank + n_probes) flops per layer plus
    n·(L·(rank + n_probes))² for the Gram of all layers — against ≈ n·d²·L² for
    the exact matrix.

    Parameters
    ----------
    model : ActivationStore, path, mapping of layer name to array, or list of arrays
    layers : list of str, optional
        Subset (and order) of layers; default all.
    estimator : {"unbiased", "biased"}
    rank : int, default 128
        Dimension r of each layer's kept subspace.
    n_probes : int, default 32
        Random probes m per layer estimating the discarded blocks (≥ 2); the
        standard error shrinks as 1/√m.
    n_power_iter : int, default 1
        Power passes refining the subspaces (each one more read of the data).
    seed : int, default 0
        Seeds the test matrices and the probes.
    block_size, scheduler, client, num_workers, memory_per_worker
        As for :func:`bigalign.cka`.

    Returns
    -------
    SketchedCKAMatrix
    """
    engine_opts = EngineOptions.build("cka_matrix_sketched", engine)
    names, arrs = _layers_of(model, layers)
    reps = [as_representation(a, nm) for a, nm in zip(arrs, names)]
    check_pairing(reps)
    L = len(reps)
    wanted = [(i, j) for i in range(L) for j in range(i, L)]
    values, n_passes, info = sketched_cka_cells(
        reps, wanted, estimator=estimator, rank=rank, n_probes=n_probes, n_power_iter=n_power_iter, seed=seed,
        options=engine_opts,
    )  # fmt: skip
    results: list[list[SketchedResult | None]] = []
    undefined: dict[tuple[int, int], str] = {}
    for i in range(L):
        row: list[SketchedResult | None] = []
        for j in range(L):
            v = values[(i, j)]
            if isinstance(v, DegenerateInputError):
                undefined[(i, j)] = str(v)
                row.append(None)
            else:
                row.append(v)
        results.append(row)
    first = next((r for row in results for r in row if r is not None), None)
    return SketchedCKAMatrix(
        layers=names,
        results=results,
        undefined=undefined,
        n_samples=reps[0].n,
        estimator=estimator,
        n_passes=n_passes,
        parameters=dict(first.parameters) if first is not None else {},
    )


# --------------------------------------------------------------------------- #
# cost model and the auto rule
# --------------------------------------------------------------------------- #

#: calibrated on a 2-core development machine (benchmarks/bench_layer_matrix_wide.py, d = 1,024,
#: L = 33, bfloat16): flops per CPU-second of each road (exact float64 moments: 33e9; projected
#: float32 road, data conversion included: 18.5e9) times the 2 cores
EXACT_FLOPS_PER_S = 66e9
SKETCH_FLOPS_PER_S = 37e9
#: compare_layers(method="auto") switches to the projected road above this predicted exact time
AUTO_EXACT_SECONDS = 600.0


def _flops(road: str, n: int, widths: Sequence[int], pairs: Sequence[tuple[int, int]], rank: int, n_probes: int,
           n_power_iter: int) -> float:  # fmt: skip
    used = sorted({k for pr in pairs for k in pr})
    if road == "exact":
        # per layer: the centred co-moment (SYRK, n·d²); per pair: the cross-moment GEMM (2·n·d_i·d_j)
        return float(sum(n * widths[k] ** 2 for k in used) + sum(2 * n * widths[i] * widths[j] for i, j in pairs if i != j))
    wide = [k for k in used if widths[k] > rank]
    total_w = sum(widths[k] if widths[k] <= rank else rank + n_probes for k in used)
    sketch = sum(4 * n * widths[k] * rank for k in wide) * (n_power_iter + 1)
    project = sum(2 * n * widths[k] * (rank + n_probes) for k in wide)
    return float(sketch + project + n * total_w**2)


def predict_layer_matrix_seconds(
    n: int,
    widths: Sequence[int],
    pairs: Sequence[tuple[int, int]],
    road: str,
    *,
    rank: int = DEFAULT_RANK,
    n_probes: int = DEFAULT_PROBES,
    n_power_iter: int = 1,
    flops_per_s: float | None = None,
) -> float:
    """Predicted wall seconds of a linear layer matrix on one machine like the calibration one.

    ``road`` is ``"exact"`` (compare_layers' moments) or ``"sketch"``; the
    prediction is flops / sustained rate (``EXACT_FLOPS_PER_S`` or
    ``SKETCH_FLOPS_PER_S`` unless ``flops_per_s`` is given). Reading and
    decompressing the data is not counted (it is the same per pass on both
    roads and small next to the products at d ≳ 1,000).
    """
    check_choice("predict_layer_matrix_seconds", "road", road, ("exact", "sketch"))
    rate = flops_per_s or (EXACT_FLOPS_PER_S if road == "exact" else SKETCH_FLOPS_PER_S)
    return _flops(road, n, widths, pairs, rank, n_probes, n_power_iter) / rate


def choose_layer_road(
    n: int,
    widths: Sequence[int],
    pairs: Sequence[tuple[int, int]],
    *,
    threshold_s: float = AUTO_EXACT_SECONDS,
    rank: int = DEFAULT_RANK,
    n_probes: int = DEFAULT_PROBES,
    n_power_iter: int = 1,
) -> tuple[str, str]:
    """The auto rule: ``("exact" | "sketch", reason)``.

    Exact unless its predicted time exceeds ``threshold_s`` *and* the
    projected road is predicted to be at least 4× faster (no layer wider than
    ``rank`` means nothing to project: exact).
    """
    t_exact = predict_layer_matrix_seconds(n, widths, pairs, "exact")
    t_sketch = predict_layer_matrix_seconds(n, widths, pairs, "sketch", rank=rank, n_probes=n_probes,
                                            n_power_iter=n_power_iter)  # fmt: skip
    if t_exact <= threshold_s:
        return "exact", f"exact matrix predicted {t_exact:.0f} s ≤ {threshold_s:.0f} s"
    if t_sketch * 4 > t_exact:
        return "exact", f"exact matrix predicted {t_exact:.0f} s, projected road not ≥ 4× faster ({t_sketch:.0f} s)"
    return "sketch", (
        f"exact matrix predicted {t_exact:.0f} s > {threshold_s:.0f} s; projected road (rank {rank}, "
        f"{n_probes} probes) predicted {t_sketch:.0f} s"
    )
