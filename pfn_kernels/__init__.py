r"""pfn_kernels: GP hyperparameters in one forward pass.

The data flow, top to bottom:

- :mod:`pfn_kernels.prior` draws synthetic regression tasks (training data for the network);
- :mod:`pfn_kernels.network` reads a data set ``(X, y)`` and returns :class:`SpectralParams`;
- :class:`AmortizedSpectralKernel` turns them into a GPyTorch kernel (Bochner's theorem,
  :mod:`pfn_kernels.kernels.bochner`), used as the ``covar_module`` of a BoTorch GP;
- :class:`AmortizedSingleTaskGP` and :func:`fit_amortized` (:mod:`pfn_kernels.fit`) make one decoder
  pass the GP's fit; :mod:`pfn_kernels.sampling` gives BoTorch's pathwise (Thompson) sampling
  exact random Fourier features of the kernel.
"""

from pfn_kernels.kernels import AmortizedSpectralKernel
from pfn_kernels.spectral_params import SpectralParams

# BoTorch integration (importing pfn_kernels.sampling registers the pathwise feature generator).
from pfn_kernels import sampling  # noqa: F401
from pfn_kernels.fit import RefinePriors, fit_amortized, refine_amortized
from pfn_kernels.inference import InferenceConfig, decode_spectral_params
from pfn_kernels.models import AmortizedSingleTaskGP
from pfn_kernels.network import DecoderConfig, SpectralDecoder

__all__ = [
    "AmortizedSingleTaskGP",
    "AmortizedSpectralKernel",
    "DecoderConfig",
    "InferenceConfig",
    "RefinePriors",
    "SpectralDecoder",
    "SpectralParams",
    "decode_spectral_params",
    "fit_amortized",
    "refine_amortized",
]
__version__ = "0.1.0"
