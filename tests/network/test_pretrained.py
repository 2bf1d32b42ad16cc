"""The shipped weights: they load offline, carry a model card, and beat a fixed RBF kernel."""

import math

import pytest
import torch

from pfn_kernels.kernels import spectral_mixture_covariance
from pfn_kernels.exact_gp import exact_gp_scores
from pfn_kernels.network import SpectralDecoder
from pfn_kernels.network.weights import load_card, weights_path
from pfn_kernels.prior import PriorConfig, sample_tasks
from pfn_kernels.inference import decode_spectral_params

pytestmark = pytest.mark.skipif(not weights_path("default").is_file(), reason="no shipped weights yet")


def test_model_card_describes_the_weights():
    card = load_card("default")
    for key in ("architecture", "prior", "training", "steps", "hardware", "wall_time_s", "validation"):
        assert key in card
    assert card["steps"] > 0
    assert weights_path("default").stat().st_size < 8 * 2**20  # a few MB at most


@pytest.mark.parametrize("d", [1, 2, 4])
def test_beats_a_fixed_rbf_kernel(d):
    decoder = SpectralDecoder.pretrained()
    batch = sample_tasks(PriorConfig(), 24, torch.Generator().manual_seed(99), num_dims=d, num_context=50,
                         num_targets=50)
    with torch.no_grad():
        p = decode_spectral_params(batch.x_context, batch.y_context, decoder)

    def scores(w, mu, s, os, noise):
        k = lambda a, b, diag=False: spectral_mixture_covariance(a, b, w, mu, s, os, diag=diag)  # noqa: E731
        return exact_gp_scores(k(batch.x_context, batch.x_context), k(batch.x_target, batch.x_context),
                               k(batch.x_target, batch.x_target, diag=True), noise, batch.y_context,
                               batch.y_target)

    decoded = scores(p.weights, p.means, p.scales, p.outputscale, p.noise)
    # fixed RBF: lengthscale 0.25 * sqrt(d) (s = 1 / (2 pi l)), unit outputscale, noise 0.01
    shape = (24, d, 1)
    rbf = scores(torch.ones(shape), torch.zeros(shape), torch.full(shape, 1 / (2 * math.pi * 0.25 * d**0.5)),
                 torch.ones(24), torch.full((24,), 0.01))
    assert decoded.target_nll.mean() < rbf.target_nll.mean() - 0.1
    assert torch.isfinite(decoded.target_nll).all()


def test_default_decoder_first_loaded_in_inference_mode_still_trains():
    """The cached shipped decoder is loaded outside inference mode whatever the caller's mode:
    its parameters are ordinary tensors, so a gradient can flow through it later."""
    from pfn_kernels.network import default_decoder

    default_decoder.cache_clear()
    try:
        with torch.inference_mode():
            decoder = default_decoder()
        assert not any(p.is_inference() for p in decoder.parameters())
        x, y = torch.rand(1, 10, 2), torch.randn(1, 10)
        decoder(x, y).means.sum().backward()
        assert all(p.grad is not None for p in decoder.x_embed.parameters())
    finally:
        for p in default_decoder().parameters():
            p.grad = None
