"""BO-like tasks in the prior: polynomial trends (``PriorConfig.trend_prob``), bowls with wiggles
on them, and designs that follow a BO run (``PriorConfig.optimum_design_prob``)."""

from __future__ import annotations

import math

import pytest
import torch

from pfn_kernels.prior import PriorConfig, sample_tasks


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_off_by_default_and_zero_draws_exactly_the_old_tasks():
    assert PriorConfig().trend_prob == 0.0 and PriorConfig().optimum_design_prob == 0.0
    a = sample_tasks(PriorConfig(), 8, gen(3), num_dims=3, num_context=40)
    b = sample_tasks(PriorConfig(trend_prob=0.0, trend_ratio_range=(5.0, 7.0),
                                 optimum_design_prob=0.0, optimum_std_range=(0.5, 0.6)),
                     8, gen(3), num_dims=3, num_context=40)
    assert torch.equal(a.y_context, b.y_context) and torch.equal(a.y_target, b.y_target)
    assert not a.has_trend.any() and not a.at_optima.any()


def test_the_default_prior_draws_the_tasks_of_earlier_versions():
    """Checksums of a fixed-seed batch, recorded with the code before the BO-like options."""
    b = sample_tasks(PriorConfig(), 4, gen(123), num_dims=3, num_context=30, num_targets=10,
                     dtype=torch.float64)
    assert float(b.x_context.sum()) == pytest.approx(188.35070397293123, rel=1e-12)
    assert float(b.y_context.abs().sum()) == pytest.approx(102.03083181809502, rel=1e-10)
    assert float(b.y_target.abs().sum()) == pytest.approx(34.10244598552036, rel=1e-10)


def test_bo_like_tasks_are_reproducible():
    cfg = PriorConfig(trend_prob=0.5, optimum_design_prob=0.5)
    a, b = (sample_tasks(cfg, 16, gen(9), num_dims=4, num_context=50) for _ in range(2))
    assert torch.equal(a.x_context, b.x_context) and torch.equal(a.y_target, b.y_target)
    assert a.has_trend.any() and a.at_optima.any() and not a.at_optima.all()


def test_fraction_ratios_and_representability():
    cfg = PriorConfig(trend_prob=0.4, family_probs={"rbf": 1.0}, warp_prob=0.0)
    batch = sample_tasks(cfg, 2000, gen(1), num_dims=2, num_context=4, num_targets=0)
    has = batch.has_trend
    # binomial(2000, 0.4): standard error 0.011
    assert abs(has.double().mean().item() - 0.4) < 0.04
    ratio = batch.kernel.trend_ratio[has].log()
    lo, hi = (math.log(v) for v in cfg.trend_ratio_range)
    assert ratio.min() >= lo - 1e-9 and ratio.max() <= hi + 1e-9
    # log-uniform: mean and variance of a uniform on [lo, hi]
    assert abs(ratio.mean().item() - (lo + hi) / 2) < 0.15
    assert abs(ratio.var().item() - (hi - lo) ** 2 / 12) < 0.3
    # rbf tasks are exact, unless a trend is added that the stationary params do not describe
    assert torch.equal(batch.representable, ~has)
    assert torch.equal(batch.kernel.trend_ratio > 0, has)


def test_draws_have_the_kernel_with_the_trend_as_their_covariance():
    """The empirical covariance of M realizations matches k + rho k_t (5 standard errors)."""
    M = 20000
    cfg = PriorConfig(trend_prob=1.0, trend_ratio_range=(2.0, 2.0), family_probs={"matern52": 1.0},
                      noise_ratio_range=(1e-6, 1e-6), warp_prob=1.0)
    batch = sample_tasks(cfg, 2, gen(0), num_dims=2, num_context=8, num_targets=0,
                         num_realizations=M, dtype=torch.float64)
    f = batch.f_raw_context  # (B, n, M), zero mean
    emp = f @ f.transpose(-1, -2) / M / batch.outputscale_raw[:, None, None]
    k = batch.kernel.covariance(batch.x_context)
    kt = batch.kernel.trend_covariance(batch.x_context)
    # the trend term matters here (a third of the variance), so this test can fail without it
    assert kt.diagonal(dim1=-2, dim2=-1).mean() > 0.2 * k.diagonal(dim1=-2, dim2=-1).mean()
    # each entry's standard error is at most sqrt(2 / M) * (k_ii + k_jj) / 2
    scale = k.diagonal(dim1=-2, dim2=-1).amax(-1)[:, None, None]
    assert ((emp - k).abs() / scale).max() < 5 * math.sqrt(2 / M)


def test_trend_variance_averages_the_ratio_over_the_cube():
    """E_x,c[k_t(x, x)] = 1, so the trend's variance is trend_ratio times the stationary part's."""
    cfg = PriorConfig(trend_prob=1.0, trend_ratio_range=(3.0, 3.0), design_probs={"uniform": 1.0})
    batch = sample_tasks(cfg, 4000, gen(2), num_dims=3, num_context=8, num_targets=0,
                         dtype=torch.float64)
    diag = batch.kernel.trend_covariance(batch.x_context, diag=True)  # (B, n)
    # the quadratic share w is uniform; the variance of k_t(x, x) is O(1): 32,000 points
    assert diag.mean().item() == pytest.approx(3.0, rel=0.05)
    full = batch.kernel.trend_covariance(batch.x_context)
    torch.testing.assert_close(full.diagonal(dim1=-2, dim2=-1), diag)


def test_a_dominant_trend_is_a_separable_quadratic_in_x():
    """With the trend 10^4 times the stationary variance, a least-squares separable quadratic in
    x explains all but a tiny fraction of the latent values: the draw is a bowl or a ridge."""
    cfg = PriorConfig(trend_prob=1.0, trend_ratio_range=(1e4, 1e4), noise_ratio_range=(1e-6, 1e-6))
    d, n = 3, 60
    batch = sample_tasks(cfg, 16, gen(4), num_dims=d, num_context=n, num_targets=0,
                         dtype=torch.float64)
    x, f = batch.x_context, batch.f_context
    design = torch.cat([torch.ones(16, n, 1, dtype=x.dtype), x, x.square()], dim=-1)
    coef = torch.linalg.lstsq(design, f[..., None]).solution
    resid = f - (design @ coef)[..., 0]
    explained = 1 - resid.square().sum(-1) / (f - f.mean(-1, keepdim=True)).square().sum(-1)
    assert explained.min() > 0.99


def test_the_training_loss_runs_on_trend_tasks_end_to_end_only():
    from pfn_kernels.network import SpectralDecoder
    from pfn_kernels.network.decoder import DecoderConfig
    from pfn_kernels.training.losses import DecoderObjective

    torch.manual_seed(0)
    dec = SpectralDecoder(DecoderConfig(width=16, num_heads=2, num_layers=1, num_components=2))
    objective = DecoderObjective(dec)
    cfg = PriorConfig(trend_prob=1.0, num_mixtures=2, max_peaks=2)
    batch = sample_tasks(cfg, 4, gen(5), num_dims=2, num_context=20, num_targets=10)
    loss, logs = objective(batch)
    assert torch.isfinite(loss) and logs["supervised"] == 0.0 and logs["global"] == 0.0
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in dec.parameters() if p.grad is not None)


def test_designs_that_follow_a_bo_run_cluster_at_high_values():
    """The later points sit around the best of the first ones, so the latent values at all
    points are high on average (about 0 for any design that ignores the function), in the
    context and in the targets alike (the split is random); and the points crowd together."""
    common = dict(family_probs={"rbf": 1.0}, noise_ratio_range=(1e-4, 1e-4), warp_prob=0.0,
                  design_probs={"uniform": 1.0})
    kw = dict(num_dims=2, num_context=40, num_targets=40, dtype=torch.float64)
    bo = sample_tasks(PriorConfig(optimum_design_prob=1.0, **common), 300, gen(6), **kw)
    plain = sample_tasks(PriorConfig(**common), 300, gen(6), **kw)
    assert bo.at_optima.all() and not plain.at_optima.any()
    unit = lambda t, b: t / b.outputscale_raw.sqrt()[:, None]  # noqa: E731
    for b, low, high in ((bo, 0.2, 3.0), (plain, -0.15, 0.15)):  # s.e. about 0.04
        for f in (b.f_raw_context, b.f_raw_target):
            assert low < unit(f, b).mean().item() < high
    # nearest-neighbour distances within the context: smaller when the points cluster
    def nearest(b):
        dist = torch.cdist(b.x_context, b.x_context) + torch.eye(40, dtype=torch.float64) * 10
        return dist.amin(-1).median().item()
    assert nearest(bo) < 0.7 * nearest(plain)
    assert bool(((bo.x_context >= 0) & (bo.x_context <= 1)).all())
    # the oracle still describes the data: its scores are those of an exact GP on the draw
    assert torch.isfinite(bo.oracle_scores().target_nll).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [({"trend_prob": 1.5}, "trend_prob"), ({"trend_ratio_range": (0.0, 1.0)}, "trend_ratio_range"),
     ({"trend_ratio_range": (2.0, 1.0)}, "trend_ratio_range"),
     ({"optimum_design_prob": -0.1}, "optimum_design_prob"),
     ({"optimum_initial_fraction_range": (0.0, 0.5)}, "optimum_initial_fraction_range"),
     ({"optimum_std_range": (0.0, 0.1)}, "optimum_std_range"),
     ({"optimum_explore_range": (0.5, 1.5)}, "optimum_explore_range")],
)
def test_invalid_bo_like_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PriorConfig(**kwargs)
