"""bigalign: representation alignment at the scale of whole activation dumps.

``import bigalign`` is cheap: the public names below are loaded on first use
(dask, zarr, numba and the metric modules cost a second or more of CPU to
import, which a command-line ``--help`` or a script that only needs one metric
should not pay).  ``from bigalign import cka`` and ``bigalign.cka`` work as for
any package.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

# light leaves, loaded eagerly: errors, the result type, and the two context
# managers whose function shares its submodule's name (see _Package below)
from ._version import __version__
from .checkpoint import checkpoint
from .errors import (
    BigalignError,
    DegenerateInputError,
    InvalidInputError,
    NonFiniteError,
    PairingError,
    StoreError,
)
from .progress import progress, set_progress
from .result import Result


#: public name -> the module that defines it (imported on first access)
_LAZY: dict[str, str] = {
    "capture": ".capture",
    "LayerMatrix": ".compare",
    "compare_layers": ".compare",
    "EngineOptions": ".options",
    "Statistic": ".engine",
    "memory_limit": ".engine",
    "run": ".engine",
    "ActivationStore": ".io",
    "ActivationWriter": ".io",
    "Layer": ".io",
    "PairingWarning": ".io",
    "open_activations": ".io",
    "NonlinearStitchResult": ".metrics.stitching_nonlinear",
    "StitchRisks": ".metrics.stitching",
    "StitchRisksSE": ".metrics.stitching_nonlinear",
    "StitchingMatrix": ".layer_stitching",
    "StitchResult": ".metrics.stitching",
    "stitch": ".metrics.stitching",
    "stitching_matrix": ".layer_stitching",
    "cka": ".metrics.kernel",
    "hsic": ".metrics.kernel",
    "kernel_alignment": ".metrics.kernel",
    "cknna": ".metrics.neighbors",
    "IntervalResult": ".metrics.neighbors",
    "mutual_knn": ".metrics.neighbors",
    "KnnSweep": ".metrics.neighbors",
    "knn_sweep": ".metrics.neighbors",
    "cycle_knn": ".metrics.neighbors",
    "lcs_knn": ".metrics.neighbors",
    "edit_distance_knn": ".metrics.neighbors",
    "coco": ".metrics.independence",
    "kcc": ".metrics.independence",
    "kmi": ".metrics.independence",
    "dcor": ".metrics.dcor",
    "dcov": ".metrics.dcor",
    "distance_alignment": ".metrics.distance",
    "rsa": ".metrics.rsa",
    "procrustes": ".metrics.procrustes",
    "svcca": ".metrics.cca",
    "pwcca": ".metrics.cca",
    "dcov_test": ".metrics.energy",
    "partial_dcor": ".metrics.energy",
    "energy_distance": ".metrics.energy",
    "PermutationResult": ".metrics.permutation",
    "cka_matrix_sketched": ".metrics.layer_sketch",
    "SketchedCKAMatrix": ".metrics.layer_sketch",
    "SketchedResult": ".metrics.layer_sketch",
    "permutation_test": ".metrics.permutation",
    "KareResult": ".metrics.spectral",
    "SpectralAlignmentResult": ".metrics.spectral",
    "SpectrumResult": ".metrics.spectral",
    "TaskAlignmentResult": ".metrics.spectral",
    "kare": ".metrics.spectral",
    "spectral_alignment": ".metrics.spectral",
    "spectrum": ".metrics.spectral",
    "task_alignment": ".metrics.spectral",
    "MMDTestResult": ".metrics.mmd",
    "mmd": ".metrics.mmd",
    "mmd_test": ".metrics.mmd",
    "write_report": ".report",
    "TestResult": ".stats",
    "hsic_test": ".metrics.hsic_test",
}

__all__ = sorted(
    [
        *_LAZY,
        "BigalignError",
        "DegenerateInputError",
        "InvalidInputError",
        "NonFiniteError",
        "PairingError",
        "Result",
        "StoreError",
        "__version__",
        "checkpoint",
        "progress",
        "set_progress",
    ]
)


#: submodules reachable as attributes (``bigalign.compare.METRICS``) as when they were imported eagerly
_SUBMODULES = frozenset({
    "capture", "checkpoint", "cli", "compare", "demo", "engine", "errors", "features", "gram", "intervals", "io",
    "layer_stitching", "linalg", "metrics", "moments", "options", "progress", "report", "result", "stats",
})  # fmt: skip


def __getattr__(name: str) -> Any:
    if name not in _LAZY and name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)  # binds itself on the package
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'bigalign' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """``bigalign.capture``, ``bigalign.checkpoint`` and ``bigalign.progress`` are functions.

    Importing a submodule binds it on its package (``import bigalign.capture``
    sets ``bigalign.capture`` to the module).  With lazy loading that first
    import can come after ``import bigalign``, so the binding is refused here
    for the names whose public meaning is the function of the same name.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("capture", "checkpoint", "progress") and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

if TYPE_CHECKING:  # static analysers and IDEs see the eager imports
    from .capture import capture
    from .compare import LayerMatrix, compare_layers
    from .engine import Statistic, memory_limit, run
    from .options import EngineOptions
    from .io import ActivationStore, ActivationWriter, Layer, PairingWarning, open_activations
    from .metrics import (
        NonlinearStitchResult,
        StitchResult,
        StitchRisks,
        StitchRisksSE,
        cka,
        cknna,
        coco,
        dcor,
        dcov,
        distance_alignment,
        hsic,
        kare,
        kcc,
        kernel_alignment,
        kmi,
        mutual_knn,
        rsa,
        spectral_alignment,
        spectrum,
        stitch,
        task_alignment,
    )
    from .metrics.cca import pwcca, svcca
    from .metrics.energy import dcov_test, energy_distance, partial_dcor
    from .metrics.neighbors import IntervalResult, KnnSweep, cycle_knn, edit_distance_knn, knn_sweep, lcs_knn
    from .metrics.mmd import MMDTestResult, mmd, mmd_test
    from .metrics.permutation import PermutationResult, permutation_test
    from .metrics.layer_sketch import SketchedCKAMatrix, SketchedResult, cka_matrix_sketched
    from .metrics.procrustes import procrustes
    from .metrics.spectral import KareResult, SpectralAlignmentResult, SpectrumResult, TaskAlignmentResult
    from .layer_stitching import StitchingMatrix, stitching_matrix
    from .report import write_report
    from .metrics.hsic_test import hsic_test
    from .stats import TestResult
