"""bigalign: representation alignment at the scale of whole activation dumps."""

from importlib.metadata import PackageNotFoundError, version as _version

from .capture import capture
from .checkpoint import checkpoint
from .compare import LayerMatrix, compare_layers
from .engine import Statistic, memory_limit, run
from .errors import (
    BigalignError,
    DegenerateInputError,
    InvalidInputError,
    NonFiniteError,
    PairingError,
    StoreError,
)
from .io import ActivationStore, ActivationWriter, Layer, PairingWarning, open_activations
from .metrics import (
    NonlinearStitchResult,
    StitchingMatrix,
    StitchResult,
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
    stitching_matrix,
    task_alignment,
)
from .metrics.spectral import KareResult, SpectralAlignmentResult, SpectrumResult, TaskAlignmentResult
from .metrics.mmd import MMDTestResult, mmd, mmd_test
from .progress import progress, set_progress
from .report import write_report
from .result import Result
from .stats import TestResult, hsic_test

try:
    __version__ = _version("bigalign")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "ActivationStore",
    "ActivationWriter",
    "BigalignError",
    "DegenerateInputError",
    "InvalidInputError",
    "KareResult",
    "Layer",
    "LayerMatrix",
    "MMDTestResult",
    "NonlinearStitchResult",
    "NonFiniteError",
    "PairingError",
    "PairingWarning",
    "Result",
    "SpectralAlignmentResult",
    "SpectrumResult",
    "Statistic",
    "StitchResult",
    "StitchingMatrix",
    "StoreError",
    "TaskAlignmentResult",
    "TestResult",
    "__version__",
    "capture",
    "checkpoint",
    "cka",
    "cknna",
    "coco",
    "compare_layers",
    "dcor",
    "dcov",
    "distance_alignment",
    "hsic",
    "hsic_test",
    "kare",
    "kcc",
    "kernel_alignment",
    "kmi",
    "memory_limit",
    "mmd",
    "mmd_test",
    "mutual_knn",
    "open_activations",
    "progress",
    "set_progress",
    "rsa",
    "run",
    "spectral_alignment",
    "spectrum",
    "stitch",
    "stitching_matrix",
    "task_alignment",
    "write_report",
]
