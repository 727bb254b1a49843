"""Permutation nulls for alignment measures: p-values and null-calibrated scores.

Under H0 (the rows of x carry no information about which row of y they are
paired with) every re-pairing y[π] is as likely as the observed one, so the
observed statistic T is one draw among {T(π)}.  With B random permutations and
b = #{T(π) ≥ T},

    p = (b + 1)/(B + 1)                        (exact level: P(p ≤ α) ≤ α)
    se(p) = √(p(1 − p)/B)                      (its Monte-Carlo error)
    z = (T − mean T(π)) / sd T(π)              (the null-calibrated score)

z says how many null standard deviations the alignment lies above what
unrelated representations of the same sizes, widths and marginal geometry
score; unlike the raw value it can be compared across layer widths and sample
sizes (a biased CKA of 0.3 may be chance at d ≫ n; z is not fooled by that).

The permuted statistic
----------------------
Every measure here is a fixed function of permutation-invariant side terms
(self-similarities, row sums, means) and one permuted pair sum

    S(π) = Σᵢⱼ aᵢⱼ · b_{π(i)π(j)},

with a, b the pairwise kernels/distances of x and y (inner products of the
centred rows for CKA, of the raw rows for KA, Euclidean distances for dCor,
the chosen RDM distances, centred, for RSA).  S(π) is computed in tiles of
``block_size`` rows: the tile a_IJ once, then for each permutation the tile of
b between the permuted rows π(I), π(J), from the rows themselves — an n×n
matrix is never held (when n ≤ ``block_size`` the whole problem is one tile).
For linear kernels with d_x·d_y small the feature form S(π) = ‖X_cᵀY_c[π]‖²_F
is cheaper and used instead.  Mutual kNN permutes the neighbour lists (found
once): N_{y∘π}(i) = π⁻¹(N_y(π(i))).

The inputs are read once into memory (float64, n·(d_x + d_y) numbers);
cost per permutation O(n²·d_y) (tiles), O(n·d_x·d_y) (features) or O(n·k)
(mutual kNN).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal, Unpack

import numpy as np

from .._checks import finite_float64
from .._numba.dcov import DISTANCE_CODES
from .._numba.permute import permuted_traces
from .._numba.topk import overlap_counts
from ..engine import prepare, requested_budget
from ..errors import DegenerateInputError, InvalidInputError
from ..options import EngineKwargs, EngineOptions
from ..result import Result
from ._common import check_choice, check_int
from .dcor import dcov_terms_from_sums
from .neighbors import _check_k, search
from .rsa import tile_distances, row_patterns

__all__ = [
    "PermutationResult", "dcor_statistic", "draw_permutations", "null_summary", "permutation_test", "permuted_pair_sums",
    "permutation_tile", "run_null",
]  # fmt: skip

METRICS = ("cka", "ka", "dcor", "rsa", "mutual_knn")
DEFAULT_PERMUTATIONS = 999
DEFAULT_TILE = 1024
#: tile-sized float64 arrays one permuted pair sum holds at a time (the tile of a, that of b, their temporaries)
_TILE_ARRAYS = 6
#: the engine options of the in-process roads (the permuted sums run here, not on the engine's scheduler)
IN_PROCESS_OPTIONS = ("block_size", "memory_per_worker")
_TAG = 0x9E47


@dataclass(frozen=True, repr=False)
class PermutationResult(Result):
    """A :class:`~bigalign.result.Result` (``value`` = the observed measure) with its permutation null.

    Attributes
    ----------
    pvalue : float
        (b + 1)/(B + 1), b = #{permuted statistic ≥ observed}; one-sided
        (larger = more aligned; for distances the statistic is the negated distance).
    pvalue_stderr : float
        Monte-Carlo standard error of ``pvalue``, √(p(1 − p)/B).
    calibrated : float or None
        (observed − null mean)/null sd; None when every permuted value equals
        the observed one (sd 0, flag ``"degenerate_null"``).
    null_mean, null_sd : float
        Mean and standard deviation (ddof = 1) of the permuted statistic.
    n_permutations, n_at_least : int
        B and b.
    alpha : float
        The level ``reject`` refers to.
    """

    pvalue: float = 1.0
    pvalue_stderr: float = 0.0
    calibrated: float | None = None
    null_mean: float = 0.0
    null_sd: float = 0.0
    n_permutations: int = 0
    n_at_least: int = 0
    alpha: float = 0.05

    @property
    def reject(self) -> bool:
        """Whether H0 is rejected at level ``alpha`` (``pvalue <= alpha``)."""
        return bool(self.pvalue <= self.alpha)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.update(
            pvalue=float(self.pvalue), pvalue_stderr=float(self.pvalue_stderr),
            calibrated=None if self.calibrated is None else float(self.calibrated), null_mean=float(self.null_mean),
            null_sd=float(self.null_sd), n_permutations=int(self.n_permutations), n_at_least=int(self.n_at_least),
            alpha=float(self.alpha), reject=self.reject,
        )  # fmt: skip
        return out

    def __repr__(self) -> str:
        z = "None" if self.calibrated is None else f"{self.calibrated:.3g}"
        return (
            f"PermutationResult({self.metric}={self.value:.6g}, pvalue={self.pvalue:.4g} ± {self.pvalue_stderr:.2g}, "
            f"calibrated={z}, n_permutations={self.n_permutations}, n_samples={self.n_samples})"
        )


# ---------------------------------------------------------------------------
# permutations and the permuted pair sum
# ---------------------------------------------------------------------------


def draw_permutations(n: int, count: int, seed: int) -> np.ndarray:
    """``count`` seeded uniform permutations of range(n), one per row (sequential draws)."""
    rng = np.random.default_rng([seed, _TAG])
    out = np.empty((count, n), dtype=np.int64)
    for k in range(count):
        out[k] = rng.permutation(n)
    return out


PairFn = Callable[[np.ndarray, np.ndarray, int, int], np.ndarray]


def permuted_pair_sums(fa: PairFn, fb: PairFn, n: int, perms: np.ndarray, tile: int) -> np.ndarray:
    """S(π) = Σᵢⱼ a(i, j)·b(π(i), π(j)) for each row π of ``perms`` (π = identity gives the observed sum).

    ``fa(rows_i, rows_j, ...)`` returns the tile of a between two arrays of row indices (and the same for
    ``fb``); tiles are at most ``tile`` × ``tile``.  One tile (n ≤ tile): both kernels once, then a compiled
    loop over the permutations.  Otherwise for each tile (I, J ≥ I) of a, the tile of b between the
    permuted rows of every permutation, recomputed from the rows (no n×n matrix).
    """
    out = np.zeros(perms.shape[0])
    idx = np.arange(n)
    if n <= tile:
        a = np.ascontiguousarray(fa(idx, idx, 0, 0))
        b = np.ascontiguousarray(fb(idx, idx, 0, 0))
        permuted_traces(a, b, np.ascontiguousarray(perms), out)
        return out
    starts = list(range(0, n, tile))
    for bi, si in enumerate(starts):
        I = idx[si : si + tile]
        for sj in starts[bi:]:
            J = idx[sj : sj + tile]
            a = fa(I, J, si, sj)
            w = 1.0 if si == sj else 2.0  # the symmetric tile (J, I)
            for k, p in enumerate(perms):
                out[k] += w * float(np.vdot(a, fb(p[I], p[J], -1, -1)))
    return out


# ---------------------------------------------------------------------------
# the measures' permuted statistics
# ---------------------------------------------------------------------------


def _gram_fn(z: np.ndarray) -> PairFn:
    return lambda i, j, si, sj: z[i] @ z[j].T


def _feature_sums(u: np.ndarray, v: np.ndarray, perms: np.ndarray, tile: int) -> np.ndarray:
    """‖Σᵢ uᵢ v_{π(i)}ᵀ‖²_F per permutation, accumulated over row blocks."""
    n = u.shape[0]
    out = np.empty(perms.shape[0])
    for k, p in enumerate(perms):
        m = np.zeros((u.shape[1], v.shape[1]))
        for s in range(0, n, tile):
            m += u[s : s + tile].T @ v[p[s : s + tile]]
        out[k] = float(np.vdot(m, m))
    return out


def _linear(x: np.ndarray, y: np.ndarray, perms: np.ndarray, tile: int, centre: bool) -> np.ndarray:
    """‖UᵀV_π‖²_F for every permutation (U, V the rows, centred or not); feature or Gram form, whichever is cheaper."""
    u = x - x.mean(0) if centre else x
    v = y - y.mean(0) if centre else y
    n, dx, dy = u.shape[0], u.shape[1], v.shape[1]
    per_gram = n * n if n <= tile else n * n * dy
    if n * dx * dy <= per_gram:
        return _feature_sums(u, v, perms, tile)
    return permuted_pair_sums(_gram_fn(u), _gram_fn(v), n, perms, tile)


def _cka_stat(x: np.ndarray, y: np.ndarray, estimator: str, tile: int) -> Callable[[np.ndarray], np.ndarray]:
    n = x.shape[0]
    # each side in units of its mean squared centred row norm (CKA is scale free; keeps every square in range)
    u = x - x.mean(0)
    v = y - y.mean(0)
    cu, cv = float(np.vdot(u, u)) / n, float(np.vdot(v, v)) / n
    for c, nm in ((cu, "x"), (cv, "y")):
        if c == 0:
            raise DegenerateInputError(
                f"CKA is undefined: {nm} is constant, so its centred kernel is zero (0/0). Expected representations "
                "that vary across samples.",
                reason=f"{nm}_constant",
            )
    u, v = u / math.sqrt(cu), v / math.sqrt(cv)
    p, q = np.einsum("ij,ij->i", u, u), np.einsum("ij,ij->i", v, v)

    def hsic(f: np.ndarray | float, t: np.ndarray | float, P: float, Q: float) -> Any:
        if estimator == "biased":
            return f / (n - 1) ** 2
        return (f - t + P * Q / ((n - 1) * (n - 2)) - 2.0 * t / (n - 2)) / (n * (n - 3))

    def self_f(w: np.ndarray) -> float:
        g = w.T @ w
        return float(np.vdot(g, g))

    hxx = hsic(self_f(u), float(p @ p), float(p.sum()), float(p.sum()))
    hyy = hsic(self_f(v), float(q @ q), float(q.sum()), float(q.sum()))
    if not (hxx > 0 and hyy > 0):
        raise DegenerateInputError(
            f"unbiased CKA is undefined here: HSIC(x, x) = {hxx:.3g} and HSIC(y, y) = {hyy:.3g} must be positive "
            f"(n = {n}). Use more samples or estimator='biased'.",
            reason="nonpositive_self_hsic",
        )

    def stat(perms: np.ndarray) -> np.ndarray:
        f = _linear(u, v, perms, tile, centre=False)
        t = q[perms] @ p
        return hsic(f, t, float(p.sum()), float(q.sum())) / math.sqrt(hxx * hyy)

    return stat


def _ka_stat(x: np.ndarray, y: np.ndarray, tile: int) -> Callable[[np.ndarray], np.ndarray]:
    n = x.shape[0]
    cx, cy = float(np.vdot(x, x)) / n, float(np.vdot(y, y)) / n
    for c, nm in ((cx, "x"), (cy, "y")):
        if c == 0:
            raise DegenerateInputError(
                f"kernel alignment is undefined: {nm} is identically zero, so its kernel has zero norm.", reason=f"{nm}_zero"
            )
    u, v = x / math.sqrt(cx), y / math.sqrt(cy)
    nu, nv = float(np.linalg.norm(u.T @ u)), float(np.linalg.norm(v.T @ v))
    return lambda perms: _linear(u, v, perms, tile, centre=False) / (nu * nv)


def dcor_statistic(x: np.ndarray, y: np.ndarray, estimator: str, tile: int, test: bool) -> Callable[[np.ndarray], np.ndarray]:
    n = x.shape[0]
    xs, ys = x - x[: min(n, 1024)].mean(0), y - y[: min(n, 1024)].mean(0)
    nx, ny = np.einsum("ij,ij->i", xs, xs), np.einsum("ij,ij->i", ys, ys)
    code = DISTANCE_CODES["euclidean"]

    def dist(z: np.ndarray, nz: np.ndarray) -> PairFn:
        return lambda i, j, si, sj: tile_distances(np.ascontiguousarray(z[i]), np.ascontiguousarray(z[j]), nz[i], nz[j], code)

    fa, fb = dist(xs, nx), dist(ys, ny)
    ident = np.arange(n)[None, :]
    r = _row_sums(fa, n, tile)
    s = _row_sums(fb, n, tile)
    saa = float(permuted_pair_sums(fa, fa, n, ident, tile)[0])
    sbb = float(permuted_pair_sums(fb, fb, n, ident, tile)[0])
    vx = dcov_terms_from_sums(n, saa, r, r, estimator)
    vy = dcov_terms_from_sums(n, sbb, s, s, estimator)
    if not test:
        for v, nm in ((vx, "x"), (vy, "y")):
            if not v > 0:
                raise DegenerateInputError(
                    f"distance correlation is undefined: dCov²({nm}, {nm}) = {v:.3g} is not positive (a constant "
                    "representation, or equidistant rows), so dCor² is 0/0.",
                    reason=f"{nm}_zero_dvar",
                )

    def stat(perms: np.ndarray) -> np.ndarray:
        sab = permuted_pair_sums(fa, fb, n, perms, tile)
        c = np.array([dcov_terms_from_sums(n, float(sab[k]), r, s[perms[k]], estimator) for k in range(perms.shape[0])])
        if test:  # dcor.independence.distance_covariance_test: n·dCov²_V
            return n * c
        return c / math.sqrt(vx * vy)  # dCor² (as bigalign.dcor), biased or bias-corrected

    return stat


def _row_sums(f: PairFn, n: int, tile: int) -> np.ndarray:
    idx = np.arange(n)
    out = np.zeros(n)
    for si in range(0, n, tile):
        I = idx[si : si + tile]
        for sj in range(0, n, tile):
            out[I] += f(I, idx[sj : sj + tile], si, sj).sum(axis=1)
    return out


def _rsa_stat(x: np.ndarray, y: np.ndarray, distance: str, tile: int) -> Callable[[np.ndarray], np.ndarray]:
    """Pearson correlation of the upper triangles: Σ_{i≠j} ãᵢⱼ b̃_{π(i)π(j)} / (2·√(Σã²Σb̃²)/…) with ã = a − ā off the diagonal."""
    n = x.shape[0]
    N = n * (n - 1) / 2
    code = DISTANCE_CODES["cosine" if distance == "correlation" else distance]

    def prep(z: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
        z = row_patterns(z, name, distance)
        return z, np.einsum("ij,ij->i", z, z)

    xs, nx = prep(x, "x")
    ys, ny = prep(y, "y")

    def raw(z: np.ndarray, nz: np.ndarray) -> PairFn:
        def f(i: np.ndarray, j: np.ndarray, si: int, sj: int) -> np.ndarray:
            d = tile_distances(np.ascontiguousarray(z[i]), np.ascontiguousarray(z[j]), nz[i], nz[j], code)
            d[i[:, None] == j[None, :]] = 0.0  # the diagonal is not a pair (exact zeros whatever the distance)
            return d
        return f

    ra, rb = raw(xs, nx), raw(ys, ny)
    ma = float(_row_sums(ra, n, tile).sum()) / (2 * N)  # means over the N pairs
    mb = float(_row_sums(rb, n, tile).sum()) / (2 * N)

    def centred(f: PairFn, m: float) -> PairFn:
        def g(i: np.ndarray, j: np.ndarray, si: int, sj: int) -> np.ndarray:
            d = f(i, j, si, sj) - m
            d[i[:, None] == j[None, :]] = 0.0
            return d
        return g

    fa, fb = centred(ra, ma), centred(rb, mb)
    ident = np.arange(n)[None, :]
    vaa = float(permuted_pair_sums(fa, fa, n, ident, tile)[0])
    vbb = float(permuted_pair_sums(fb, fb, n, ident, tile)[0])
    for v, nm in ((vaa, "x"), (vbb, "y")):
        if not v > 0:
            raise DegenerateInputError(
                f"RSA is undefined: all {distance} distances of {nm} are equal, so their correlation is 0/0.",
                reason=f"{nm}_constant_distances",
            )
    return lambda perms: permuted_pair_sums(fa, fb, n, perms, tile) / math.sqrt(vaa * vbb)


def permutation_tile(func: str, options: EngineOptions, reps: list, road: str) -> int:
    """Tile side of the in-process permuted pair sums, from the call's engine options.

    ``block_size`` is the tile side; without it the default (1024) shrinks so that the
    tile-sized arrays in flight fit ``memory_per_worker`` (or an active memory_limit), which
    must also hold x and y themselves (they are read into memory).  ``scheduler``, ``client``
    and ``num_workers`` do not apply (nothing runs on the engine): an InvalidInputError says so.
    """
    other = [k for k in ("scheduler", "client", "num_workers") if getattr(options, k) is not None]
    if other:
        raise InvalidInputError(
            f"{func} got {', '.join(other)}, which do not apply to {road}: the permuted sums run in this process on "
            f"x and y read into memory, not on the engine's scheduler. The engine options that apply here are "
            f"{list(IN_PROCESS_OPTIONS)} (the tile side, and the memory that sizes it). Drop {', '.join(other)}."
        )
    budget = requested_budget(options.memory_per_worker)  # None unless memory_per_worker / memory_limit constrain it
    if budget is not None:
        held = reps[0].n * sum(r.d for r in reps) * 8
        if held > budget:
            raise InvalidInputError(
                f"{func} reads x and y into memory as float64 ({held / 2**20:.1f} MiB at n = {reps[0].n}), over the memory "
                f"budget of {budget / 2**20:.1f} MiB (memory_per_worker / memory_limit). Raise memory_per_worker, or "
                "test on a subsample of the rows."
            )
    if options.block_size is not None:
        return int(options.block_size)
    if budget is None:
        return DEFAULT_TILE
    return max(1, min(DEFAULT_TILE, math.isqrt((budget - held) // (8 * _TILE_ARRAYS))))


def _knn_stat(x: Any, y: Any, k: int, options: EngineOptions) -> tuple[Callable[[np.ndarray], np.ndarray], int]:
    """The permuted mean overlap, and the rows per tile side of the one neighbour search."""
    n = x.n
    _check_k("permutation_test", k, n)
    if options.scheduler is None and options.client is None:
        options = options.replace(scheduler="sync")  # one search of in-memory-sized data: no dask by default
    (lx, ly), found = search([x, y], k, options)
    nx, ny = np.ascontiguousarray(lx.idx[:, :k]), ly.idx[:, :k]
    ks = np.array([k], dtype=np.int64)

    def stat(perms: np.ndarray) -> np.ndarray:
        out = np.empty(perms.shape[0])
        for t, p in enumerate(perms):
            inv = np.empty_like(p)
            inv[p] = np.arange(p.size)
            out[t] = overlap_counts(nx, np.ascontiguousarray(inv[ny[p]]), ks)[:, 0].mean() / k
        return out

    return stat, int(found["block_size"])


# ---------------------------------------------------------------------------
# façade
# ---------------------------------------------------------------------------


def null_summary(observed: float, null: np.ndarray, tol: float, tie_u: float | None = None) -> dict[str, Any]:
    """p-value, its Monte-Carlo error, the null moments and the calibrated score.

    ``tie_u`` None: p = (b + 1)/(B + 1), b = #{T(π) ≥ T} (ties count as extreme).  A number u in
    [0, 1): the randomized p-value (g + u·(e + 1))/(B + 1), g = #{T(π) > T}, e = #{T(π) = T}
    (ties up to ``tol``), uniform on (0, 1) under H0 even for a discrete statistic.
    """
    B = null.size
    b = int(np.count_nonzero(null >= observed - tol))
    if tie_u is None:
        p = (b + 1) / (B + 1)
    else:
        g = int(np.count_nonzero(null > observed + tol))
        p = (g + tie_u * (b - g + 1)) / (B + 1)
    mean, sd = float(null.mean()), float(null.std(ddof=1)) if B > 1 else 0.0
    return {
        "pvalue": p, "pvalue_stderr": math.sqrt(p * (1 - p) / B), "n_at_least": b, "null_mean": mean, "null_sd": sd,
        "calibrated": None if not sd > tol else (observed - mean) / sd,
    }  # fmt: skip


def tie_uniform(seed: int) -> float:
    """The seeded uniform that breaks ties of a randomized p-value (independent of the permutations)."""
    return float(np.random.default_rng([seed, _TAG, 1]).uniform())


def run_null(stat: Callable[[np.ndarray], np.ndarray], n: int, n_permutations: int, seed: int, batch: int = 64) -> tuple[float, np.ndarray, float]:
    """(observed, permuted values, tie tolerance): the statistic at the identity and at B seeded permutations."""
    obs = float(stat(np.arange(n)[None, :])[0])
    perms = draw_permutations(n, n_permutations, seed)
    null = np.concatenate([stat(perms[s : s + batch]) for s in range(0, n_permutations, batch)])
    # a permuted value equal to the observed one in exact arithmetic may differ by rounding: count it as ≥
    tol = 1e-9 * max(abs(obs), float(np.abs(null).max()), 1e-300)
    return obs, null, tol


def permutation_test(
    x: Any,
    y: Any,
    /,
    *,
    metric: Literal["cka", "ka", "dcor", "rsa", "mutual_knn"] = "cka",
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
    alpha: float = 0.05,
    ties: Literal["count", "randomize"] = "count",
    estimator: Literal["unbiased", "biased"] | None = None,
    distance: str | None = None,
    k: int | None = None,
    **engine: Unpack[EngineKwargs],
) -> PermutationResult:
    """Permutation test of alignment, with the p-value's Monte-Carlo error and a null-calibrated score.

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
        numpy, dask or zarr arrays or store layers; the same samples in the same order.
    metric : {"cka", "ka", "dcor", "rsa", "mutual_knn"}, default="cka"
        The measure (linear CKA, linear kernel alignment, distance
        correlation, Pearson RSA, mutual kNN), as the function of that name
        with its default options unless given below.
    n_permutations : int, default=999
        B; the smallest possible p-value is 1/(B + 1).
    seed : int, default=0
        Seeds the permutations (identical results for the same seed).
    alpha : float, default=0.05
        The level ``reject`` refers to.
    ties : {"count", "randomize"}, default="count"
        ``"count"``: permuted values equal to the observed one (up to rounding)
        count as at least as extreme, p = (b + 1)/(B + 1): valid, and
        conservative for a discrete statistic (mutual kNN).  ``"randomize"``:
        ties are broken by a seeded uniform u, p = (g + u·(e + 1))/(B + 1)
        (g greater, e equal): exactly uniform under H0 for any statistic.
    estimator : {"unbiased", "biased"}, optional
        cka and dcor only (default "unbiased", as :func:`bigalign.cka`, :func:`bigalign.dcor`).
    distance : str, optional
        rsa only: "euclidean" (default), "sqeuclidean", "cosine" or "correlation".
    k : int, optional
        mutual_knn only: neighbours per sample (default 10).
    block_size : int, optional
        Rows per tile side of the permuted pair sums (default 1024, fewer when
        ``memory_per_worker`` needs it).  Does not change the answer beyond rounding.
    memory_per_worker : int, optional
        Bytes the test may hold: x and y are read into memory (an error if
        they do not fit) and the tiles are sized to fit beside them.
    scheduler, client, num_workers
        ``metric="mutual_knn"`` only (its neighbour search runs on the engine,
        with ``scheduler="sync"`` by default; ``block_size`` and
        ``memory_per_worker`` then size its tiles); the other measures run in
        this process and raise an InvalidInputError naming the options that apply.

    Returns
    -------
    PermutationResult
        ``value`` (the observed measure), ``pvalue``, ``pvalue_stderr``,
        ``calibrated`` = (value − null_mean)/null_sd, ``null_mean``,
        ``null_sd``, ``n_permutations``, ``n_at_least``, ``reject``.

    Notes
    -----
    One-sided: large values are evidence of alignment.  The null is exact
    (level ≤ α at any n) under exchangeability of the pairing.  See the module
    notes for how the permuted statistic is streamed and what it costs.

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(60, 3))
    >>> r = bigalign.permutation_test(x, x + rng.normal(size=(60, 3)), metric="cka", n_permutations=199)
    >>> r.pvalue
    0.005
    >>> r.calibrated > 3
    True
    """
    engine_opts = EngineOptions.build("permutation_test", engine)
    check_choice("permutation_test", "metric", metric, METRICS)
    check_choice("permutation_test", "ties", ties, ("count", "randomize"))
    B = check_int("permutation_test", "n_permutations", n_permutations, 1)
    seed = check_int("permutation_test", "seed", seed, 0)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise InvalidInputError(f"the 'alpha' parameter of permutation_test must be in (0, 1); got {alpha!r}.")
    for name, val, allowed in (("estimator", estimator, ("cka", "dcor")), ("distance", distance, ("rsa",)), ("k", k, ("mutual_knn",))):
        if val is not None and metric not in allowed:
            raise InvalidInputError(
                f"the {name!r} parameter of permutation_test applies to metric in {list(allowed)}; got {name}={val!r} with "
                f"metric={metric!r}. Drop it."
            )
    reps = prepare([x, y], ["x", "y"])
    n = reps[0].n
    tile = 0 if metric == "mutual_knn" else permutation_tile("permutation_test", engine_opts, reps, f"metric={metric!r}")
    params: dict[str, Any] = {"metric": metric, "n_permutations": B, "seed": seed, "alpha": float(alpha), "block_size": tile, "ties": ties}
    if metric == "mutual_knn":
        kk = 10 if k is None else check_int("permutation_test", "k", k, 1)
        stat, params["block_size"] = _knn_stat(reps[0], reps[1], kk, engine_opts)  # the search's tile side
        params["k"] = kk
        est = "mean_overlap"
    else:
        xs = finite_float64(reps[0].read(0, n), "x", 0)
        ys = finite_float64(reps[1].read(0, n), "y", 0)
        if metric == "cka":
            est = "unbiased" if estimator is None else check_choice("permutation_test", "estimator", estimator, ("unbiased", "biased"))
            if est == "unbiased" and n < 4:
                raise InvalidInputError(f"unbiased CKA needs at least 4 samples; got {n}. Use estimator='biased'.")
            stat = _cka_stat(xs, ys, est, tile)
            params["kernel"] = "linear"
        elif metric == "ka":
            est = "biased"
            stat = _ka_stat(xs, ys, tile)
            params["kernel"] = "linear"
        elif metric == "dcor":
            est = "unbiased" if estimator is None else check_choice("permutation_test", "estimator", estimator, ("unbiased", "biased"))
            if est == "unbiased" and n < 4:
                raise InvalidInputError(f"the unbiased dCor needs at least 4 samples; got {n}. Use estimator='biased'.")
            stat = dcor_statistic(xs, ys, est, tile, test=False)
        else:
            dist = "euclidean" if distance is None else check_choice("permutation_test", "distance", distance, ("euclidean", "sqeuclidean", "cosine", "correlation"))
            if n < 3:
                raise InvalidInputError(f"RSA needs at least 3 samples; got {n}.")
            stat = _rsa_stat(xs, ys, dist, tile)
            params.update(distance=dist, compare="pearson")
            est = "pearson"
    obs, null, tol = run_null(stat, n, B, seed)
    s = null_summary(obs, null, tol, tie_uniform(seed) if ties == "randomize" else None)
    flags = ("degenerate_null",) if s["calibrated"] is None else ()
    return PermutationResult(
        metric=metric, value=obs, estimator=est, method="permutation", n_samples=n, terms={"null_mean": s["null_mean"], "null_sd": s["null_sd"]},
        parameters=params, flags=flags, pvalue=s["pvalue"], pvalue_stderr=s["pvalue_stderr"], calibrated=s["calibrated"],
        null_mean=s["null_mean"], null_sd=s["null_sd"], n_permutations=B, n_at_least=s["n_at_least"], alpha=float(alpha),
    )  # fmt: skip
