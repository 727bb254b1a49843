"""One module per metric family; the public functions are re-exported by ``bigalign``."""

from .distance import distance_alignment
from .kernel import cka, hsic, kernel_alignment

__all__ = ["cka", "distance_alignment", "hsic", "kernel_alignment"]
