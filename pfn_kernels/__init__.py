r"""pfn_kernels: GP hyperparameters in one forward pass.

The data flow, top to bottom:

- :mod:`pfn_kernels.prior` draws synthetic regression tasks (training data for the network);
- :mod:`pfn_kernels.network` reads a data set ``(X, y)`` and returns :class:`SpectralParams`;
- :class:`AmortizedSpectralKernel` turns them into a GPyTorch kernel (Bochner's theorem,
  :mod:`pfn_kernels.kernels.bochner`), used as the ``covar_module`` of a BoTorch GP;
- :class:`AmortizedSingleTaskGP` and :func:`fit_amortized` (:mod:`pfn_kernels.fit`) make one decoder
  pass the GP's fit; :mod:`pfn_kernels.sampling` gives BoTorch's pathwise (Thompson) sampling
  exact random Fourier features of the kernel.

The public names (``__all__``) load on first use: ``import pfn_kernels`` alone imports neither
torch nor BoTorch, so the command line answers at once; the first of them imports the whole core.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pfn_kernels._version import __version__

#: Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "AmortizedSingleTaskGP": "pfn_kernels.models",
    "AmortizedSpectralKernel": "pfn_kernels.kernels",
    "DecoderConfig": "pfn_kernels.network",
    "InferenceConfig": "pfn_kernels.inference",
    "RefinePriors": "pfn_kernels.fit",
    "SpectralDecoder": "pfn_kernels.network",
    "SpectralParams": "pfn_kernels.spectral_params",
    "decode_spectral_params": "pfn_kernels.inference",
    "fit_amortized": "pfn_kernels.fit",
    "refine_amortized": "pfn_kernels.fit",
}

if TYPE_CHECKING:  # what type checkers and IDEs see
    from pfn_kernels.fit import RefinePriors, fit_amortized, refine_amortized
    from pfn_kernels.inference import InferenceConfig, decode_spectral_params
    from pfn_kernels.kernels import AmortizedSpectralKernel
    from pfn_kernels.models import AmortizedSingleTaskGP
    from pfn_kernels.network import DecoderConfig, SpectralDecoder
    from pfn_kernels.spectral_params import SpectralParams


#: Subpackages and modules reachable as attributes (``pfn_kernels.sampling``), imported on use.
_SUBMODULES = frozenset({
    "ax", "cli", "exact_gp", "experiments", "fit", "inference", "kernels", "models", "network",
    "prior", "sampling", "spectral_params", "train", "training", "validation",
})


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")  # also binds it in globals()
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pfn_kernels' has no attribute {name!r}")
    for other, path in _EXPORTS.items():  # the whole core at once, as an eager import would
        globals()[other] = getattr(importlib.import_module(path), other)
    return globals()[name]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | _SUBMODULES)


__all__ = [*sorted(_EXPORTS), "__version__"]
