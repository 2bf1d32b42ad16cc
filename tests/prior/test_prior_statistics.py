"""Statistical checks of the prior: sample covariances, the alpha estimator, robustness."""

from __future__ import annotations

import math

import pytest
import torch

from pfn_kernels.inference.outputscale import alpha_estimator
from pfn_kernels.prior import PriorConfig, sample_tasks
from pfn_kernels.exact_gp import robust_cholesky


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # These tests are many small ops; one thread keeps their runtime stable on a shared machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("family", ["matern32", "periodic"])
def test_sample_covariance_matches_true_kernel(family):
    """M realizations share the inputs and the kernel, so their sample covariance estimates it.

    Each entry's standard error is at most :math:`\\sqrt{2/M}\\,\\sigma_f^2`; we allow 5 of them.
    Warping is on, so the check covers the non-stationary (in x) case too.
    """
    M = 20000
    cfg = PriorConfig(family_probs={family: 1.0}, warp_prob=1.0, noise_ratio_range=(1e-6, 1e-6))
    batch = sample_tasks(
        cfg,
        2,
        gen(0),
        num_dims=2,
        num_context=8,
        num_targets=0,
        num_realizations=M,
        dtype=torch.float64,
    )
    tol = 5 * math.sqrt(2 / M)
    f = batch.f_raw_context  # (B, n, M) zero-mean draws
    emp = f @ f.transpose(-1, -2) / M
    true = batch.outputscale_raw[:, None, None] * batch.kernel.covariance(
        batch.x_context, batch.x_context
    )
    assert ((emp - true).abs() / batch.outputscale_raw[:, None, None]).max() < tol
    # the same in standardized units, against TaskBatch.covariance
    fs = batch.f_context - batch.f_context.mean(-1, keepdim=True)
    emp_std = fs @ fs.transpose(-1, -2) / (M - 1)
    true_std = batch.covariance(batch.x_context, batch.x_context)
    assert ((emp_std - true_std).abs() / batch.params.outputscale[:, None, None]).max() < tol


@pytest.mark.parametrize("realizations", [None, 3])
def test_alpha_estimator_is_unbiased_over_the_prior(realizations):
    """E[alpha_hat / sigma_f^2] = 1 over 2000 prior tasks, within 3 standard errors."""
    cfg = PriorConfig(max_context=32)
    ratios = []
    for seed in range(10):
        batch = sample_tasks(
            cfg,
            200,
            gen(100 + seed),
            num_targets=0,
            num_realizations=realizations,
            dtype=torch.float64,
        )
        shape = batch.kernel.covariance(batch.x_context, batch.x_context)  # unit outputscale
        alpha = alpha_estimator(batch.f_raw_context, shape)
        ratios.append(alpha / batch.outputscale_raw)
    ratios = torch.cat(ratios)
    assert ratios.numel() == 2000 and torch.isfinite(ratios).all()
    mean, se = ratios.mean().item(), (ratios.std() / math.sqrt(ratios.numel())).item()
    assert se < 0.05  # the check has power
    assert abs(mean - 1.0) < 3 * se, f"mean {mean:.4f} +- {se:.4f}"


def test_robust_cholesky_never_fails():
    n = 6
    good = torch.eye(n, dtype=torch.float64)
    ones = torch.ones(n, n, dtype=torch.float64)  # rank one (duplicated inputs, smooth kernel)
    indefinite = ones - 1.5 * torch.eye(n, dtype=torch.float64)  # eigenvalues n - 1.5 and -1.5
    K = torch.stack([good, ones, indefinite])
    L = robust_cholesky(K)
    assert torch.isfinite(L).all()
    assert torch.allclose(L[0] @ L[0].T, good, atol=1e-7)
    assert torch.allclose(L[1] @ L[1].T, ones, atol=1e-6)
    evals, evecs = torch.linalg.eigh(indefinite)
    clipped = evecs @ torch.diag(evals.clamp_min(0)) @ evecs.T
    assert torch.allclose(L[2] @ L[2].T, clipped, atol=1e-6)


def test_degenerate_designs_give_finite_tasks():
    """Clipped clusters put many points exactly on the boundary; smooth kernels and near-zero
    noise then make K singular. Nothing may become NaN."""
    cfg = PriorConfig(
        design_probs={"clustered": 1.0},
        cluster_std_range=(0.5, 0.5),
        cluster_uniform_fraction_range=(0.0, 0.0),
        family_probs={"rbf": 1.0},
        lengthscale_range=(2.0, 2.0),
        noise_ratio_range=(1e-6, 1e-6),
    )
    batch = sample_tasks(cfg, 16, gen(1), num_dims=1, num_context=200, num_targets=50)
    for name in ("y_context", "y_target", "f_context", "f_target", "y_std"):
        assert torch.isfinite(getattr(batch, name)).all(), name
    assert (batch.x_context == 0).any() or (batch.x_context == 1).any()
