r"""The synthetic task prior: training and evaluation data for the network.

A task is a Gaussian-process regression data set on :math:`[0, 1]^d` whose kernel is a product of
stationary one-dimensional factors (:data:`FAMILIES`), drawn on one of several input designs
(:data:`DESIGNS`), optionally input-warped, with noise from near zero to heavy. Each task comes
with its ground truth: the exact kernel (:meth:`TaskBatch.covariance`) and its spectral-mixture
parameters (:attr:`TaskBatch.params`, exact where :attr:`TaskBatch.representable`).

Example:
    >>> import torch
    >>> from pfn_kernels.prior import PriorConfig, sample_tasks
    >>> g = torch.Generator().manual_seed(0)
    >>> batch = sample_tasks(PriorConfig(), batch_size=32, generator=g, num_dims=4, num_context=128)
    >>> batch.x_context.shape, batch.params.weights.shape
    (torch.Size([32, 128, 4]), torch.Size([32, 4, 4]))

Layout: :mod:`~pfn_kernels.prior.config` (:class:`PriorConfig`),
:mod:`~pfn_kernels.prior.families` (kernel families, ground-truth kernel),
:mod:`~pfn_kernels.prior.designs` (input designs, warping), :mod:`~pfn_kernels.prior.tasks`
(:class:`TaskBatch`, :func:`sample_tasks`).
"""

from pfn_kernels.prior.config import PriorConfig
from pfn_kernels.prior.designs import DESIGNS
from pfn_kernels.prior.families import FAMILIES, GroundTruthKernel
from pfn_kernels.prior.tasks import TaskBatch, sample_tasks

__all__ = ["DESIGNS", "FAMILIES", "GroundTruthKernel", "PriorConfig", "TaskBatch", "sample_tasks"]
