"""Linear stitching: maps between representations, stitching risk, and the paper's bounds.

Model q is h_q = g_q ∘ f_q (f_q: a representation, g_q: a head).  A *stitch*
s maps representation 1 into representation 2, and the stitched model is
g₂ ∘ s ∘ f₁.  With squared loss and linear (affine) maps every quantity the
paper's stitching section uses is a closed form of the merged centred moments
of x = f₁, y = f₂ and the targets t (:mod:`bigalign.moments`), accumulated in
**one streaming pass** for every split at once (fitting folds and held-out rows):

* the representation map S minimising Σ‖x S + b − y‖² (+ λ‖S‖²) and its
  residual Ã (Theorem 1's Ã₂ when ``intercept=False`` and ``ridge=0``);
* linear heads H_q: t ≈ f_q W_q + b_q, with risks R₁, R₂;
* the best stitch for the *fixed* head g₂(z) = z W₂ + b₂:
  min over (S, c) of Σ‖(x S + c) W₂ + b₂ − t‖² (+ λ‖S‖²), and its risk;
* κ₂ = ‖W₂‖₂ and Theorem 1's bound (√R₂ + κ₂√Ã₂)².

Every risk is a mean over samples of a squared Euclidean error norm.  On a set
of rows with centred moments Mₓ, M_xt, M_t and means μₓ, μ_t, an affine
predictor t̂ = x A + a₀ has

    Σ‖x A + a₀ − t‖² = tr(Aᵀ Mₓ A) − 2 tr(Aᵀ M_xt) + tr(M_t) + n‖μₓ A + a₀ − μ_t‖²,

so risks on the fitting rows, on each cross-validation fold and on the
held-out rows all come from the same pass.

References
----------
Insulla, Huang & Rosasco, "Towards a Learning Theory of Representation
Alignment", arXiv:2502.14047 (ICLR 2025) — Lemma 2, Theorem 1, Theorem 2 and
Remark 6.
Lenc & Vedaldi, "Understanding image representations by measuring their
equivariance and equivalence", CVPR 2015 — model stitching.
Bansal, Nakkiran & Barak, "Revisiting model stitching to compare neural
representations", NeurIPS 2021.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from ..engine import run
from ..errors import InvalidInputError
from ..grouped import grouped_statistic
from ..intervals import check_ci
from ..io import as_representation, check_pairing
from ..moments import MomentStatistic
from ._common import check_choice, engine_parameters, with_ci_doc, with_engine_doc
# the stitch's parts live in sibling modules by concern; their names stay importable from here
from ._stitch_data import (  # noqa: F401
    DEFAULT_GRID_FACTORS,
    HOLDOUT,
    KINDS,
    METHOD,
    QUANTITIES,
    RANK_RTOL_FACTOR,
    OneHot,
    SplitMomentStatistic,
    Splits,
    _check_options,
    _check_ridge,
    _targets_input,
    _targets_rep,
)
from ._stitch_linear import _direction, _Problem, stitch_intervals  # noqa: F401
from ._stitch_results import StitchResult, StitchRisks, with_stitch_interval  # noqa: F401
from .stitching_nonlinear import OPTIONS, stitch_nonlinear
from ..options import ENGINE_KEYWORDS, EngineOptions

__all__ = ["StitchResult", "StitchRisks", "stitch"]


# ============================================================================
# public façades
# ============================================================================


def _no_options_for_linear(func: str, options: Mapping[str, Any]) -> None:
    """Options of the non-linear kinds given with kind='linear' (or misspelt keywords): a named error."""
    if not options:
        return
    of_kind = {k: kd for kd, defaults in OPTIONS.items() for k in defaults}
    unknown = sorted(set(options) - set(of_kind))
    if unknown:
        raise InvalidInputError(
            f"{func} got unexpected keyword argument(s) {unknown}. Check the spelling; the keywords are listed in "
            f"stitch's docstring (options of the non-linear kinds: {sorted(of_kind)})."
        )
    raise InvalidInputError(
        f"{func} got option(s) {sorted(options)} with kind='linear'; they belong to "
        f"kind={of_kind[sorted(options)[0]]!r} (kernel, bandwidth, method, n_features: kind='kernel'; hidden, epochs, "
        "batch_size, learning_rate, weight_decay, activation: kind='mlp'). Pass the matching kind=..., or drop them."
    )


@with_ci_doc
@with_engine_doc
def stitch(
    x: Any,
    y: Any,
    /,
    *,
    kind: Literal["linear", "kernel", "mlp"] = "linear",
    ridge: float | Literal["cv"] = 0.0,
    intercept: bool = True,
    targets: Any = None,
    holdout: float = 0.2,
    seed: int = 0,
    folds: int = 5,
    ridge_grid: Sequence[float] | None = None,
    split_rows: int = 1,
    reverse: bool = False,
    ci: float | None = None,
    **options: Any,
) -> StitchResult:
    """Linear stitching of representation x into y (and into y's linear head), in one streaming pass.

    Fits the map ŷ = x @ S + b by least squares or ridge from the streamed
    normal equations, and with ``targets`` linear heads for x and y, the best
    stitch of x into y's *fixed* head, κ₂ = ‖W₂‖₂ and Theorem 1's bound —
    on the fitting rows and on held-out rows.

    Parameters
    ----------
    x, y : array-like of shape (n_samples, d_x), (n_samples, d_y)
        numpy, dask or zarr arrays or store layers; the same samples in the same order.
    kind : {"linear", "kernel", "mlp"}, default="linear"
        The stitch class (the paper's Remark 3: Ã = inf over the class of
        E‖s(f₁) − f₂‖²).  ``"linear"``: everything below.  ``"kernel"``: ridge
        on the explicit features [x, c·φ(x)] (random Fourier/orthogonal/Nyström
        φ, streamed like the linear stitch); ``"mlp"``: the linear stitch plus
        α·m(x), m a scikit-learn MLP trained by minibatches on the linear
        residual, α ≥ 0 by a closed-form line search on the fitting rows.  The
        non-linear kinds return a :class:`~bigalign.metrics.stitching_nonlinear.NonlinearStitchResult`
        (``map``/``offset`` None, ``.predict``, held-out standard errors,
        ``.baseline`` the linear stitch on the same split); see
        :func:`bigalign.metrics.stitching_nonlinear.stitch_nonlinear`.
    **options
        Options of the non-linear kinds only (an error with ``kind="linear"``):
        ``kernel``, ``bandwidth``, ``method``, ``n_features`` for ``"kernel"``;
        ``hidden``, ``epochs``, ``batch_size``, ``learning_rate``,
        ``weight_decay``, ``activation`` for ``"mlp"``.
    ridge : float ≥ 0 or "cv", default=0.0
        Relative ridge r: λ = r · tr G in Σ‖x S + b − y‖² + λ‖S‖²_F, with G
        the regressor's Gram on the fitting rows (centred with an intercept),
        so that r means the same shrinkage at any scale of x (scikit-learn's
        ``Ridge(alpha=λ)`` penalises the sum of squared errors the same way;
        the intercept is never penalised; ``result.ridge`` reports the
        absolute λ).  The same r applies to the map, both heads and the task
        stitch.  ``"cv"``: each of these chooses its own λ from
        ``ridge_grid`` by k-fold cross-validation over the fitting rows.
    intercept : bool, default=True
        Affine maps and heads (x S + b).  ``False``: linear maps through the
        origin on uncentred moments, as in the paper (with ``ridge=0``,
        ``fit.residual`` is then exactly Ã₂ = min_S E‖S f₁ − f₂‖²).
    targets : array-like, optional
        (n_samples, c) targets, or 1-D labels: integer or bool labels become
        one-hot columns (one per class present), 1-D floats one output.
        Squared loss throughout.  Plain arrays are taken in the row order of
        x and y (their sample ids cannot be checked).
    holdout : float in [0, 1), default=0.2
        Fraction of rows held out (assigned by a seeded hash of the row index;
        the realised count is ``holdout.n_samples``).  Everything is fitted on
        the other rows and evaluated on both; the plain attributes
        (``.residual``, ``.risk_1``, ...) report the held-out rows, or the
        fitting rows when ``holdout=0``.
    seed : int, default=0
        Seeds the held-out split and the folds.
    folds : int, default=5
        Folds for ``ridge="cv"``.
    ridge_grid : sequence of float, optional
        Candidate relative ridges for ``ridge="cv"`` (each × tr G, as
        ``ridge``).  Default: 9 values 10⁻⁶ … 10² times tr(G)/d, the mean
        eigenvalue of the regressor's Gram on the fitting rows (centred with
        an intercept).
    split_rows : int, default=1
        Rows are assigned to the held-out set and to folds in contiguous
        groups of this many rows; use a larger value when neighbouring rows
        are dependent (tokens of one document, frames of one clip).
    reverse : bool, default=False
        Also stitch y into x (and into x's head): ``result.reverse``; the same
        pass, no extra read.
    {ci}
        The interval is about the population ``value`` (the map's residual
        mean ‖x S + b − y‖², the risk of the population-best map; the task
        risks carry no interval).  Each leave-one-group-out value **refits**
        the map (and, for ``ridge="cv"``, re-runs the cross-validation) on the
        fitting rows minus the group and evaluates it on the evaluation rows
        minus the group, from the moments each (group, split) keeps in the
        one pass: the reported number is the risk of a map fitted on this
        sample, so the fit's own sampling noise belongs in the interval, which
        a jackknife over held-out rows with the map fixed would leave out (it
        is about the risk of this one fitted map).  Identity scale, centred at
        the jackknife's bias-corrected estimate: the held-out residual exceeds
        the population residual by O(d/n) (overfitting), the in-sample one
        (``holdout=0``) falls short of it by as much, and both biases are
        O(1/n).  ``kind="linear"`` and ``"kernel"`` (its feature map fixed by
        the seed; the interval replaces the kernel kind's default held-out
        normal interval); ``"mlp"``: an error.
    {engine}

    Returns
    -------
    StitchResult
        ``.map``, ``.offset``, ``.residual``, ``.r2``; with targets
        ``.risk_1``, ``.risk_2``, ``.stitched_risk``, ``.excess_risk``,
        ``.kappa``, ``.bound``; ``.fit`` and ``.holdout`` hold every quantity
        on each split; ``float(result)`` is the excess risk (or the residual
        without targets).

    Raises
    ------
    InvalidInputError
        Mismatched n, bad options, a split or fold without rows.
    NonFiniteError
        NaN or infinite values (the message names the input and rows).
    PairingError
        Store layers whose sample ids differ.
    DegenerateInputError
        Targets with a single class.

    Notes
    -----
    One pass over x, y (and the targets) accumulating, per fold and for the
    held-out rows, the merged centred moments (:mod:`bigalign.moments`):
    O(n·(d_x + d_y + c)²) time, O((folds + 1)·(d_x + d_y + c)²) memory.  The
    solves are O(d³) eigen-decompositions of the Grams on the fitting rows
    (and of each fold's training rows for ``"cv"``).

    Singular Grams with ``ridge=0``: eigenvalues e ≤ 32·d·eps·max(e) of the
    (d × d) Gram are treated as zero and the minimum-norm solution is used —
    numpy's ``lstsq`` solution up to that tolerance (flags
    ``"x_rank_deficient"``/``"y_rank_deficient"``; ``result.rank``).

    Lemma 2 (ridge = 0, and rank W₂ = rank of the targets' Gram, which
    needs d_y ≥ that rank — c, or c − 1 for one-hot targets with an
    intercept; otherwise the flag ``"head_2_rank_deficient"``):
    ``fit.stitched_risk == fit.risk_1`` up to rounding.  Theorem 1:
    ``fit.stitched_risk ≤ fit.regression_stitch_risk ≤ fit.bound`` (ridge = 0);
    ``regression_stitch_risk ≤ bound`` on any split and for any ridge.  With an
    intercept, Ã₂ is the affine residual; Theorem 1's argument holds for any
    stitch, affine included.  For ``"cv"`` the task stitch is cross-validated
    with the head g₂ fixed (fitted on all fitting rows): g₂ is given in the
    stitching problem.

    References
    ----------
    Insulla, Huang & Rosasco, "Towards a Learning Theory of Representation
    Alignment", arXiv:2502.14047 — Lemma 2 and Theorem 1.

    Examples
    --------
    >>> import numpy as np
    >>> from bigalign.metrics.stitching import stitch
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(500, 3))
    >>> y = x @ np.array([[1.0, 2.0], [0.0, 1.0], [1.0, 0.0]]) + 5.0
    >>> r = stitch(x, y, holdout=0)
    >>> np.round(r.map, 12) + 0.0, np.round(r.offset, 12) + 0.0   # + 0.0: no negative zeros
    (array([[1., 2.],
           [0., 1.],
           [1., 0.]]), array([5., 5.]))
    >>> r.residual < 1e-12, round(r.r2, 12)   # an exact fit: zero up to rounding
    (True, 1.0)
    """
    # the engine keywords share the ``**`` catch-all with the options of the non-linear kinds
    engine_opts = EngineOptions.build("stitch", {k: options.pop(k) for k in ENGINE_KEYWORDS if k in options})
    level = check_ci("stitch", ci)
    ridge, intercept, holdout, seed, folds, ridge_grid, split_rows = _check_options(
        "stitch", ridge, intercept, holdout, seed, folds, ridge_grid, split_rows
    )
    if not isinstance(reverse, (bool, np.bool_)):
        raise InvalidInputError(f"the 'reverse' parameter of stitch must be True or False; got {reverse!r} instead.")
    check_choice("stitch", "kind", kind, KINDS)
    if level is not None and kind == "mlp":
        raise InvalidInputError(
            "stitch: ci= (a sampling interval over rows) is available for kind='linear' and 'kernel' (the map refitted "
            "from the moments of the other row groups, kept in the same pass); kind='mlp' trains its network on all "
            "fitting rows and has no one-pass leave-one-group-out refit (its result's ci is a normal interval over "
            "the held-out rows with the network fixed). Use kind='linear' or 'kernel', or leave ci out."
        )
    if kind != "linear":
        return stitch_nonlinear(
            x, y, kind=kind, options=options, ridge=ridge, intercept=intercept, targets=targets, holdout=holdout,
            seed=seed, folds=folds, ridge_grid=ridge_grid, split_rows=split_rows, reverse=bool(reverse),
            engine=engine_opts, ci_level=level,
        )  # fmt: skip
    _no_options_for_linear("stitch", options)
    rx, ry = as_representation(x, "x"), as_representation(y, "y")
    reps = [rx, ry]
    check_pairing(reps)
    n = rx.n
    inputs: list[Any] = [rx, ry]
    names = ["x", "y"]
    transforms: list[Any] = [None, None]
    pairs: list[tuple[int, int]] = [(0, 1)]
    if targets is not None:
        tin, tf = _targets_input(targets, n, "stitch")
        rt = _targets_rep(tin, targets, [rx, ry])
        inputs.append(rt)
        names.append("targets")
        transforms.append(tf)
        pairs += [(0, 2), (1, 2)]
    n_folds = folds if ridge == "cv" else 1
    inner = MomentStatistic(names=tuple(names), pairs=tuple(pairs), transforms=tuple(transforms) if any(transforms) else ())
    stat = SplitMomentStatistic(inner=inner, splits=Splits(holdout=holdout, folds=n_folds, seed=seed, split_rows=split_rows))
    states = None
    if level is None:
        splits, plan = run(stat, inputs, names=names, check_pairing=False, options=engine_opts)
    else:  # one split-moment state per contiguous row group, in the same pass
        states, plan = run(grouped_statistic(stat, n, func="stitch"), inputs, names=names, check_pairing=False, options=engine_opts)
        splits = states.total()
    P = _Problem(splits, n_folds, holdout > 0, intercept)
    params = {
        "ridge": ridge, "intercept": intercept, "holdout": holdout, "seed": seed, "folds": n_folds,
        "split_rows": split_rows, "ridge_grid": ridge_grid, "rank_tolerance": "32*d*eps*max_eigenvalue",
        "n_classes": len(transforms[2].classes) if len(transforms) > 2 and transforms[2] is not None else None,
        **engine_parameters(plan),
    }  # fmt: skip
    t = 2 if targets is not None else None
    fwd = _direction(P, 0, 1, t, ridge, ridge_grid, True, ("x", "y"), params, n)
    if reverse:
        rev = _direction(P, 1, 0, t, ridge, ridge_grid, True, ("y", "x"), params, n)
        fwd = _replace(fwd, reverse=rev)
    if states is None:
        return fwd
    iv = stitch_intervals(states, n_folds, holdout > 0, intercept, t, ridge, ridge_grid, {0: (0, 1, fwd.value)}, level)
    return with_stitch_interval(fwd, iv[0])


def _replace(r: StitchResult, **kw: Any) -> StitchResult:
    return dataclasses.replace(r, **kw)
