"""Neighbourhood alignment: mutual k-nearest neighbours and CKNNA (Huh et al. 2024).

Neighbours
----------
Rows are L2-normalised; the similarity of two samples is the inner product
of their normalised rows (cosine similarity), computed in float64 by BLAS
over tiles of row blocks.  The neighbours of sample i are the k other samples
with the largest similarity, under one total order:

* larger similarity first;
* **tie rule**: equal similarities (bit-identical float64) are ranked by
  sample index, smaller first;
* a sample is never its own neighbour — excluded *by index*, so an exact
  duplicate of a sample is still a candidate (no −1e8 diagonal sentinel).

So every neighbour list is unique, and the list for a smaller k is a prefix of
the list for a larger one: a sweep over several k costs one search
(:func:`knn_sweep`, a :class:`KnnSweep` of one Result per k).  A layer's lists
depend on that layer only, so a layer matrix searches every layer once and
scores every pair of layers from the lists (``compare_layers``).  Similarities equal
only up to rounding (≈1e-16) are ordered by their computed values, which a
different tiling could round differently; exact ties are ordered by index
whatever the tiling.

Estimators
----------
mutual_knn
    (1/n) Σᵢ |N_x(i) ∩ N_y(i)| / k over all n samples (exact: blocked top-k
    over all pairs, O(n²·d) time, O(n·k + tile²) memory).  With ``n_queries=m``:
    the same mean over a seeded uniform sample of m queries (without
    replacement), each with its exact neighbours among *all* n samples
    (O(m·n·d)); unbiased for the full value, with a standard error
    sd/√m·√(1 − m/n) and a 95% normal interval.  Subsampling the *pool* of
    candidates instead is biased (it nearly doubled the value in a measured
    case), so it is not offered.  Independent representations give about
    k/(n − 1).
cycle_knn, lcs_knn, edit_distance_knn
    platonic-rep's order-aware variants, from the same lists: whether sample i
    is among the x-neighbours of one of its y-neighbours (cycle; not
    symmetric), the longest common subsequence of the two ranked lists (over
    k), and one minus their Levenshtein distance over k.  Each is a mean of a
    per-query score, so the sampled-query road and its interval apply.
cknna
    CKA restricted to mutual neighbours, exactly as platonic-rep's ``cknna``
    (``unbiased=True``, the default there): with the kernels K = X̂X̂ᵀ,
    L = ŶŶᵀ and the mask M(i) = N_K(i) ∩ N_L(i),
    CKNNA = HSICᵤ(M∘K, M∘L) / √(HSICᵤ(M_K∘K, M_K∘K) · HSICᵤ(M_L∘L, M_L∘L)),
    HSICᵤ being Song et al.'s formula applied literally to these (asymmetric)
    matrices.  Its terms need only the n·k neighbour lists and their
    similarities: O(n·k log k) after the search.  Unlike platonic-rep, no 1e-6
    is added to the denominator: a non-positive self-term raises.

References
----------
Huh, Cheung, Wang & Isola, "The Platonic Representation Hypothesis", ICML 2024,
arXiv:2405.07987 (mutual kNN, CKNNA; reference code github.com/minyoungg/platonic-rep).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Sequence, Unpack

import numpy as np

from ..engine import prepare
from ..errors import DegenerateInputError, InvalidInputError
from ..intervals import (
    DEFAULT_CI_GROUPS, check_ci, dependency_interval, jackknife_interval, row_groups, with_interval,
)  # fmt: skip
from ..result import Result
from ._common import check_choice, paired_n, with_ci_doc, with_engine_doc
from ._knn_intervals import (  # noqa: F401  (re-exported: compare, tests and benchmarks use them from here)
    CI_GRAPH, CI_GRAPH_CKNNA, CI_NEIGHBOURS, ListsTooShort, cknna_row_scores, leave_group_out,
    neighbour_edges, search_depth,
)  # fmt: skip
from ._knn_scores import ZERO_TOL, _cknna_result, _hsic_u, per_query_scores  # noqa: F401  (re-exported)
from ._knn_search import (  # noqa: F401  (re-exported: rsa, permutation, compare, tests and benchmarks use them)
    _SAMPLED_OK, KNN_METRICS, TIE_RULE, Lists, NeighbourLists, NeighbourTileStatistic, QueryStatistic,
    _check_k, _check_seed, check_k, check_n_queries, cycle_rows, finite_rows, sample_queries, search, unit_rows,
)  # fmt: skip
from ..options import EngineKwargs, EngineOptions

__all__ = [
    "KNN_METRICS", "IntervalResult", "KnnSweep", "NeighbourLists", "NeighbourTileStatistic", "QueryStatistic", "cknna",
    "cycle_knn", "edit_distance_knn", "finite_rows", "knn_result", "knn_sweep", "lcs_knn", "mutual_knn", "sample_queries",
    "search", "unit_rows",
]  # fmt: skip

Z95 = 1.959963984540054  # standard normal 0.975 quantile


@dataclass(frozen=True, repr=False)
class IntervalResult(Result):
    """The :class:`~bigalign.result.Result` of a sampled estimator: ``stderr`` and ``ci`` are always set.

    (``ci``/``ci_level`` are fields of every Result; this subclass only marks the sampled road.)
    """

def knn_result(
    metric: str, lx: NeighbourLists, ly: NeighbourLists, k: int, n: int, params: dict[str, Any],
    extra_x: NeighbourLists | None = None, seed: int = 0, level: float | None = None,
) -> Result:  # fmt: skip
    """The Result of a neighbourhood measure for (x, y) from the two layers' lists (exact or sampled);
    with ``level``, its sampling interval (:func:`leave_group_out`: the lists must reach beyond k,
    :func:`search_depth`)."""
    if metric == "cknna":
        res = _cknna_result(lx, ly, k, n, params)
        if level is None:
            return res
        _, rs = cknna_row_scores(lx, ly, k, n)
        made = dependency_interval(res.value, rs, *neighbour_edges(lx, ly, k), level, bounds=row_groups(n, DEFAULT_CI_GROUPS, func=metric), scale="logit")
        if made is not None:
            return with_interval(replace(res, parameters={**res.parameters, "ci_variance": CI_GRAPH_CKNNA, "ci_df": made[1]}), made[0])
        res = replace(res, parameters={
            **res.parameters, "ci_neighbours": CI_NEIGHBOURS,
            "ci_variance": "the dependency-graph variance is not positive here: recomputed group jackknife (conservative)",
        })  # fmt: skip
        try:
            loo = leave_group_out(metric, lx, ly, k, n, None)
        except DegenerateInputError as e:
            raise DegenerateInputError(
                f"cknna: the sampling interval is undefined because CKNNA is undefined on the rows left when one of the "
                f"{DEFAULT_CI_GROUPS} contiguous row groups is dropped ({e}). Leave ci out.",
                reason=e.reason,
            ) from e
        return with_interval(res, jackknife_interval(res.value, loo, level, scale="logit"))
    score, terms = per_query_scores(metric, lx, ly, k, extra_x)
    value = float(score.mean())
    if metric == "mutual_knn":
        terms["chance"] = k / (n - 1)
    est = "mean_overlap" if metric == "mutual_knn" else "mean_over_queries"
    p = {"k": k, "similarity": "cosine", "tie_rule": TIE_RULE, **params}
    iv = None
    if level is not None and ly.rows is None:  # exact road: the dependency-graph variance of the per-query scores
        b = row_groups(n, DEFAULT_CI_GROUPS, func=metric)
        made = dependency_interval(value, score, *neighbour_edges(lx, ly, k), level, bounds=b, scale="logit")
        if made is not None:
            iv = made[0]
            p.update(ci_variance=CI_GRAPH, ci_df=made[1])
        else:  # all queries' scores equal (or anticorrelated): the (conservative) recomputed jackknife
            p["ci_variance"] = "the dependency-graph variance is not positive here: recomputed group jackknife (conservative)"
    if level is not None and iv is None:
        p["ci_neighbours"] = CI_NEIGHBOURS
        iv = jackknife_interval(value, leave_group_out(metric, lx, ly, k, n, extra_x), level, scale="logit")
    if ly.rows is None:
        return with_interval(Result(metric, value, est, "exact-blocked-topk", n, terms, p), iv)
    m = ly.rows.shape[0]
    sd = float(score.std(ddof=1))
    se = sd / math.sqrt(m) * math.sqrt(1.0 - m / n)
    p.update(n_queries=m, seed=seed, stderr="sd/sqrt(m)*sqrt(1-m/n) over the sampled queries")
    if level is None:
        p["ci"] = "normal 95% about the value over all n queries"
    flags = ("zero_sample_variance",) if sd == 0 and m < n else ()
    res = IntervalResult(
        metric, value, est, "sampled-queries", n, terms, p, stderr=se, flags=flags,
        ci=(value - Z95 * se, value + Z95 * se), ci_level=0.95,
    )  # fmt: skip
    return with_interval(res, iv)

# ---------------------------------------------------------------------------
# façades
# ---------------------------------------------------------------------------


def _n(x: Any, y: Any) -> int:
    return paired_n(x, y)


def _pair(
    metric: str, x: Any, y: Any, ks: list[int], n_queries: int | None, seed: int, options: EngineOptions, level: float | None = None
) -> list[Result]:  # fmt: skip
    """The measure for every k of ``ks`` from one search of x and y."""
    reps = prepare([x, y], ["x", "y"])
    n, kmax = reps[0].n, max(ks)
    q = None if n_queries is None else sample_queries(n, n_queries, seed)
    attempt = 0
    while True:
        depth = search_depth(kmax, n, level, attempt)
        (lx, ly), params = search(reps, depth, options, None if q is None else [q, q])
        extra = None
        if metric == "cycle_knn" and q is not None:
            (extra,), _ = search(reps[:1], depth, options, [cycle_rows(ly, depth)])
        try:
            return [knn_result(metric, lx, ly, kk, n, params, extra, seed, level) for kk in ks]
        except ListsTooShort:  # neighbours concentrated in one row group: search deeper (n − 1 always suffices)
            if depth >= n - 1:  # pragma: no cover - a full list always has k samples outside a group
                raise
            attempt += 1


def _measure(metric: str, x: Any, y: Any, k: Any, n_queries: Any, seed: Any, ci: Any, options: EngineOptions) -> Result:
    level = check_ci(metric, ci)
    n = _n(x, y)
    if metric == "cknna" and n < 4:
        raise InvalidInputError(f"cknna needs at least 4 samples (its unbiased HSIC divides by n(n-3)); got {n}.")
    kk = check_k(metric, metric, k, n)
    seed = _check_seed(metric, seed)
    m = check_n_queries(metric, n_queries, n, metric)
    if level is not None:
        row_groups(n, DEFAULT_CI_GROUPS, func=metric)  # enough rows, before the search
    return _pair(metric, x, y, [kk], m, seed, options, level)[0]


@dataclass(frozen=True)
class KnnSweep:
    """A neighbourhood measure at several k from one neighbour search.

    ``sweep[k]`` is the :class:`~bigalign.result.Result` for that k (exactly what the measure's own
    function returns for it); ``ks`` in the order asked; ``values`` the values in that order.
    """

    metric: str
    ks: tuple[int, ...]
    results: tuple[Result, ...]

    def __getitem__(self, k: int) -> Result:
        if k not in self.ks:
            raise InvalidInputError(f"this sweep of {self.metric} holds k = {list(self.ks)}; got k = {k!r}.")
        return self.results[self.ks.index(k)]

    def __iter__(self):
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    @property
    def values(self) -> np.ndarray:
        return np.array([r.value for r in self.results])

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "ks": list(self.ks), "values": [float(v) for v in self.values],
                "results": [r.to_dict() for r in self.results]}  # fmt: skip


@with_engine_doc
def knn_sweep(
    x: Any,
    y: Any,
    /,
    *,
    metric: str = "mutual_knn",
    k: Sequence[int] = (1, 5, 10, 20, 50),
    n_queries: int | None = None,
    seed: int = 0,
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
) -> KnnSweep:
    """A neighbourhood measure at several k from one neighbour search.

    The lists for the largest k hold those of every smaller k as prefixes (module notes), so one
    search answers the whole sweep; ``sweep[k]`` equals ``bigalign.<metric>(x, y, k=k, ...)``.

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
    metric : {"mutual_knn", "cknna", "cycle_knn", "lcs_knn", "edit_distance_knn"}
    k : sequence of int
        The neighbourhood sizes (each as the measure's own ``k``).
    n_queries, seed
        As for :func:`mutual_knn` (not for ``"cknna"``).
    block_size : int, optional
        As for :func:`mutual_knn`.
    ci : float, optional
        A sampling interval at this level for every k of the sweep, each exactly the ``ci`` of
        the measure's own function at that k, all from the one search (its lists searched
        beyond the largest k, as the interval needs).
    {engine}

    Returns
    -------
    KnnSweep

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> x = np.random.default_rng(0).normal(size=(100, 8))
    >>> bigalign.knn_sweep(x, 2 * x, k=[1, 5]).values.tolist()
    [1.0, 1.0]
    """
    engine_opts = EngineOptions.build("knn_sweep", engine)
    check_choice("knn_sweep", "metric", metric, KNN_METRICS)
    n = _n(x, y)
    if metric == "cknna" and n < 4:
        raise InvalidInputError(f"cknna needs at least 4 samples (its unbiased HSIC divides by n(n-3)); got {n}.")
    if isinstance(k, (int, np.integer)):
        raise InvalidInputError(f"knn_sweep takes a list of k; got k={k!r}. For one k call bigalign.{metric}(x, y, k={k}).")
    ks, _ = _check_k("knn_sweep", list(k), n, minimum=2 if metric == "cknna" else 1)
    seed = _check_seed("knn_sweep", seed)
    m = check_n_queries("knn_sweep", n_queries, n, metric)
    level = check_ci("knn_sweep", ci)
    if level is not None:
        row_groups(n, DEFAULT_CI_GROUPS, func="knn_sweep")  # enough rows, before the search
    return KnnSweep(metric, tuple(ks), tuple(_pair(metric, x, y, ks, m, seed, engine_opts, level)))


#: the exact road's dependency-graph variance (the ``{knn_ci}``/``{mutual_ci}``/cknna ``ci`` texts use it)
_KNN_GRAPH = """covariances are local: two queries' scores covary where their neighbourhoods
        touch.  The interval is T ± t_ν·√V on the logit scale (identity where T is 0 or 1), with
        the dependency-graph variance V = (1/n²)·Σ_i (q_i − q̄)·Σ_{j ∈ D(i)} (q_j − q̄), D(i) =
        i, its k neighbours in x and in y, the queries that have i among theirs, and the rows of
        i's contiguous row group (one of 20, so rows that depend on their neighbours in storage
        order stay covered, as by the block jackknife); ν = 19·(V/V_g)², Satterthwaite's degrees
        of freedom for the noise of the 20 group sums V_g = (1/n²)·Σ_g (Σ_{i ∈ g} (q_i − q̄))²
        in V (``parameters["ci_df"]``).  O(n·k) from the lists, no leave-out search.
        Measured 95% coverage at k = 10 (200 repetitions each, docs/intervals.md): 0.940–0.960 at n = 500 and 0.925–0.975 at n = 5,000 for the five kNN measures
        (widths 0.96–1.10× the actual spread of the estimates)."""

#: why the recomputed kNN intervals are conservative (the fallback and ``n_queries`` texts end with it)
_KNN_CONSERVATIVE = """Where V ≤ 0 (``parameters["ci_variance"]`` says so), and with ``n_queries``:
        each of the 20 contiguous row groups is left out as queries and as candidate neighbours
        (neighbours recomputed among the remaining rows, from lists searched 2k deep — deeper,
        by another search, where one group holds more than k of a list; with ``n_queries`` the
        sampled queries of each group, and it replaces the default 95% ``ci``).  **Conservative**:
        a jackknife counts the interactions between rows (which rows happen to be neighbours)
        more than once (Efron–Stein): coverage 0.975–1.0 at k = 10, n = 500, widths 1.35–2.9×
        the actual spread.  Read it as an upper bound on the sampling uncertainty."""

#: mutual_knn's ``ci`` (its docstring's ``{mutual_ci}``)
_MUTUAL_CI = ("""Exact road: mutual kNN is the mean of per-query scores q_i = overlap/k, whose
        """ + _KNN_GRAPH + """
        """ + _KNN_CONSERVATIVE)

#: how ``ci`` works for the three list measures (their docstrings' ``{knn_ci}``)
_KNN_CI = ("""Exact road: the measure is the mean of per-query scores q_i, whose
        """ + _KNN_GRAPH + """
        """ + _KNN_CONSERVATIVE)

#: cknna's ``ci``
_CKNNA_CI = ("""CKNNA = HSIC_xy/√(HSIC_xx·HSIC_yy) is linearised into per-query scores q_i (delta
        method; each unbiased HSIC of the masked kernels split by its first index, the
        query), whose
        """ + _KNN_GRAPH + """
        Where V ≤ 0 (``parameters["ci_variance"]`` says so): each of the 20 contiguous row
        groups is left out as queries and as candidate neighbours and CKNNA recomputed on the
        remaining rows (lists searched 2k deep) — conservative (coverage 0.975 at n = 500,
        width 1.47× the actual spread).""")

_RETURNS_SAMPLED = """Sampled: an :class:`IntervalResult` with ``stderr`` = sd/√m·√(1 − m/n) of the
        per-query scores and ``ci`` (normal, 95%)."""


@with_ci_doc
@with_engine_doc
def mutual_knn(
    x: Any,
    y: Any,
    /,
    *,
    k: int = 10,
    n_queries: int | None = None,
    seed: int = 0,
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
) -> Result:
    """Mutual k-nearest-neighbour alignment (Huh et al. 2024).

    The mean over samples of |N_x(i) ∩ N_y(i)| / k, where N_x(i) are the k
    nearest neighbours of sample i among the other samples by cosine
    similarity of x's rows (see the module notes for the tie rule).

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
        numpy, dask or zarr arrays or store layers; the same samples in the same order.
    k : int, default=10
        Neighbours per sample (1 ≤ k ≤ n − 1).  For several k from one
        search use :func:`knn_sweep`.
    n_queries : int, optional
        ``None``: every sample is a query (exact).  m: a seeded uniform sample
        of m queries (2 ≤ m ≤ n), each with exact neighbours among all n
        samples; the Result carries ``stderr`` and a 95% ``ci``.
    seed : int, default=0
        Seeds the query sample.
    block_size : int, optional
        Rows per tile side (exact; default 2048) or per candidate block
        (sampled).  The value does not depend on it.
    {ci}
        {mutual_ci}
    {engine}

    Returns
    -------
    Result
        ``value`` in [0, 1]; terms ``mean_overlap`` (neighbours shared, per
        query) and ``chance`` = k/(n − 1), the expected value for independent
        representations.  Sampled: an :class:`IntervalResult` with ``stderr``
        = sd/√m·√(1 − m/n) and ``ci`` (normal, 95%).

    Raises
    ------
    InvalidInputError
        k outside [1, n − 1] or not one integer, n_queries outside [2, n], an
        all-zero row (no direction), mismatched n, NaN/Inf (named rows).

    Notes
    -----
    Exact: O(n²·(d_x + d_y)) time (BLAS tiles), O(n·k + tile²) memory, tiles
    spread over the workers.  Sampled: O(m·n·(d_x + d_y)) time, one pass over
    the data, O(m·(k + d)) memory.

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> x = np.random.default_rng(0).normal(size=(100, 8))
    >>> bigalign.mutual_knn(x, 3 * x, k=5).value     # same neighbours
    1.0
    """
    return _measure("mutual_knn", x, y, k, n_queries, seed, ci, EngineOptions.build("mutual_knn", engine))


@with_ci_doc
@with_engine_doc
def cycle_knn(
    x: Any,
    y: Any,
    /,
    *,
    k: int = 10,
    n_queries: int | None = None,
    seed: int = 0,
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
) -> Result:
    """Cycle kNN (platonic-rep's ``cycle_knn``): can sample i be reached back from its y-neighbours in x?

    The fraction of samples i for which some j ∈ N_y(i) has i ∈ N_x(j): go from i to its
    neighbours in y, then from them to their neighbours in x, and count a hit when i is among
    them.  **Not symmetric**: ``cycle_knn(x, y) != cycle_knn(y, x)`` in general.

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
    k : int, default=10
        Neighbours per sample (1 ≤ k ≤ n − 1).
    n_queries : int, optional
        m seeded queries instead of all n: exact y-neighbours of each query among all n, then a
        second pass for the exact x-neighbours of those (at most m·k) samples; O(m·k·n·d_x) more.
    seed : int, default=0
    block_size : int, optional
    {ci}
        {knn_ci}
    {engine}

    Returns
    -------
    Result
        ``value`` in [0, 1]; term ``hits`` (queries that close the cycle).  Independent
        representations give about 1 − (1 − k/(n − 1))^k ≈ k²/n.  {sampled}

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> x = np.random.default_rng(0).normal(size=(100, 8))
    >>> bigalign.cycle_knn(x, 2 * x, k=3).value   # < 1 even here: j near i does not make i near j
    0.93
    """
    return _measure("cycle_knn", x, y, k, n_queries, seed, ci, EngineOptions.build("cycle_knn", engine))


@with_ci_doc
@with_engine_doc
def lcs_knn(
    x: Any,
    y: Any,
    /,
    *,
    k: int = 10,
    n_queries: int | None = None,
    seed: int = 0,
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
) -> Result:
    """Ordered-neighbour agreement: the longest common subsequence of the two ranked kNN lists, over k.

    For each sample, N_x(i) and N_y(i) as sequences ranked by similarity; the LCS length counts
    neighbours shared *in the same order*.  ``value`` = mean LCS / k in [0, 1]; the term
    ``mean_lcs`` is platonic-rep's ``lcs_knn`` (the mean length itself, in [0, k]).  Symmetric.

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
    k : int, default=10
    n_queries : int, optional
        As for :func:`mutual_knn`.
    seed : int, default=0
    block_size : int, optional
    {ci}
        {knn_ci}
    {engine}

    Returns
    -------
    Result
        ``value`` in [0, 1] (1: identical ranked lists); term ``mean_lcs``.  {sampled}

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> x = np.random.default_rng(0).normal(size=(100, 8))
    >>> bigalign.lcs_knn(x, 2 * x, k=5).terms["mean_lcs"]
    5.0
    """
    return _measure("lcs_knn", x, y, k, n_queries, seed, ci, EngineOptions.build("lcs_knn", engine))


@with_ci_doc
@with_engine_doc
def edit_distance_knn(
    x: Any,
    y: Any,
    /,
    *,
    k: int = 10,
    n_queries: int | None = None,
    seed: int = 0,
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
) -> Result:
    """1 − (mean Levenshtein distance between the ranked kNN lists) / k, as platonic-rep's ``edit_distance_knn``.

    The edit distance counts the insertions, deletions and substitutions turning N_x(i) (ranked)
    into N_y(i); it is at most k, so the value is in [0, 1].  Symmetric.

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
    k : int, default=10
    n_queries : int, optional
        As for :func:`mutual_knn`.
    seed : int, default=0
    block_size : int, optional
    {ci}
        {knn_ci}
    {engine}

    Returns
    -------
    Result
        ``value`` in [0, 1] (1: identical ranked lists); term ``mean_edit_distance``.  {sampled}

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> x = np.random.default_rng(0).normal(size=(100, 8))
    >>> bigalign.edit_distance_knn(x, 2 * x, k=5).value
    1.0
    """
    return _measure("edit_distance_knn", x, y, k, n_queries, seed, ci, EngineOptions.build("edit_distance_knn", engine))


@with_ci_doc
@with_engine_doc
def cknna(
    x: Any,
    y: Any,
    /,
    *,
    k: int = 10,
    ci: float | None = None,
    **engine: Unpack[EngineKwargs],
) -> Result:
    """CKNNA: CKA restricted to mutual nearest neighbours (Huh et al. 2024).

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
    k : int, default=10
        Neighbours per sample (2 ≤ k ≤ n − 1, as in platonic-rep).  For
        several k from one search use :func:`knn_sweep`.
    block_size : int, optional
        Rows per tile side (default 2048); the value does not depend on it.
    {ci}
        {cknna_ci}
    {engine}

    Returns
    -------
    Result
        ``value`` and the terms ``hsic_xy`` = HSICᵤ(M∘K, M∘L), ``hsic_xx``,
        ``hsic_yy`` (see the module notes); ``estimator="unbiased"``.  Not
        exactly symmetric: the term 1ᵀK̃L̃1 of HSICᵤ(M∘K, M∘L) changes when
        x and y swap.

    Raises
    ------
    DegenerateInputError
        A self-term HSICᵤ(M_K∘K, M_K∘K) or HSICᵤ(M_L∘L, M_L∘L) ≤ 0 (CKNNA undefined).
    InvalidInputError
        k outside [2, n − 1] or not one integer, n < 4, an all-zero row,
        mismatched n, NaN/Inf.

    Notes
    -----
    O(n²·(d_x + d_y)) time for the exact neighbour search (shared with
    :func:`mutual_knn`), then O(n·k log k); O(n·k + tile²) memory.  Agrees
    with platonic-rep's ``cknna(..., unbiased=True)`` on L2-normalised rows up
    to the tie rule (torch.topk leaves ties unspecified) and its 1e-6.

    Examples
    --------
    >>> import numpy as np, bigalign
    >>> x = np.random.default_rng(0).normal(size=(100, 8))
    >>> round(bigalign.cknna(x, 2 * x, k=10).value, 12)
    1.0
    """
    return _measure("cknna", x, y, k, None, 0, ci, EngineOptions.build("cknna", engine))


for _f in (mutual_knn, cycle_knn, lcs_knn, edit_distance_knn):
    _f.__doc__ = _f.__doc__.replace("{sampled}", _RETURNS_SAMPLED).replace("{knn_ci}", _KNN_CI)
cknna.__doc__ = cknna.__doc__.replace("{cknna_ci}", _CKNNA_CI)
mutual_knn.__doc__ = mutual_knn.__doc__.replace("{mutual_ci}", _MUTUAL_CI)
