"""What the non-linear stitches share: their results, options, fitting-row samples and streamed error sums.

See :mod:`bigalign.metrics.stitching_nonlinear` for the estimators.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np

from .._checks import finite_float64
from ..errors import DegenerateInputError, InvalidInputError
from ..features import (
    BANDWIDTH_SAMPLE,
    check_bandwidth,
    draw_nystroem,
    draw_random_fourier,
    resolve_bandwidth,
    take_finite,
)
from ..io import Representation
from ..moments import MomentStatistic
from ._stitch_data import HOLDOUT, Splits
from ._stitch_results import StitchResult, StitchRisks

KERNEL_DEFAULTS: dict[str, Any] = {"kernel": "rbf", "bandwidth": "median", "method": "rff", "n_features": 512}
MLP_DEFAULTS: dict[str, Any] = {"hidden": (128,), "epochs": 20, "batch_size": 128, "learning_rate": 1e-3,
                                "weight_decay": 1e-4, "activation": "relu"}  # fmt: skip
OPTIONS = {"kernel": KERNEL_DEFAULTS, "mlp": MLP_DEFAULTS}
#: minibatches per window read in one piece during MLP training (WINDOW_BATCHES · batch_size rows)
WINDOW_BATCHES = 32
#: n up to which the fitting-row sample is drawn from the exact list of fitting rows (else by rejection)
_EXACT_SAMPLE_N = 1 << 22
_RISKS = ("residual", "risk_1", "risk_2", "stitched_risk", "regression_stitch_risk")
_BOUND_NOTE = {
    "kernel": "Theorem 1 with Ã over the kernel class (Remark 3; Minkowski, valid for any stitch): "
              "regression_stitch_risk ≤ bound on every split; stitched_risk ≤ bound on the fitting rows for ridge = 0",
    "mlp": "Theorem 1 with Ã = this MLP stitch's residual (Minkowski, valid for any stitch): "
           "regression_stitch_risk ≤ bound on every split; stitched_risk ≤ bound is NOT guaranteed "
           "(the MLP stitches are not minimisers over a class)",
}  # fmt: skip


# ============================================================================
# results
# ============================================================================


@dataclass(frozen=True)
class StitchRisksSE(StitchRisks):
    """:class:`StitchRisks` with standard errors of the held-out risks.

    ``stderr`` maps ``"residual"``, ``"risk_1"``, ``"risk_2"`` and, with
    targets, ``"stitched_risk"``, ``"regression_stitch_risk"`` to
    sd(per-row squared error)/√n on these rows (held-out rows only; ``None``
    on the fitting rows, where the predictor was fitted and sd/√n would not
    describe its error on new rows).
    """

    stderr: Mapping[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["stderr"] = None if self.stderr is None else {k: float(v) for k, v in self.stderr.items()}
        return out


@dataclass(frozen=True, eq=False)
class KernelFeatures:
    """z(x) = [x, c·φ(x)]: the rows themselves next to scaled kernel features (a frozen, picklable map)."""

    phi: Any
    scale: float

    @property
    def n_features(self) -> int:
        return int(self.phi.n_features)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        f = self.phi(x)
        f *= self.scale
        return np.hstack([x, f])


@dataclass(frozen=True, eq=False)
class KernelStitch:
    """s(x) = z(x) @ coef + offset with z the :class:`KernelFeatures` map."""

    features: KernelFeatures
    coef: np.ndarray
    offset: np.ndarray

    def predict(self, x: Any) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return self.features(x) @ self.coef + self.offset


@dataclass(frozen=True, eq=False)
class MLPStitch:
    """s(x) = x S + b + α·σ·m((x − μ)/sd) [@ post]; ``mlp`` None means α = 0 (no MLP was trained)."""

    S: np.ndarray
    b: np.ndarray
    mlp: Any
    mean: np.ndarray
    scale: np.ndarray
    out_scale: float
    alpha: float = 0.0
    post: np.ndarray | None = None

    def direction(self, x: np.ndarray) -> np.ndarray:
        """σ·m((x − μ)/sd) [@ post], the MLP's correction before α (float64 rows in, rows out)."""
        if self.mlp is None:
            return np.zeros((x.shape[0], self.S.shape[1]))
        v = np.asarray(self.mlp.predict((x - self.mean) / self.scale), dtype=np.float64).reshape(x.shape[0], -1)
        v = v * self.out_scale
        return v if self.post is None else v @ self.post

    def predict(self, x: Any) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        out = x @ self.S + self.b
        return out + self.alpha * self.direction(x) if self.alpha != 0 else out


@dataclass(frozen=True, eq=False)
class NonlinearStitchResult(StitchResult):
    """A kernel or MLP stitch (:class:`StitchResult` with ``map``/``offset``/``task_map`` None).

    Extra attributes
    ----------------
    kind : {"kernel", "mlp"}
    model : KernelStitch or MLPStitch
        The representation stitch s: ``result.predict(x)`` = s(x).
    task_model : KernelStitch or MLPStitch or None
        The stitch into y's fixed head (with targets): t̂ = task_model.predict(x) @ W₂ + b₂.
    baseline : StitchResult
        The linear stitch on the same rows, split and ridge (its ``fit``/``holdout``
        are :class:`StitchRisksSE`, with held-out standard errors).

    ``fit``/``holdout`` are :class:`StitchRisksSE`; ``risk_1`` is the risk of
    model 1's *linear* head; ``head_1``/``head_2``/``kappa`` are the linear
    heads.  ``stderrs`` gives the standard errors of the evaluation-row risks
    (sampling uncertainty of held-out means), and ``ci`` the normal 95%
    interval of ``value`` (the residual) from its standard error; ``stderr``
    (approximation error against an exact value) is None: a trained stitch has
    no exact counterpart.
    """

    kind: str = "kernel"
    model: Any = None
    task_model: Any = None
    baseline: StitchResult | None = None

    @property
    def stderrs(self) -> Mapping[str, float] | None:
        """Standard errors of the evaluation-row risks (held-out rows; None when ``holdout=0``)."""
        return getattr(self.evaluation, "stderr", None)

    @property
    def ci(self) -> tuple[float, float] | None:  # type: ignore[override]
        """With ``ci=`` (kernel kind): the block-jackknife sampling interval of the population residual;
        else value ± 1.96·se(residual) on held-out rows (normal 95% interval, the map fixed), None without them."""
        if self.sampling_ci is not None:
            return self.sampling_ci
        se = (self.stderrs or {}).get("residual")
        return None if se is None else (self.value - 1.959963984540054 * se, self.value + 1.959963984540054 * se)

    @property
    def ci_level(self) -> float | None:  # type: ignore[override]
        if self.sampling_ci_level is not None:
            return self.sampling_ci_level
        return None if self.ci is None else 0.95

    def predict(self, x: Any) -> np.ndarray:
        """s(x): representation 1 rows mapped into representation 2 (float64 numpy rows)."""
        return self.model.predict(x)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["kind"] = self.kind
        out["stderrs"] = None if self.stderrs is None else {k: float(v) for k, v in self.stderrs.items()}
        out["baseline"] = None if self.baseline is None else self.baseline.to_dict()
        return out

    def __repr__(self) -> str:
        e = self.evaluation
        se = getattr(e, "stderr", None) or {}

        def fmt(name: str, v: float) -> str:
            return f"{name}={v:.6g}" + (f"±{se[name]:.2g}" if name in se else "")

        parts = [fmt("residual", e.residual)]
        if self.has_targets:
            parts += [fmt("risk_2", e.risk_2), fmt("stitched_risk", e.stitched_risk), f"bound={e.bound:.6g}"]
        fl = f", flags={list(self.flags)}" if self.flags else ""
        return f"NonlinearStitchResult({self.kind}, {self.direction}, {e.split} n={e.n_samples}: {', '.join(parts)}{fl})"


# ============================================================================
# options
# ============================================================================


def _is_int(v: Any) -> bool:
    return not isinstance(v, (bool, np.bool_)) and isinstance(v, (int, np.integer))


def _is_real(v: Any) -> bool:
    return not isinstance(v, (bool, np.bool_)) and isinstance(v, (int, float, np.integer, np.floating)) and math.isfinite(v)


def check_options(kind: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options of a non-linear kind, with defaults; clear errors for misplaced, unknown or bad ones."""
    mine = OPTIONS[kind]
    other = {k: o for o, d in OPTIONS.items() if o != kind for k in d}
    misplaced = sorted(k for k in options if k not in mine and k in other)
    if misplaced:
        raise InvalidInputError(
            f"stitch(kind={kind!r}) got option(s) {misplaced} of kind={other[misplaced[0]]!r}; the options of "
            f"kind={kind!r} are {sorted(mine)}. Pass kind={other[misplaced[0]]!r}, or drop them."
        )
    unknown = sorted(k for k in options if k not in mine)
    if unknown:
        raise InvalidInputError(
            f"stitch(kind={kind!r}) got unknown option(s) {unknown}; expected some of {sorted(mine)} "
            "(plus the keywords of bigalign.stitch). Check the spelling."
        )
    o = {**mine, **options}
    func = f"stitch(kind={kind!r})"
    if kind == "kernel":
        if o["kernel"] not in ("rbf", "laplacian"):
            raise InvalidInputError(f"the 'kernel' option of {func} must be 'rbf' or 'laplacian'; got {o['kernel']!r}.")
        if o["method"] not in ("rff", "orf", "nystroem"):
            raise InvalidInputError(f"the 'method' option of {func} must be one of ['rff', 'orf', 'nystroem']; got {o['method']!r}.")
        nf = o["n_features"]
        if not _is_int(nf) or nf < 2 or (o["method"] != "nystroem" and nf % 2):
            raise InvalidInputError(
                f"the 'n_features' option of {func} must be an integer ≥ 2, even for rff/orf (cos and sin of each "
                f"frequency; for nystroem: landmarks); got {nf!r}."
            )
        o["n_features"] = int(nf)
        bw = o["bandwidth"]
        if isinstance(bw, str):
            if bw != "median":
                raise InvalidInputError(f"the 'bandwidth' option of {func} must be 'median' or a positive number; got {bw!r}.")
        else:
            o["bandwidth"] = check_bandwidth(bw, "x")
    else:
        hidden = o["hidden"]
        hidden = (hidden,) if _is_int(hidden) else hidden
        if not isinstance(hidden, (tuple, list)) or not hidden or not all(_is_int(h) and h >= 1 for h in hidden):
            raise InvalidInputError(
                f"the 'hidden' option of {func} must be a positive integer or a non-empty sequence of them "
                f"(hidden layer sizes); got {o['hidden']!r}."
            )
        o["hidden"] = tuple(int(h) for h in hidden)
        for k in ("epochs", "batch_size"):
            if not _is_int(o[k]) or o[k] < 1:
                raise InvalidInputError(f"the {k!r} option of {func} must be an integer ≥ 1; got {o[k]!r}.")
            o[k] = int(o[k])
        if not _is_real(o["learning_rate"]) or o["learning_rate"] <= 0:
            raise InvalidInputError(f"the 'learning_rate' option of {func} must be a finite number > 0; got {o['learning_rate']!r}.")
        if not _is_real(o["weight_decay"]) or o["weight_decay"] < 0:
            raise InvalidInputError(f"the 'weight_decay' option of {func} must be a finite number ≥ 0; got {o['weight_decay']!r}.")
        o["learning_rate"], o["weight_decay"] = float(o["learning_rate"]), float(o["weight_decay"])
        if o["activation"] not in ("relu", "tanh", "logistic"):
            raise InvalidInputError(f"the 'activation' option of {func} must be 'relu', 'tanh' or 'logistic'; got {o['activation']!r}.")
    return o


# ============================================================================
# sampling fitting rows (bandwidth, shift, landmarks): held-out rows are never used
# ============================================================================


def fitting_row_sample(splits: Splits, n: int, m: int, seed: int, stream: int) -> np.ndarray:
    """Sorted indices of a seeded uniform sample of min(m, #fitting rows) fitting rows.

    Up to ``_EXACT_SAMPLE_N`` rows the fitting rows are listed exactly; beyond,
    candidates drawn uniformly without replacement are kept when the split
    hash marks them fitting (the first m kept: a uniform sample of them).
    """
    rng = np.random.default_rng([seed, 0x57, stream])
    if n <= _EXACT_SAMPLE_N:
        fit = np.flatnonzero(splits.assign(0, n) >= 0)
        return np.sort(fit if m >= fit.size else rng.choice(fit, size=m, replace=False))
    # seeded batches of distinct candidates, sized for the fitting fraction, until m fitting rows are kept
    # (n > _EXACT_SAMPLE_N here, so m ≪ n and a few batches suffice; holdout < 1 leaves fitting rows)
    batch = int(min(n, 2 * m / max(1e-3, 1.0 - splits.holdout) + 64))
    seen: set[int] = set()
    keep: list[int] = []
    while len(keep) < m and len(seen) < n:
        cand = np.asarray([i for i in rng.choice(n, size=batch, replace=False).tolist() if i not in seen], dtype=np.int64)
        seen.update(cand.tolist())
        keep.extend(int(i) for i, f in zip(cand, splits.assign_rows(cand)) if f >= 0)
    return np.sort(np.asarray(keep[:m], dtype=np.int64))


def _read_rows(rep: Representation, idx: np.ndarray, what: str) -> np.ndarray:
    return take_finite(rep, idx, f"fitting rows used for the {what}")


def kernel_features(rep: Representation, splits: Splits, opts: Mapping[str, Any], seed: int) -> tuple[KernelFeatures, dict[str, Any]]:
    """Draw z = [x, c·φ(x)] for one source representation from a seeded sample of its fitting rows.

    The random streams depend on the seed only, not on the role of the input,
    so the reverse stitch (y → x) equals ``stitch(y, x)`` with the same seed.
    """
    n = rep.n
    idx = fitting_row_sample(splits, n, BANDWIDTH_SAMPLE, seed, 0)
    xs = _read_rows(rep, idx, "kernel bandwidth and feature scale")
    shift = xs.mean(axis=0)
    scale = math.sqrt(float(np.mean(np.sum((xs - shift) ** 2, axis=1))))
    if not scale > 0:
        raise DegenerateInputError(
            f"{rep.name} is constant on the {xs.shape[0]} sampled fitting rows, so a kernel stitch has nothing to "
            "map (every kernel feature is constant). Expected a varying representation; use kind='linear'.",
            reason="source_constant",
        )
    sigma, med = resolve_bandwidth(opts["bandwidth"], xs, rep.name, "stitch")
    D = opts["n_features"]
    if opts["method"] in ("rff", "orf"):
        phi = draw_random_fourier(opts["kernel"], rep.d, D // 2, sigma, shift, np.random.default_rng([seed, 0x57, 7]),
                                  orthogonal=opts["method"] == "orf")  # fmt: skip
        extra: dict[str, Any] = {}
    else:
        lidx = fitting_row_sample(splits, n, D, seed, 1)
        land = _read_rows(rep, lidx, "Nystroem landmarks")
        phi = draw_nystroem(opts["kernel"], land, sigma, shift)
        extra = {"landmarks": int(land.shape[0]), "nystroem_rank": int(phi.n_features)}
    params = {"bandwidth": sigma, "median": med, "feature_scale": scale, "n_random_features": int(phi.n_features),
              "bandwidth_sample": int(xs.shape[0]), **extra}  # fmt: skip
    return KernelFeatures(phi=phi, scale=scale), params


# ============================================================================
# streamed statistics
# ============================================================================


@dataclass(frozen=True)
class _Expanded:
    """Feed the raw input blocks, some of them twice, to an inner :class:`MomentStatistic`.

    ``names`` name the raw inputs (for :class:`SplitMomentStatistic`'s block
    checks); input k of ``inner`` is raw input ``order[k]`` (its transform, if
    any, is applied by ``inner``).  Each raw block is read once.
    """

    names: tuple[str, ...]
    order: tuple[int, ...]
    inner: MomentStatistic

    def partial(self, blocks: Sequence[np.ndarray], start: int) -> Any:
        return self.inner.partial([blocks[k] for k in self.order], start)


@dataclass(frozen=True, eq=False)
class _Quantity:
    """Per-row error eᵢ(α) = ‖ρᵢ − α vᵢ‖², ρ = target − (source @ A + a0), v = models[model](model input) [@ post]."""

    source: int
    A: np.ndarray
    a0: np.ndarray
    target: int
    model: int | None = None
    model_input: int = 0
    post: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class ErrorSums:
    """Streamed sums of per-row errors eᵢ(α) = pᵢ − 2αqᵢ + α²sᵢ, per split (0: fitting rows, −1: held-out).

    State: ``{key: (n, sums)}`` with ``sums[k] = [Σp, Σq, Σs, Σp², Σq², Σs², Σpq, Σps, Σqs]``
    for quantity k — enough for the mean and the sample variance of eᵢ at any α.
    """

    names: tuple[str, ...]
    splits: Splits
    features: tuple[tuple[int, Any], ...]  # (raw input, transform or None)
    quantities: tuple[_Quantity, ...]
    models: tuple[Any, ...] = ()
    keys: tuple[int, ...] = (0, HOLDOUT)

    def partial(self, blocks: Sequence[np.ndarray], start: int) -> dict[int, tuple[int, np.ndarray]]:
        lab = self.splits.assign(start, start + np.asarray(blocks[0]).shape[0])
        raw = [finite_float64(b, self.names[k], start) for k, b in enumerate(blocks)]
        out: dict[int, tuple[int, np.ndarray]] = {}
        for key in self.keys:
            rows = np.flatnonzero(lab >= 0) if key == 0 else np.flatnonzero(lab == key)
            if rows.size == 0:
                continue
            feats = [tf(raw[r][rows]) if tf is not None else raw[r][rows] for r, tf in self.features]
            outs: dict[tuple[int, int], np.ndarray] = {}
            sums = np.zeros((len(self.quantities), 9))
            for k, q in enumerate(self.quantities):
                rho = feats[q.target] - (feats[q.source] @ q.A + q.a0)
                p = np.einsum("ij,ij->i", rho, rho)
                if q.model is None:
                    sums[k, 0], sums[k, 3] = p.sum(), (p * p).sum()
                    continue
                mk = (q.model, q.model_input)
                if mk not in outs:
                    outs[mk] = self.models[q.model].direction(feats[q.model_input])
                v = outs[mk] if q.post is None else outs[mk] @ q.post
                qq = np.einsum("ij,ij->i", rho, v)
                ss = np.einsum("ij,ij->i", v, v)
                sums[k] = [p.sum(), qq.sum(), ss.sum(), (p * p).sum(), (qq * qq).sum(), (ss * ss).sum(),
                           (p * qq).sum(), (p * ss).sum(), (qq * ss).sum()]  # fmt: skip
            out[key] = (int(rows.size), sums)
        return out

    def combine(self, a: dict, b: dict) -> dict:
        out = dict(a)
        for key, (n, s) in b.items():
            out[key] = (out[key][0] + n, out[key][1] + s) if key in out else (n, s)
        return out

    def finalize(self, state: dict) -> dict:
        return state


def _moments_at(n: int, s: np.ndarray, alpha: float) -> tuple[float, float]:
    """(Σe, Σe²) of eᵢ = pᵢ − 2αqᵢ + α²sᵢ from the streamed sums (exact polynomial identities)."""
    sp, sq, ss, spp, sqq, sss, spq, sps, sqs = s
    a = alpha
    se = sp - 2 * a * sq + a * a * ss
    se2 = spp + 4 * a * a * sqq + a**4 * sss - 4 * a * spq + 2 * a * a * sps - 4 * a**3 * sqs
    return float(se), float(se2)


def _stderr(n: int, s: np.ndarray, alpha: float = 0.0) -> float | None:
    """sd(eᵢ)/√n with the sample sd (n − 1); None for a single row."""
    if n < 2:
        return None
    se, se2 = _moments_at(n, s, alpha)
    var = (se2 - se * se / n) / (n - 1)
    if var < 0:
        # Σe² − (Σe)²/n ≥ 0 exactly (Cauchy–Schwarz); a negative value is rounding of equal terms: all eᵢ equal
        if var < -1e-10 * se2 / (n - 1):  # pragma: no cover - a bug, not a user error
            raise AssertionError(f"internal error: negative variance {var!r} of per-row errors")
        var = 0.0
    return math.sqrt(var / n)


# ============================================================================
# assembling results
# ============================================================================


def _with(r: StitchRisks, stderr: Mapping[str, float] | None = None, **kw: Any) -> StitchRisksSE:
    vals = {k: getattr(r, k) for k in ("split", "n_samples", "residual", "r2", "risk_1", "risk_2", "stitched_risk",
                                       "regression_stitch_risk", "bound")}  # fmt: skip
    vals.update(kw)
    return StitchRisksSE(**vals, stderr=None if stderr is None else {k: v for k, v in stderr.items() if v is not None})


def _stderrs(hold: tuple[int, np.ndarray] | None, index: Mapping[str, int], alphas: Mapping[str, float] | None = None) -> dict | None:
    if hold is None:
        return None
    n, sums = hold
    return {name: _stderr(n, sums[k], (alphas or {}).get(name, 0.0)) for name, k in index.items()}


def _baseline(base: StitchResult, hold: tuple[int, np.ndarray] | None, index: Mapping[str, int]) -> StitchResult:
    return replace(base, fit=_with(base.fit), holdout=None if base.holdout is None else _with(base.holdout, _stderrs(hold, index)))


# ============================================================================
