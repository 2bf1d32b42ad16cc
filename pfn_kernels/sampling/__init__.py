"""Pathwise (Matheron) sampling support: exact random Fourier features of the spectral kernel.

Importing this package registers the feature generator with BoTorch's dispatcher;
``import pfn_kernels`` does so.
"""

from pfn_kernels.sampling.pathwise import sample_spectral_frequencies

__all__ = ["sample_spectral_frequencies"]
