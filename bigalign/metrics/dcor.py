"""Distance covariance and distance correlation (Székely, Rizzo & Bakirov 2007).

With aᵢⱼ = ‖xᵢ − xⱼ‖ and bᵢⱼ = ‖yᵢ − yⱼ‖ (Euclidean), every estimator here is
a function of the same *terms* — S_ab = Σᵢⱼ aᵢⱼbᵢⱼ, the row sums rᵢ = Σⱼ aᵢⱼ,
sᵢ = Σⱼ bᵢⱼ and their totals — as in the ``dcor`` package:

biased (V-statistic, double centring)
    dCov²ₙ = [S_ab − (2/n)·rᵀs + (Σr)(Σs)/n²] / n²
unbiased (U-centring, Székely & Rizzo 2014)
    dCov²ᵤ = [S_ab + (Σr)(Σs)/((n−1)(n−2)) − 2·rᵀs/(n−2)] / (n(n−3))

— the second is Song et al.'s unbiased HSIC of the matrices a and b, which is
why dCov² = 4·HSIC with the distance-induced kernel
k(x, x') = ½(‖x − x₀‖ + ‖x' − x₀‖ − ‖x − x'‖) (Sejdinovic et al. 2013).
dCor² = dCov²(x, y)/√(dCov²(x, x)·dCov²(y, y)).

Algorithms (``method``)
-----------------------
exact
    Tiles over pairs of row blocks (:func:`bigalign.engine.run_pairs`): one
    GEMM per input for the squared distances, a fused Numba loop for the
    terms.  O(n²·d) time, O(n + tile²) memory, spread over the workers.
univariate (both inputs one-dimensional)
    The O(n log n) algorithm of Huo & Székely (2016): exact.
block
    Exact U-statistics inside ⌊n/B⌋ seeded random blocks of B rows (every row
    used once), averaged; the standard error is the jackknife over blocks.
    O(n·B·d) time.  Representations being compared are strongly dependent, so
    the block average loses little against the full U-statistic (measured: 1.42×
    its variance at B = 250; measured in benchmarks/results/dcor.md) — but near independence the
    loss is ≈ n/B, so do not use it to *test* independence.  The block
    U-statistic's conditional mean given the data is the full-sample one, and
    its ``stderr`` is its standard error around the *population* value: it
    includes the sampling variance the exact statistic has too, so as a bound
    on |block − exact| it is conservative (measured at n = 20,000: errors
    ≤ 8e-5 against a stderr of ≈ 6e-4).
projection
    Random projections (Huang & Huo 2022, "A statistically and numerically
    efficient independence test based on random projections and distance
    covariance"): E over uniform directions u, v of C_p·C_q·dCov²(uᵀx, vᵀy)
    is dCov²(x, y), each term in O(n log n).  Unbiased for the full-sample
    statistic, but its variance in many dimensions is large (measured 848× that
    of the full U-statistic with 50 projections at p = 50): a tool for
    testing, not estimation; ``method="auto"`` never picks it.

References
----------
Székely, Rizzo & Bakirov, "Measuring and testing dependence by correlation of
distances", Ann. Statist. 35 (2007).
Székely & Rizzo, "Partial distance correlation with methods for dissimilarities",
Ann. Statist. 42 (2014) — U-centring, the bias-corrected dCor².
Sejdinovic, Sriperumbudur, Gretton & Fukumizu, "Equivalence of distance-based
and RKHS-based statistics in hypothesis testing", Ann. Statist. 41 (2013), arXiv:1207.6076.
Huo & Székely, "Fast computing for distance covariance", Technometrics 58 (2016), arXiv:1410.1503.
Huang & Huo, "A statistically and numerically efficient independence test based on
random projections and distance covariance", Front. Appl. Math. Stat. (2022), arXiv:1701.06054.
"""

from __future__ import annotations

import dataclasses
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Sequence, Unpack

import numpy as np

from .._checks import finite_float64
from .._numba.dcov import accumulate_distance_tile, univariate_terms
from .._numba.tiles import sqdist
from ..engine import prepare, run, run_pairs
from ..errors import DegenerateInputError, InvalidInputError
from ..intervals import jackknife_se
from ..io import Representation
from ..result import Result
from ._common import ESTIMATORS, check_choice, check_unbiased_n, paired_n
from ._kernel_exact import KernelSums, KernelTileStatistic, hsic_from_sums
from ._tile_groups import GroupedTileStatistic
from ..intervals import DEFAULT_CI_GROUPS, check_ci, estimator_interval, row_groups, with_interval
from ._blocks import BlockInputs, RandomBlockStatistic, blocks_per_task, partition, run_blocks  # noqa: F401
from ..engine import _n_workers, resolve_scheduler
from ..options import EngineKwargs, EngineOptions

__all__ = ["dcor", "dcor_with_loo", "dcov", "dcov_terms_from_sums"]

METHODS = ("auto", "exact", "block", "projection")
#: ``method="auto"`` computes exact tiles up to this many samples (O(n²·d); measured
#: 3–12 s and < 0.5 GB at n = 20,000, d = 128 on two shared cores, benchmarks/results/dcor.md)
EXACT_MAX_N = 20_000
#: default rows per random block of ``method="block"`` (O(n·B·d); at n = 20,000, d = 128 its
#: error against exact was ≤ 8e-5 over 5 seeds (stderr ≈ 6e-4); 12 s at n = 10⁶ on an idle machine)
DEFAULT_BLOCK = 1024
DEFAULT_PROJECTIONS = 50
#: a self-dCov² at or below this fraction of the size of the terms it is a difference of is 0
ZERO_TOL = 1e-12
_SEED_PROJ = 0xDC0C


# ---------------------------------------------------------------------------
# terms -> estimates
# ---------------------------------------------------------------------------


def dcov_terms_from_sums(n: int, s_ab: float, r: np.ndarray, s: np.ndarray, estimator: str) -> float:
    """dCov² from S_ab = Σᵢⱼ aᵢⱼbᵢⱼ and the row sums r, s of the distance matrices.

    unbiased: Song et al.'s U-statistic with K̃ = a, L̃ = b (zero diagonals), i.e.
    :func:`bigalign.metrics._kernel_exact.hsic_from_sums`;
    biased: tr(aHbH)/n² = [S_ab − (2/n) rᵀs + (Σr)(Σs)/n²]/n².
    """
    if estimator == "unbiased":
        return hsic_from_sums(n, s_ab, r, s, "unbiased")
    return (s_ab - 2.0 / n * float(r @ s) + r.sum() * s.sum() / n**2) / n**2


def _magnitude(n: int, s_aa: float, r: np.ndarray, estimator: str) -> float:
    """Size of the terms a self-dCov² is a difference of (its rounding scale)."""
    rr = float(r @ r)
    tot = float(r.sum())
    if estimator == "unbiased":
        return (abs(s_aa) + tot * tot / ((n - 1) * (n - 2)) + 2 * rr / (n - 2)) / (n * (n - 3))
    return (abs(s_aa) + 2 * rr / n + tot * tot / n**2) / n**2


@dataclass(frozen=True)
class DcovTerms:
    """The three squared statistics an estimate is built from (one per block or projection when replicated)."""

    n: int
    cxy: float
    vx: float
    vy: float
    x_zero: bool = False  # dVar²(x) is 0 up to rounding (constant x, or equidistant rows for the unbiased one)
    y_zero: bool = False
    x_const: bool = False  # every distance of x is exactly 0
    y_const: bool = False
    replicates: np.ndarray | None = None  # (m, 3): per block / projection (cxy, vx, vy)
    loo: tuple["DcovTerms", ...] | None = None  # ci: the exact terms of the rows minus each contiguous row group
    #: ci of the biased V-statistic on exact tiles: the U-statistic terms of all rows and of each leave-out, from the
    #: same sums (intervals.estimator_interval: a biased estimate's interval is its unbiased form's)
    unbiased: tuple["DcovTerms", tuple["DcovTerms", ...]] | None = None


def _terms_from_sums(sums: KernelSums, estimator: str) -> DcovTerms:
    n = sums.n
    cxy = dcov_terms_from_sums(n, sums.kl, sums.r, sums.s, estimator)
    vx = dcov_terms_from_sums(n, sums.kk, sums.r, sums.r, estimator)
    vy = dcov_terms_from_sums(n, sums.ll, sums.s, sums.s, estimator)
    mx, my = _magnitude(n, sums.kk, sums.r, estimator), _magnitude(n, sums.ll, sums.s, estimator)
    return DcovTerms(
        n=n, cxy=cxy, vx=vx, vy=vy, x_zero=bool(vx <= ZERO_TOL * mx), y_zero=bool(vy <= ZERO_TOL * my),
        x_const=mx == 0, y_const=my == 0,
    )  # fmt: skip


# ---------------------------------------------------------------------------
# exact: tiles
# ---------------------------------------------------------------------------


class DistanceTileStatistic(KernelTileStatistic):
    """The exact kernel tiles with the Euclidean distance as the entry (S_ab, S_aa, S_bb, row sums).

    The block preparation (shifted float64 rows), GEMM distances, the tile loop, the state
    and its grouped form are those of :class:`bigalign.tiles.TileStatistic` and
    :class:`~bigalign.metrics._kernel_exact.KernelTileStatistic`; only the tile's
    accumulation (``_accumulate``) differs.  Build it
    as ``DistanceTileStatistic("euclidean-distance", 1.0, 1.0, shift_x, shift_y)``.
    """

    def _accumulate(self, dx, dy, xi, xj, yi, yj, nxi, nxj, nyi, nyj, diagonal, rk, rl, ck, cl):  # type: ignore[no-untyped-def]
        """The tile's double-centring sums of the distances (S_ab, S_aa, S_bb) and their row/column sums."""
        return accumulate_distance_tile(dx, dy, xi, xj, yi, yj, nxi, nxj, nyi, nyj, diagonal, rk, rl, ck, cl)


def _shifts(reps: list[Representation]) -> list[np.ndarray]:
    """A fixed translation per input (the mean of its first rows): keeps the GEMM distances accurate."""
    m = min(reps[0].n, 1024)
    return [finite_float64(r.read(0, m), r.name, 0).mean(axis=0) for r in reps]


def _exact(
    reps: list[Representation], estimator: str, options: EngineOptions, bounds: np.ndarray | None = None
) -> tuple[DcovTerms, dict[str, Any]]:  # fmt: skip
    """Exact tiles; with ``bounds`` (contiguous row groups) the same pass also gives the exact terms of
    the rows minus each group (:class:`~bigalign.metrics._tile_groups.GroupedTileStatistic`)."""
    x_shift, y_shift = _shifts(reps)
    stat = DistanceTileStatistic("euclidean-distance", 1.0, 1.0, x_shift, y_shift)
    if bounds is None:
        sums, plan = run_pairs(stat, reps, check_pairing=False, options=options)
        terms = _terms_from_sums(sums, estimator)
    else:
        grouped, plan = run_pairs(GroupedTileStatistic(stat, bounds), reps, check_pairing=False, options=options)
        without = [grouped.without(g) for g in range(grouped.groups)]
        loo = tuple(_terms_from_sums(w, estimator) for w in without)
        unbiased = None
        if estimator == "biased":
            unbiased = (_terms_from_sums(grouped.full(), "unbiased"), tuple(_terms_from_sums(w, "unbiased") for w in without))
        terms = dataclasses.replace(_terms_from_sums(grouped.full(), estimator), loo=loo, unbiased=unbiased)
    params = {"block_size": plan.block_rows, "n_tiles": plan.n_blocks * (plan.n_blocks + 1) // 2, "scheduler": plan.scheduler}
    return terms, params


def _block_leave_outs(terms: DcovTerms) -> tuple[DcovTerms, ...]:
    """The block estimate without each of G contiguous groups of its random blocks (in block order)."""
    rep = terms.replicates
    assert rep is not None
    bounds = row_groups(rep.shape[0], DEFAULT_CI_GROUPS)
    out = []
    for g in range(DEFAULT_CI_GROUPS):
        kept = np.r_[0 : bounds[g], bounds[g + 1] : rep.shape[0]]
        cxy, vx, vy = (float(v) for v in rep[kept].mean(axis=0))
        out.append(DcovTerms(n=terms.n, cxy=cxy, vx=vx, vy=vy))
    return tuple(out)


def _interval(func: str, terms: DcovTerms, level: float | None, value: float, f: Any, scale: str, estimator: str = "unbiased") -> Any:
    """The block-jackknife interval from the leave-one-group-out terms (None without ci); a biased estimate's
    (exact tiles) is the interval of the U-statistic from the same sums (intervals.estimator_interval).  The
    block road's estimate averages U-statistics with either estimator: its own interval.  ``estimator="biased"``
    without an unbiased form (the projection roads): the jackknife's bias-corrected centre."""
    if level is None or terms.loo is None:
        return None
    if terms.unbiased is None:
        return estimator_interval(value, loo_values(func, terms, f), level, scale=scale, estimator=estimator, metric=func)  # type: ignore[arg-type]
    full, loo = terms.unbiased
    return estimator_interval(value, None, level, scale=scale, estimator="biased",  # type: ignore[arg-type]
                              unbiased=(f(full), loo_values(func, dataclasses.replace(terms, loo=loo), f)))  # fmt: skip


def loo_values(func: str, terms: DcovTerms, f: Any) -> np.ndarray:
    """f of each leave-one-group-out terms; a clear error where one is undefined."""
    assert terms.loo is not None
    loo = []
    for g, t in enumerate(terms.loo):
        with np.errstate(all="ignore"):
            v = f(t)
        if not math.isfinite(v):
            raise DegenerateInputError(
                f"{func}: the sampling interval is undefined here: with row group {g} of {len(terms.loo)} left out the "
                f"estimate is undefined (a self-term is <= 0; n = {t.n}). Use more samples, or leave ci out.",
                reason="undefined_leave_out",
            )
        loo.append(v)
    return np.array(loo)


# ---------------------------------------------------------------------------
# univariate (exact) and random projections: one O(n log n) problem per direction
# ---------------------------------------------------------------------------


def _c(p: int) -> float:
    """C_p = √π·Γ((p+1)/2)/Γ(p/2), so that E|uᵀz| = ‖z‖/C_p for u uniform on the sphere S^{p−1}."""
    return math.exp(0.5 * math.log(math.pi) + math.lgamma((p + 1) / 2) - math.lgamma(p / 2))


def _directions(rng: np.random.Generator, d: int, k: int) -> np.ndarray:
    u = rng.standard_normal((d, k))
    return u / np.linalg.norm(u, axis=0, keepdims=True)


@dataclass(frozen=True, eq=False)
class ProjectionStatistic:
    """Projects the rows of x on the directions ``wx`` and of y on ``wy`` (all n values kept: O(n·K))."""

    wx: np.ndarray
    wy: np.ndarray
    names: tuple[str, str] = ("x", "y")

    def partial(self, blocks: Sequence[np.ndarray], start: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        x = finite_float64(blocks[0], self.names[0], start)
        y = finite_float64(blocks[1], self.names[1], start)
        return {start: (x @ self.wx, y @ self.wy)}

    def combine(self, a: dict, b: dict) -> dict:
        return {**a, **b}

    def finalize(self, state: dict) -> tuple[np.ndarray, np.ndarray]:
        starts = sorted(state)
        return np.concatenate([state[s][0] for s in starts]), np.concatenate([state[s][1] for s in starts])


def _univariate(u: np.ndarray, v: np.ndarray, estimator: str) -> tuple[float, float]:
    """(dCov²(u, v), the rounding scale of the self-term when u is v) of two 1-D samples."""
    u = u - u.mean()
    v = v - v.mean()
    s_ab, r, s = univariate_terms(np.ascontiguousarray(u), np.ascontiguousarray(v))
    return dcov_terms_from_sums(u.shape[0], s_ab, r, s, estimator), _magnitude(u.shape[0], s_ab, r, estimator)


def _projected(
    reps: list[Representation], estimator: str, n_proj: int, seed: int, options: EngineOptions, workers: int,
    bounds: np.ndarray | None = None,
) -> tuple[DcovTerms, dict[str, Any]]:  # fmt: skip
    """The random-projection (or, for 1-D inputs, the exact univariate) estimate from one pass.

    With ``bounds`` (contiguous row groups): also the estimate with row group g **and** direction
    group g left out together (the K directions cut into as many contiguous groups; the univariate
    road has one direction and leaves out rows only), recomputed from the projections held in memory
    (no second read): the interval then covers both sources of its error, the rows and the random
    directions (:func:`_projection_leave_outs`).
    """
    dx, dy = reps[0].d, reps[1].d
    exact = dx == 1 and dy == 1
    k = 1 if exact else n_proj
    rng = np.random.default_rng([seed, _SEED_PROJ])
    # x on U (for dCov(x, y)) and U' (for dVar(x) = E C²·dCov²(uᵀx, u'ᵀx), u ⟂⟂ u'); y on V, V'
    wx = np.concatenate([_directions(rng, dx, k), _directions(rng, dx, k)], axis=1)
    wy = np.concatenate([_directions(rng, dy, k), _directions(rng, dy, k)], axis=1)
    (px, py), plan = run(ProjectionStatistic(wx, wy), reps, check_pairing=False, options=options)
    cx, cy = _c(dx), _c(dy)

    def one(t: int) -> tuple[float, float, float, float, float]:
        cxy, _ = _univariate(px[:, t], py[:, t], estimator)
        vx, mx = _univariate(px[:, t], px[:, k + t], estimator)
        vy, my = _univariate(py[:, t], py[:, k + t], estimator)
        return cxy * cx * cy, vx * cx * cx, vy * cy * cy, mx * cx * cx, my * cy * cy

    with ThreadPoolExecutor(max_workers=max(1, min(workers, k))) as pool:  # the Numba kernel releases the GIL
        rows = np.array(list(pool.map(one, range(k))))
        loo = None if bounds is None else _projection_leave_outs(px, py, k, cx, cy, estimator, bounds, pool)
    reps_arr = rows[:, :3]
    cxy, vx, vy = (float(v) for v in reps_arr.mean(axis=0))
    mx, my = float(rows[:, 3].mean()), float(rows[:, 4].mean())
    terms = DcovTerms(
        n=reps[0].n, cxy=cxy, vx=vx, vy=vy,
        x_zero=bool(vx <= ZERO_TOL * mx), y_zero=bool(vy <= ZERO_TOL * my), x_const=mx == 0, y_const=my == 0,
        replicates=None if exact else reps_arr, loo=loo,
    )  # fmt: skip
    params = {"block_size": plan.block_rows, "n_blocks": plan.n_blocks, "scheduler": plan.scheduler}
    if not exact:
        params.update(n_projections=k, seed=seed, C_p=cx, C_q=cy)
    return terms, params


def _projection_leave_outs(
    px: np.ndarray, py: np.ndarray, k: int, cx: float, cy: float, estimator: str, bounds: np.ndarray, pool: Any
) -> tuple[DcovTerms, ...]:  # fmt: skip
    """The projection estimate with row group g and direction group g left out, for every g.

    Each value is exactly the projection road on the rows outside group g with the directions
    outside direction group g (the same directions a run with the same seed draws): the estimate
    of the rows and directions that remain.  Leaving both out at once makes the jackknife see
    both independent sources of error — the sampling of rows and the Monte Carlo choice of
    directions — so the interval is about the population value, not about the average over these
    K directions.  One direction (univariate inputs): rows only.
    """
    G = bounds.size - 1
    dgroups = None if k == 1 else row_groups(k, G)
    n = px.shape[0]

    def one(g: int) -> DcovTerms:
        keep = np.r_[0 : bounds[g], bounds[g + 1] : n]
        dirs = range(k) if dgroups is None else [t for t in range(k) if not dgroups[g] <= t < dgroups[g + 1]]
        acc = np.zeros(3)
        for t in dirs:
            u, v, u2, v2 = px[keep, t], py[keep, t], px[keep, k + t], py[keep, k + t]
            acc += (_univariate(u, v, estimator)[0] * cx * cy, _univariate(u, u2, estimator)[0] * cx * cx,
                    _univariate(v, v2, estimator)[0] * cy * cy)  # fmt: skip
        acc /= len(dirs)
        return DcovTerms(n=keep.size, cxy=float(acc[0]), vx=float(acc[1]), vy=float(acc[2]))

    return tuple(pool.map(one, range(G)))


# ---------------------------------------------------------------------------
# block U-statistics over seeded random blocks
# ---------------------------------------------------------------------------


def block_rows(n: int, block: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(permutation, bounds) of the random blocks (:func:`bigalign.metrics._blocks.partition`)."""
    return partition(n, block, seed)


def _ustats_of_block(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float, float]:
    """Exact unbiased (cxy, vx, vy) of one block and the rounding scales of vx, vy."""
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    nx, ny = np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", y, y)
    b = x.shape[0]
    ra, rb = np.zeros(b), np.zeros(b)
    ab, aa, bb = accumulate_distance_tile(sqdist(x, x, nx, nx), sqdist(y, y, ny, ny), x, x, y, y, nx, nx, ny, ny, True, ra, rb, ra, rb)
    return (
        hsic_from_sums(b, ab, ra, rb, "unbiased"),
        hsic_from_sums(b, aa, ra, ra, "unbiased"),
        hsic_from_sums(b, bb, rb, rb, "unbiased"),
        _magnitude(b, aa, ra, "unbiased"),
        _magnitude(b, bb, rb, "unbiased"),
    )


#: kept for the profiling scripts: the inputs wrapper of the shared block machinery
_Inputs = BlockInputs


def BlockDcovStatistic(inputs: BlockInputs, block: int, seed: int) -> RandomBlockStatistic:  # noqa: N802
    """The shared random-block statistic with dCor's per-block U-statistics."""
    return RandomBlockStatistic(inputs, block, seed, _ustats_of_block)


def _blocked(
    reps: list[Representation], block: int, seed: int, options: EngineOptions, workers: int
) -> tuple[DcovTerms, dict[str, Any]]:
    n = reps[0].n
    out, bparams = run_blocks(reps, block, seed, _ustats_of_block, options, workers)
    cxy, vx, vy = (float(v) for v in out[:, :3].mean(axis=0))
    terms = DcovTerms(
        n=n, cxy=cxy, vx=vx, vy=vy,
        x_zero=bool(vx <= ZERO_TOL * out[:, 3].mean()), y_zero=bool(vy <= ZERO_TOL * out[:, 4].mean()),
        x_const=bool(np.all(out[:, 3] == 0)), y_const=bool(np.all(out[:, 4] == 0)),
        replicates=out[:, :3],
    )  # fmt: skip
    sizes = bparams.pop("block_rows")
    return terms, {"block_rows": block, "block_sizes": sizes, **bparams}


# ---------------------------------------------------------------------------
# standard errors: jackknife over blocks / projections
# ---------------------------------------------------------------------------


def _jackknife(rep: np.ndarray, f: Any) -> float:
    """Delete-one jackknife standard error of f(mean of the replicate rows)."""
    m = rep.shape[0]
    loo = (rep.sum(axis=0)[None, :] - rep) / (m - 1)
    return jackknife_se(np.array([f(*row) for row in loo]))


# ---------------------------------------------------------------------------
# façades
# ---------------------------------------------------------------------------


def _check_int(func: str, name: str, value: Any, minimum: int, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidInputError(f"the {name!r} parameter of {func} must be an integer >= {minimum}; got {value!r} instead.")
    return int(value)


def resolve_method(method: str, n: int, dx: int, dy: int) -> tuple[str, str]:
    """(method, reason) for ``method="auto"`` (the one place the thresholds live)."""
    if method != "auto":
        if method == "projection" and dx == 1 and dy == 1:
            return "univariate", "requested projection: one-dimensional inputs are exact in O(n log n)"
        return method, "requested"
    if dx == 1 and dy == 1:
        return "univariate", "one-dimensional inputs: exact O(n log n) algorithm (Huo & Szekely 2016)"
    if n <= EXACT_MAX_N:
        return "exact", f"n = {n} <= {EXACT_MAX_N}: exact tiles"
    return "block", f"n = {n} > {EXACT_MAX_N}: block U-statistics (random projections are for testing, not estimation)"


@dataclass(frozen=True)
class DcorOptions:
    """The options of one dcor / dcov call (or one of partial_dcor's three), checked by ``_compute``."""

    estimator: str = "unbiased"
    method: str = "auto"
    block_rows: int | None = None
    n_projections: int | None = None
    seed: Any = 0
    ci: float | None = None
    engine: EngineOptions = EngineOptions()


def _compute(func: str, x: Any, y: Any, opts: DcorOptions) -> tuple[DcovTerms, str, dict[str, Any]]:
    estimator, method = opts.estimator, opts.method
    check_choice(func, "estimator", estimator, ESTIMATORS)
    check_choice(func, "method", method, METHODS)
    n = paired_n(x, y)
    check_unbiased_n(func, n, estimator)
    if n < 2:
        raise InvalidInputError(f"{func} needs at least 2 samples; got {n}.")
    seed = _check_int(func, "seed", opts.seed, 0, allow_none=False)
    if opts.block_rows is not None and method != "block":
        raise InvalidInputError(
            f"block_rows is the random block size of method='block'; with method={method!r} it does not apply "
            f"({func}'s block_size is only the engine's chunking). Drop block_rows, or use method='block'."
        )
    rows = _check_int(func, "block_rows", opts.block_rows, 1)
    n_proj = _check_int(func, "n_projections", opts.n_projections, 2)
    level = check_ci(func, opts.ci)
    bounds = None if level is None else row_groups(n, DEFAULT_CI_GROUPS, func=func)
    reps = prepare([x, y], ["x", "y"])
    chosen, reason = resolve_method(method, n, reps[0].d, reps[1].d)
    if level is not None and chosen == "projection" and (n_proj or DEFAULT_PROJECTIONS) < 2 * DEFAULT_CI_GROUPS:
        raise InvalidInputError(
            f"{func}: ci= on method='projection' leaves out one of {DEFAULT_CI_GROUPS} groups of the directions with each "
            f"row group and needs at least {2 * DEFAULT_CI_GROUPS} projections; got n_projections={n_proj}. Use "
            f"n_projections >= {2 * DEFAULT_CI_GROUPS}, or leave ci out."
        )
    eo = opts.engine
    workers = _n_workers(*resolve_scheduler(eo.scheduler, eo.client), eo.num_workers)
    if n_proj is not None and method != "projection":
        raise InvalidInputError(f"n_projections applies to method='projection' only; got it with method={method!r}.")
    if chosen == "exact":
        terms, params = _exact(reps, estimator, eo, bounds)
        name = "exact-tiles"
    elif chosen == "univariate":
        terms, params = _projected(reps, estimator, 1, seed, eo, workers, bounds)
        name = "univariate-exact"
    elif chosen == "projection":
        terms, params = _projected(reps, estimator, n_proj or DEFAULT_PROJECTIONS, seed, eo, workers, bounds)
        name = "projection"
        if level is not None:
            params["ci_directions"] = (
                f"each row group left out together with one of {DEFAULT_CI_GROUPS} groups of the random directions: "
                "about the population value, including the Monte Carlo error of the directions"
            )
        params["stderr"] = (
            "jackknife over projections: the Monte Carlo error of the projection average around the exact "
            "full-sample statistic; large in many dimensions"
        )
    else:
        b = rows or DEFAULT_BLOCK
        if b < 4:
            raise InvalidInputError(
                f"method='block' needs blocks of at least 4 rows (the U-statistics' n(n-3)); got block_rows={b}. "
                "Use block_rows >= 4."
            )
        if n // b < 2:
            raise InvalidInputError(
                f"method='block' needs at least 2 random blocks for its standard error; n = {n} holds {n // b} block(s) of "
                f"block_rows = {b}. Use a smaller block_rows (<= {n // 2}) or method='exact'."
            )
        if level is not None and n // b < 2 * DEFAULT_CI_GROUPS:
            raise InvalidInputError(
                f"{func}: ci= on method='block' is the jackknife over {DEFAULT_CI_GROUPS} groups of the random blocks and "
                f"needs at least {2 * DEFAULT_CI_GROUPS} blocks; n = {n} holds {n // b} of block_rows = {b}. Use "
                f"block_rows <= {n // (2 * DEFAULT_CI_GROUPS)}, method='exact', or leave ci out."
            )
        terms, params = _blocked(reps, b, seed, eo, workers)
        name = "block"
        if level is not None:
            terms = dataclasses.replace(terms, loo=_block_leave_outs(terms))
            params["ci_blocks"] = (
                f"jackknife over {DEFAULT_CI_GROUPS} groups of the random blocks (i.i.d. under exchangeable rows): about "
                "the population value; the random blocks ignore storage order, so rows that depend on their "
                "neighbours are not protected against (the exact road's contiguous row groups are)"
            )
        params["stderr"] = "jackknife over the random blocks"
        if estimator == "biased":
            params["estimand"] = (
                "population dCor², from the bias-corrected block U-statistics; the full-sample V-statistic "
                "exceeds it by O(1/n)"
            )
    params = {"method_reason": reason, **params}
    if chosen in ("univariate", "projection"):
        params.pop("n_blocks", None)
        params.pop("block_size", None)
    return terms, name, params


def _flags(t: DcovTerms) -> tuple[str, ...]:
    """``"x_constant"`` (all distances 0) or ``"x_zero_dvar"`` (dVar² 0 up to rounding, e.g. equidistant rows)."""
    out = []
    for name, zero, const in (("x", t.x_zero, t.x_const), ("y", t.y_zero, t.y_const)):
        if const:
            out.append(f"{name}_constant")
        elif zero:
            out.append(f"{name}_zero_dvar")
    return tuple(out)


_DOC = """
    estimator : {"unbiased", "biased"}, default="unbiased"
        Both return the *squared* quantity (dCov², dCor²).  ``"unbiased"``: the
        U-centred (bias-corrected) statistic of Székely & Rizzo (2014), as
        ``dcor.u_distance_covariance_sqr`` / ``dcor.u_distance_correlation_sqr``:
        can be negative (needs n ≥ 4).  ``"biased"``: the V-statistic, as
        ``dcor.distance_covariance_sqr`` / ``dcor.distance_correlation_sqr``:
        ≥ 0 when exact, inflated when the dimension is not small next to n.
    method : {"auto", "exact", "block", "projection"}, default="auto"
        ``"auto"``: exact (O(n log n)) for one-dimensional x and y; exact tiles
        for n ≤ 20,000; block U-statistics beyond.  See the module notes.  The
        choice and the reason are in ``result.parameters["method_reason"]``.
    block_rows : int, optional
        ``method="block"`` only (an error with any other method): B, the rows
        of each random block (default 1024, at least 4): the estimate depends
        on it (statistically), the cost is O(n·B·d).
    block_size : int, optional
        The engine's chunking only, never the answer (beyond rounding):
        rows per tile side of the exact road (default 2048), rows per task of
        the block road (whole random blocks), rows per read of the projection road.
    n_projections : int, optional
        ``method="projection"``: directions per input (default 50).
    seed : int, default=0
        Seeds the random blocks or directions; the same seed gives identical results.
    ci : float, optional
        A sampling interval at this level (e.g. 0.95) about the population
        value, in ``result.ci``: the block jackknife over 20 contiguous row
        groups, whose leave-one-group-out statistics are exact and come from the
        same tile pass (``method="exact"``; adds 2·n·20 floats of memory), or
        over 20 groups of the random blocks (``method="block"``, at least 40
        blocks; rows assumed exchangeable).  ``method="projection"`` (at least
        40 directions): row group g is left out together with one of 20 groups
        of the random directions, recomputed from the projections kept in
        memory (no second read; 20× the O(K·n log n) univariate work), so the
        interval covers the directions' Monte Carlo error as well as the rows;
        one-dimensional inputs (exact univariate road): rows only.  dCor² on the
        logit scale, dCov² as is.
        The biased (V-statistic) estimate's interval on the exact tiles is the
        U-statistic's from the same sums (the same population value,
        ``parameters["ci_center"]``): at small n its ``value`` can lie above it
        (flag ``"value_outside_ci"``); on the projection and univariate roads it
        is centred at the jackknife's bias-corrected estimate.
    scheduler : {"sync", "threads", "distributed"}, distributed.Client or None
        As for :func:`bigalign.cka`.
    client : distributed.Client, optional
    num_workers : int, optional
    memory_per_worker : int, optional
        Bytes of rows one task of the block or projection method may hold
        (default 512 MiB, or planned from an active :func:`bigalign.memory_limit`)."""


def _doc(func: Any) -> Any:
    func.__doc__ = func.__doc__.replace("    {dcor}\n", _DOC.lstrip("\n") + "\n")
    return func


def _degenerate(t: DcovTerms) -> None:
    """Raise for dCor² = 0/0: a self-term that is exactly 0 (constant input) or 0 up to rounding."""
    for flag in _flags(t):
        name = flag[0]
        v = t.vx if name == "x" else t.vy
        detail = (
            f"{name} is constant, so its distances are all 0"
            if flag.endswith("constant")
            else f"dCov²({name}, {name}) is 0 up to rounding ({v:.3g}): the U-centred distance matrix of {name} "
            f"vanishes, which happens when all its rows are equidistant (e.g. one-hot rows)"
        )
        raise DegenerateInputError(
            f"distance correlation is undefined: {detail}, and dCor² is 0/0. Expected representations whose rows "
            "vary. Use dcov(), which is 0 for it, or drop the degenerate representation.",
            reason=flag,
        )


@_doc
def dcor(
    x: Any,
    y: Any,
    /,
    *,
    estimator: Literal["unbiased", "biased"] = "unbiased",
    method: Literal["auto", "exact", "block", "projection"] = "auto",
    block_rows: int | None = None,
    n_projections: int | None = None,
    seed: int = 0,
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
) -> Result:
    """Squared distance correlation dCor² of two representations (Székely et al. 2007).

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
        numpy, dask or zarr arrays or store layers; the same samples in the same order.
    {dcor}

    Returns
    -------
    Result
        ``value``: dCor² = dCov²(x, y)/√(dCov²(x, x)·dCov²(y, y)) of the chosen
        estimator (the V-statistic's for biased, the bias-corrected one for
        unbiased; an estimate can be negative near independence, flagged
        ``"negative_unbiased_estimate"``); terms ``dcov2_xy``, ``dvar2_x``,
        ``dvar2_y``; ``stderr`` of dCor² for block (jackknife over blocks) and
        projection (jackknife over directions); ``None`` when exact.

    Raises
    ------
    DegenerateInputError
        x or y constant (or, unbiased, with all rows equidistant): dCor² is 0/0;
        an estimated self-term ≤ 0 (block/projection).
    InvalidInputError, NonFiniteError, PairingError
        Mismatched n, n < 4 (unbiased) or < 2, NaN/Inf (the message names the
        rows), bad options.

    Notes
    -----
    exact: O(n²·d) time, O(n + tile²) memory.  block: O(n·B·d) time, reads
    each row once — but a task's rows are random, so a chunked store is
    decoded about once per task; tasks are as large as ``memory_per_worker``
    allows (2 per worker when the rows fit), so a store is decoded about
    2 × workers times (numpy/dask arrays in memory: read once).  projection:
    O(n·K·(d + log n)) time, O(n·K) memory.  Where the estimators differ from
    the ``dcor`` package: a constant input raises here (``dcor`` returns 0).

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> x = np.random.default_rng(0).normal(size=(200, 3))
    >>> round(bigalign.dcor(x, 2 * x + 1, estimator="biased").value, 12)
    1.0
    """
    opts = DcorOptions(estimator, method, block_rows, n_projections, seed, ci, EngineOptions.build("dcor", engine))
    return dcor_with_loo(x, y, opts)[0]


#: the roads whose leave-one-group-out values are on fewer rows (a biased estimate's are biased more):
#: their biased interval is centred at the jackknife's bias-corrected estimate
_ROW_LOO = ("exact-tiles", "projection", "univariate-exact")


def _dcor_of(t: DcovTerms) -> float:
    return float(t.cxy / math.sqrt(t.vx * t.vy)) if t.vx > 0 and t.vy > 0 else float("nan")


def dcor_with_loo(x: Any, y: Any, opts: DcorOptions, func: str = "dcor") -> tuple[Result, np.ndarray | None]:
    """:func:`dcor` of x and y with the options ``opts``, and the exact leave-one-group-out dCor² its ``ci``
    comes from (None without ci)."""
    estimator, ci = opts.estimator, opts.ci
    terms, name, params = _compute(func, x, y, opts)
    _degenerate(terms)
    if terms.vx <= 0 or terms.vy <= 0:
        raise DegenerateInputError(
            f"distance correlation is undefined here: the estimated dCov²(x, x) = {terms.vx:.3g} and dCov²(y, y) = "
            f"{terms.vy:.3g} must both be positive ({name}, n = {terms.n}). Use method='exact', more samples, or "
            "larger blocks.",
            reason="nonpositive_self_dcov",
        )

    def f(cxy: float, vx: float, vy: float) -> float:
        return float(cxy / math.sqrt(vx * vy))

    value = f(terms.cxy, terms.vx, terms.vy)
    stderr = None if terms.replicates is None else _jackknife(terms.replicates, lambda c, a, b: f(c, a, b) if a > 0 and b > 0 else float("nan"))
    loo = None if ci is None or terms.loo is None else loo_values(func, terms, _dcor_of)
    # a biased V-statistic: on exact tiles the interval of the U-statistic dCor² from the same sums, on the projection
    # roads the jackknife's bias-corrected centre (the block road's estimate is already the population value's)
    interval = None if loo is None else _interval(func, terms, float(ci), value, _dcor_of, "logit",
                                                  "biased" if estimator == "biased" and name in _ROW_LOO else "unbiased")
    if stderr is not None and not math.isfinite(stderr):
        stderr = None
        params["stderr"] = "unavailable: a leave-one-out replicate is undefined (self-term <= 0)"
    flags = ("negative_unbiased_estimate",) if value < 0 else ()
    return with_interval(Result(
        metric="dcor",
        value=value,
        estimator=estimator,
        method=name,
        n_samples=terms.n,
        terms={"dcov2_xy": terms.cxy, "dvar2_x": terms.vx, "dvar2_y": terms.vy},
        parameters=params,
        stderr=stderr,
        flags=flags,
    ), interval), loo


@_doc
def dcov(
    x: Any,
    y: Any,
    /,
    *,
    estimator: Literal["unbiased", "biased"] = "unbiased",
    method: Literal["auto", "exact", "block", "projection"] = "auto",
    block_rows: int | None = None,
    n_projections: int | None = None,
    seed: int = 0,
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
) -> Result:
    """Squared distance covariance dCov² of two representations.

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
    {dcor}

    Returns
    -------
    Result
        ``value``: dCov², the V-statistic (biased, as
        ``dcor.distance_covariance_sqr``) or the bias-corrected one (unbiased,
        as ``dcor.u_distance_covariance_sqr``; can be negative, flagged
        ``"negative_unbiased_estimate"``, as can a block estimate); terms ``dcov2_xy``,
        ``dvar2_x``, ``dvar2_y``.  A constant x or y gives exactly 0 with the
        flag ``"x_constant"`` / ``"y_constant"`` (``"x_zero_dvar"`` when dVar²(x) is 0 only up to
        rounding, e.g. equidistant rows with the unbiased estimator).

    Notes
    -----
    dCov²ᵤ(x, y) = 4·HSICᵤ(x, y) with the distance-induced kernel (Sejdinovic
    et al. 2013); the biased V-statistics satisfy dCov²ₙ = 4·tr(KHLH)/n².

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> x = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> round(bigalign.dcov(x, x, estimator="biased").value, 12)   # dVar²ₙ = Σ Aᵢⱼ² / n² = 13/16
    0.8125
    """
    opts = DcorOptions(estimator, method, block_rows, n_projections, seed, ci, EngineOptions.build("dcov", engine))
    terms, name, params = _compute("dcov", x, y, opts)
    flags = _flags(terms)
    if estimator == "biased" and terms.cxy < 0 and terms.replicates is None:
        raise AssertionError(f"internal error: biased dCov² = {terms.cxy!r} < 0")  # a V-statistic is ≥ 0
    value = float(terms.cxy)
    f = lambda c, a, b: c  # noqa: E731
    stderr = None if terms.replicates is None else _jackknife(terms.replicates, f)
    if stderr is not None and not math.isfinite(stderr):
        stderr = None
        params["stderr"] = "unavailable: a leave-one-out replicate is undefined"
    if value < 0:
        flags += ("negative_unbiased_estimate",)
    interval = _interval(
        "dcov", terms, None if ci is None else float(ci), value, lambda t: float(t.cxy), "identity",
        "biased" if estimator == "biased" and name in _ROW_LOO else "unbiased",
    )  # fmt: skip
    return with_interval(Result(
        metric="dcov",
        value=value,
        estimator=estimator,
        method=name,
        n_samples=terms.n,
        terms={"dcov2_xy": terms.cxy, "dvar2_x": terms.vx, "dvar2_y": terms.vy},
        parameters=params,
        stderr=stderr,
        flags=flags,
    ), interval)
