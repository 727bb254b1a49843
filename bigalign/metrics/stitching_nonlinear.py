"""Non-linear stitching: kernel and MLP stitch classes (the paper's Remark 3).

The stitching error and Theorem 1 are stated for a class S of stitches:
Ã = inf over s ∈ S of E‖s(f₁) − f₂‖², and the stitched model g₂ ∘ s ∘ f₁.
:func:`bigalign.stitch` with ``kind="linear"`` takes S = affine maps; this
module adds two larger classes, both *containing* the affine maps, so that on
the fitting rows they are never worse than the linear stitch:

``kind="kernel"``
    Ridge regression on explicit features z(x) = [x, c·φ(x)], φ random
    Fourier (``method="rff"``), orthogonal random (``"orf"``) or Nyström
    (``"nystroem"``) features of an RBF or Laplacian kernel
    (:mod:`bigalign.features`), c the root-mean-square distance of x to its
    mean.  The feature map is applied inside the engine, block by block, as a
    ``transform`` of :class:`~bigalign.moments.MomentStatistic` (the pattern
    of ``_kernel_nonlinear.feature_moments``): nothing n × D is ever
    materialised, and the same streamed normal equations as the linear stitch
    give the map, the heads, the stitch into y's fixed linear head (Lemma 2's
    problem over the class), ridge selection by cross-validation and the
    held-out risks — one pass, plus one pass over the held-out rows for the
    standard errors.  Because z(x) contains x, with the same ridge λ the
    kernel stitch's penalised objective Σ‖z S + b − y‖² + λ‖S‖² on the fitting
    rows is ≤ the linear one; for λ = 0 its residual is ≤ the linear residual
    (up to rounding).  The factor c makes the class scale-equivariant: x → a·x
    (bandwidth="median") scales z by a, exactly as for linear ridge, so the
    relative ridge (λ = ridge · tr G of x's Gram, the linear stitch's λ)
    gives the same stitch on x and on a·x.

``kind="mlp"``
    s(x) = (x S + b) + α·m(x): (S, b) the linear stitch, m a scikit-learn
    ``MLPRegressor`` trained by ``partial_fit`` on the linear residual
    y − (x S + b) of the fitting rows, α ≥ 0 the minimiser over the fitting rows
    of Σ‖y − (x S + b) − α m(x)‖² = Σp − 2αΣq + α²Σs (p = ‖r‖², q = ⟨r, m⟩,
    s = ‖m‖², streamed): α = max(0, Σq/Σs).  α = 0 is the linear stitch, so the
    fitting residual is ≤ the linear one *by construction* (the reported value
    is the linear residual minus (Σq)²₊/(Σs·n), exactly ≤ in floating point).
    With targets, a second MLP u is trained on the residual of the best linear
    stitch into y's fixed head g₂(z) = z W₂ + b₂, pulled back into
    representation 2 by W₂⁺: s_task(x) = x S_t + c_t + α_t·u(x) W₂⁺, α_t ≥ 0
    from the same kind of line search — so the stitched risk on the fitting
    rows is ≤ the linear stitched risk by construction.

    Minibatches are fixed row groups, independent of the engine's blocks:
    minibatch j is the fitting rows among rows [j·B, (j+1)·B) (B =
    ``batch_size``); each epoch visits windows of ``WINDOW_BATCHES``
    consecutive minibatches in a seeded order, and the minibatches of a window
    in a seeded order (one ``partial_fit`` step each).  Windows are read with
    ``Representation.read`` (contiguous rows), so the minibatches and their
    order are a function of the seed and ``batch_size`` only, never of
    ``block_size`` or the scheduler; the trained weights differ across block
    sizes only through the rounding of the linear stitch and of the
    standardisation that define the MLP's inputs and targets (measured
    ≤ 3e-15), and are bit-identical run to run.  The line search and the
    risks come from one engine pass and are block-size invariant to rounding.
    Held-out rows are never used for training (they are skipped by the same
    seeded hash as the linear stitch; their values cannot change the fit).
    With ``intercept=False`` the linear part goes through the origin; the MLP
    keeps its biases.

Risks, Theorem 1 and standard errors
------------------------------------
Every risk is a mean over rows of a squared error norm, as for the linear
stitch.  ``risk_1`` is always the risk of model 1's *linear* head H₁ (so it is
the same number for every kind), ``risk_2`` of y's linear head, which stays
the fixed head g₂.  ``stitched_risk`` is R₂(g₂ ∘ s_task ∘ f₁) for the task
stitch of the class (kernel: the exact minimiser over the feature class;
mlp: linear task stitch + α_t u), ``regression_stitch_risk`` is
R₂(g₂ ∘ s ∘ f₁) for the representation stitch s.

Theorem 1's argument is Minkowski's inequality, valid for *any* stitch s:
‖g₂(s(f₁)) − t‖ ≤ ‖g₂(f₂) − t‖ + κ₂‖s(f₁) − f₂‖ for a κ₂-Lipschitz head, so
on every set of rows R₂(g₂∘s∘f₁) ≤ (√R₂ + κ₂·√E‖s(f₁) − f₂‖²)² (Remark 3:
Ã over the class).  ``bound`` is that expression with this kind's
residual: ``regression_stitch_risk ≤ bound`` holds on every split for both
kinds; ``stitched_risk ≤ bound`` on the fitting rows holds for the kernel
kind with ridge = 0 (the task stitch is then the class minimiser) and is
*not* guaranteed for the MLP kind (neither of its stitches is a minimiser
over the class) — ``parameters["bound"]`` says so.

On the held-out rows each risk is a mean of per-row squared errors eᵢ of a
fixed predictor; ``holdout.stderr[name]`` = sd(eᵢ)/√n_holdout (sample sd,
from the streamed Σe and Σe²; for the MLP, eᵢ(α) = pᵢ − 2αqᵢ + α²sᵢ, so Σe²
is a quartic in α whose coefficients are streamed).  ``baseline`` is the
linear stitch on the same split and ridge, with its own held-out standard
errors (the linear ``kind="linear"`` result has none: it would need this
second pass, the fourth moments of the errors not being in the streamed
second moments).

References
----------
Insulla, Huang & Rosasco, "Towards a Learning Theory of Representation
Alignment", arXiv:2502.14047 — Theorem 1 and Remark 3.
Rahimi & Recht, "Random features for large-scale kernel machines", NeurIPS 2007.
Williams & Seeger, "Using the Nyström method to speed up kernel machines", NeurIPS 2001.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np

from .._checks import finite_float64
from ..engine import run
from ..errors import DegenerateInputError, InvalidInputError
from ..features import (
    BANDWIDTH_SAMPLE,
    check_bandwidth,
    draw_nystroem,
    draw_random_fourier,
    median_bandwidth,
    take_finite,
)
from ..io import Representation, as_representation, check_pairing
from ..moments import MomentStatistic
from ._common import engine_parameters, feature_engine_kwargs
from ._stitch_data import HOLDOUT, SplitMomentStatistic, Splits, _targets_input, _targets_rep
from ._stitch_linear import _direction, _Problem
from ._stitch_results import StitchResult, StitchRisks

__all__ = ["KernelFeatures", "KernelStitch", "MLPStitch", "NonlinearStitchResult", "StitchRisksSE", "stitch_nonlinear"]

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
        """value ± 1.96·se(residual) on held-out rows (normal 95% interval), None without them."""
        se = (self.stderrs or {}).get("residual")
        return None if se is None else (self.value - 1.959963984540054 * se, self.value + 1.959963984540054 * se)

    @property
    def ci_level(self) -> float | None:  # type: ignore[override]
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
    med = None
    if opts["bandwidth"] == "median":
        med = median_bandwidth(xs, rep.name)
        sigma = med
    else:
        sigma = float(opts["bandwidth"])
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
# the kernel stitch
# ============================================================================


def _kernel(rx, ry, rt, tf, opts, ridge, intercept, holdout, seed, folds, ridge_grid, split_rows, reverse, engine_kw, common):
    n = rx.n
    n_folds = folds if ridge == "cv" else 1
    splits = Splits(holdout=holdout, folds=n_folds, seed=seed, split_rows=split_rows)
    kx, px = kernel_features(rx, splits, opts, seed)
    ky, py = kernel_features(ry, splits, opts, seed) if reverse else (None, None)
    raw = [rx, ry] + ([rt] if rt is not None else [])
    raw_names = tuple(["x", "y"] + (["targets"] if rt is not None else []))
    specs: list[tuple[str, int, Any]] = [("x features", 0, kx), ("y", 1, None), ("x", 0, None)]
    E = {"zx": 0, "y": 1, "x": 2}
    if rt is not None:
        E["t"] = len(specs)
        specs.append(("targets", 2, tf))
    if reverse:
        E["zy"] = len(specs)
        specs.append(("y features", 1, ky))
    t = E.get("t")
    pairs = [(E["zx"], E["y"]), (E["x"], E["y"])]
    if t is not None:
        pairs += [(E["zx"], t), (E["y"], t), (E["x"], t)]
    if reverse:
        pairs += [(E["zy"], E["x"])] + ([(E["zy"], t)] if t is not None else [])
    inner = MomentStatistic(names=tuple(s[0] for s in specs), pairs=tuple(pairs), transforms=tuple(s[2] for s in specs))
    stat = SplitMomentStatistic(inner=_Expanded(names=raw_names, order=tuple(s[1] for s in specs), inner=inner), splits=splits)  # type: ignore[arg-type]
    # block rows planned for the expanded width: the features, not the inputs, dominate memory
    width = sum(raw[r].d + (tr.n_features if isinstance(tr, KernelFeatures) else 0) for _, r, tr in specs)
    ekw = feature_engine_kwargs({k: v for k, v in engine_kw.items() if v is not None}, raw, width, 0)
    moments, plan = run(stat, raw, names=list(raw_names), check_pairing=False, **ekw)
    P = _Problem(moments, n_folds, holdout > 0, intercept)
    # the expanded input's relative ridge is scaled by x's Gram: the kernel stitch gets the linear stitch's λ
    P.ridge_anchor.update({E["zx"]: E["x"]} | ({E["zy"]: E["y"]} if "zy" in E else {}))
    params = {**common, "kind": "kernel", "kernel": opts["kernel"], "method_features": opts["method"],
              "n_features": opts["n_features"], "bandwidth_rule": opts["bandwidth"] if isinstance(opts["bandwidth"], str) else "given",
              "features_x": px, "features_y": py, "bound": _BOUND_NOTE["kernel"], **engine_parameters(plan)}  # fmt: skip

    dirs = [("zx", "x", "y", ("x", "y"), kx)] + ([("zy", "y", "x", ("y", "x"), ky)] if reverse else [])
    fits = []
    for zs, src, dst, labels, feat in dirs:
        k = _direction(P, E[zs], E[dst], t, ridge, ridge_grid, True, labels, params, n)
        b = _direction(P, E[src], E[dst], t, ridge, ridge_grid, True, labels, params, n)
        fits.append((zs, src, dst, labels, feat, k, b))

    # one pass over the held-out rows: per-row errors of every fitted predictor (standard errors)
    hold_sums: dict[int, tuple[int, np.ndarray]] = {}
    index: list[tuple[dict[str, int], dict[str, int]]] = []
    if holdout > 0:
        quants: list[_Quantity] = []

        def add(source: int, A: np.ndarray, a0: np.ndarray, target: int) -> int:
            quants.append(_Quantity(source=source, A=A, a0=a0, target=target))
            return len(quants) - 1

        for zs, src, dst, labels, feat, k, b in fits:
            ik = {"residual": add(E[zs], k.map, k.offset, E[dst])}
            ib = {"residual": add(E[src], b.map, b.offset, E[dst])}
            if t is not None:
                W2, b2 = b.head_2
                W1, b1 = b.head_1
                ib["risk_1"] = ik["risk_1"] = add(E[src], W1, b1, t)
                ib["risk_2"] = ik["risk_2"] = add(E[dst], W2, b2, t)
                ik["stitched_risk"] = add(E[zs], k.task_map @ W2, k.task_offset @ W2 + b2, t)
                ib["stitched_risk"] = add(E[src], b.task_map @ W2, b.task_offset @ W2 + b2, t)
                ik["regression_stitch_risk"] = add(E[zs], k.map @ W2, k.offset @ W2 + b2, t)
                ib["regression_stitch_risk"] = add(E[src], b.map @ W2, b.offset @ W2 + b2, t)
            index.append((ik, ib))
        es = ErrorSums(names=raw_names, splits=splits, features=tuple((s[1], s[2]) for s in specs), quantities=tuple(quants), keys=(HOLDOUT,))
        hold_sums, _ = run(es, raw, names=list(raw_names), check_pairing=False, **ekw)
        params["n_passes"] = 2
    else:
        params["n_passes"] = 1
    hold = hold_sums.get(HOLDOUT)

    results = []
    for m, (zs, src, dst, labels, feat, k, b) in enumerate(fits):
        ik, ib = index[m] if index else ({}, {})
        base = _baseline(b, hold, ib)
        flags = {f.replace(f"{labels[0]}_rank_deficient", f"{labels[0]}_features_rank_deficient") for f in k.flags}
        r1 = {"fit": b.fit.risk_1, "holdout": None if b.holdout is None else b.holdout.risk_1}
        # head_1 is model 1's linear head (the kernel head on z(x) that _direction also fits is not reported)
        ridges = {**k.ridge, **({"head_1": b.ridge["head_1"]} if "head_1" in b.ridge else {})}
        cv = None if k.cv is None else {**k.cv, **({"head_1": b.cv["head_1"]} if b.cv and "head_1" in b.cv else {})}
        results.append(NonlinearStitchResult(
            direction=k.direction, map=None, offset=None,
            fit=_with(k.fit, risk_1=r1["fit"]),
            holdout=None if k.holdout is None else _with(k.holdout, _stderrs(hold, ik), risk_1=r1["holdout"]),
            ridge=ridges, intercept=intercept, n_samples=n, head_1=b.head_1, head_2=b.head_2, task_map=None,
            task_offset=None, kappa=k.kappa, rank={f"{labels[0]}_features": k.rank[labels[0]], **b.rank}, cv=cv,
            parameters={**params, "source": labels[0]}, flags=tuple(sorted(flags)), method=f"kernel-{opts['method']}-streaming",
            kind="kernel", model=KernelStitch(features=feat, coef=k.map, offset=k.offset),
            task_model=None if t is None else KernelStitch(features=feat, coef=k.task_map, offset=k.task_offset),
            baseline=base,
        ))  # fmt: skip
    return results


# ============================================================================
# the MLP stitch
# ============================================================================


def _new_mlp(opts: Mapping[str, Any], random_state: int) -> Any:
    from sklearn.neural_network import MLPRegressor

    return MLPRegressor(hidden_layer_sizes=opts["hidden"], activation=opts["activation"], solver="adam",
                        alpha=opts["weight_decay"], learning_rate_init=opts["learning_rate"], batch_size=1,
                        shuffle=False, random_state=random_state)  # fmt: skip


@dataclass
class _Trainee:
    """One MLP being trained: rows of ``source`` → (target − (source @ A + a0)) / σ."""

    mlp: Any
    source: int
    target: int
    A: np.ndarray
    a0: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    sigma: float
    steps: int = 0

    def step(self, blocks: list[np.ndarray], rows: np.ndarray) -> None:
        xs = blocks[self.source][rows]
        r = (blocks[self.target][rows] - (xs @ self.A + self.a0)) / self.sigma
        self.mlp.batch_size = int(rows.size)  # exactly one optimiser step on this minibatch
        try:
            with np.errstate(all="ignore"):  # a diverging step is reported below, not as RuntimeWarnings
                self.mlp.partial_fit((xs - self.mean) / self.scale, r[:, 0] if r.shape[1] == 1 else r)
        except ValueError as exc:
            if "non-finite" not in str(exc):
                raise
            raise InvalidInputError(
                f"the MLP stitch diverged after {self.steps} minibatch steps (scikit-learn: {exc}). Expected finite "
                f"weights. Lower learning_rate (got {self.mlp.learning_rate_init:g}) or weight_decay."
            ) from exc
        self.steps += 1


def _train(raw: list[Representation], raw_names: tuple[str, ...], tf: Any, splits: Splits, trainees: list[_Trainee], opts: Mapping[str, Any], seed: int) -> None:
    """Minibatch epochs over the fitting rows in fixed row groups (independent of the engine's blocks)."""
    if not trainees:
        return
    n = raw[0].n
    B = opts["batch_size"]
    n_batches = -(-n // B)
    n_windows = -(-n_batches // WINDOW_BATCHES)
    for epoch in range(opts["epochs"]):
        rng = np.random.default_rng([seed, 0x5717C4, epoch])
        for w in rng.permutation(n_windows):
            lo, hi = int(w) * WINDOW_BATCHES * B, min(n, (int(w) + 1) * WINDOW_BATCHES * B)
            blocks = [finite_float64(r.read(lo, hi), raw_names[k], lo) for k, r in enumerate(raw)]
            if tf is not None:
                blocks[2] = tf(blocks[2])
            lab = splits.assign(lo, hi)
            for b in rng.permutation(-(-(hi - lo) // B)):
                rows = np.flatnonzero(lab[int(b) * B : (int(b) + 1) * B] >= 0) + int(b) * B
                if rows.size:
                    for tr in trainees:
                        tr.step(blocks, rows)


def _mlp(rx, ry, rt, tf, opts, ridge, intercept, holdout, seed, folds, ridge_grid, split_rows, reverse, engine_kw, common):
    n = rx.n
    n_folds = folds if ridge == "cv" else 1
    splits = Splits(holdout=holdout, folds=n_folds, seed=seed, split_rows=split_rows)
    raw = [rx, ry] + ([rt] if rt is not None else [])
    raw_names = tuple(["x", "y"] + (["targets"] if rt is not None else []))
    t = 2 if rt is not None else None
    pairs = [(0, 1)] + ([(0, 2), (1, 2)] if t is not None else [])
    transforms = (None, None, tf) if tf is not None else ()
    stat = SplitMomentStatistic(inner=MomentStatistic(names=raw_names, pairs=tuple(pairs), transforms=transforms), splits=splits)
    ekw = {k: v for k, v in engine_kw.items() if v is not None}
    moments, plan = run(stat, raw, names=list(raw_names), check_pairing=False, **ekw)
    P = _Problem(moments, n_folds, holdout > 0, intercept)
    params = {**common, "kind": "mlp", "hidden": list(opts["hidden"]), "epochs": opts["epochs"], "batch_size": opts["batch_size"],
              "learning_rate": opts["learning_rate"], "weight_decay": opts["weight_decay"], "activation": opts["activation"],
              "window_batches": WINDOW_BATCHES, "solver": "adam (sklearn MLPRegressor.partial_fit, one step per minibatch)",
              "bound": _BOUND_NOTE["mlp"], **engine_parameters(plan)}  # fmt: skip

    dirs = [(0, 1, ("x", "y"))] + ([(1, 0, ("y", "x"))] if reverse else [])
    plan_dirs = []
    trainees: list[_Trainee] = []
    for i, j, labels in dirs:
        base = _direction(P, i, j, t, ridge, ridge_grid, True, labels, params, n)
        side = P.fit.sides[i]
        mean = side.mean.copy()
        sd = np.sqrt(np.diag(side.M) / side.n)
        scale = np.where(sd > 0, sd, 1.0)  # a constant column centres to 0; any divisor leaves it 0
        rs = int(np.random.default_rng([seed, 0x5717C4, 1000]).integers(2**31 - 2))  # the same in both directions
        d_out = raw[j].d
        sig = math.sqrt(base.fit.residual / d_out)
        map_tr = None
        if sig > 0:
            map_tr = _Trainee(mlp=_new_mlp(opts, rs), source=i, target=j, A=base.map, a0=base.offset, mean=mean, scale=scale, sigma=sig)
            trainees.append(map_tr)
        task_tr, pinv, A_t, a0_t, sig_t = None, None, None, None, 0.0
        if t is not None:
            W2, b2 = base.head_2
            h = P.heads[(j, t)]
            pinv = (h.Q / h.s[None, :]) @ h.U.T if h.s.size else np.zeros((W2.shape[1], W2.shape[0]))  # W₂⁺ (c × d_y)
            A_t, a0_t = base.task_map @ W2, base.task_offset @ W2 + b2
            sig_t = math.sqrt(base.fit.stitched_risk / W2.shape[1])
            if sig_t > 0 and h.s.size:
                task_tr = _Trainee(mlp=_new_mlp(opts, rs + 1), source=i, target=t, A=A_t, a0=a0_t, mean=mean, scale=scale, sigma=sig_t)
                trainees.append(task_tr)
        plan_dirs.append((i, j, labels, base, mean, scale, sig, map_tr, task_tr, pinv, sig_t))
    _train(raw, raw_names, tf, splits, trainees, opts, seed)

    # one engine pass: line-search sums on the fitting rows, errors (and their squares) on both splits
    quants: list[_Quantity] = []
    models: list[MLPStitch] = []
    index = []

    def add(**kw: Any) -> int:
        quants.append(_Quantity(**kw))
        return len(quants) - 1

    for i, j, labels, base, mean, scale, sig, map_tr, task_tr, pinv, sig_t in plan_dirs:
        m_map = MLPStitch(S=base.map, b=base.offset, mlp=map_tr.mlp if map_tr else None, mean=mean, scale=scale, out_scale=sig)
        models.append(m_map)
        iq = {"residual": add(source=i, A=base.map, a0=base.offset, target=j, model=len(models) - 1, model_input=i)}
        m_task = None
        if t is not None:
            W2, b2 = base.head_2
            W1, b1 = base.head_1
            m_task = MLPStitch(S=base.task_map, b=base.task_offset, mlp=task_tr.mlp if task_tr else None, mean=mean, scale=scale,
                               out_scale=sig_t, post=pinv)  # fmt: skip
            models.append(m_task)
            iq["stitched_risk"] = add(source=i, A=base.task_map @ W2, a0=base.task_offset @ W2 + b2, target=t,
                                      model=len(models) - 1, model_input=i, post=W2)  # fmt: skip
            iq["regression_stitch_risk"] = add(source=i, A=base.map @ W2, a0=base.offset @ W2 + b2, target=t,
                                               model=len(models) - 2, model_input=i, post=W2)  # fmt: skip
            iq["risk_1"] = add(source=i, A=W1, a0=b1, target=t)
            iq["risk_2"] = add(source=j, A=W2, a0=b2, target=t)
        index.append((iq, m_map, m_task))
    es = ErrorSums(names=raw_names, splits=splits, features=tuple((k, tf if k == 2 else None) for k in range(len(raw))),
                   quantities=tuple(quants), models=tuple(models), keys=(0, HOLDOUT) if holdout > 0 else (0,))  # fmt: skip
    sums, _ = run(es, raw, names=list(raw_names), check_pairing=False, **ekw)
    for key, (_, s) in sums.items():
        if not np.all(np.isfinite(s)):
            raise InvalidInputError(
                "the MLP stitch produced non-finite outputs (its training diverged). Expected finite predictions. "
                f"Lower learning_rate (got {opts['learning_rate']:g}) or rescale the inputs."
            )
    params["n_passes"] = 2
    params["n_minibatch_steps"] = max((tr.steps for tr in trainees), default=0)
    hold = sums.get(HOLDOUT)
    nfit, sfit = sums[0]

    results = []
    for (i, j, labels, base, mean, scale, sig, map_tr, task_tr, pinv, sig_t), (iq, m_map, m_task) in zip(plan_dirs, index):
        flags = set(base.flags)

        def line_search(k: int, flag: str) -> float:
            q, s = sfit[k, 1], sfit[k, 2]
            if s > 0 and q > 0:
                return float(q / s)
            flags.add(flag)  # the MLP does not lower the fitting error along its direction: α = 0, the linear stitch
            return 0.0

        alpha = line_search(iq["residual"], "mlp_alpha_zero")
        alphas = {"residual": alpha, "regression_stitch_risk": alpha}
        if t is not None:
            alphas["stitched_risk"] = line_search(iq["stitched_risk"], "mlp_task_alpha_zero")

        def risks(lin: StitchRisks, part: tuple[int, np.ndarray], m: Any, with_se: bool) -> StitchRisksSE:
            n_rows, s = part
            vals: dict[str, Any] = {}
            for name in ("residual", "stitched_risk", "regression_stitch_risk"):
                if name not in iq:
                    continue
                k, a = iq[name], alphas[name]
                drop = (2 * a * s[k, 1] - a * a * s[k, 2]) / n_rows  # improvement over the linear stitch
                v = getattr(lin, name) - drop
                if v < 0:
                    # exact value ≥ 0 (Cauchy–Schwarz); a negative one is the rounding of a perfect fit
                    if v < -1e-10 * max(getattr(lin, name), 1e-300):  # pragma: no cover - a bug
                        raise AssertionError(f"internal error: negative {name} {v!r}")
                    v = 0.0
                    flags.add("risk_zero_up_to_rounding")
                vals[name] = v
            sst = float(np.trace(m.sides[j].M))
            vals["r2"] = 1.0 - vals["residual"] * m.n / sst if sst > 0 else None
            if t is not None:
                vals["bound"] = (math.sqrt(lin.risk_2) + base.kappa * math.sqrt(vals["residual"])) ** 2
            se = _stderrs(part, iq, alphas) if with_se else None
            return _with(lin, se, **vals)

        fit = risks(base.fit, (nfit, sfit), P.fit, False)
        hld = risks(base.holdout, hold, P.hold, True) if hold is not None else None
        results.append(NonlinearStitchResult(
            direction=base.direction, map=None, offset=None, fit=fit, holdout=hld, ridge=base.ridge, intercept=intercept,
            n_samples=n, head_1=base.head_1, head_2=base.head_2, task_map=None, task_offset=None, kappa=base.kappa,
            rank=dict(base.rank), cv=base.cv,
            parameters={**params, "source": labels[0], "alpha": alpha, "alpha_task": alphas.get("stitched_risk"),
                        "mlp_trained": map_tr is not None, "task_mlp_trained": task_tr is not None,
                        "residual_scale": sig, "task_residual_scale": sig_t if t is not None else None},
            flags=tuple(sorted(flags)), method="mlp-minibatch", kind="mlp",
            model=replace(m_map, alpha=alpha), task_model=None if m_task is None else replace(m_task, alpha=alphas["stitched_risk"]),
            baseline=_baseline(base, hold, iq),
        ))  # fmt: skip
    return results


# ============================================================================
# façade
# ============================================================================


def stitch_nonlinear(
    x: Any,
    y: Any,
    *,
    kind: str,
    options: Mapping[str, Any],
    ridge: Any,
    intercept: bool,
    targets: Any,
    holdout: float,
    seed: int,
    folds: int,
    ridge_grid: Sequence[float] | None,
    split_rows: int,
    reverse: bool,
    engine_kw: Mapping[str, Any],
) -> NonlinearStitchResult:
    """Kernel or MLP stitching of x into y (and y's linear head); called by :func:`bigalign.stitch`.

    The shared options (``ridge``, ``intercept``, ``targets``, ``holdout``,
    ``seed``, ``folds``, ``ridge_grid``, ``split_rows``, ``reverse``, engine
    keywords) are those of :func:`bigalign.stitch`, already checked there;
    ``ridge`` applies to the kernel stitch, its heads and task stitch, and to
    the linear part of the MLP stitch.

    Options
    -------
    kind="kernel":
        ``kernel`` ("rbf" | "laplacian", default "rbf"), ``bandwidth``
        ("median" | float; the median pairwise distance of a seeded sample of
        ≤ 1,000 *fitting* rows of the source), ``method`` ("rff" | "orf" |
        "nystroem", default "rff"), ``n_features`` (random feature columns,
        cos and sin of n_features/2 frequencies, or Nyström landmarks drawn
        from the fitting rows; default 512).  ``seed`` also seeds the features.
    kind="mlp":
        ``hidden`` (hidden layer sizes, default (128,)), ``epochs`` (default
        20), ``batch_size`` (rows per minibatch before the held-out rows are
        dropped, default 128), ``learning_rate`` (Adam, default 1e-3),
        ``weight_decay`` (scikit-learn's ``alpha``, default 1e-4),
        ``activation`` ("relu" | "tanh" | "logistic").  Inputs are
        standardised with the fitting rows' exact mean and sd; the MLP's
        target is the linear residual divided by its root-mean-square.

    Returns
    -------
    NonlinearStitchResult
        (with ``reverse``: ``.reverse`` the y → x stitch of the same kind).

    Notes
    -----
    Passes: kernel 1 (moments of [x, c·φ(x)], x, y, targets) + 1 over the
    held-out rows (standard errors); time O(n·(d + D + d_y + c)²) and memory
    O((folds + 1)·(d + D + d_y + c)²) as the linear stitch with d + D columns,
    solves O((d + D)³).  MLP: 1 (linear moments) + ``epochs`` sequential reads
    of the fitting rows (training, not parallel) + 1 (line search and risks);
    time O(epochs · n · (d_x + d_y)·h) for hidden width h.
    """
    opts = check_options(kind, options)
    rx, ry = as_representation(x, "x"), as_representation(y, "y")
    check_pairing([rx, ry])
    n = rx.n
    rt, tf = None, None
    if targets is not None:
        tin, tf = _targets_input(targets, n, "stitch")
        rt = _targets_rep(tin, targets, [rx, ry])
    common = {"ridge": ridge, "intercept": intercept, "holdout": holdout, "seed": seed, "folds": folds if ridge == "cv" else 1,
              "split_rows": split_rows, "ridge_grid": ridge_grid, "rank_tolerance": "32*d*eps*max_eigenvalue",
              "n_classes": len(tf.classes) if tf is not None else None}  # fmt: skip
    fn = _kernel if kind == "kernel" else _mlp
    res = fn(rx, ry, rt, tf, opts, ridge, intercept, holdout, seed, folds, ridge_grid, split_rows, reverse, dict(engine_kw), common)
    fwd = res[0]
    if reverse:
        fwd = replace(fwd, reverse=res[1])
    return fwd
