r"""Inference stages: from a decoder's estimate to a GP's hyperparameters, without learned weights.

The data path is ``X, y -> network -> estimate -> evidence -> sparsity -> calibration ->
outputscale -> bounds -> SpectralParams``; :func:`decode_spectral_params` runs it (see :mod:`pfn_kernels.inference.pipeline`).
Each stage works on the flat-batch :class:`~pfn_kernels.spectral_params.SpectralEstimate` of any
decoder:

- :mod:`~pfn_kernels.inference.evidence`: the decoded kernel against plain alternatives, by
  marginal likelihood;
- :mod:`~pfn_kernels.inference.sparsity`: dimensions collapsed to one zero-frequency Gaussian
  (an RBF factor, cheap in acquisition) where the evidence allows;
- :mod:`~pfn_kernels.inference.calibration`: per-dimension frequency dilations and a noise
  factor by profile marginal likelihood;
- :mod:`~pfn_kernels.inference.outputscale`: the profile-likelihood outputscale (and the
  unbiased trace estimator);
- :mod:`~pfn_kernels.inference.bounds`: the documented output ranges.

Their options are an :class:`InferenceConfig`, an argument of
:func:`~pfn_kernels.fit_amortized`, :class:`~pfn_kernels.AmortizedSingleTaskGP` and the Ax
strategy (saved with it), never part of a weight file.
"""

from pfn_kernels.inference.bounds import OutputRanges
from pfn_kernels.inference.calibration import calibrate
from pfn_kernels.inference.outputscale import (
    alpha_estimator, gls_mean, gls_mean_and_outputscale, profile_outputscale,
)
from pfn_kernels.inference.pipeline import Decoder, InferenceConfig, decode_spectral_params
from pfn_kernels.inference.sparsity import sparsify

__all__ = [
    "Decoder",
    "InferenceConfig",
    "OutputRanges",
    "alpha_estimator",
    "calibrate",
    "decode_spectral_params",
    "gls_mean",
    "gls_mean_and_outputscale",
    "profile_outputscale",
    "sparsify",
]
