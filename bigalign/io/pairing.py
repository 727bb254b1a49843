"""Checking that the rows of two representations are the same samples, in the same order."""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np

from ..errors import InvalidInputError, PairingError
from .files import ArrayLayer
from .representation import Representation


class PairingWarning(UserWarning):
    """Two stores are compared but their sample pairing cannot be verified."""


def _item(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def check_pairing(reps: Sequence[Representation]) -> None:
    """Verify that representations describe the same samples in the same order.

    Raises
    ------
    InvalidInputError
        If the numbers of samples differ.
    PairingError
        If two store layers carry sample ids that differ or come in another order.

    Warns
    -----
    PairingWarning
        When comparing store layers of which at least one has no sample ids.
    """
    first = reps[0]
    for r in reps[1:]:
        if r.n != first.n:
            raise InvalidInputError(
                f"{first.name} and {r.name} must have the same number of samples; "
                f"got {first.name}: {first.n} rows, {r.name}: {r.n} rows. "
                "Pass the same samples, in the same order, for both representations."
            )
    # array files without ids are plain arrays, whose pairing is the caller's word
    layers = [r for r in reps if r.kind == "layer" and not (isinstance(r.source, ArrayLayer) and r.source.store.sample_ids is None)]
    if len(layers) < len(reps) and not any(r.kind == "layer" for r in layers):
        return
    stores = {id(r.source.store): r.source.store for r in layers}
    if len(stores) < 2 and len(layers) == len(reps):
        return  # all from one store: pairing is the store's own row order
    if not layers:
        return
    with_ids = [(r, r.source.store.sample_ids) for r in layers]
    missing = [r.name for r, ids in with_ids if ids is None]
    _compare_ids([(r, ids) for r, ids in with_ids if ids is not None])  # what can be checked is checked
    if missing or len(layers) < len(reps):
        warnings.warn(
            "sample pairing cannot be verified: "
            + (f"{', '.join(missing)} has no sample ids" if missing else "one input is a plain array")
            + ". bigalign assumes row i of each input is the same sample. Write stores with "
            "ActivationWriter.append(..., sample_ids=ids) to have pairing checked.",
            PairingWarning,
            stacklevel=3,
        )
        return


def _compare_ids(with_ids: list) -> None:
    """Raise PairingError if the sample ids of these (representation, ids) pairs differ."""
    if len(with_ids) < 2:
        return
    ref_rep, ref = with_ids[0]
    for r, ids in with_ids[1:]:
        if ids is ref or np.array_equal(ids, ref):
            continue
        if ids.shape == ref.shape and np.array_equal(np.sort(ids), np.sort(ref)):
            i = int(np.flatnonzero(ids != ref)[0])
            raise PairingError(
                f"{ref_rep.name} and {r.name} hold the same samples in a different order "
                f"(first difference at row {i}: {_item(ref[i])!r} vs {_item(ids[i])!r}). Expected identical sample ids "
                "in identical order. Reorder one store (e.g. rewrite it sorted by sample id) before comparing."
            )
        diff = np.flatnonzero(ids != ref) if ids.shape == ref.shape else np.array([0])
        i = int(diff[0])
        raise PairingError(
            f"{ref_rep.name} and {r.name} hold different samples (first difference at row {i}: "
            f"{_item(ref[i])!r} vs {_item(ids[i])!r}). Expected identical sample ids in identical order. "
            "Compare activations of the same inputs."
        )
