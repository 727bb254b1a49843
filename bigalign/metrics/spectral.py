"""Spectral views of alignment: spectra, the spectral form of kernel alignment, task alignment, KARE.

Notation (docs/formulas.md, "Spectral view"): n paired samples; X (n×d_x),
Y (n×d_y); K = XXᵀ, L = YYᵀ (linear kernels; centred: K = X_cX_cᵀ with X_c
the column-centred rows).  K/n = Σᵢ ηᵢ uᵢuᵢᵀ and L/n = Σⱼ μⱼ vⱼvⱼᵀ; the
non-zero ηᵢ are the eigenvalues of the d_x×d_x covariance A_x = (1/n)X_cᵀX_c,
with uᵢ = X_c wᵢ/√(nηᵢ) for its unit eigenvectors wᵢ.  Hence every spectral
quantity of the n×n kernels is d×d algebra on streamed moments:

* the overlap Cᵢⱼ = ⟨uᵢ, vⱼ⟩ = wᵢᵀ Σ_xy w'ⱼ / √(ηᵢμⱼ), Σ_xy = (1/n)X_cᵀY_c;
* the spectral form KA = ⟨η̂, (C⊙C) μ̂⟩ = Σᵢⱼ η̂ᵢμ̂ⱼCᵢⱼ² (η̂ = η/‖η‖), which
  equals ‖Σ_xy‖²_F/(‖A_x‖_F‖A_y‖_F) = biased linear CKA (centred) or the
  uncentred KA;
* the canonical correlations ρ = the singular values of C (CCA is the SVD of
  the overlap of the two eigenbases), with a ridge: of
  Cᵢⱼ·√(ηᵢμⱼ/((ηᵢ + r_x)(μⱼ + r_y)));
* the target power in the kernel's eigenbasis, ‖uᵢᵀy‖²/n = ‖wᵢᵀΣ_xy‖²/ηᵢ.

Where d is large, a randomized eigendecomposition (:mod:`bigalign.linalg`)
gives the leading eigenpairs in ``n_power_iter + 2`` passes, and rigorous
bounds on everything it did not see.

References
----------
Insulla, Huang & Rosasco, "Towards a Learning Theory of Representation
Alignment", arXiv:2502.14047 — the spectral form.
Halko, Martinsson & Tropp, "Finding structure with randomness", SIAM Review
53 (2011), arXiv:0909.4061 — randomized eigendecomposition.
Canatar, Bordelon & Pehlevan, "Spectral bias and task-model alignment explain
generalization in kernel regression and infinitely wide neural networks",
Nature Communications 12 (2021), arXiv:2006.13198 — cumulative power C(m).
Jacot, Şimşek, Spadaro, Hongler & Gabriel, "Kernel alignment risk estimator:
risk prediction from training data", NeurIPS 2020, arXiv:2006.09796 — KARE.
Cristianini, Shawe-Taylor, Elisseeff & Kandola, "On kernel-target alignment",
NIPS 2001; Cortes, Mohri & Rostamizadeh, "Algorithms for learning kernels
based on centered alignment", JMLR 13 (2012).
Bach & Jordan, "Kernel independent component analysis", JMLR 3 (2002) — Gaussian
mutual information from canonical correlations; Gretton et al., "Kernel
constrained covariance for dependence measurement", AISTATS 2005 — COCO.
"""

from __future__ import annotations

# the measures live in sibling modules by concern; every name stays importable from here
from ._spectral_alignment import SpectralAlignmentResult, spectral_alignment
from ._spectral_common import (  # noqa: F401
    DEFAULT_LANDMARKS,
    DEFAULT_OVERSAMPLES,
    DEFAULT_POWER_ITER,
    EXACT_MAX_D,
    METHODS,
    PERFECT_CORRELATION_TOL,
    SPECTRAL_KERNELS,
    TARGET_TYPES,
    OneHot,
    _nystroem,
    gaussian_mi_from_moments,
    gaussian_w2_from_moments,
)
from ._spectrum import SpectrumResult, spectrum
from ._task_alignment import KareResult, TaskAlignmentResult, kare, task_alignment

__all__ = [
    "KareResult",
    "SpectralAlignmentResult",
    "SpectrumResult",
    "TaskAlignmentResult",
    "kare",
    "spectral_alignment",
    "spectrum",
    "task_alignment",
]


