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

from dataclasses import replace
from typing import Any, Mapping, Sequence

from ..io import as_representation, check_pairing
from ..options import EngineOptions
from ._stitch_data import _targets_input, _targets_rep
from ._stitch_kernel import _kernel
from ._stitch_mlp import _mlp

# the kinds and what they share live in sibling modules by concern; every name stays importable from here
from ._stitch_nonlinear_base import (  # noqa: F401
    _EXACT_SAMPLE_N,
    KERNEL_DEFAULTS,
    MLP_DEFAULTS,
    OPTIONS,
    WINDOW_BATCHES,
    ErrorSums,
    KernelFeatures,
    KernelStitch,
    MLPStitch,
    NonlinearStitchResult,
    StitchRisksSE,
    check_options,
    fitting_row_sample,
    kernel_features,
)

__all__ = ["KernelFeatures", "KernelStitch", "MLPStitch", "NonlinearStitchResult", "StitchRisksSE", "stitch_nonlinear"]


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
    engine: EngineOptions,
    ci_level: float | None = None,
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
    args = (rx, ry, rt, tf, opts, ridge, intercept, holdout, seed, folds, ridge_grid, split_rows, reverse, engine, common)
    res = _kernel(*args, ci_level=ci_level) if kind == "kernel" else _mlp(*args)
    fwd = res[0]
    if reverse:
        fwd = replace(fwd, reverse=res[1])
    return fwd
