"""The HSIC test of independence, with a permutation null or a gamma approximation.

:func:`hsic_test` tests H0: x ⟂ y (the paired rows of two representations are
independent) with the biased HSIC of Gretton et al. (2005, 2008),

    HSIC_b = tr(K H L H) / (n − 1)² = tr(K_c L_c) / (n − 1)²,   H = I − 11ᵀ/n,  K_c = HKH,

(the divisor of ``bigalign.hsic(estimator="biased")``: one biased HSIC everywhere;
Gretton et al. divide by n², which rescales the statistic and its null law
alike and leaves every p-value unchanged),

computed either from the exact kernel matrices K, L or from explicit feature
maps Φ, Ψ (K = ΦΦᵀ, exact for the linear kernel; random Fourier features or
Nyström for rbf/laplacian, Zhang et al. 2018), where
tr(K_c L_c) = ‖Φ_cᵀΨ_c‖²_F with Φ_c the column-centred features.

The null laws and :class:`~bigalign.stats.TestResult` are shared with the other tests
(:mod:`bigalign.stats`); this module holds the test's roads and options.

Null distributions
------------------
permutation
    T_π = tr(K_c P L_c Pᵀ) for B uniform random permutations P of the rows of
    y; p = (1 + #{T_π ≥ T}) / (1 + B), valid (P(p ≤ u) ≤ u) at any n.
gamma
    A gamma law fitted to the mean and variance of tr(K_c P L_c Pᵀ) under H0
    (Gretton et al. 2008).  We use the *exact* first two moments of the
    statistic under random re-pairing (the permutation distribution; the
    moments of the RV/Mantel statistic, Kazi-Aoual et al. 1995): with
    t = tr K_c, f = ‖K_c‖²_F, s = Σᵢ (K_c)ᵢᵢ² (and t', f', s' for L_c),

        E[tr(K_c P L_c Pᵀ)]   = t t' / (n − 1)
        Var[tr(K_c P L_c Pᵀ)] = 2((n−1)f − t²)((n−1)f' − t'²) / ((n−1)²(n+1)(n−2))
                                + (n(n+1)s − (n−1)(t² + 2f))(n(n+1)s' − (n−1)(t'² + 2f'))
                                  / ((n+1)n(n−1)(n−2)(n−3)).

    Gretton et al.'s expressions are their large-n forms: their mean
    (1/n)(1 + μ_xμ_y − μ_x − μ_y) (for k(x, x) = 1) is n/(n−1) times ours,
    and their variance 2(n−4)(n−5)/(n)_4 · mean_{i≠j}((K_c)ᵢⱼ(L_c)ᵢⱼ)² has
    the same leading term.  All of t, f, s come from D×D algebra with
    features: t = ‖Φ_c‖²_F, f = ‖Φ_cᵀΦ_c‖²_F, s = Σᵢ ‖φ_c,ᵢ‖⁴, so the gamma
    test streams over any n in O(D²) memory.

Measured (2-core VM; ``tests/test_hsic_test.py``, ``benchmarks/bench_hsic_test.py``)
------------------------------------------------------------------------------------
Calibration under independence (x ~ N(0, I₂), y ~ t₄, n = 100), rejection rate at
α = 0.05 over 500 seeded repetitions (binomial sd of a rate at 0.05: 0.0097), and
over 2,000 further repetitions where measured:

=================================================  ======  ========
test                                                500     2,000
=================================================  ======  ========
permutation, exact rbf, B = 200                     0.058   0.0505
gamma, exact rbf                                    0.062   0.0535
permutation, rff (64 feature columns), B = 200      0.050
gamma, Nyström (20 landmarks), streamed moments     0.062   0.054
=================================================  ======  ========

Power on y = x² + 2ε (x, ε ~ N(0, 1); correlation 0), n = 100, α = 0.05, 100
seeded repetitions: permutation (exact rbf) 0.94, gamma (exact rbf) 0.95,
permutation on rff 0.92, gamma on Nyström 0.95; 1.00 for all at noise 0.5ε.
The linear kernel finds 0.15 (it sees only the heteroscedasticity).  Large n:
auto (gamma on 256 streamed Nyström features) rejected 5 / 5 at n = 10,000
with noise 8ε and 10 / 10 at n = 20,000 with noise up to 16ε, ≈ 1–2 s per test.

References
----------
Gretton, Bousquet, Smola & Schölkopf, "Measuring statistical dependence with
Hilbert-Schmidt norms", ALT 2005.
Gretton, Fukumizu, Teo, Song, Schölkopf & Smola, "A kernel statistical test of
independence", NIPS 2008.
Zhang, Filippi, Gretton & Sejdinovic, "Large-scale kernel methods for
independence testing", Statistics and Computing 28 (2018), arXiv:1606.07892.
Kazi-Aoual, Hitier, Sabatier & Lebreton, "Refined approximations to
permutation tests for multivariate inference", Computational Statistics & Data
Analysis 20 (1995) — the exact permutation moments.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Literal, Unpack

import numpy as np

from .._checks import check_applies, raise_nonfinite
from ..engine import prepare, requested_budget, run, run_pairs
from ..errors import InvalidInputError, NonFiniteError
from ..features import (
    BANDWIDTH_SAMPLE,
    KERNELS,
    draw_nystroem,
    draw_random_fourier,
    kernel_scale,
    resolve_bandwidths,
    resolve_method,
    sample_rows,
)
from ..gram import blas_threads_for, centre_gram, gram, read_all
from ..io import Representation
from ..moments import MomentStatistic
from ..stats import (
    TestResult,
    _centre_features,
    _feature_batch,
    _feature_stats,
    _gamma_null,
    _gram_batch,
    _gram_stats,
    _permutation_null,
    _SideStats,
    _tie_tolerance,
)
from ._common import feature_options
from ._kernel_exact import KernelTileStatistic
from ..options import EngineKwargs, EngineOptions

__all__ = ["TestResult", "hsic_test"]

NULLS = ("auto", "permutation", "gamma")
METHODS = ("auto", "exact", "rff", "nystroem")
#: ``null="auto"`` runs the permutation test up to this many samples (exact kernels:
#: 5–7 ms per permutation at n = 2,000, so the default 1,000 permutations take ≈ 5–7 s)
#: and the gamma approximation beyond.
PERMUTATION_MAX_N = 2_000
#: Exact kernel matrices are held in memory up to this n (2·n²·8 bytes: 400 MB at 5,000).
#: ``method="auto"`` is exact up to here and approximate beyond; an explicit
#: ``method="exact"`` beyond it runs the gamma test over kernel tiles (O(n) memory).
EXACT_MAX_N = 5_000
#: Default feature columns (rff: 128 frequencies × cos/sin) or landmarks (nystroem).
DEFAULT_N_FEATURES = 256
MIN_SAMPLES = 5
_FEATURE_TAG = 2  # the same feature-map stream as the kernel metrics
_BATCH_BYTES = 64 * 2**20  # permuted copies of Ψ held at once


# --------------------------------------------------------------------------- #
# options
# --------------------------------------------------------------------------- #


def _choice(param: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InvalidInputError(f"the {param!r} parameter of hsic_test must be one of {list(choices)}; got {value!r} instead.")
    return value


def _int(param: str, value: Any, low: int, what: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
        raise InvalidInputError(f"the {param!r} parameter of hsic_test must be {what}; got {value!r} instead.")
    return int(value)


def _sample(reps: list[Representation], m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The bandwidth subsample (the kernel metrics' rows); non-finite rows are named by their real index."""
    try:
        _, (xs, ys) = sample_rows(reps, m, seed)
    except NonFiniteError:
        for rep in reps:  # only on the error path: name the real rows, block by block
            rows = max(1, (64 * 2**20) // (8 * rep.d))
            for s in range(0, rep.n, rows):
                blk = np.asarray(rep.read(s, min(rep.n, s + rows)), dtype=np.float64)
                if not np.isfinite(blk).all():
                    raise_nonfinite(blk, rep.name, s)
        raise  # pragma: no cover - the scan above raises first
    return xs, ys


def _materialise(n: int, dx: int, dy: int, method: str) -> bool:
    """Hold the features in memory: always for permutations; for gamma when n ≤ D_x + D_y (small n)."""
    return method == "permutation" or (n <= EXACT_MAX_N and n <= dx + dy)


def _use_gram(n: int, dx: int, dy: int, method: str) -> bool:
    """From in-memory features, form K_c = Φ_cΦ_cᵀ when that is cheaper.

    Per permutation the Gram loop costs ≈ n²/2 gathered multiply-adds and the
    feature GEMM 2·n·D_x·D_y flops at several times the speed, so the Gram
    wins when 4n ≤ D_x·D_y; for the gamma moments (n²(D_x + D_y) against
    n(D_x² + D_y²)) when n ≤ D_x + D_y.  Never beyond ``EXACT_MAX_N``.
    """
    if n > EXACT_MAX_N:
        return False
    return 4 * n <= dx * dy if method == "permutation" else n <= dx + dy


# --------------------------------------------------------------------------- #
# the test
# --------------------------------------------------------------------------- #


def hsic_test(
    x: Any,
    y: Any,
    /,
    *,
    kernel: Literal["rbf", "linear", "laplacian"] = "rbf",
    bandwidth: Any = "median",
    null: Literal["auto", "permutation", "gamma"] = "auto",
    n_permutations: int | None = None,
    method: Literal["auto", "exact", "rff", "nystroem"] = "auto",
    n_features: int | None = None,
    seed: int = 0,
    alpha: float = 0.05,
    **engine: Unpack[EngineKwargs],
) -> TestResult:
    """HSIC test of independence between two paired representations.

    Tests H0: the rows of x and y are independent, with the biased HSIC

    .. math:: \\mathrm{HSIC}_b = \\frac{1}{(n-1)^2}\\operatorname{tr}(KHLH),
              \\qquad H = I - \\tfrac{1}{n}\\mathbf{1}\\mathbf{1}^\\top,

    and a permutation null or the gamma approximation of Gretton et al. (2008)
    to the null law of n·HSIC_b.

    Parameters
    ----------
    x, y : array-like of shape (n_samples, n_features_x), (n_samples, n_features_y)
        numpy, dask or zarr arrays or store layers; the same samples in the
        same order (store layers with sample ids are checked).
    kernel : {"rbf", "linear", "laplacian"}, default="rbf"
        rbf k = exp(−‖x − x'‖²/(2σ²)); laplacian k = exp(−‖x − x'‖/σ);
        linear k = xᵀx' (exact at any n: its features are the rows).
    bandwidth : "median", float or (x, y) pair of them, default="median"
        σ for rbf/laplacian; ``"median"`` is the median pairwise distance of a
        seeded subsample of 1,000 rows (fixed once, written on the result).
        The linear kernel has no bandwidth: passing one with it is an error.
    null : {"auto", "permutation", "gamma"}, default="auto"
        ``"permutation"``: permute the rows of y ``n_permutations`` times,
        p = (1 + #{T_π ≥ T}) / (1 + B).  ``"gamma"``: a gamma law with the
        exact permutation mean and variance of n·HSIC_b (see Notes).
        ``"auto"``: permutation for n ≤ 2,000, gamma beyond
        (``PERMUTATION_MAX_N``).
    n_permutations : int, optional
        B, for ``null="permutation"`` (default 1,000); the smallest possible
        p-value is 1/(B + 1).  An error with ``null="gamma"``.
    method : {"auto", "exact", "rff", "nystroem"}, default="auto"
        The estimation road: how the kernels are represented.  ``"exact"``: the n×n kernel
        matrices (in memory for n ≤ 5,000, ``EXACT_MAX_N``; beyond that only
        ``null="gamma"``, streamed over kernel tiles).  ``"rff"``: random
        Fourier features (Rahimi & Recht); ``"nystroem"``: Nyström features
        on uniformly drawn landmarks — the test is then exact for the
        approximate kernel (Zhang et al. 2018).  ``"auto"``: exact for
        n ≤ 5,000; beyond, Nyström when bandwidth ≥ 0.5 × median
        (``NYSTROEM_MIN_RATIO``), else rff.  The linear kernel is always exact.
    n_features : int, optional
        Feature columns for rff (even; default 256 = 128 frequencies ×
        cos/sin) or landmarks for nystroem (default 256, at most n).  An
        error on the exact road.
    seed : int, default=0
        Seeds the bandwidth subsample, the feature maps and the permutations:
        the same seed gives bit-identical results.
    alpha : float, default=0.05
        Level of ``result.reject`` (``pvalue < alpha``); does not change the p-value.
    block_size, scheduler, client, num_workers, memory_per_worker
        Engine options of the streamed passes (gamma on features or on kernel
        tiles), as in :func:`bigalign.hsic`; ``num_workers`` also sets the
        threads of the exact permutation loop (default: number of CPUs).

    Returns
    -------
    TestResult
        ``value`` (HSIC_b), ``pvalue``, ``reject``, ``method`` (the road),
        ``null`` (the null law of n·HSIC_b), ``n_samples``, ``parameters``
        (kernel, bandwidths, the null's name, how each "auto" was resolved),
        ``flags``.

    Raises
    ------
    InvalidInputError
        n < 5, mismatched n, 1-D input, non-numeric dtype, a bad option, an
        option that does not apply (a bandwidth with the linear kernel,
        ``n_features`` on the exact road, ``n_permutations`` with the gamma
        null), or ``method="exact"`` with ``null="permutation"`` beyond n = 5,000.
    NonFiniteError
        NaN or infinite values (the message names the input and rows).
    PairingError
        Store layers whose sample ids differ.
    DegenerateInputError
        The median bandwidth is 0 (more than half of the rows identical), or
        the gamma null is a point mass (a kernel matrix ≈ identity).

    Notes
    -----
    Permutation statistic: T_π = tr(K_c P L_c Pᵀ) = Σᵢⱼ (K_c)ᵢⱼ (L_c)_{π(i)π(j)}
    (exact kernels; a compiled loop over the upper triangle, O(n²) per
    permutation) or T_π = ‖Φ_cᵀ P Ψ_c‖²_F (features; one GEMM per batch of
    permutations, 2·n·D_x·D_y flops each).  Both equal n²·HSIC_b of the
    re-paired sample.

    n·HSIC_b = n·T/(n − 1)² is compared with the null law below (Gretton et
    al.'s n²-divided statistic is the same test: every p-value is unchanged).

    Gamma moments, exact under random re-pairing (Kazi-Aoual et al. 1995),
    with t = tr K_c, f = ‖K_c‖²_F, s = Σᵢ (K_c)ᵢᵢ² and t', f', s' for L:

    .. math:: E[T_\\pi] = \\frac{t t'}{n-1},\\quad
              \\mathrm{Var}[T_\\pi] = \\frac{2((n-1)f - t^2)((n-1)f' - t'^2)}{(n-1)^2(n+1)(n-2)}
              + \\frac{(n(n+1)s - (n-1)(t^2 + 2f))(n(n+1)s' - (n-1)(t'^2 + 2f'))}{(n+1)n(n-1)(n-2)(n-3)};

    T ~ Γ(shape = mean²/var, scale = var/mean).  Gretton et
    al.'s formulas are the large-n forms of these.  With features,
    t = ‖Φ_c‖²_F, f = ‖Φ_cᵀΦ_c‖²_F, s = Σᵢ‖φ_c,ᵢ‖⁴ and T = ‖Φ_cᵀΨ_c‖²_F.

    Cost and memory (d: input width, D: feature columns, B: permutations):

    ====================  ===========================  =========================
    path                  time                          memory
    ====================  ===========================  =========================
    exact, permutation    O(n²(d + B))                  2·n²·8 bytes (n ≤ 5,000)
    exact, gamma          O(n²d)                        2·n²·8 bytes; tiles: O(n)
    features, permutation O(n·D(d + B·D))               n·(D_x + D_y)·8 bytes
    features, gamma       O(n·D(d + D)), one pass       O(D²), any n
    linear                as features with Φ = x        n×n Grams when cheaper (below)
    ====================  ===========================  =========================

    With features held in memory, the n×n Grams K_c = Φ_cΦ_cᵀ replace the
    GEMM when 4n ≤ D_x·D_y (permutation) or n ≤ D_x + D_y (gamma), up to
    n = 5,000.  Measured on a loaded 2-core VM (``benchmarks/bench_hsic_test.py``,
    whole calls, d = 4): exact permutation test with B = 1,000 in 0.65 s at
    n = 1,000 and 6.8 s at n = 2,000 (8× and 4.5× faster per permutation than
    numpy fancy indexing); exact gamma test 0.27 s at n = 2,000 and 3.0 s at
    n = 5,000 (Gretton et al.'s reference computation in numpy: 2.1 s and 36 s);
    permutation test on 128 rff columns 53 ms per permutation at n = 10⁴
    (GEMM-bound); gamma test on 256 streamed Nyström features 4.9 s at n = 10⁵
    and 28 s at n = 10⁶ (peak RSS 1.4 GB).

    References
    ----------
    Gretton, Fukumizu, Teo, Song, Schölkopf & Smola, "A kernel statistical test
    of independence", NIPS 2008.
    Zhang, Filippi, Gretton & Sejdinovic, "Large-scale kernel methods for
    independence testing", Statistics and Computing 28 (2018), arXiv:1606.07892.
    Kazi-Aoual, Hitier, Sabatier & Lebreton, "Refined approximations to
    permutation tests for multivariate inference", CSDA 20 (1995).

    Examples
    --------
    >>> import numpy as np
    >>> from bigalign import hsic_test
    >>> x = np.linspace(-1.0, 1.0, 50).reshape(-1, 1)
    >>> r = hsic_test(x, x**2, n_permutations=199)   # dependent, uncorrelated
    >>> r.pvalue, r.reject, r.method, r.parameters["null"]
    (0.005, True, 'exact', 'permutation')
    >>> r.null["n_at_least"]
    0
    """
    engine_opts = EngineOptions.build("hsic_test", engine)
    if method in NULLS[1:]:
        raise InvalidInputError(
            f"the 'method' parameter of hsic_test names the estimation road {list(METHODS)}; got {method!r}, a null "
            f"distribution. Pass null={method!r} instead (method= picks exact kernels or rff/nystroem features)."
        )
    kernel = _choice("kernel", kernel, KERNELS)  # type: ignore[assignment]
    null = _choice("null", null, NULLS)  # type: ignore[assignment]
    method = _choice("method", method, METHODS)  # type: ignore[assignment]
    if n_permutations is not None and null == "gamma":
        raise InvalidInputError(
            f"n_permutations={n_permutations!r} does not apply to null='gamma' (no permutations are drawn). "
            "Drop n_permutations, or use null='permutation'."
        )
    n_perm = _int("n_permutations", 1000 if n_permutations is None else n_permutations, 1, "a positive integer")
    seed = _int("seed", seed, 0, "a non-negative integer")
    if n_features is not None:
        n_features = _int("n_features", n_features, 2, "an integer >= 2 (or None for the default)")
    if isinstance(alpha, (bool, np.bool_)) or not isinstance(alpha, (int, float, np.integer, np.floating)) or not 0 < alpha < 1:
        raise InvalidInputError(f"the 'alpha' parameter of hsic_test must be a number in (0, 1); got {alpha!r} instead.")

    reps = prepare([x, y], ["x", "y"])
    n = reps[0].n
    if n < MIN_SAMPLES:
        raise InvalidInputError(
            f"hsic_test needs at least {MIN_SAMPLES} paired samples (the null variance divides by n − 3 and a "
            f"permutation test of fewer has almost no resolution); got n = {n}. Pass more samples."
        )
    chosen = null if null != "auto" else ("permutation" if n <= PERMUTATION_MAX_N else "gamma")
    reason = "requested" if null != "auto" else (
        f"n = {n} <= {PERMUTATION_MAX_N}: permutation" if n <= PERMUTATION_MAX_N else f"n = {n} > {PERMUTATION_MAX_N}: gamma"
    )
    params: dict[str, Any] = {"kernel": kernel, "seed": seed, "null": chosen, "null_reason": reason}
    if chosen == "permutation":
        params["n_permutations"] = n_perm
    workers = int(engine_opts.num_workers or os.cpu_count() or 1)

    if kernel == "linear":
        if method not in ("auto", "exact"):
            raise InvalidInputError(
                f"method={method!r} approximates non-linear kernels; the linear kernel is exact at any n "
                "(its features are the rows themselves). Use method='auto' (or 'exact'), or kernel='rbf'."
            )
        check_applies("hsic_test", "the linear kernel", bandwidth=(bandwidth, "median"), n_features=(n_features, None))
        xs, ys = _sample(reps, BANDWIDTH_SAMPLE, seed)
        shifts = (xs.mean(axis=0), ys.mean(axis=0))
        params.update(method="exact", method_reason="linear kernel: always exact")
        return _feature_test(reps, (None, None), (reps[0].d, reps[1].d), shifts, chosen, n_perm, seed, alpha, workers, params, engine_opts)

    xs, ys = _sample(reps, BANDWIDTH_SAMPLE, seed)
    sx, sy, mx, my = resolve_bandwidths(bandwidth, xs, ys, "hsic_test")
    shifts = (xs.mean(axis=0), ys.mean(axis=0))
    params.update(bandwidth_x=sx, bandwidth_y=sy, median_x=mx, median_y=my, bandwidth_sample=int(xs.shape[0]))
    # an explicit bandwidth on data whose median distance is 0 has no ratio: never Nystroem
    ratio = 0.0 if mx is None or my is None else min(sx / mx, sy / my)
    if method == "exact":  # requested (under "auto" it applies whenever the road is approximate)
        check_applies("hsic_test", "method='exact'", n_features=(n_features, None))
    method, why = resolve_method(method, n, ratio, exact_max_n=EXACT_MAX_N, exact="exact kernel matrices", fallback="rff")
    params.update(method=method, method_reason=why)

    if method == "exact":
        budget = requested_budget(engine_opts.memory_per_worker)  # None unless memory_per_worker / memory_limit constrain it
        grams = 2 * n * n * 8
        if n <= EXACT_MAX_N and (budget is None or grams <= budget):
            _note_in_memory(params, engine_opts)
            return _gram_test(reps, kernel, (sx, sy), shifts, chosen, n_perm, seed, alpha, workers, params)
        if chosen == "permutation":
            limit = (f"allowed up to n = {EXACT_MAX_N} ({2 * EXACT_MAX_N**2 * 8 / 2**30:.1f} GiB)" if n > EXACT_MAX_N
                     else f"over the memory budget of {budget / 2**20:.0f} MiB (memory_per_worker / memory_limit)")  # fmt: skip
            raise InvalidInputError(
                f"method='exact' with null='permutation' holds two n×n kernel matrices, {limit}; got n = {n} "
                f"({grams / 2**20:.0f} MiB). Use method='rff' or 'nystroem' (the permutation test on "
                "explicit features), or null='gamma' (exact kernels streamed over tiles)."
            )
        return _tiles_test(reps, kernel, (sx, sy), shifts, n, alpha, params, engine_opts)

    if method == "rff":
        D = int(n_features or DEFAULT_N_FEATURES)
        if D % 2:
            raise InvalidInputError(
                f"n_features for rff counts feature columns (the cos and sin of each frequency), so it must be even; got {D}."
            )
        rng = np.random.default_rng([seed, _FEATURE_TAG])
        maps = (
            draw_random_fourier(kernel, reps[0].d, D // 2, sx, shifts[0], rng, orthogonal=False),
            draw_random_fourier(kernel, reps[1].d, D // 2, sy, shifts[1], rng, orthogonal=False),
        )
        params.update(n_features=D)
    else:  # nystroem
        m = min(int(n_features or DEFAULT_N_FEATURES), n)
        lx, ly = _sample(reps, m, seed + 1)
        maps = (draw_nystroem(kernel, lx, sx, shifts[0]), draw_nystroem(kernel, ly, sy, shifts[1]))
        params.update(n_features=m, rank_x=maps[0].n_features, rank_y=maps[1].n_features, landmarks="uniform without replacement")
    widths = (maps[0].n_features, maps[1].n_features)
    return _feature_test(reps, maps, widths, shifts, chosen, n_perm, seed, alpha, workers, params, engine_opts)


def _finish(n: int, t_obs: float, a: _SideStats, b: _SideStats, test_null: str, n_perm: int, seed: int, alpha: float,
            params: dict[str, Any], batch: Callable[[np.ndarray], np.ndarray] | None, batch_rows: int) -> TestResult:  # fmt: skip
    flags = tuple(f for f, s in (("x_constant", a), ("y_constant", b)) if s.constant)
    if flags:
        t_obs = 0.0
    if test_null == "permutation":
        assert batch is not None
        p, null = _permutation_null(n, n_perm, seed, t_obs, _tie_tolerance(n, a, b), batch, batch_rows)
    elif flags:  # a constant kernel: every re-pairing gives exactly 0
        p, null = 1.0, {"distribution": "point mass at 0", "statistic": "n * HSIC_b"}
    else:
        p, null = _gamma_null(n, t_obs, a, b)
    # the null laws above are of T/n (n·HSIC with Gretton et al.'s n² divisor); the statistic divides by
    # (n − 1)², so the law of n·value is the same law scaled by c = n²/(n − 1)² (p-values unchanged)
    c = n * n / (n - 1.0) ** 2
    null = {k: (v * c * c if k == "variance" else v * c if k in ("mean", "scale") else v) for k, v in null.items()}
    return TestResult(
        metric="hsic_test", value=t_obs / (n - 1.0) ** 2, estimator="biased", method=params["method"], n_samples=n,
        parameters=params, flags=flags, pvalue=min(1.0, p), alpha=float(alpha), null=null,
    )  # fmt: skip


def _gram_test(reps, kernel, sigmas, shifts, test_null, n_perm, seed, alpha, workers, params) -> TestResult:  # type: ignore[no-untyped-def]
    with blas_threads_for(reps[0].n * (reps[0].d + reps[1].d)):
        return _gram_test_body(reps, kernel, sigmas, shifts, test_null, n_perm, seed, alpha, workers, params)


def _gram_test_body(reps, kernel, sigmas, shifts, test_null, n_perm, seed, alpha, workers, params) -> TestResult:  # type: ignore[no-untyped-def]
    n = reps[0].n
    sides = []
    mats = []
    for rep, nm, sigma, shift in zip(reps, ("x", "y"), sigmas, shifts):
        xs = read_all(rep, nm, shift)
        constant = bool(np.all(xs == xs[0]))
        k = gram(xs, kernel, sigma)
        del xs
        kc = centre_gram(k)
        if constant:
            kc[...] = 0.0
        mats.append(kc)
        sides.append(_gram_stats(kc, constant))
    params.update(representation="kernel matrices", memory_bytes=2 * n * n * 8)
    t_obs = float(np.vdot(mats[0], mats[1]))
    batch_rows = max(1, min(n_perm, _BATCH_BYTES // (4 * n)))
    batch = _gram_batch(mats[0], mats[1], workers) if test_null == "permutation" else None
    return _finish(n, t_obs, sides[0], sides[1], test_null, n_perm, seed, alpha, params, batch, batch_rows)


def _note_in_memory(params: dict, options: EngineOptions) -> None:
    """Record the engine options an in-memory road was given and does not use (it reads each input in one piece):
    never silently ignored, and never an error, since the road is the test's own choice (``method="auto"``)."""
    unused = [k for k in ("block_size", "scheduler", "client") if getattr(options, k) is not None]
    if unused:
        params["engine_not_used"] = (
            f"{', '.join(unused)}: this road reads x and y into memory in one piece (no chunked pass); "
            "they would not change the answer"
        )


def _feature_test(reps, maps, widths, shifts, test_null, n_perm, seed, alpha, workers, params, options) -> TestResult:  # type: ignore[no-untyped-def]
    n = reps[0].n
    dx, dy = widths
    budget = requested_budget(options.memory_per_worker)
    held = n * (dx + dy) * 8 + (2 * n * n * 8 if _use_gram(n, dx, dy, test_null) else 0)  # features (+ their Grams)
    if test_null == "permutation" and budget is not None and held > budget:
        raise InvalidInputError(
            f"null='permutation' holds the n × (D_x + D_y) features in memory ({held / 2**20:.0f} MiB at n = {n}), over "
            f"the memory budget of {budget / 2**20:.0f} MiB (memory_per_worker / memory_limit). Use fewer n_features, "
            "a larger budget, or null='gamma' (streamed moments, O(D²) memory)."
        )
    if _materialise(n, dx, dy, test_null) and (budget is None or held <= budget):
        _note_in_memory(params, options)
        with blas_threads_for(n * (dx + dy + reps[0].d + reps[1].d)):
            return _in_memory_feature_test(reps, maps, widths, shifts, test_null, n_perm, seed, alpha, workers, params)

    transforms = tuple(maps) if any(m is not None for m in maps) else ()
    stat = MomentStatistic(names=("x", "y"), pairs=((0, 1),), transforms=transforms)
    m, plan = run(stat, reps, check_pairing=False, options=feature_options(options, reps, widths[0], widths[1]))
    sides = []
    for s in m.sides:
        sides.append(_SideStats(t=s.trace, f=float(np.vdot(s.M, s.M)), s=s.t4, constant=s.is_constant))
    cm = m.crosses[(0, 1)].M
    params.update(representation="streamed feature moments", block_size=plan.block_rows, n_blocks=plan.n_blocks, scheduler=plan.scheduler)
    return _finish(n, float(np.vdot(cm, cm)), sides[0], sides[1], test_null, n_perm, seed, alpha, params, None, 0)


def _in_memory_feature_test(reps, maps, widths, shifts, test_null, n_perm, seed, alpha, workers, params) -> TestResult:  # type: ignore[no-untyped-def]
    n = reps[0].n
    dx, dy = widths
    phis, constant = [], []
    for rep, nm, fmap, w, shift in zip(reps, ("x", "y"), maps, widths, shifts):
        phi = read_all(rep, nm, shift, fmap, w)
        constant.append(_centre_features(phi))
        phis.append(phi)
    mem = n * (dx + dy) * 8
    if _use_gram(n, dx, dy, test_null):
        mats = [phi @ phi.T for phi in phis]
        del phis
        for k in mats:
            k += k.T  # exactly symmetric
            k *= 0.5
        sides = [_gram_stats(k, c) for k, c in zip(mats, constant)]
        params.update(representation="features in memory, kernel matrices", memory_bytes=mem + 2 * n * n * 8)
        t_obs = float(np.vdot(mats[0], mats[1]))
        batch = _gram_batch(mats[0], mats[1], workers)
        batch_rows = max(1, min(n_perm, _BATCH_BYTES // (4 * n)))
    else:
        sides = [_feature_stats(phi, c) for phi, c in zip(phis, constant)]
        params.update(representation="features in memory", memory_bytes=mem)
        c = phis[0].T @ phis[1]
        t_obs = float(np.vdot(c, c))
        batch = _feature_batch(*phis)
        batch_rows = max(1, min(n_perm, _BATCH_BYTES // (8 * n * dy + 1)))
    if test_null != "permutation":
        batch = None
    return _finish(n, t_obs, sides[0], sides[1], test_null, n_perm, seed, alpha, params, batch, batch_rows)


def _tiles_test(reps, kernel, sigmas, shifts, n, alpha, params, options) -> TestResult:  # type: ignore[no-untyped-def]
    """Gamma test on exact rbf/laplacian kernels streamed over tiles (k(x, x) = 1).

    From the off-diagonal sums A_kl, A_kk, A_ll and row sums r̃, s̃:
    K1 = r = r̃ + 1, R = 1ᵀK1; tr(K_c L_c) = A_kl + n − (2/n) rᵀs + R S/n²;
    t = n − R/n; f = A_kk + n − (2/n)‖r‖² + R²/n²; (K_c)ᵢᵢ = 1 − 2rᵢ/n + R/n².
    """
    stat = KernelTileStatistic(kernel, kernel_scale(kernel, sigmas[0]), kernel_scale(kernel, sigmas[1]), shifts[0], shifts[1])
    sums, plan = run_pairs(stat, reps, check_pairing=False, options=options)
    r, s_ = sums.r + 1.0, sums.s + 1.0
    R, S = float(r.sum()), float(s_.sum())

    def side(a_off: float, rr: np.ndarray, tot: float) -> _SideStats:
        diag = 1.0 - 2.0 * rr / n + tot / n**2
        return _SideStats(
            t=n - tot / n, f=a_off + n - 2.0 / n * float(rr @ rr) + tot * tot / n**2, s=float(diag @ diag),
            constant=a_off == n * (n - 1),
        )  # fmt: skip

    a, b = side(sums.kk, r, R), side(sums.ll, s_, S)
    t_obs = sums.kl + n - 2.0 / n * float(r @ s_) + R * S / n**2
    params.update(representation="kernel tiles", block_size=plan.block_rows, n_tiles=plan.n_blocks * (plan.n_blocks + 1) // 2, scheduler=plan.scheduler)
    return _finish(n, t_obs, a, b, "gamma", 0, 0, alpha, params, None, 0)
