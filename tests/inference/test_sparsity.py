"""The sparse-spectrum stage: which dimensions collapse to an RBF factor, and what it keeps."""

from __future__ import annotations

import math

import pytest
import torch

from pfn_kernels.exact_gp import profile_log_likelihood
from pfn_kernels.inference import InferenceConfig, decode_spectral_params
from pfn_kernels.inference.sparsity import (
    collapse_dimensions,
    collapsed_scales,
    is_collapsed,
    sparsify,
)
from pfn_kernels.kernels import spectral_mixture_covariance
from pfn_kernels.spectral_params import SpectralEstimate

DTYPE = torch.float64


def task(seed=0, b=3, n=60):
    """Draws of a d = 4 product kernel: dimension 0 periodic (3 cycles per unit), 1 an RBF,
    2 and 3 smooth with a small low-frequency component; the estimate is the truth."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, n, 4, generator=g, dtype=DTYPE)
    w = torch.tensor([[0.1, 0.9, 0, 0], [1, 0, 0, 0], [0.9, 0.1, 0, 0], [0.95, 0.05, 0, 0]], dtype=DTYPE)
    mu = torch.tensor([[0, 3.0, 0, 0], [0, 0, 0, 0], [0, 0.25, 0, 0], [0, 0.25, 0, 0]], dtype=DTYPE)
    s = torch.tensor([[0.3, 0.1, 1, 1], [0.5, 1, 1, 1], [0.4, 0.2, 1, 1], [0.05, 0.1, 1, 1]], dtype=DTYPE)
    w, mu, s = (t.expand(b, 4, 4).clone() for t in (w, mu, s))
    k = spectral_mixture_covariance(x, x, w, mu, s) + 1e-4 * torch.eye(n, dtype=DTYPE)
    y = (torch.linalg.cholesky(k) @ torch.randn(b, n, 1, generator=g, dtype=DTYPE)).squeeze(-1)
    y = (y - y.mean(-1, keepdim=True)) / y.std(-1, keepdim=True)
    est = SpectralEstimate(w, mu, s, torch.full((b,), math.log(1e-4), dtype=DTYPE), torch.zeros(b, dtype=DTYPE))
    return x, y, est


def loss_per_point(x, y, est, new):
    """Nats per point of profile log likelihood lost from ``est`` to ``new``."""
    ll = lambda e: profile_log_likelihood(
        spectral_mixture_covariance(x, x, e.weights, e.means, e.scales), y, e.log_noise_ratio)
    return (ll(est) - ll(new)) / x.shape[-2]


def test_collapse_keeps_the_second_moment_and_marks_the_dimension():
    _, _, est = task()
    mask = torch.tensor([[True, False, True, False]]).expand(3, 4)
    new = collapse_dimensions(est, mask)
    assert is_collapsed(new.weights, new.means).tolist() == [[True, True, True, False]] * 3
    second = lambda e: (e.weights * (e.scales**2 + e.means**2)).sum(-1)
    torch.testing.assert_close(second(new), second(est), rtol=1e-12, atol=0)
    torch.testing.assert_close(new.weights[:, 3], est.weights[:, 3], rtol=0, atol=0)  # untouched
    torch.testing.assert_close(collapsed_scales(est)[:, 1], est.scales[:, 1, 0], rtol=1e-12, atol=0)


def test_the_periodic_dimension_keeps_its_peaks_and_the_loss_stays_within_the_margin():
    x, y, est = task()
    for margin in (0.0, 0.01, 0.05):
        new, collapsed = sparsify(x, y, est, margin=margin)
        assert not collapsed[:, 0].any()  # the data need its peak at 3 cycles
        assert collapsed[:, 1].all()  # an RBF already
        assert (loss_per_point(x, y, est, new) <= margin + 1e-12).all()
    assert collapsed[:, 2:].all()  # the small low-frequency components cost less than 0.05
    new, collapsed = sparsify(x, y, est, margin=10.0)
    assert collapsed.all() and (loss_per_point(x, y, est, new) > 0.2).all()


def test_chunks_give_the_same_answer(monkeypatch):
    from pfn_kernels.inference import sparsity

    x, y, est = task(seed=1, b=5)
    whole = sparsify(x, y, est, margin=0.01)
    monkeypatch.setattr(sparsity, "MAX_FACTOR_ENTRIES", 1)  # one task per chunk
    parts = sparsify(x, y, est, margin=0.01)
    assert torch.equal(whole[1], parts[1]) and torch.equal(whole[0].scales, parts[0].scales)


def test_one_dimension_and_realizations():
    x, y, est = task(b=2)
    x1, e1 = x[..., 1:2], SpectralEstimate(est.weights[:, 1:2], est.means[:, 1:2], est.scales[:, 1:2],
                                            est.log_noise_ratio, est.log_outputscale)
    assert sparsify(x1, y, e1)[1].all()
    y3 = torch.stack([y, y.flip(-1)], -1)  # (B, n, M)
    assert sparsify(x, y3, est)[1].shape == (2, 4)
    with pytest.raises(ValueError, match="margin"):
        sparsify(x, y, est, margin=-1.0)


def test_pipeline_option_gives_rbf_dimensions():
    """With ``sparsify=True`` the one pass returns collapsed dimensions on a smooth function;
    without (the default), none."""
    g = torch.Generator().manual_seed(3)
    X = torch.rand(40, 3, generator=g, dtype=DTYPE)
    y = torch.sin(3 * X[:, 0]) + X[:, 1] ** 2
    y = (y - y.mean()) / y.std()
    dense = decode_spectral_params(X, y, config=InferenceConfig(sparsify=False))
    sparse = decode_spectral_params(X, y, config=InferenceConfig(sparsify=True, sparsity_margin=0.05))
    assert not is_collapsed(dense.weights, dense.means).any()
    assert is_collapsed(sparse.weights, sparse.means).any()
    with pytest.raises(ValueError, match="sparsity_margin"):
        InferenceConfig(sparsity_margin=-0.1)
    assert not InferenceConfig().sparsify
    assert InferenceConfig.from_dict(InferenceConfig(sparsify=True).to_dict()).sparsify
