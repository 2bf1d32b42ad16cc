r"""Exact random Fourier features of :class:`~pfn_kernels.AmortizedSpectralKernel` for BoTorch.

By Bochner's theorem the kernel is :math:`\sigma_f^2\,\mathbb E_{\boldsymbol\omega}
[\cos(2\pi\boldsymbol\omega^\top(\mathbf x - \mathbf x'))]` with :math:`\boldsymbol\omega` drawn
from the product of the per-dimension spectral densities
:math:`S_j(\omega) = \sum_q \tfrac{w_{jq}}{2}[\mathcal N(\omega;\mu_{jq},s_{jq}^2) +
\mathcal N(\omega;-\mu_{jq},s_{jq}^2)]` (cycles per unit input). A frequency vector is drawn per
dimension independently: a component :math:`q \sim \mathrm{Categorical}(w_{j\cdot})`, a random
sign, then :math:`\omega_j \sim \mathcal N(\pm\mu_{jq}, s_{jq}^2)`. With :math:`L/2` such vectors,

.. math::

    \phi(\mathbf x) = \sqrt{\frac{2\sigma_f^2}{L}}\,\big[\sin(2\pi\boldsymbol\omega_i^\top\mathbf x),\;
        \cos(2\pi\boldsymbol\omega_i^\top\mathbf x)\big]_{i=1}^{L/2},
    \qquad \mathbb E\,[\phi(\mathbf x)^\top\phi(\mathbf x')] = k(\mathbf x, \mathbf x'),

the sine/cosine pairs BoTorch uses for its own stationary kernels (lower variance than a random
phase). The generator is registered with BoTorch's ``GenKernelFeatures`` dispatcher when
:mod:`pfn_kernels` is imported, so ``botorch.sampling.pathwise.draw_matheron_paths`` and
``get_matheron_path_model`` (Thompson sampling) work for GPs with this kernel; input and outcome
transforms are applied by BoTorch's paths, as for an ``RBFKernel``.
"""

from __future__ import annotations

import math

import torch
from botorch.exceptions.errors import UnsupportedError
from botorch.sampling.pathwise.features.generators import GenKernelFeatures
from botorch.sampling.pathwise.features.maps import KernelFeatureMap
from botorch.sampling.pathwise.utils import (
    ChainedTransform,
    FeatureSelector,
    OutputscaleTransform,
    SineCosineTransform,
)
from torch import Tensor

from pfn_kernels.kernels import AmortizedSpectralKernel


def sample_spectral_frequencies(
    kernel: AmortizedSpectralKernel, num_frequencies: int, generator: torch.Generator | None = None
) -> Tensor:
    r"""Draw frequency vectors :math:`\boldsymbol\omega` from the kernel's spectral density.

    :param kernel: a sized kernel with batch shape `(*batch)`, d dimensions, Q components.
    :param num_frequencies: number of vectors per batch element.
    :param generator: optional random generator (default: torch's global one).
    :return: `(*batch, num_frequencies, d)` frequencies in cycles per unit input.
    """
    kernel._require_sized()
    with torch.no_grad():
        weights = kernel.mixture_weights  # (*b, d, Q)
        means, scales = kernel.mixture_means, kernel.mixture_scales
        batch, (d, q) = weights.shape[:-2], weights.shape[-2:]
        flat = weights.reshape(-1, q)  # (B d, Q)
        comp = torch.multinomial(flat, num_frequencies, replacement=True, generator=generator)
        comp = comp.reshape(*batch, d, num_frequencies)  # (*b, d, L)
        mu = means.gather(-1, comp)
        s = scales.gather(-1, comp)
        sign = torch.randint(0, 2, mu.shape, generator=generator, device=mu.device).to(mu) * 2 - 1
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        omega = sign * mu + s * eps  # (*b, d, L)
    return omega.transpose(-1, -2)


@GenKernelFeatures.register(AmortizedSpectralKernel)
def _gen_kernel_features_amortized_spectral(
    kernel: AmortizedSpectralKernel,
    *,
    num_inputs: int,
    num_outputs: int,
) -> KernelFeatureMap:
    """Random Fourier features drawn exactly from the spectral mixture (see the module doc)."""
    if num_outputs % 2:
        raise UnsupportedError(
            f"Expected an even number of output features, but received {num_outputs=}."
        )
    input_transform = None
    if kernel.active_dims is not None:
        input_transform = FeatureSelector(indices=kernel.active_dims)
    # Angular frequencies, so that the map's linear layer computes 2 pi omega^T x.
    weight = 2 * math.pi * sample_spectral_frequencies(kernel, num_outputs // 2)
    scale = torch.tensor((2 / num_outputs) ** 0.5, device=weight.device, dtype=weight.dtype)
    # The outputscale is read live, as for BoTorch's ScaleKernel features.
    output_transform = ChainedTransform(OutputscaleTransform(kernel), SineCosineTransform(scale))
    return KernelFeatureMap(
        kernel=kernel,
        weight=weight,
        input_transform=input_transform,
        output_transform=output_transform,
    )


__all__ = ["sample_spectral_frequencies"]
