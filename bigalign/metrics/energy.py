"""Energy statistics beyond dCor: the distance-covariance test, partial distance correlation, energy distance.

dcov_test (Székely, Rizzo & Bakirov 2007)
    H0: x and y independent.  Statistic n·dCov²ₙ(x, y) (the V-statistic, as
    ``dcor.independence.distance_covariance_test``); permutation null
    p = (b + 1)/(B + 1) from the streamed permuted pair sums of
    :mod:`bigalign.metrics.permutation` (tiles of permuted rows, no n×n matrix).
partial_dcor (Székely & Rizzo 2014)
    pdCor(x, y; z) = (R_xy − R_xz·R_yz) / √((1 − R_xz²)(1 − R_yz²)), with R the
    bias-corrected dCor² (U-centred), as ``dcor.partial_distance_correlation``:
    the correlation of the U-centred distance matrices of x and y after each is
    projected off that of z.  From three runs of :func:`bigalign.dcor`
    (exact tiles, or the block road for large n).
energy_distance (Székely & Rizzo 2013)
    E(x, y) = 2·E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖ between the distributions of
    two samples (any sizes n_x, n_y; the same width), as
    ``dcor.energy_distance``: V-statistic means over all n_x², n_y², n_x·n_y
    pairs (``estimator="biased"``, default) or U-statistic means over the
    distinct pairs within each sample (``"unbiased"``).  Exact tiles over the
    stacked sample w = [x; y] with a group label g (0 for x, 1 for y): the
    label's distance |gᵢ − gⱼ| is 1 exactly across samples, so the distance
    tile statistic of dCor (:class:`~bigalign.metrics.dcor.DistanceTileStatistic`)
    gives Σ_{i∈x, j∈y}‖xᵢ − yⱼ‖ = ½ S_ab and the within-sample sums from its
    row sums, in O((n_x + n_y)²·d) time and O(n + tile²) memory.

References
----------
Székely, Rizzo & Bakirov, "Measuring and testing dependence by correlation of
distances", Ann. Statist. 35 (2007).
Székely & Rizzo, "Partial distance correlation with methods for dissimilarities",
Ann. Statist. 42 (2014).
Székely & Rizzo, "Energy statistics: a class of statistics based on distances",
J. Statist. Plann. Inference 143 (2013).
"""

from __future__ import annotations

import math
from typing import Any, Literal, Unpack

import dask.array as da
import numpy as np

from .._checks import finite_float64
from ..engine import run_pairs
from ..errors import DegenerateInputError, InvalidInputError
from ..io import Representation, as_representation
from ..result import Result
from ..options import EngineKwargs, EngineOptions
from ._common import check_choice, check_int, paired_n
from .dcor import DcorOptions, DistanceTileStatistic, dcor_with_loo
from ..intervals import DEFAULT_CI_GROUPS, check_ci, estimator_interval, jackknife_interval, row_groups, with_interval
from ._tile_groups import GroupedTileStatistic
from .permutation import DEFAULT_PERMUTATIONS, PermutationResult, dcor_statistic, null_summary, permutation_tile, run_null

__all__ = ["dcov_test", "energy_distance", "partial_dcor"]


def dcov_test(
    x: Any,
    y: Any,
    /,
    *,
    null: Literal["permutation"] = "permutation",
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
    alpha: float = 0.05,
    **engine: Unpack[EngineKwargs],
) -> PermutationResult:
    """Distance-covariance test of independence (permutation null).

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
        numpy, dask or zarr arrays or store layers; the same samples in the same order.
    null : {"permutation"}, default="permutation"
        The null distribution: re-pair the rows of y at random.
    n_permutations : int, default=999
        B; the smallest possible p-value is 1/(B + 1).
    seed : int, default=0
        Seeds the permutations.
    alpha : float, default=0.05
        The level ``reject`` refers to.
    block_size : int, optional
        Rows per tile side (default 1024, fewer when ``memory_per_worker``
        needs it); does not change the answer beyond rounding.
    memory_per_worker : int, optional
        Bytes the test may hold: x and y are read into memory (an error if
        they do not fit) and the tiles are sized to fit beside them.
        ``scheduler``, ``client`` and ``num_workers`` do not apply (the
        permuted sums run in this process): an InvalidInputError says so.

    Returns
    -------
    PermutationResult
        ``value`` = n·dCov²ₙ(x, y) (``dcor.independence.distance_covariance_test``'s
        statistic), ``pvalue`` = (b + 1)/(B + 1), ``pvalue_stderr``,
        ``calibrated`` = (value − null mean)/null sd.

    Notes
    -----
    O(B·n²·d_y) time (the tiles of x once, those of the permuted y per
    permutation), O(n·d + tile²) memory.  ``dcor`` counts strictly greater
    permuted values, this counts ties (up to rounding) as at least as extreme:
    the conservative side, and equal for continuous data.

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(50, 2))
    >>> bigalign.dcov_test(x, x ** 2, n_permutations=99).pvalue
    0.01
    """
    func = "dcov_test"
    engine_opts = EngineOptions.build(func, engine)
    check_choice(func, "null", null, ("permutation",))
    B = check_int(func, "n_permutations", n_permutations, 1)
    seed = check_int(func, "seed", seed, 0)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise InvalidInputError(f"the 'alpha' parameter of {func} must be in (0, 1); got {alpha!r}.")
    n = paired_n(x, y)
    if n < 2:
        raise InvalidInputError(f"{func} needs at least 2 samples; got {n}.")
    rx, ry = as_representation(x, "x"), as_representation(y, "y")
    tile = permutation_tile(func, engine_opts, [rx, ry], "the permutation test")
    xs, ys = finite_float64(rx.read(0, n), "x", 0), finite_float64(ry.read(0, n), "y", 0)
    stat = dcor_statistic(xs, ys, "biased", tile, test=True)
    obs, values, tol = run_null(stat, n, B, seed)
    s = null_summary(obs, values, tol)
    return PermutationResult(
        metric="dcov_test", value=obs, estimator="biased", method="permutation", n_samples=n,
        terms={"dcov2_xy": obs / n}, flags=("degenerate_null",) if s["calibrated"] is None else (),
        parameters={"null": null, "n_permutations": B, "seed": seed, "alpha": float(alpha), "block_size": tile,
                    "statistic": "n * dCov²_V"},
        pvalue=s["pvalue"], pvalue_stderr=s["pvalue_stderr"], calibrated=s["calibrated"], null_mean=s["null_mean"],
        null_sd=s["null_sd"], n_permutations=B, n_at_least=s["n_at_least"], alpha=float(alpha),
    )  # fmt: skip


def partial_dcor(
    x: Any,
    y: Any,
    z: Any,
    /,
    *,
    method: Literal["auto", "exact", "block"] = "auto",
    block_rows: int | None = None,
    seed: int = 0,
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
) -> Result:
    """Partial distance correlation of x and y given z (Székely & Rizzo 2014).

    Parameters
    ----------
    x, y, z : array-like of shape (n_samples, n_features_*)
        The same samples in the same order.
    method : {"auto", "exact", "block"}, default="auto"
        How the three bias-corrected dCor² are computed (as :func:`bigalign.dcor`):
        exact tiles up to n = 20,000, block U-statistics beyond.
    block_rows : int, optional
        ``method="block"``: rows per random block (default 1024); the same
        seeded blocks serve all three pairs.
    seed : int, default=0
        Seeds the random blocks.
    ci : float, optional
        A sampling interval at this level (e.g. 0.95) about the population
        value, in ``result.ci``: the block jackknife over 20 contiguous row
        groups; pdCor is recomputed exactly on the rows minus each group from
        the three dCor² passes' grouped states (exact tiles; or groups of the
        random blocks, shared by the three pairs, on ``method="block"``), and
        the interval is made on Fisher's z scale.
    block_size, scheduler, client, num_workers, memory_per_worker
        As for :func:`bigalign.dcor`.

    Returns
    -------
    Result
        ``value`` = pdCor(x, y; z) in [−1, 1]; terms ``r_xy``, ``r_xz``,
        ``r_yz`` (bias-corrected dCor²).

    Raises
    ------
    DegenerateInputError
        R_xz or R_yz equal to 1 (x or y a similarity transform of z): the
        projection off z is zero and pdCor is 0/0 (``dcor`` returns 0 there).

    Notes
    -----
    Three exact passes, O(n²·(d_x + d_y + d_z)) time each pair; or
    O(n·B·d) per pair with blocks (no standard error: the three block
    estimates are combined non-linearly).  Invariant to translations,
    rotations and scaling of each input.

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(200, 2))
    >>> x, y = z + 0.3 * rng.normal(size=(200, 2)), z + 0.3 * rng.normal(size=(200, 2))
    >>> bigalign.dcor(x, y).value > 0.5 > abs(bigalign.partial_dcor(x, y, z).value)
    True
    """
    func = "partial_dcor"
    engine_opts = EngineOptions.build(func, engine)
    check_choice(func, "method", method, ("auto", "exact", "block"))
    if block_rows is not None and method != "block":
        raise InvalidInputError(f"block_rows applies to method='block' only; got it with method={method!r}.")
    n = paired_n(x, y)
    paired_n(x, z)
    level = check_ci(func, ci)
    rs = {}
    loos = {}
    params: dict[str, Any] = {}
    for key, a, b in (("r_xy", x, y), ("r_xz", x, z), ("r_yz", y, z)):
        try:
            opts = DcorOptions("unbiased", method, block_rows, None, seed, level, engine_opts)
            res, loos[key] = dcor_with_loo(a, b, opts, func)
        except DegenerateInputError as exc:
            raise DegenerateInputError(f"partial_dcor is undefined: {exc}", reason=exc.reason) from exc
        rs[key] = res.value
        params = {k: v for k, v in res.parameters.items() if k not in ("stderr", "method_reason")}
        params["method"] = res.method
    rxy, rxz, ryz = rs["r_xy"], rs["r_xz"], rs["r_yz"]
    den2 = (1.0 - rxz * rxz) * (1.0 - ryz * ryz)
    if not den2 > 1e-12:
        which = "x" if 1.0 - rxz * rxz <= 1e-6 else "y"
        raise DegenerateInputError(
            f"partial distance correlation is undefined: the bias-corrected dCor² of {which} and z is "
            f"{rxz if which == 'x' else ryz:.15g} (= 1 up to rounding), so {which} is a similarity transform of z and "
            "nothing of it is left after projecting z out (0/0). Expected inputs not determined by z.",
            reason=f"{which}_determined_by_z",
        )
    value = (rxy - rxz * ryz) / math.sqrt(den2)
    params["seed"] = seed
    for k in ("ci_about", "ci_groups", "ci_scale", "ci_se"):
        params.pop(k, None)  # the last pair's interval: the partial correlation's own is set below
    result = Result(
        metric="partial_dcor", value=float(value), estimator="unbiased", method=params.pop("method"), n_samples=n,
        terms=rs, parameters=params, flags=("negative_unbiased_estimate",) if value < 0 else (),
    )  # fmt: skip
    if level is None:
        return result
    lxy, lxz, lyz = loos["r_xy"], loos["r_xz"], loos["r_yz"]
    lden2 = (1.0 - lxz * lxz) * (1.0 - lyz * lyz)
    if not np.all(lden2 > 1e-12):
        raise DegenerateInputError(
            f"{func}: the sampling interval is undefined here: with a row group left out, x or y is a similarity "
            "transform of z (pdCor is 0/0). Leave ci out.",
            reason="undefined_leave_out",
        )
    loo = (lxy - lxz * lyz) / np.sqrt(lden2)
    return with_interval(result, jackknife_interval(float(value), loo, level, scale="fisher"))


class _Rows:
    """A Representation seen as an array (rows read on demand) for dask."""

    def __init__(self, rep: Representation):
        self.rep, self.shape, self.dtype, self.ndim = rep, (rep.n, rep.d), np.dtype(rep.dtype), 2

    def __getitem__(self, key: Any) -> np.ndarray:
        rows, cols = key if isinstance(key, tuple) else (key, slice(None))
        start, stop, _ = rows.indices(self.rep.n)
        return np.asarray(self.rep.read(start, stop))[:, cols]


#: ``method="auto"`` computes exact tiles up to this many rows in all (as dcor's EXACT_MAX_N)
ENERGY_EXACT_MAX_N = 20_000
DEFAULT_BLOCK_ROWS = 1024
_SEED_ENERGY = 0xE4E


def _block_energy(rx: Representation, ry: Representation, rows: int, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Per random block b: the U-statistic energy distance of ⌊n_x/m⌋-ish x rows and ⌊n_y/m⌋-ish y rows."""
    nx, ny = rx.n, ry.n
    m = min(nx, ny) // rows
    rng = np.random.default_rng([seed, _SEED_ENERGY])
    px, py = rng.permutation(nx), rng.permutation(ny)
    bx = (np.arange(m + 1) * nx) // m
    by = (np.arange(m + 1) * ny) // m
    out = np.empty(m)

    def dist_sum(a: np.ndarray, b: np.ndarray) -> float:
        d2 = np.einsum("ij,ij->i", a, a)[:, None] + np.einsum("ij,ij->i", b, b)[None, :] - 2.0 * (a @ b.T)
        return float(np.sqrt(np.maximum(d2, 0.0)).sum())

    for k in range(m):
        ix, iy = np.sort(px[bx[k] : bx[k + 1]]), np.sort(py[by[k] : by[k + 1]])
        a = finite_float64(rx.take(ix), "x", 0)
        b = finite_float64(ry.take(iy), "y", 0)
        c = a[: min(len(a), 1024)].mean(axis=0)
        a, b = a - c, b - c
        na, nb = len(a), len(b)
        out[k] = 2.0 * dist_sum(a, b) / (na * nb) - dist_sum(a, a) / (na * (na - 1)) - dist_sum(b, b) / (nb * (nb - 1))
    return out, {"block_rows": rows, "n_blocks": m, "seed": seed}


def block_group_means(vals: np.ndarray) -> np.ndarray:
    """The block road's mean without each of the 20 contiguous groups of its random blocks (in block order)."""
    b = row_groups(vals.size, DEFAULT_CI_GROUPS)
    tot = float(vals.sum())
    return np.array([(tot - float(vals[b[g] : b[g + 1]].sum())) / (vals.size - int(b[g + 1] - b[g])) for g in range(DEFAULT_CI_GROUPS)])


def energy_distance(
    x: Any,
    y: Any,
    /,
    *,
    estimator: Literal["biased", "unbiased"] = "biased",
    method: Literal["auto", "exact", "block"] = "auto",
    block_rows: int | None = None,
    seed: int = 0,
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
) -> Result:
    """Energy distance between the distributions of two samples (Székely & Rizzo 2013).

    Parameters
    ----------
    x : array-like of shape (n_x, d)
    y : array-like of shape (n_y, d)
        Two samples of points of the same width (not paired: n_x and n_y may differ).
    estimator : {"biased", "unbiased"}, default="biased"
        ``"biased"``: V-statistic means over all pairs, including i = j
        (``dcor.energy_distance``'s default); ``"unbiased"``: within-sample
        means over distinct pairs only (U-statistics; can be negative).
    method : {"auto", "exact", "block"}, default="auto"
        ``"exact"``: tiles over all pairs.  ``"block"``: the U-statistic energy
        distance inside m seeded random blocks (each holding ≈ n_x/m rows of x
        and n_y/m of y, every row used once), averaged; ``stderr`` is the
        jackknife over blocks.  ``"auto"``: exact up to n_x + n_y = 20,000.
    block_rows : int, optional
        ``method="block"``: m = ⌊min(n_x, n_y)/block_rows⌋ blocks (default 1024 rows).
    seed : int, default=0
        Seeds the random blocks.
    ci : float, optional
        A sampling interval at this level (e.g. 0.95) about the population
        energy distance, in ``result.ci``: the block jackknife over 20
        contiguous row groups of each sample (leaving out group g of x together
        with group g of y), recomputed exactly from the same tile pass; identity
        scale.  ``method="block"``: the same jackknife over 20 groups of the random
        blocks (needs at least 40 blocks, ``block_rows`` ≤ min(n_x, n_y)/40), about the
        population value the block road estimates.
        The biased (V-statistic) estimate's interval on the exact road is the
        U-statistic's from the same sums (the same population value,
        ``parameters["ci_center"]``): at small n its ``value`` can lie above it
        (flag ``"value_outside_ci"``).
    block_size : int, optional
        Rows per tile side of the exact road (default 2048); does not change the answer.
    scheduler, client, num_workers, memory_per_worker
        As for :func:`bigalign.dcor` (exact road; ``memory_per_worker`` sizes its tiles).

    Returns
    -------
    Result
        ``value`` = 2·mean‖x − y‖ − mean‖x − x'‖ − mean‖y − y'‖ (≥ 0 for the
        V-statistic; 0 iff the samples are identical as distributions);
        terms ``mean_xy``, ``mean_xx``, ``mean_yy``, ``n_x``, ``n_y`` (exact road).
        Block road: the estimate of the population energy distance (unbiased
        whichever ``estimator``; the V-statistic exceeds it by O(1/n)) with ``stderr``.

    Notes
    -----
    Exact tiles over the stacked sample: O((n_x + n_y)²·d) time,
    O(n_x + n_y + tile²) memory, tiles spread over the workers.  Block:
    O((n_x + n_y)·B·d) time, reads every row once (sorted random reads).  Invariant to
    translating or rotating both samples together; scales with them
    (E(cx, cy) = c·E(x, y)).

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> a = np.array([[1.0, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]])
    >>> b = np.array([[1.0, 0, 0, 1], [0, 1, 1, 1], [1, 1, 1, 1]])
    >>> round(bigalign.energy_distance(a, b).value, 6)    # dcor.energy_distance(a, b)
    20.578059
    """
    func = "energy_distance"
    engine_opts = EngineOptions.build(func, engine)
    check_choice(func, "estimator", estimator, ("biased", "unbiased"))
    check_choice(func, "method", method, ("auto", "exact", "block"))
    if block_rows is not None and method != "block":
        raise InvalidInputError(f"block_rows applies to method='block' only; got it with method={method!r}.")
    rx, ry = as_representation(x, "x"), as_representation(y, "y")
    if rx.d != ry.d:
        raise InvalidInputError(
            f"{func} compares two samples of points in the same space: x has {rx.d} features and y has {ry.d}. "
            "Expected the same width (for two paired representations of different widths use dcor or cka)."
        )
    nx, ny = rx.n, ry.n
    low = 2 if estimator == "unbiased" else 1
    if nx < low or ny < low:
        raise InvalidInputError(f"{func} with estimator={estimator!r} needs at least {low} rows in each sample; got {nx} and {ny}.")
    n = nx + ny
    chosen = method if method != "auto" else ("exact" if n <= ENERGY_EXACT_MAX_N else "block")
    reason = "requested" if method != "auto" else f"n_x + n_y = {n} {'<=' if chosen == 'exact' else '>'} {ENERGY_EXACT_MAX_N}"
    level = check_ci(func, ci)
    bounds = None
    if level is not None and chosen == "exact":
        bounds = np.concatenate([row_groups(nx, DEFAULT_CI_GROUPS, func=func), nx + row_groups(ny, DEFAULT_CI_GROUPS, func=func)[1:]])
    if chosen == "block":
        if engine_opts.given():
            raise InvalidInputError(
                f"{sorted(engine_opts.given())} apply to {func}'s exact road only; the method here is 'block'. "
                "Drop them, or use method='exact'."
            )
        rows = DEFAULT_BLOCK_ROWS if block_rows is None else check_int(func, "block_rows", block_rows, 2)
        if min(nx, ny) // rows < 2:
            raise InvalidInputError(
                f"{func} with method='block' needs at least 2 random blocks of block_rows = {rows} rows of each sample for "
                f"its standard error; got n_x = {nx}, n_y = {ny}. Use a smaller block_rows (<= {min(nx, ny) // 2}) or method='exact'."
            )
        if level is not None and min(nx, ny) // rows < 2 * DEFAULT_CI_GROUPS:
            raise InvalidInputError(
                f"{func}: ci= on method='block' is the jackknife over {DEFAULT_CI_GROUPS} groups of the random blocks and "
                f"needs at least {2 * DEFAULT_CI_GROUPS} blocks; n_x = {nx}, n_y = {ny} hold {min(nx, ny) // rows} of "
                f"block_rows = {rows}. Use block_rows <= {min(nx, ny) // (2 * DEFAULT_CI_GROUPS)}, method='exact', or leave ci out."
            )
        vals, params = _block_energy(rx, ry, rows, check_int(func, "seed", seed, 0))
        k = vals.size
        value = float(vals.mean())
        se = float(vals.std(ddof=1) / np.sqrt(k))  # the jackknife of a mean is its standard error
        params.update(method_reason=reason, stderr="jackknife over the random blocks")
        if estimator == "biased":
            params["estimand"] = "population energy distance (U-statistics within blocks); the full-sample V-statistic exceeds it by O(1/n)"
        interval = None
        if level is not None:
            interval = jackknife_interval(value, block_group_means(vals), level)
            params["ci_blocks"] = (
                f"jackknife over {DEFAULT_CI_GROUPS} groups of the random blocks (i.i.d. under exchangeable rows): about "
                "the population value; the random blocks ignore storage order, so rows that depend on their "
                "neighbours are not protected against (the exact road's contiguous row groups are)"
            )
        return with_interval(Result(
            metric="energy_distance", value=value, estimator=estimator, method="block", n_samples=n,
            terms={"n_x": nx, "n_y": ny}, parameters=params, stderr=se,
            flags=("negative_unbiased_estimate",) if value < 0 else (),
        ), interval)  # fmt: skip
    chunk = min(n, 4096)
    w = da.concatenate([da.from_array(_Rows(rx), chunks=(chunk, rx.d)), da.from_array(_Rows(ry), chunks=(chunk, ry.d))], axis=0)
    g = np.concatenate([np.zeros(nx), np.ones(ny)])[:, None]
    m = min(nx, 1024)
    shift = finite_float64(rx.read(0, m), "x", 0).mean(axis=0)
    stat = DistanceTileStatistic("euclidean-distance", 1.0, 1.0, shift, np.zeros(1), names=("x and y stacked", "group label"))
    reps = [as_representation(w, "x and y stacked"), as_representation(g, "group label")]
    if bounds is None:
        sums, plan = run_pairs(stat, reps, check_pairing=False, options=engine_opts)
        cross = sums.kl / 2.0  # Σ_{i∈x, j∈y} ‖xᵢ − yⱼ‖
        sxx = float(sums.r[:nx].sum()) - cross
        syy = float(sums.r[nx:].sum()) - cross
    else:
        grouped, plan = run_pairs(GroupedTileStatistic(stat, bounds), reps, check_pairing=False, options=engine_opts)
        # A[g, h] = Σ_{i∈g, j∈h} ‖wᵢ − wⱼ‖ over the stacked rows' groups (x: groups 0..G-1, y: G..2G-1)
        A = np.stack([grouped.rows[0][bounds[k] : bounds[k + 1]].sum(axis=0) for k in range(bounds.size - 1)])
        G = DEFAULT_CI_GROUPS
        sxx, syy, cross = float(A[:G, :G].sum()), float(A[G:, G:].sum()), float(A[:G, G:].sum())
    value, mxy, mxx, myy = _energy(sxx, syy, cross, nx, ny, estimator)
    flags: tuple[str, ...] = ()
    if value < 0:
        if estimator == "biased":  # a V-statistic energy distance is ≥ 0 exactly: only rounding
            if value < -1e-10 * (2 * mxy + mxx + myy):
                raise AssertionError(f"internal error: energy distance {value!r} < 0")
            flags = ("rounded_to_zero",)
            value = 0.0
        else:
            flags = ("negative_unbiased_estimate",)
    result = Result(
        metric="energy_distance", value=float(value), estimator=estimator, method="exact-tiles", n_samples=n,
        terms={"mean_xy": mxy, "mean_xx": mxx, "mean_yy": myy, "n_x": nx, "n_y": ny},
        parameters={"method_reason": reason, "block_size": plan.block_rows, "n_tiles": plan.n_blocks * (plan.n_blocks + 1) // 2, "scheduler": plan.scheduler},
        flags=flags,
    )  # fmt: skip
    if bounds is None:
        return result
    sizes = np.diff(bounds)

    def leave_outs(est: str) -> np.ndarray:
        loo = []
        for k in range(G):
            keep = np.ones(2 * G, dtype=bool)
            keep[[k, G + k]] = False
            kx, ky = keep[:G], keep[G:]
            loo.append(_energy(
                float(A[:G, :G][np.ix_(kx, kx)].sum()), float(A[G:, G:][np.ix_(ky, ky)].sum()), float(A[:G, G:][np.ix_(kx, ky)].sum()),
                nx - int(sizes[k]), ny - int(sizes[G + k]), est,
            )[0])  # fmt: skip
        return np.array(loo)

    # the biased (V-statistic) estimate: the interval of the U-statistic from the same sums (intervals.estimator_interval)
    unbiased = None
    if estimator == "biased":
        unbiased = (_energy(sxx, syy, cross, nx, ny, "unbiased")[0], leave_outs("unbiased"))
    interval = estimator_interval(float(value), None if unbiased else leave_outs(estimator), level, estimator=estimator, unbiased=unbiased)
    return with_interval(result, interval)


def _energy(sxx: float, syy: float, cross: float, nx: int, ny: int, estimator: str) -> tuple[float, float, float, float]:
    """(energy distance, mean_xy, mean_xx, mean_yy) from the within- and between-sample distance sums."""
    mxy = cross / (nx * ny)
    if estimator == "biased":
        mxx, myy = sxx / (nx * nx), syy / (ny * ny)
    else:
        mxx, myy = sxx / (nx * (nx - 1)), syy / (ny * (ny - 1))
    return 2.0 * mxy - mxx - myy, mxy, mxx, myy
