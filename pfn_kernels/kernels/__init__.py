"""Kernel math: Bochner's theorem for per-dimension spectral mixtures and the GPyTorch kernel.

- :mod:`~pfn_kernels.kernels.bochner`: the closed forms (one dimension's factor, the spectral
  density, numerical transforms both ways);
- :mod:`~pfn_kernels.kernels.tiled_kernel`: the CPU evaluation in cache-sized tiles with
  closed-form gradients;
- :mod:`~pfn_kernels.kernels.covariance`: :func:`spectral_mixture_covariance`, the matrix, by
  whichever of the two suits the inputs;
- :mod:`~pfn_kernels.kernels.amortized_spectral_kernel`: :class:`AmortizedSpectralKernel`, the
  GPyTorch kernel.
"""

from pfn_kernels.kernels.amortized_spectral_kernel import AmortizedSpectralKernel
from pfn_kernels.kernels.bochner import spectral_density
from pfn_kernels.kernels.covariance import spectral_mixture_covariance

# BoTorch's pathwise (Thompson) sampling knows this kernel wherever the kernel is imported.
from pfn_kernels.sampling import pathwise as _pathwise  # noqa: E402,F401

__all__ = ["AmortizedSpectralKernel", "spectral_density", "spectral_mixture_covariance"]
