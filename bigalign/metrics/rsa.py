"""Representational similarity analysis: correlation of two distance matrices.

RSA compares the representational dissimilarity matrices (RDMs) of x and y:
the correlation (Pearson or Spearman) between the N = n(n−1)/2 entries above
the diagonal of the distance matrices dₓ(xᵢ, xⱼ) and d_y(yᵢ, yⱼ) (Kriegeskorte
et al. 2008).  Distances: ``"euclidean"`` ‖xᵢ − xⱼ‖, ``"sqeuclidean"``
‖xᵢ − xⱼ‖², ``"cosine"`` 1 − cos(xᵢ, xⱼ), ``"correlation"`` 1 − r(xᵢ, xⱼ), the
Pearson correlation of the two activity patterns over features (= the cosine
distance of the rows after each is centred on its own mean; rsatoolbox's
``"correlation"`` RDM).  Comparisons: Pearson, Spearman, or Kendall's τ_a
(Nili et al. 2014: (concordant − discordant pairs of distances)/(N(N−1)/2),
ties counting 0 — the comparison rsatoolbox recommends for RDMs predicted
with ties).

Algorithms
----------
Pearson, exact, any n
    sqeuclidean, cosine and correlation: from streamed sufficient statistics in one pass,
    O(n·d²) time, O(d²) memory ("exact-streaming"): Σ_{i<j} dₓd_y expands into
    the moments XᵀY, XᵀX, YᵀY and row-norm sums (centred moments for
    sqeuclidean, with the expansion of :mod:`bigalign.metrics.distance`;
    cosine is the same on the L2-normalised rows, as 1 − cos = ½‖x̂ᵢ − x̂ⱼ‖²;
    correlation on the row-centred, L2-normalised rows).  euclidean:
    tiles over pairs of row blocks, O(n²·d) time, O(tile²) memory, each
    tile's moments merged with Chan et al.'s pairwise update ("exact-tiles").
Spearman and Kendall τ_a, exact up to n = 4,096
    The Pearson correlation of the mid-ranks of all N distances (as
    ``scipy.stats.spearmanr``): all N pairs in memory (8.4·10⁶ pairs at the
    limit: measured 7 s and 0.9 GB peak at n = 4,096, d = 128) ("exact-in-memory").
    τ_a: Knight's O(N log N) count of concordant minus discordant pairs
    (``scipy.stats.kendalltau``'s τ_b times its tie normaliser) over N(N−1)/2.
Sampled (any distance and correlation; ``auto`` for Spearman beyond 4,096
samples and for euclidean Pearson beyond 20,000)
    ``n_pairs`` pairs (i < j) drawn uniformly with replacement from the N
    pairs (seeded), so they are i.i.d. draws from the full set of distance
    pairs and the sample correlation estimates the full one (its bias is
    O(1/n_pairs)).  Standard error: delete-a-group jackknife over 50 groups of
    pairs; 95% interval: on Fisher's z scale, with Student's t on 49 degrees of
    freedom ("sampled-pairs").  Reads 2·n_pairs rows, in sorted batches.

Sampling intervals (``ci=``)
----------------------------
Every form: the block jackknife over contiguous row groups (:mod:`bigalign.intervals`),
on Fisher's z scale.  Pearson streams its leave-outs with the estimate (tiles: the
pair moments of every group pair; streamed moments: one moment state per group).
Spearman and Kendall are rank statistics of all N distances together: leaving a
group out re-ranks the rest, which no streamed state holds, so their exact road
recomputes the comparison on the held distances of the pairs outside each group
(G more rankings, O(G·N log N)); beyond n = 4,096 (where ``auto`` samples pairs)
the sampled road does the same on its sampled pairs.

References
----------
Kriegeskorte, Mur & Bandettini, "Representational similarity analysis — connecting
the branches of systems neuroscience", Front. Syst. Neurosci. 2 (2008).
Nili, Wingfield, Walther, Su, Marslen-Wilson & Kriegeskorte, "A toolbox for
representational similarity analysis", PLoS Comput. Biol. 10 (2014) — τ_a.
Chan, Golub & LeVeque, "Algorithms for computing the sample variance", Am. Stat. 37 (1983).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Sequence, Unpack

import numpy as np

from .._checks import finite_float64
from .._numba.dcov import DISTANCE_CODES, finish_distances, pair_moments
from .._numba.tiles import sqdist
from ..engine import prepare, run, run_pairs
from ..errors import DegenerateInputError, InvalidInputError
from ..intervals import jackknife_se
from ..io import Representation
from ..moments import MomentStatistic, Moments, scale
from ..result import Result
from ._common import check_choice, check_in_memory, loo_interval, paired_n, sqnorm
from ..grouped import grouped_statistic
from ._common import with_engine_doc
from .neighbors import IntervalResult, finite_rows, unit_rows
from ..intervals import DEFAULT_CI_GROUPS, check_ci, jackknife_interval, row_groups, with_interval
from ..options import EngineKwargs, EngineOptions
from ..tiles import GroupedTileStatistic, TileStatistic

__all__ = ["rsa", "row_patterns", "tau_a", "tile_distances"]

DISTANCES = ("euclidean", "sqeuclidean", "cosine", "correlation")
COMPARES = ("pearson", "spearman", "kendall")
#: comparisons computed from ranks of all the distances (in memory when exact)
RANKED = ("spearman", "kendall")
#: peak bytes per pair of the exact ranked road (measured: 0.9 GB at n = 4,096, 8.4·10⁶ pairs)
RANKED_PAIR_BYTES = 112
METHODS = ("auto", "exact", "sampled")
#: exact Spearman ranks all n(n−1)/2 distances in memory up to this n (≈ 8.4·10⁶ pairs)
SPEARMAN_EXACT_MAX_N = 4096
#: ``method="auto"`` computes euclidean Pearson by exact tiles up to this n (O(n²·d)), samples beyond
EXACT_MAX_N = 20_000
DEFAULT_PAIRS = 100_000
JACKKNIFE_GROUPS = 50
PAIR_BATCH = 16_384  # pairs whose rows one sorted read gathers
_SEED_PAIRS = 0x45A


# ---------------------------------------------------------------------------
# Pearson from pair moments (count, means, centred sums), merged exactly
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PairMoments:
    count: float
    mx: float
    my: float
    m2x: float
    m2y: float
    cxy: float

    def merge(self, o: "PairMoments") -> "PairMoments":
        if self.count == 0:
            return o
        if o.count == 0:
            return self
        n = self.count + o.count
        dx, dy = o.mx - self.mx, o.my - self.my
        w = self.count * o.count / n
        return PairMoments(
            n, self.mx + dx * o.count / n, self.my + dy * o.count / n,
            self.m2x + o.m2x + dx * dx * w, self.m2y + o.m2y + dy * dy * w, self.cxy + o.cxy + dx * dy * w,
        )  # fmt: skip


def centred_unit_rows(block: np.ndarray, name: str, start: int, rows: np.ndarray | None = None) -> np.ndarray:
    """Rows centred on their own mean over features, then L2-normalised (the correlation distance's patterns)."""
    x = finite_rows(block, name, start, rows)
    x -= x.mean(axis=1, keepdims=True)
    flat = np.flatnonzero(~np.any(x != 0, axis=1))
    if flat.size:
        first = int(rows[flat[0]]) if rows is not None else start + int(flat[0])
        raise InvalidInputError(
            f"{name} has {flat.size} row(s) whose features are all equal (first at row {first}): the correlation distance "
            "(1 − Pearson r of two activity patterns) is undefined for a pattern without variance. Expected rows whose "
            "features vary. Drop these samples from both representations, or use distance='cosine' or 'euclidean'."
        )
    return unit_rows(x, name, start, rows)


def row_patterns(x: np.ndarray, name: str, distance: str) -> np.ndarray:
    """All rows of x prepared for ``distance`` (float64): translated by the mean of the first rows (euclidean,
    sqeuclidean), unit rows (cosine) or centred unit rows (correlation); use with :func:`tile_distances` and
    the code of ``distance`` (cosine for correlation)."""
    if distance == "correlation":
        return centred_unit_rows(x, name, 0)
    if distance == "cosine":
        return unit_rows(x, name, 0)
    z = finite_float64(x, name, 0)
    return z - z[: min(z.shape[0], 1024)].mean(axis=0)


def _prep(block: np.ndarray, code: int, shift: np.ndarray, name: str, start: int, centre: bool = False) -> tuple[np.ndarray, np.ndarray]:
    if centre:
        x = centred_unit_rows(block, name, start)
    elif code == DISTANCE_CODES["cosine"]:
        x = unit_rows(block, name, start)
    else:
        x = finite_float64(block, name, start)
        x -= shift
    return x, np.einsum("ij,ij->i", x, x)


def tile_distances(a: np.ndarray, b: np.ndarray, na: np.ndarray, nb: np.ndarray, code: int) -> np.ndarray:
    d = sqdist(a, b, na, nb)
    finish_distances(d, a, b, na, nb, code)
    return d


@dataclass(frozen=True, eq=False)
class RsaTileStatistic(TileStatistic):
    """Pair moments of (dₓ, d_y) over the pairs i < j of each tile (I, J ≥ I).

    An unordered road of :class:`bigalign.tiles.TileStatistic` (each pair once, no
    per-row sums); its grouped pass keeps the moments of each group pair g ≤ h, and the
    moments of the rows minus group g merge those without g
    (:meth:`bigalign.tiles.GroupedTiles.total`): exact, G(G+1)/2 moments of state.
    """

    code: int
    shift_x: np.ndarray
    shift_y: np.ndarray
    names: tuple[str, str] = ("x", "y")

    ordered: ClassVar[bool] = False

    def prepare(self, blocks: Sequence[np.ndarray], start: int) -> tuple:
        return (
            _prep(blocks[0], self.code, self.shift_x, self.names[0], start),
            _prep(blocks[1], self.code, self.shift_y, self.names[1], start),
        )

    def values(self, pi: Any, pj: Any) -> tuple[np.ndarray, np.ndarray]:
        """The tile's two distance matrices (dₓ, d_y), rows of block I by rows of block J."""
        return tuple(tile_distances(a, b, na, nb, self.code) for (a, na), (b, nb) in zip(pi, pj))  # type: ignore[return-value]

    def sums(self, values: Any, pi: Any, pj: Any, a: slice, c: slice, same: bool) -> tuple[Any, Any, Any]:
        dx, dy = values
        return PairMoments(*pair_moments(dx[a, c], dy[a, c], same)), None, None

    def merge(self, a: PairMoments, b: PairMoments) -> PairMoments:
        return a.merge(b)

    def finish(self, pairs: PairMoments, rows: Any) -> PairMoments:
        return pairs


# ---------------------------------------------------------------------------
# Pearson, exact and streamed: sqeuclidean (centred moments) and cosine (unit-row Grams)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class UnitMomentStatistic(MomentStatistic):
    """The centred moments of the L2-normalised rows (cosine distance = ½‖x̂ᵢ − x̂ⱼ‖²)."""

    def partial(self, blocks: Sequence[np.ndarray], start: int) -> Moments:
        return super().partial([unit_rows(b, nm, start) for b, nm in zip(blocks, self.names)], start)


@dataclass(frozen=True)
class CentredUnitMomentStatistic(MomentStatistic):
    """The centred moments of the row-centred, L2-normalised rows (correlation distance = ½‖ẑᵢ − ẑⱼ‖²)."""

    def partial(self, blocks: Sequence[np.ndarray], start: int) -> Moments:
        return super().partial([centred_unit_rows(b, nm, start) for b, nm in zip(blocks, self.names)], start)


def _moment_statistic(unit: bool, centre: bool) -> MomentStatistic:
    """The streamed moments behind Pearson RSA: of the rows (sqeuclidean), unit rows (cosine) or centred unit rows
    (correlation)."""
    kind = CentredUnitMomentStatistic if centre else UnitMomentStatistic if unit else MomentStatistic
    return kind(names=("x", "y"), pairs=((0, 1),))


def _pearson_sums_streamed(
    x: Any, y: Any, options: EngineOptions, unit: bool, centre: bool = False, n_groups: int | None = None
) -> tuple[tuple[float, ...], Any, Any]:  # fmt: skip
    """(N, Sx, Sy, Sxx, Syy, Sxy) over i < j of the squared Euclidean distances of the rows (unit rows
    for cosine, whose distances are half these), each side in units of its scale; the plan; and, with
    ``n_groups`` (for ``ci=``), the :class:`~bigalign.grouped.GroupedStates` of the same pass (else None).
    """
    stat = _moment_statistic(unit, centre)
    if n_groups is None:
        m, plan = run(stat, [x, y], names=["x", "y"], options=options)
        return _pearson_sums(m), plan, None
    states, plan = run(grouped_statistic(stat, n_groups, func="rsa"), [x, y], names=["x", "y"], options=options)
    return _pearson_sums(states.total()), plan, states


def _pearson_sums(m: Moments) -> tuple[float, ...]:
    """The sums of :func:`_pearson_sums_streamed` from the merged moments of the rows.

    With rows centred on the global mean (pᵢ = ‖uᵢ‖², P = Σpᵢ, T = Σpᵢ²):
    Σ_{i<j} dₓ = n·P, Σ_{i<j} dₓ² = n·T + P² + 2‖Mₓₓ‖², Σ_{i<j} dₓd_y = n·Σpᵢqᵢ + PₓP_y + 2‖Mₓᵧ‖².
    Centring removes any common offset or common direction exactly (Chan-merged moments), so only
    the spread of the distances themselves limits the precision.
    """
    n = m.n
    cx, cy = scale(m, 0), scale(m, 1)  # Pearson is scale invariant per side: keep every square in range
    sx, sy = m.sides[0], m.sides[1]
    Mxy, T = m.pair(0, 1)
    px, py = sx.trace / cx, sy.trace / cy
    Sxx = n * sx.t4 / cx / cx + px * px + 2 * sqnorm(sx.M / cx)
    Syy = n * sy.t4 / cy / cy + py * py + 2 * sqnorm(sy.M / cy)
    Sxy = n * float(T.sum()) / cx / cy + px * py + 2 * sqnorm(Mxy / math.sqrt(cx) / math.sqrt(cy))
    return (n * (n - 1) / 2, n * px, n * py, Sxx, Syy, Sxy)


def _pearson_from_sums(N: float, sx: float, sy: float, sxx: float, syy: float, sxy: float) -> tuple[float, float, float]:
    """(r, var_x·N, var_y·N) from raw sums."""
    vx = sxx - sx * sx / N
    vy = syy - sy * sy / N
    return (sxy - sx * sy / N) / math.sqrt(vx * vy) if vx > 0 and vy > 0 else float("nan"), vx, vy


# ---------------------------------------------------------------------------
# distances in memory (exact Spearman) and for sampled pairs
# ---------------------------------------------------------------------------


def _all_distances(rep: Representation, code: int, centre: bool = False) -> np.ndarray:
    """The N = n(n−1)/2 distances above the diagonal, row by row (scipy's condensed order).

    No translation before the GEMM (unlike the Pearson tiles): ranks need exact ties to stay
    ties, and integer-valued rows keep exact GEMM distances only untranslated.  Rows with a
    large common offset lose nothing: their distances fall below the refinement threshold
    and are recomputed from the differences.
    """
    n = rep.n
    x, nx = _prep(rep.read(0, n), code, np.zeros(rep.d), rep.name, 0, centre)
    out = np.empty(n * (n - 1) // 2)
    pos = 0
    step = 1024
    for a in range(0, n, step):
        b = min(n, a + step)
        d = tile_distances(np.ascontiguousarray(x[a:b]), x, nx[a:b], nx, code)
        for i in range(a, b):
            cnt = n - i - 1
            out[pos : pos + cnt] = d[i - a, i + 1 :]
            pos += cnt
    return out


def sample_pairs(n: int, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """m pairs (i < j), i.i.d. uniform over the n(n−1)/2 pairs (seeded)."""
    rng = np.random.default_rng([seed, _SEED_PAIRS])
    i = rng.integers(0, n, size=m)
    j = rng.integers(0, n - 1, size=m)
    j = j + (j >= i)  # uniform over the n − 1 others
    return np.minimum(i, j), np.maximum(i, j)


def _pair_distances(rep: Representation, i: np.ndarray, j: np.ndarray, code: int, centre: bool = False) -> np.ndarray:
    """Distances of the pairs (i, j) from explicit differences, reading their rows in sorted batches."""
    out = np.empty(i.shape[0])
    for a in range(0, i.shape[0], PAIR_BATCH):
        ii, jj = i[a : a + PAIR_BATCH], j[a : a + PAIR_BATCH]
        rows = np.unique(np.concatenate([ii, jj]))
        block = rep.take(rows)
        if centre:
            x = centred_unit_rows(block, rep.name, 0, rows)
        else:
            x = unit_rows(block, rep.name, 0, rows) if code == DISTANCE_CODES["cosine"] else finite_rows(block, rep.name, 0, rows)
        diff = x[np.searchsorted(rows, ii)] - x[np.searchsorted(rows, jj)]
        d2 = np.einsum("ij,ij->i", diff, diff)
        out[a : a + ii.shape[0]] = np.sqrt(d2) if code == DISTANCE_CODES["euclidean"] else (0.5 * d2 if code == DISTANCE_CODES["cosine"] else d2)
    return out


def _ranks(v: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(v, method="average")


def _corr(u: np.ndarray, v: np.ndarray) -> float:
    u = u - u.mean()
    v = v - v.mean()
    den = math.sqrt(float(u @ u) * float(v @ v))
    return float(u @ v) / den if den > 0 else float("nan")


def tau_a(u: np.ndarray, v: np.ndarray) -> float:
    """Kendall's τ_a = (concordant − discordant)/(N(N−1)/2) over the N paired values (ties count 0).

    scipy's τ_b is S/√((n₀ − n₁)(n₀ − n₂)) with S = concordant − discordant (Knight's O(N log N)
    algorithm) and n₁, n₂ the pairs tied in u, in v; undoing that normaliser gives S.
    """
    from scipy.stats import kendalltau

    N = u.shape[0]
    n0 = N * (N - 1) / 2

    def tied(w: np.ndarray) -> float:
        _, cnt = np.unique(w, return_counts=True)
        return float(np.sum(cnt * (cnt - 1.0) / 2.0))

    tb = float(kendalltau(u, v, variant="b").statistic)
    return tb * math.sqrt((n0 - tied(u)) * (n0 - tied(v))) / n0


def _correlation(dx: np.ndarray, dy: np.ndarray, compare: str) -> float:
    if compare == "kendall":
        return tau_a(dx, dy)
    return _corr(_ranks(dx), _ranks(dy)) if compare == "spearman" else _corr(dx, dy)


def condensed_groups(n: int, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The row groups (g(i), g(j)) of the N = n(n−1)/2 pairs i < j in condensed order (that of
    :func:`_all_distances` and ``scipy.spatial.distance.pdist``)."""
    grp = (np.searchsorted(bounds, np.arange(n), side="right") - 1).astype(np.int16)
    gi = np.repeat(grp, np.arange(n - 1, -1, -1))  # row i pairs with the n − 1 − i rows after it
    gj = np.concatenate([grp[i + 1 :] for i in range(n)])
    return gi, gj  # 2 × 2 bytes per pair (no index arrays)


def pair_leave_outs(dx: np.ndarray, dy: np.ndarray, gi: np.ndarray, gj: np.ndarray, groups: int, compare: str) -> np.ndarray:
    """The comparison recomputed on the pairs whose rows both lie outside group g, for each g.

    A rank comparison (Spearman, Kendall) ranks all the kept pairs afresh: it is a statistic of
    all n(n−1)/2 distances at once, so its leave-outs need the held distances (no streamed state).
    """
    out = []
    for g in range(groups):
        keep = (gi != g) & (gj != g)
        v = _correlation(dx[keep], dy[keep], compare)
        if not math.isfinite(v):
            raise DegenerateInputError(
                f"rsa: the sampling interval is undefined here: with row group {g} of {groups} left out, all kept "
                "distances of x or y are equal. Use more samples (or pairs), or leave ci out.",
                reason="undefined_leave_out",
            )
        out.append(v)
    return np.array(out)


def _streamed_pearson(m: Moments) -> float:
    """Pearson RSA from merged moments; DegenerateInputError where the distances of a side do not vary."""
    sums = _pearson_sums(m)
    value, vx, vy = _pearson_from_sums(*sums)
    if not (vx > 1e-12 * sums[3] and vy > 1e-12 * sums[4]):
        raise DegenerateInputError("all distances of x or y are equal on these rows", reason="constant_distances")
    return value


# ---------------------------------------------------------------------------
# façade
# ---------------------------------------------------------------------------


def resolve_method(method: str, compare: str, distance: str, n: int) -> tuple[str, str]:
    """(method, reason); the thresholds live here."""
    if method == "exact" and compare in RANKED and n > SPEARMAN_EXACT_MAX_N:
        raise InvalidInputError(
            f"exact {compare.capitalize()} RSA ranks all n(n-1)/2 distances in memory and is offered up to n = {SPEARMAN_EXACT_MAX_N}; "
            f"got n = {n}. Use method='sampled' (or 'auto'), which estimates it from a seeded sample of pairs with an "
            "interval, or compare='pearson', which is exact at any n."
        )
    if method != "auto":
        return method, "requested"
    if compare in RANKED:
        if n <= SPEARMAN_EXACT_MAX_N:
            return "exact", f"{compare} with n = {n} <= {SPEARMAN_EXACT_MAX_N}: all pairs ranked in memory"
        return "sampled", f"{compare} with n = {n} > {SPEARMAN_EXACT_MAX_N}: estimated from sampled pairs"
    if distance != "euclidean":
        return "exact", f"pearson on {distance} distances: exact from streamed moments at any n"
    if n <= EXACT_MAX_N:
        return "exact", f"pearson on euclidean distances with n = {n} <= {EXACT_MAX_N}: exact tiles"
    return "sampled", f"pearson on euclidean distances with n = {n} > {EXACT_MAX_N}: estimated from sampled pairs"


def _undefined(which: str, distance: str, n: int) -> DegenerateInputError:
    return DegenerateInputError(
        f"RSA is undefined: all {n * (n - 1) // 2} {distance} distances of {which} are equal (e.g. a constant "
        f"representation, or equidistant rows), so their correlation is 0/0. Expected a representation whose "
        "pairwise distances vary.",
        reason=f"{which}_constant_distances",
    )


@with_engine_doc
def rsa(
    x: Any,
    y: Any,
    /,
    *,
    distance: Literal["euclidean", "sqeuclidean", "cosine", "correlation"] = "euclidean",
    compare: Literal["pearson", "spearman", "kendall"] = "pearson",
    method: Literal["auto", "exact", "sampled"] = "auto",
    n_pairs: int | None = None,
    seed: int = 0,
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
) -> Result:
    """Representational similarity: the correlation of the two distance matrices' upper triangles.

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
        numpy, dask or zarr arrays or store layers; the same samples in the same order.
    distance : {"euclidean", "sqeuclidean", "cosine", "correlation"}, default="euclidean"
        The dissimilarity in both spaces (cosine: 1 − cosine similarity;
        correlation: 1 − Pearson r of the two rows' patterns over features).
    compare : {"pearson", "spearman", "kendall"}, default="pearson"
        Pearson correlation of the distances, Spearman's (Pearson of their
        mid-ranks, as ``scipy.stats.spearmanr``), or Kendall's τ_a.
    method : {"auto", "exact", "sampled"}, default="auto"
        ``"auto"``: exact Pearson (streamed for sqeuclidean/cosine at any n;
        tiles for euclidean up to n = 20,000), exact Spearman up to
        n = 4,096, sampled pairs beyond.  ``"exact"`` Spearman raises beyond
        n = 4,096.  The choice and reason are in ``parameters["method_reason"]``.
    n_pairs : int, optional
        Pairs drawn by ``method="sampled"`` (default 100,000).
    seed : int, default=0
        Seeds the sampled pairs.
    ci : float, optional
        Confidence level (e.g. 0.95) of a sampling interval over rows
        (stimuli) for the population value, ``result.ci``: the block
        jackknife over 20 contiguous row groups, on Fisher's z scale.  Every
        form has one.  Pearson: from the same pass (grouped tile moments for
        euclidean, grouped streamed moments for the other distances).
        Spearman and Kendall rank all n(n−1)/2 distances at once, so no
        streamed state gives their leave-outs: the exact road ranks the held
        distances again without each group (20 more rankings).  Sampled
        pairs: the same sampled pairs without those touching each group;
        ``stderr`` stays the pair-sampling error, and its 95% interval moves
        to ``parameters["pair_ci"]`` (without ``ci=`` the sampled road's
        ``ci`` is that pair-sampling interval, as before).
    {engine}

    Returns
    -------
    Result
        ``value`` = the correlation; ``method`` says how it was computed
        (``"exact-streaming"``, ``"exact-tiles"``, ``"exact-in-memory"`` or
        ``"sampled-pairs"``); terms ``n_pairs`` (pairs used), and for the
        Pearson tiles the standard deviations ``sd_x``, ``sd_y`` of the distances.
        Sampled: an :class:`~bigalign.metrics.neighbors.IntervalResult` with
        ``stderr`` (jackknife over groups of pairs) and a ``ci``: the 95%
        pair-sampling interval, or with ``ci=`` the row interval.

    Raises
    ------
    DegenerateInputError
        All distances of x (or y) equal: the correlation is 0/0.
    InvalidInputError
        n < 3, an all-zero row with ``distance="cosine"``, exact Spearman
        beyond n = 4,096, bad options, NaN/Inf (named rows).

    Notes
    -----
    See the module notes for each algorithm's cost.  The exact paths agree
    with ``np.corrcoef(pdist(x), pdist(y))`` / ``spearmanr`` to ≈1e-12.

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> x = np.random.default_rng(0).normal(size=(50, 4))
    >>> round(bigalign.rsa(x, 2 * x + 1).value, 12)
    1.0
    """
    engine_opts = EngineOptions.build("rsa", engine)
    check_choice("rsa", "distance", distance, DISTANCES)
    check_choice("rsa", "compare", compare, COMPARES)
    check_choice("rsa", "method", method, METHODS)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"the 'seed' parameter of rsa must be a non-negative integer; got {seed!r} instead.")
    if n_pairs is not None and (isinstance(n_pairs, bool) or not isinstance(n_pairs, (int, np.integer)) or n_pairs < 2 * JACKKNIFE_GROUPS):
        raise InvalidInputError(
            f"the 'n_pairs' parameter of rsa must be an integer >= {2 * JACKKNIFE_GROUPS} (its standard error is a "
            f"jackknife over {JACKKNIFE_GROUPS} groups of pairs); got {n_pairs!r}."
        )
    n = paired_n(x, y)
    if n < 3:
        raise InvalidInputError(f"rsa correlates the n(n-1)/2 pairwise distances and needs at least 3 samples; got {n}.")
    chosen, reason = resolve_method(method, compare, distance, n)
    level = check_ci("rsa", ci)
    bounds = None if level is None else row_groups(n, DEFAULT_CI_GROUPS, func="rsa")
    if n_pairs is not None and chosen != "sampled":
        raise InvalidInputError(f"n_pairs applies to method='sampled' only; the method here is {chosen!r} ({reason}).")
    centre = distance == "correlation"
    code = DISTANCE_CODES["cosine" if centre else distance]
    N = n * (n - 1) // 2
    params: dict[str, Any] = {"distance": distance, "compare": compare, "method_reason": reason}

    if chosen == "sampled":
        reps = prepare([x, y], ["x", "y"])
        m = int(n_pairs or DEFAULT_PAIRS)
        i, j = sample_pairs(n, m, int(seed))
        dx, dy = _pair_distances(reps[0], i, j, code, centre), _pair_distances(reps[1], i, j, code, centre)
        for name, d in (("x", dx), ("y", dy)):
            if np.all(d == d[0]):
                raise DegenerateInputError(
                    f"RSA cannot be estimated: all {m} sampled {distance} distances of {name} are equal, so their "
                    "correlation is 0/0. Expected a representation whose pairwise distances vary (if only a few do, "
                    "use more pairs or an exact method).",
                    reason=f"{name}_constant_distances",
                )
        value = _correlation(dx, dy, compare)
        groups = np.arange(m) % JACKKNIFE_GROUPS
        loo = np.array([_correlation(dx[groups != g], dy[groups != g], compare) for g in range(JACKKNIFE_GROUPS)])
        G = JACKKNIFE_GROUPS
        se = jackknife_se(loo)
        pair_ci = _fisher_interval(value, se, G - 1)
        params.update(n_pairs=m, seed=int(seed), pair_sampling="uniform over i<j, with replacement", stderr=f"delete-a-group jackknife over {G} groups of pairs")
        if level is None:
            params["ci"] = f"95%, Fisher z with Student t ({G - 1} df): the sampling of pairs (pass ci= for the sampling of rows)"
            return IntervalResult("rsa", value, compare, "sampled-pairs", n, {"n_pairs": float(m)}, params, stderr=se, ci=pair_ci, ci_level=0.95)
        # ci=: the sampling of rows — the sampled pairs whose rows both lie outside row group g, for each g
        params["pair_ci"] = list(pair_ci)
        params["pair_ci_about"] = f"95%, Fisher z with Student t ({G - 1} df): the sampling of pairs only (the stderr's interval)"
        gi, gj = (np.searchsorted(bounds, v, side="right") - 1 for v in (i, j))  # type: ignore[arg-type]
        row_loo = pair_leave_outs(dx, dy, gi, gj, DEFAULT_CI_GROUPS, compare)
        result = IntervalResult("rsa", value, compare, "sampled-pairs", n, {"n_pairs": float(m)}, params, stderr=se)
        return with_interval(result, jackknife_interval(value, row_loo, level, scale="fisher"))

    if compare in RANKED:
        check_in_memory("rsa", engine_opts, RANKED_PAIR_BYTES * N, f"exact {compare} RSA ranks all {N} distances in memory",
                        "Use method='sampled' (n_pairs=...), compare='pearson' (streamed tiles), or a larger memory_per_worker.")  # fmt: skip
        reps = prepare([x, y], ["x", "y"])
        dx, dy = _all_distances(reps[0], code, centre), _all_distances(reps[1], code, centre)
        for name, d in (("x", dx), ("y", dy)):
            if np.all(d == d[0]):
                raise _undefined(name, distance, n)
        value = _correlation(dx, dy, compare)
        result = Result("rsa", value, compare, "exact-in-memory", n, {"n_pairs": float(N)}, params)
        if bounds is None:
            return result
        gi, gj = condensed_groups(n, bounds)
        params["ci_leave_out"] = "ranks recomputed on the held distances of the pairs outside each row group"
        return with_interval(result, jackknife_interval(value, pair_leave_outs(dx, dy, gi, gj, DEFAULT_CI_GROUPS, compare), level, scale="fisher"))

    if distance == "euclidean":
        reps = prepare([x, y], ["x", "y"])
        shifts = [finite_float64(r.read(0, min(n, 1024)), r.name, 0).mean(0) for r in reps]
        stat = RsaTileStatistic(code, shifts[0], shifts[1])
        if bounds is None:
            pm, plan = run_pairs(stat, reps, check_pairing=False, options=engine_opts)
        else:
            by_group, plan = run_pairs(GroupedTileStatistic(stat, bounds), reps, check_pairing=False, options=engine_opts)
            pm = by_group.total()
        params.update(block_size=plan.block_rows, n_tiles=plan.n_blocks * (plan.n_blocks + 1) // 2, scheduler=plan.scheduler)
        for name, m2, mu in (("x", pm.m2x, pm.mx), ("y", pm.m2y, pm.my)):
            if m2 <= pm.count * (1e-10 * mu) ** 2:
                raise _undefined(name, distance, n)
        value = pm.cxy / math.sqrt(pm.m2x * pm.m2y)
        terms = {"n_pairs": pm.count, "sd_x": math.sqrt(pm.m2x / pm.count), "sd_y": math.sqrt(pm.m2y / pm.count)}
        result = Result("rsa", value, compare, "exact-tiles", n, terms, params)
        if bounds is None:
            return result
        loo = []
        for g in range(bounds.size - 1):
            q = by_group.total(skip=g)
            if not (q.m2x > 0 and q.m2y > 0):
                raise DegenerateInputError(
                    f"rsa: the sampling interval is undefined here: with row group {g} left out, all distances of x or y "
                    "are equal. Leave ci out.",
                    reason="undefined_leave_out",
                )
            loo.append(q.cxy / math.sqrt(q.m2x * q.m2y))
        return with_interval(result, jackknife_interval(value, np.array(loo), level, scale="fisher"))

    sums, plan, states = _pearson_sums_streamed(x, y, engine_opts, unit=distance in ("cosine", "correlation"), centre=centre,
                                                n_groups=None if level is None else n)  # fmt: skip
    Nf, sx, sy, sxx, syy, sxy = sums
    value, vx, vy = _pearson_from_sums(*sums)
    for name, v, s, ss in (("x", vx, sx, sxx), ("y", vy, sy, syy)):
        if not v > 1e-12 * ss:  # var·N is a difference of Σd² and (Σd)²/N: 0 up to their rounding
            raise _undefined(name, distance, n)
    params.update(block_size=plan.block_rows, n_blocks=plan.n_blocks, scheduler=plan.scheduler)
    # the sums are in units of each side's mean squared centred row norm c (of the unit rows for cosine)
    terms = {"n_pairs": Nf}
    result = Result("rsa", value, compare, "exact-streaming", n, terms, params)
    if states is None:
        return result
    return with_interval(result, loo_interval("rsa", value, states, _streamed_pearson, level, scale="fisher"))


def _fisher_interval(r: float, se: float, df: int) -> tuple[float, float]:
    """95% interval for a correlation: r ± t·se mapped through Fisher's z (stays inside [−1, 1])."""
    from scipy.stats import t

    q = float(t.ppf(0.975, df))
    if abs(r) >= 1.0:
        return (r, r)
    z, sz = math.atanh(r), se / (1.0 - r * r)
    return (math.tanh(z - q * sz), math.tanh(z + q * sz))
