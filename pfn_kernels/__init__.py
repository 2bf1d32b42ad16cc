r"""pfn_kernels: GP hyperparameters in one forward pass.

The data flow, top to bottom:

- :mod:`pfn_kernels.prior` draws synthetic regression tasks (training data for the network);
- :mod:`pfn_kernels.network` reads a data set ``(X, y)`` and returns :class:`SpectralParams`;
- :class:`AmortizedSpectralKernel` turns them into a GPyTorch kernel (Bochner's theorem,
  :mod:`pfn_kernels.bochner`), used as the ``covar_module`` of a BoTorch GP.
"""

from pfn_kernels.kernels import AmortizedSpectralKernel
from pfn_kernels.spectral_params import SpectralParams

__all__ = ["AmortizedSpectralKernel", "SpectralParams"]
__version__ = "0.1.0"
