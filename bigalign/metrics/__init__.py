"""One module per metric family; the public functions are re-exported by ``bigalign``.

(``mmd`` and ``mmd_test`` are exported by ``bigalign`` directly from
``bigalign.metrics.mmd``, so that name stays the module here.)
"""

from .dcor import dcor, dcov
from .distance import distance_alignment
from .independence import coco, kcc, kmi
from .kernel import cka, hsic, kernel_alignment
from .neighbors import KnnSweep, cknna, cycle_knn, edit_distance_knn, knn_sweep, lcs_knn, mutual_knn
from .rsa import rsa
from .spectral import kare, spectral_alignment, spectrum, task_alignment
from .stitching import StitchingMatrix, StitchResult, StitchRisks, stitch, stitching_matrix
from .stitching_nonlinear import NonlinearStitchResult, StitchRisksSE

__all__ = [
    "KnnSweep",
    "NonlinearStitchResult",
    "StitchResult",
    "StitchRisksSE",
    "StitchRisks",
    "StitchingMatrix",
    "cka",
    "cknna",
    "coco",
    "cycle_knn",
    "dcor",
    "dcov",
    "distance_alignment",
    "edit_distance_knn",
    "hsic",
    "kare",
    "kcc",
    "kernel_alignment",
    "kmi",
    "knn_sweep",
    "lcs_knn",
    "mutual_knn",
    "rsa",
    "spectral_alignment",
    "spectrum",
    "stitch",
    "stitching_matrix",
    "task_alignment",
]
