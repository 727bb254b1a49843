"""Shared plumbing of the metric façades: option checks and the linear moments pass."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .._checks import invalid_parameter
from ..engine import Plan, requested_budget, run, task_budget
from ..errors import DegenerateInputError, InvalidInputError
from ..grouped import GroupedStates, grouped_statistic
from ..intervals import Interval, estimator_interval
from ..io import as_representation
from ..moments import Moments, MomentStatistic
from ..options import EngineOptions
from ..io import check_pairing

ESTIMATORS = ("unbiased", "biased")


def check_choice(func: str, param: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise invalid_parameter(func, param, f"one of {list(choices)}", value)
    return value


def check_int(func: str, param: str, value: Any, low: int) -> int:
    """An integer option (not a bool) of at least ``low``, as a Python int; else InvalidInputError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
        raise invalid_parameter(func, param, f"an integer >= {low}", value)
    return int(value)


def check_kernel(func: str, kernel: Any) -> None:
    if kernel != "linear":
        raise InvalidInputError(
            f"the 'kernel' parameter of {func} must be 'linear' in this version; got {kernel!r}. "
            "Non-linear kernels are not available yet; use kernel='linear'."
        )


def check_unbiased_n(func: str, n: int, estimator: str) -> None:
    if estimator == "unbiased" and n < 4:
        raise InvalidInputError(
            f"{func} with estimator='unbiased' needs at least 4 samples (its normaliser is n(n-3)); "
            f"got {n}. Use more samples or estimator='biased'."
        )


def engine_parameters(plan: Plan) -> dict[str, Any]:
    return {"block_size": plan.block_rows, "n_blocks": plan.n_blocks, "scheduler": plan.scheduler}


def linear_moments(x: Any, y: Any, options: EngineOptions) -> tuple[Moments, Plan]:
    """One streaming pass accumulating the moments of x, y and their cross term."""
    stat = MomentStatistic(names=("x", "y"), pairs=((0, 1),))
    return run(stat, [x, y], names=["x", "y"], options=options)  # type: ignore[return-value]


def grouped_linear_moments(x: Any, y: Any, options: EngineOptions, n: int, func: str) -> tuple[GroupedStates, Plan]:
    """The pass of :func:`linear_moments` with one moment state per contiguous row group (for ``ci=``)."""
    stat = grouped_statistic(MomentStatistic(names=("x", "y"), pairs=((0, 1),)), n, func=func)
    return run(stat, [x, y], names=["x", "y"], options=options)  # type: ignore[return-value]


def loo_interval(
    func: str, value: float, states: GroupedStates, f: Any, level: float, scale: str = "identity", estimator: str = "unbiased",
    f_unbiased: Any = None, extra_se: float = 0.0,
) -> Interval:  # fmt: skip
    """The block-jackknife interval of ``value`` from f of every leave-one-group-out state, by
    :func:`~bigalign.intervals.estimator_interval`'s rule: a biased ``estimator`` with ``f_unbiased`` (the
    measure's unbiased form of a state) gets the interval of that form on the same states; a biased one
    without, the jackknife bias-corrected centre (``func`` in intervals.CENTRED_AT_ESTIMATE: the estimate).
    ``extra_se``: a random-feature road's stderr, added in quadrature (intervals.jackknife_interval).

    A measure that is undefined with one group left out (e.g. a constant input on the
    other rows) has no interval: a DegenerateInputError says so.
    """
    try:
        if estimator == "biased" and f_unbiased is not None:
            return estimator_interval(value, None, level, scale=scale, estimator=estimator, metric=func, extra_se=extra_se,  # type: ignore[arg-type]
                                      unbiased=(f_unbiased(states.total()), states.values(f_unbiased)))  # fmt: skip
        loo = states.values(f)
    except DegenerateInputError as e:
        raise DegenerateInputError(
            f"{func}: the sampling interval is undefined because the measure is undefined on the rows left when one of "
            f"the {states.n_groups} contiguous row groups is dropped ({e}). Leave ci out, or shuffle or add rows.",
            reason=e.reason,
        ) from e
    return estimator_interval(value, loo, level, scale=scale, estimator=estimator, metric=func, extra_se=extra_se)  # type: ignore[arg-type]


def sqnorm(a: np.ndarray) -> float:
    a = np.asarray(a)
    return float(np.vdot(a, a))


def paired_n(x: Any, y: Any) -> int:
    """Number of samples of x and y, without reading them; a mismatch is reported first."""
    rx, ry = as_representation(x, "x"), as_representation(y, "y")
    if rx.n != ry.n:
        check_pairing([rx, ry])  # raises the mismatch error naming both row counts
    return rx.n


_ENGINE_DOC = """
    block_size : int, optional
        Rows per block.  Default: planned from ``memory_per_worker`` and the
        stored chunking.  The result does not depend on it beyond rounding.
    scheduler : {"sync", "threads", "distributed"}, distributed.Client or None
        ``None`` uses the active ``distributed.Client`` if there is one, else
        the threaded scheduler.  ``"sync"`` is a plain loop without dask.
    client : distributed.Client, optional
        Run on this client.
    num_workers : int, optional
        Threads for the threaded scheduler (default: number of CPUs).
    memory_per_worker : int, optional
        Bytes of block data one task may hold (default 512 MiB)."""

_CI_DOC = """ci : float in (0, 1), optional
        Confidence level of a sampling interval (e.g. 0.95): ``result.ci`` =
        (low, high), ``result.ci_level``, and ``parameters["ci_about"]``,
        ``ci_groups``, ``ci_scale``, ``ci_se``.  The interval is about the
        sampling of rows (the population value), not an approximation's
        ``stderr``: a delete-a-group jackknife over 20 contiguous row groups,
        streamed in the same pass (docs/intervals.md).  Needs n ≥ 40.
        A biased (plug-in) estimate's interval is that of the unbiased form of
        the measure on the same rows and sums (the same population value;
        ``parameters["ci_center"]``, ``"ci_center_value"``), so at small n
        ``value`` can lie outside it (flag ``"value_outside_ci"``); where no
        unbiased form exists it is centred at the jackknife's bias-corrected
        estimate."""


def with_ci_doc(func: Any) -> Any:
    """Insert the shared ``ci`` parameter into a façade's docstring (at ``{ci}``)."""
    func.__doc__ = func.__doc__.replace("    {ci}\n", "    " + _CI_DOC + "\n")
    return func


def with_engine_doc(func: Any) -> Any:
    """Insert the shared engine parameters into a façade's docstring."""
    func.__doc__ = func.__doc__.replace("    {engine}\n", _ENGINE_DOC.lstrip("\n") + "\n")
    return func


def check_in_memory(func: str, options: EngineOptions, held: float, what: str, fix: str) -> None:
    """A road that holds ``held`` bytes in memory at once honours ``memory_per_worker`` (or an active
    memory_limit) by refusing to run over it: an InvalidInputError naming ``what`` it holds and the ``fix``."""
    budget = requested_budget(options.memory_per_worker)  # None unless memory_per_worker / memory_limit constrain it
    if budget is not None and held > budget:
        raise InvalidInputError(
            f"{func}: {what} (≈ {held / 2**20:.1f} MiB), over the memory budget of {budget / 2**20:.1f} MiB "
            f"(memory_per_worker / memory_limit). {fix}"
        )


def feature_options(options: EngineOptions, reps: list, dfx: int, dfy: int) -> EngineOptions:
    """The engine options of a pass over feature maps: the features, not the inputs, dominate memory, so
    ``memory_per_worker`` (or an active memory_limit) sizes the blocks from the feature widths here."""
    if options.block_size is not None:
        return options.replace(memory_per_worker=None)
    budget = task_budget(os.cpu_count() or 1, options.memory_per_worker)
    row_bytes = 8 * 3 * (dfx + dfy) + sum(r.d * 16 for r in reps)
    return options.replace(block_size=max(64, min(reps[0].n, budget // row_bytes)), memory_per_worker=None)
