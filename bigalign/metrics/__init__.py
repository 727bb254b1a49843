"""One module per metric family; the public functions are re-exported by ``bigalign``.

(``mmd`` and ``mmd_test`` are exported by ``bigalign`` directly from
``bigalign.metrics.mmd``, so that name stays the module here.)
"""

from .distance import distance_alignment
from .independence import coco, kcc, kmi
from .kernel import cka, hsic, kernel_alignment
from .stitching import StitchingMatrix, StitchResult, StitchRisks, stitch, stitching_matrix

__all__ = [
    "StitchResult",
    "StitchRisks",
    "StitchingMatrix",
    "cka",
    "coco",
    "distance_alignment",
    "hsic",
    "kcc",
    "kernel_alignment",
    "kmi",
    "stitch",
    "stitching_matrix",
]
