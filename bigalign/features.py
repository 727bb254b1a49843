"""Kernels, bandwidths and explicit feature maps (random Fourier, orthogonal random, Nyström).

Conventions: rbf k(x, x') = exp(−‖x − x'‖² / (2σ²)); laplacian
k(x, x') = exp(−‖x − x'‖ / σ) (Euclidean norm); σ = bandwidth.

A feature map is drawn once from the seed, before any block is read, and is
a frozen, picklable object: every block and every worker applies the same map.
Rows are shifted by a fixed vector (the mean of the bandwidth subsample) before
mapping; the kernels are translation invariant, so this changes nothing but
rounding (it keeps ωᵀx and the GEMM distances small).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ._checks import finite_float64
from .errors import DegenerateInputError, InvalidInputError, NonFiniteError
from .io import Representation

__all__ = [
    "KERNELS",
    "FeatureMap",
    "NystroemMap",
    "RandomFourierMap",
    "draw_nystroem",
    "draw_random_fourier",
    "kernel_scale",
    "median_bandwidth",
    "resolve_bandwidth",
    "resolve_bandwidths",
    "sample_rows",
]

KERNELS = ("linear", "rbf", "laplacian")
BANDWIDTH_SAMPLE = 1000  # rows used for the median heuristic (≈ 5·10⁵ distances)
MAX_GROUPS = 64


def kernel_scale(kernel: str, sigma: float) -> float:
    """The factor inside the exponential: 1/(2σ²) for rbf, 1/σ for laplacian."""
    return 1.0 / (2.0 * sigma * sigma) if kernel == "rbf" else 1.0 / sigma


def take_finite(rep: Representation, idx: np.ndarray, sample: str) -> np.ndarray:
    """Rows ``idx`` of ``rep`` as float64; NaN/Inf raise, naming the rows and the ``sample`` they were drawn for."""
    block = np.asarray(rep.take(idx), dtype=np.float64)
    if not np.isfinite(block).all():
        rows = idx[~np.isfinite(block).all(axis=1)]
        raise NonFiniteError(
            f"{rep.name} holds NaN or infinite values in rows {', '.join(map(str, rows[:5]))}"
            f"{' ...' if rows.size > 5 else ''} (found in the seeded sample of {sample}). "
            "Expected finite numbers. Remove or repair these rows."
        )
    return finite_float64(block, rep.name, 0)


def sample_rows(reps: Sequence[Representation], m: int, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """A seeded uniform sample of min(m, n) rows (the same rows of every input), as float64."""
    n = reps[0].n
    rng = np.random.default_rng([seed, 0xB16A])
    idx = np.arange(n) if m >= n else np.sort(rng.choice(n, size=m, replace=False))
    out = [take_finite(r, idx, "rows used for the bandwidth or landmarks") for r in reps]
    return idx, out


def median_bandwidth(sample: np.ndarray, name: str) -> float:
    """Median pairwise Euclidean distance of ``sample`` (rows)."""
    from scipy.spatial.distance import pdist

    if sample.shape[0] < 2:
        raise InvalidInputError(f"the median bandwidth of {name} needs at least 2 samples; got {sample.shape[0]}.")
    med = float(np.median(pdist(sample, "euclidean")))
    if not med > 0:
        raise DegenerateInputError(
            f"the median heuristic gives bandwidth 0 for {name}: more than half of the sampled pairs of rows "
            "are identical. Expected varied rows. Pass an explicit bandwidth=... or deduplicate the rows.",
            reason="zero_bandwidth",
        )
    return med


def check_bandwidth(value: Any, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidInputError(f"the bandwidth of {name} must be a positive number or 'median'; got {value!r}.")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise InvalidInputError(f"the bandwidth of {name} must be a positive finite number; got {value!r}.")
    if 2.0 * v * v < 1e-300:  # 1/(2σ²) would overflow float64
        raise InvalidInputError(
            f"the bandwidth of {name} is {v:g}, too small for float64 (1/(2σ²) overflows). Expected a bandwidth "
            "comparable to the data's pairwise distances; try bandwidth='median'."
        )
    return v


# ----------------------------------------------------------------------------
# the bandwidth rule and the "auto" rule every kernel estimator shares
# ----------------------------------------------------------------------------

#: bandwidth / median below which Nyström is unreliable (measured coverage 0.265 vs 0.504 at 0.2×median)
NYSTROEM_MIN_RATIO = 0.5
#: ``method="auto"`` of the kernel estimators computes exact tiles up to this many samples (O(n²·d): about
#: a minute at n = 20,000, d = 1,000 on two cores), and approximates beyond
KERNEL_EXACT_MAX_N = 20_000


def _is_median(b: Any) -> bool:
    return isinstance(b, str) and b == "median"


def _median_or_none(sample: np.ndarray, name: str, needed: bool) -> float | None:
    """The median heuristic; when it is only informative (an explicit bandwidth), a 0 median is not an error."""
    try:
        return median_bandwidth(sample, name)
    except DegenerateInputError:
        if needed:
            raise
        return None


def resolve_bandwidth(bandwidth: Any, xs: np.ndarray, name: str, func: str | None = None) -> tuple[float, float | None]:
    """(σ, median) of one input: ``bandwidth`` is ``"median"`` (the median pairwise distance of the
    sample ``xs``) or a positive number; the median is None when it is 0 and not needed.

    The rule of :func:`resolve_bandwidths` for estimators of one representation (spectra, the
    kernel stitch's source); ``func`` names the caller in the error message.
    """
    where = f" of {func}" if func else ""
    if isinstance(bandwidth, (tuple, list)):
        raise InvalidInputError(
            f"the 'bandwidth' parameter{where} must be one number or 'median': {name} has one kernel; got {bandwidth!r}."
        )
    if isinstance(bandwidth, str) and not _is_median(bandwidth):
        raise InvalidInputError(f"the 'bandwidth' parameter{where} must be 'median' or a positive number; got {bandwidth!r}.")
    med = _median_or_none(xs, name, _is_median(bandwidth))
    return (med if _is_median(bandwidth) else check_bandwidth(bandwidth, name)), med  # type: ignore[return-value]


def resolve_bandwidths(
    bandwidth: Any, xs: np.ndarray, ys: np.ndarray, func: str | None = None
) -> tuple[float, float, float | None, float | None]:
    """(σx, σy, median_x, median_y) of every kernel estimator; a median is None when it is 0 and not needed.

    ``bandwidth`` is ``"median"`` (the median pairwise distance of the sample), a positive
    number, or a pair of them (x, y); ``func`` names the caller in the error message.
    """
    where = f" of {func}" if func else ""
    if isinstance(bandwidth, str) and not _is_median(bandwidth):
        raise InvalidInputError(
            f"the 'bandwidth' parameter{where} must be 'median', a positive number or a pair of them; got {bandwidth!r}."
        )
    if isinstance(bandwidth, (tuple, list)):
        if len(bandwidth) != 2:
            raise InvalidInputError(f"a bandwidth pair must have 2 entries (bandwidth_x, bandwidth_y); got {bandwidth!r}.")
        bx, by = bandwidth
    else:
        bx = by = bandwidth
    sx, mx = resolve_bandwidth(bx, xs, "x", func)
    sy, my = resolve_bandwidth(by, ys, "y", func)
    return sx, sy, mx, my


def bandwidth_ratio(sigmas: list[float], medians: list[float | None]) -> float:
    """min σ / median over inputs with a non-zero median (inf when none has one)."""
    return min([s / m for s, m in zip(sigmas, medians) if m] or [float("inf")])


def resolve_method(
    method: str, n: int, ratio: float, *, exact_max_n: int = KERNEL_EXACT_MAX_N, exact: str = "exact tiles",
    n_label: str = "n", fallback: str = "orf",
) -> tuple[str, str]:  # fmt: skip
    """The one "auto" rule of the kernel estimators: (method, reason) for ``method="auto"``.

    Used by COCO/KCC/KMI, MMD, hsic_test and compare_layers' kernel matrices; cka, hsic and
    kernel_alignment refine it by predicted accuracy per second
    (:func:`bigalign.metrics._kernel_nonlinear.choose_road`).

    Exact up to ``exact_max_n`` samples (``exact`` names the exact road in the
    reason); beyond, Nyström when the bandwidth is at least
    ``NYSTROEM_MIN_RATIO`` × the median distance (``ratio``), else
    ``fallback`` random features (Nyström fails at small bandwidths).
    """
    if method != "auto":
        return method, "requested"
    if n <= exact_max_n:
        return "exact", f"{n_label} = {n} <= {exact_max_n}: {exact}"
    if ratio >= NYSTROEM_MIN_RATIO:
        return "nystroem", f"{n_label} > {exact_max_n} and bandwidth >= {NYSTROEM_MIN_RATIO} x median: Nystroem"
    label = "ORF" if fallback == "orf" else fallback
    return fallback, f"{n_label} > {exact_max_n} and bandwidth < {NYSTROEM_MIN_RATIO} x median (Nystroem fails there): {label}"


def _groups_for(n_freq: int) -> int:
    """Largest number of equal groups ≤ MAX_GROUPS that divides the frequencies."""
    for g in range(min(MAX_GROUPS, n_freq), 0, -1):
        if n_freq % g == 0:
            return g
    return 1


class FeatureMap:
    """Protocol: ``map(x64) -> features``; ``bounds`` are the column groups."""

    bounds: np.ndarray
    n_groups: int

    def __call__(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class RandomFourierMap(FeatureMap):
    """φ(x) = √(1/D) [cos ω₁ᵀx', sin ω₁ᵀx', …, cos ω_Dᵀx', sin ω_Dᵀx'], x' = x − shift.

    E[φ(x)ᵀφ(x')] = k(x, x').  Columns are grouped into ``n_groups`` equal,
    independent groups of frequencies (a group is a union of orthogonal blocks
    for ORF), which the estimators use to drop same-group terms and jackknife.
    """

    W: np.ndarray  # (d, D)
    shift: np.ndarray
    n_groups: int
    orthogonal: bool
    dtype: str = "float64"  # of the map's product and features ("float32": twice the GEMM and trig speed)

    @property
    def bounds(self) -> np.ndarray:
        D = self.W.shape[1]
        return np.arange(0, 2 * D + 1, 2 * D // self.n_groups, dtype=np.int64)

    @property
    def n_features(self) -> int:
        return 2 * self.W.shape[1]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        dt = np.dtype(self.dtype)
        # shift in float64 (the rows' offset cancels exactly there), then the product in the map's dtype
        z = np.subtract(x, self.shift, dtype=np.float64).astype(dt, copy=False) @ self.W.astype(dt, copy=False)
        out = np.empty((z.shape[0], 2 * z.shape[1]), dtype=dt)
        np.cos(z, out=out[:, 0::2])
        np.sin(z, out=out[:, 1::2])
        out *= dt.type(math.sqrt(1.0 / z.shape[1]))
        return out


def _frequency_norms(kernel: str, d: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Norms of frequency vectors: χ_d for rbf; ‖z‖/|g| (multivariate Cauchy) for laplacian."""
    chi = np.sqrt(rng.chisquare(d, size=size))
    if kernel == "rbf":
        return chi
    return chi / np.abs(rng.standard_normal(size))


def draw_random_fourier(
    kernel: str, d: int, n_frequencies: int, sigma: float, shift: np.ndarray, rng: np.random.Generator, orthogonal: bool,
    dtype: str = "float64",
) -> RandomFourierMap:  # fmt: skip
    """Draw ω for a shift-invariant kernel (Rahimi & Recht 2007; ORF: Yu et al. 2016).

    rbf: ω ~ N(0, σ⁻²I).  laplacian (Euclidean): ω = z/(σ|g|), z ~ N(0, I), g ~ N(0, 1)
    (the multivariate Cauchy, whose characteristic function is exp(−‖t‖)).
    ORF: blocks of ≤ d directions from a random orthogonal matrix, each scaled
    by an independent norm with the same law as ‖ω‖.
    """
    G = _groups_for(n_frequencies)
    if orthogonal:
        per_group = n_frequencies // G
        cols = []
        for _ in range(G):
            left = per_group
            while left > 0:
                b = min(d, left)
                q, r = np.linalg.qr(rng.standard_normal((d, d)))
                q *= np.sign(np.diag(r))  # Haar-distributed
                cols.append(q[:, :b] * _frequency_norms(kernel, d, b, rng)[None, :])
                left -= b
        W = np.concatenate(cols, axis=1) / sigma
    else:
        z = rng.standard_normal((d, n_frequencies))
        if kernel == "laplacian":
            z /= np.abs(rng.standard_normal(n_frequencies))[None, :]
        W = z / sigma
    return RandomFourierMap(W=W, shift=shift, n_groups=G, orthogonal=orthogonal, dtype=dtype)


def kernel_matrix(a: np.ndarray, b: np.ndarray, kernel: str, sigma: float) -> np.ndarray:
    """k(a_i, b_j) from exact differences-free GEMM distances (inputs already shifted)."""
    na = np.einsum("ij,ij->i", a, a)
    nb = np.einsum("ij,ij->i", b, b)
    d2 = np.maximum(na[:, None] + nb[None, :] - 2.0 * (a @ b.T), 0.0)  # rounding only
    if kernel == "rbf":
        return np.exp(-d2 / (2.0 * sigma * sigma))
    return np.exp(-np.sqrt(d2) / sigma)


@dataclass(frozen=True, eq=False)
class NystroemMap(FeatureMap):
    """φ(x) = k(x, Z) V Λ^{-1/2} for landmarks Z with k(Z, Z) = VΛVᵀ (Williams & Seeger 2001).

    Landmarks are drawn uniformly without replacement (seeded) from the rows.
    Eigenvalues below 1e-12·λ_max are dropped (the pseudo-inverse square root):
    they carry rounding, not signal.
    """

    landmarks: np.ndarray
    proj: np.ndarray
    shift: np.ndarray
    kernel: str
    sigma: float

    n_groups: int = 1

    @property
    def bounds(self) -> np.ndarray:
        return np.array([0, self.proj.shape[1]], dtype=np.int64)

    @property
    def n_features(self) -> int:
        return self.proj.shape[1]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return kernel_matrix(x - self.shift, self.landmarks, self.kernel, self.sigma) @ self.proj


def draw_nystroem(kernel: str, landmarks: np.ndarray, sigma: float, shift: np.ndarray) -> NystroemMap:
    z = landmarks - shift
    w = kernel_matrix(z, z, kernel, sigma)
    lam, vec = np.linalg.eigh(w)
    keep = lam > 1e-12 * lam.max()
    proj = vec[:, keep] / np.sqrt(lam[keep])[None, :]
    return NystroemMap(landmarks=z, proj=proj, shift=shift, kernel=kernel, sigma=sigma)
