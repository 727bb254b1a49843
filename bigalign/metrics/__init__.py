"""One module per metric family; the public functions are re-exported by ``bigalign``.

(``mmd`` and ``mmd_test`` are exported by ``bigalign`` directly from
``bigalign.metrics.mmd``, so that name stays the module here.)
"""

from .cca import pwcca, svcca
from .dcor import dcor, dcov
from .distance import distance_alignment
from .energy import dcov_test, energy_distance, partial_dcor
from .independence import coco, kcc, kmi
from .kernel import cka, hsic, kernel_alignment
from .neighbors import KnnSweep, cknna, cycle_knn, edit_distance_knn, knn_sweep, lcs_knn, mutual_knn
from .permutation import PermutationResult, permutation_test
from .procrustes import procrustes
from .rsa import rsa
from .spectral import kare, spectral_alignment, spectrum, task_alignment
from .stitching import StitchResult, StitchRisks, stitch
from .stitching_nonlinear import NonlinearStitchResult, StitchRisksSE

__all__ = [
    "KnnSweep",
    "NonlinearStitchResult",
    "PermutationResult",
    "StitchResult",
    "StitchRisksSE",
    "StitchRisks",
    "cka",
    "cknna",
    "coco",
    "cycle_knn",
    "dcor",
    "dcov",
    "dcov_test",
    "distance_alignment",
    "edit_distance_knn",
    "energy_distance",
    "hsic",
    "kare",
    "kcc",
    "kernel_alignment",
    "kmi",
    "knn_sweep",
    "lcs_knn",
    "mutual_knn",
    "partial_dcor",
    "permutation_test",
    "procrustes",
    "pwcca",
    "rsa",
    "spectral_alignment",
    "spectrum",
    "stitch",
    "svcca",
    "task_alignment",
]
