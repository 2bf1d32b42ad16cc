"""Pathwise (Matheron) sampling support: exact random Fourier features of the spectral kernel.

Importing this package registers the feature generator with BoTorch's dispatcher; importing the
kernel (:mod:`pfn_kernels.kernels`, which every model and the package's public names import)
does so.
"""

from pfn_kernels.sampling.pathwise import sample_spectral_frequencies

__all__ = ["sample_spectral_frequencies"]
