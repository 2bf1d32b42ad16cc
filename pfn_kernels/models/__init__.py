"""BoTorch models whose hyperparameters come from the pretrained decoder."""

from pfn_kernels.models.amortized_gp import AmortizedSingleTaskGP, get_amortized_likelihood

__all__ = ["AmortizedSingleTaskGP", "get_amortized_likelihood"]
