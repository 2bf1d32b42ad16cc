"""GPyTorch kernels of pfn_kernels."""

from pfn_kernels.kernels.amortized_spectral_kernel import AmortizedSpectralKernel

__all__ = ["AmortizedSpectralKernel"]
