"""Many-cycle tasks (``PriorConfig.many_cycles_prob``): frequencies up to what the context resolves."""

from __future__ import annotations

import math

import pytest
import torch

from pfn_kernels.prior import PriorConfig, sample_tasks


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def peaks_only(**kwargs) -> PriorConfig:
    """Spectral-mixture tasks with every peak away from 0 and all dimensions relevant."""
    return PriorConfig(family_probs={"spectral_mixture": 1.0}, zero_frequency_prob=0.0,
                       irrelevant_prob=0.0, warp_prob=0.0, **kwargs)


def test_off_by_default_and_zero_draws_exactly_the_old_tasks():
    assert PriorConfig().many_cycles_prob == 0.0
    a = sample_tasks(PriorConfig(), 8, gen(3), num_dims=2, num_context=64)
    b = sample_tasks(PriorConfig(many_cycles_prob=0.0, resolved_cycles_fraction=1.0), 8, gen(3),
                     num_dims=2, num_context=64)
    assert torch.equal(a.y_context, b.y_context) and torch.equal(a.params.means, b.params.means)


@pytest.mark.parametrize("n, d", [(256, 1), (64, 1), (400, 2)])
def test_peak_frequencies_are_log_uniform_up_to_the_resolved_cap(n, d):
    cfg = peaks_only(many_cycles_prob=1.0)
    batch = sample_tasks(cfg, 400, gen(1), num_dims=d, num_context=n, num_targets=0)
    cap = min(cfg.max_resolved_frequency, cfg.resolved_cycles_fraction * n ** (1 / d))
    low = cfg.max_frequency / d**cfg.dim_scaling
    mu = batch.params.means[batch.params.weights > 0]
    assert (mu >= low * (1 - 1e-12)).all() and (mu <= cap * (1 + 1e-12)).all()
    # log-uniform: the mean of log(mu) is the midpoint of the log range (within 4 s.e.)
    logs = mu.log()
    mid, width = (math.log(low) + math.log(cap)) / 2, math.log(cap) - math.log(low)
    assert abs(logs.mean().item() - mid) < 4 * width / math.sqrt(12 * len(logs))
    # far beyond the fixed range: n = 256 in 1-D reaches the cap of 48 cycles per unit
    if (n, d) == (256, 1):
        assert cap == cfg.max_resolved_frequency and mu.max() > 40


def test_the_probability_is_the_fraction_of_many_cycle_tasks():
    cfg = peaks_only(many_cycles_prob=0.3)
    batch = sample_tasks(cfg, 2000, gen(2), num_dims=1, num_context=256, num_targets=0)
    beyond = (batch.params.means.amax((-2, -1)) > cfg.max_frequency).float().mean().item()
    assert abs(beyond - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 2000)


def test_periodic_tasks_get_short_periods_and_the_data_show_the_cycles():
    cfg = PriorConfig(family_probs={"periodic": 1.0}, many_cycles_prob=1.0, irrelevant_prob=0.0,
                      warp_prob=0.0, noise_ratio_range=(1e-6, 1e-4), design_probs={"grid": 1.0},
                      grid_span_range=(1.0, 1.0))
    batch = sample_tasks(cfg, 64, gen(4), num_dims=1, num_context=256, num_targets=0)
    freq = 1 / batch.kernel.period[:, 0]
    low = 1 / cfg.period_range[0]
    assert (freq >= low * (1 - 1e-12)).all() and (freq <= cfg.max_resolved_frequency * (1 + 1e-12)).all()
    # the periodogram of each draw peaks at its fundamental or a harmonic of it
    x, y = batch.x_context[..., 0], batch.y_context
    grid = torch.linspace(1.0, 100.0, 2000, dtype=torch.float64)
    power = ((y[:, None, :] * torch.cos(2 * math.pi * grid[None, :, None] * x[:, None, :])).sum(-1) ** 2
             + (y[:, None, :] * torch.sin(2 * math.pi * grid[None, :, None] * x[:, None, :])).sum(-1) ** 2)
    top = grid[power.argmax(-1)]
    ratio = top / freq
    assert ((ratio - ratio.round()).abs() < 0.1).float().mean() > 0.8


def test_invalid_many_cycle_options_raise():
    with pytest.raises(ValueError, match="many_cycles_prob"):
        PriorConfig(many_cycles_prob=1.5)
    with pytest.raises(ValueError, match="resolved_cycles_fraction"):
        PriorConfig(resolved_cycles_fraction=0.0)
    with pytest.raises(ValueError, match="max_resolved_frequency"):
        PriorConfig(max_resolved_frequency=-1.0)
    with pytest.raises(ValueError, match="needs max_frequency > 0"):
        PriorConfig(many_cycles_prob=0.5, max_frequency=0.0)
