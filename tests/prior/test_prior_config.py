"""PriorConfig validation and sample_tasks argument checks."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pfn_kernels.prior import DESIGNS, FAMILIES, PriorConfig, sample_tasks


def test_defaults_are_valid_and_documented():
    cfg = PriorConfig()
    assert (cfg.min_dims, cfg.max_dims) == (1, 8)
    assert (cfg.min_context, cfg.max_context, cfg.num_targets) == (1, 256, 100)
    assert cfg.num_mixtures == 4 and cfg.max_peaks == 4
    assert set(cfg.family_probs) == set(FAMILIES)
    assert set(cfg.design_probs) == set(DESIGNS)
    w = cfg.family_weights()
    assert w.shape == (len(FAMILIES),) and torch.isclose(w.sum(), torch.tensor(1.0, dtype=w.dtype))
    doc = PriorConfig.__doc__
    for f in dataclasses.fields(PriorConfig):
        assert f":param {f.name}:" in doc, f"PriorConfig.{f.name} is not documented"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"min_dims": 4, "max_dims": 2}, "min_dims (4) must be <= max_dims (2)"),
        ({"min_dims": 0}, "min_dims must be >= 1"),
        ({"min_context": 10, "max_context": 5}, "min_context (10) must be <= max_context (5)"),
        ({"num_targets": -1}, "num_targets must be >= 0"),
        ({"max_peaks": 5}, "max_peaks (5) must be <= num_mixtures (4)"),
        ({"max_peaks": 0}, "max_peaks must be >= 1"),
        ({"family_probs": {"rbf": -0.1, "matern32": 1.0}}, "family_probs['rbf'] must be >= 0"),
        ({"family_probs": {"rbf": 0.0}}, "family_probs must give a positive probability"),
        ({"family_probs": {"laplace": 1.0}}, "family_probs has unknown keys ['laplace']"),
        ({"design_probs": {"grid": float("nan")}}, "design_probs['grid'] must be a finite number"),
        ({"irrelevant_prob": 1.5}, "irrelevant_prob is a probability and must lie in [0, 1]"),
        ({"warp_prob": -0.1}, "warp_prob is a probability"),
        ({"noise_ratio_range": (0.0, 0.5)}, "noise_ratio_range is log-uniform and needs 0 < low"),
        ({"lengthscale_range": (2.0, 1.0)}, "lengthscale_range must satisfy low <= high"),
        ({"bandwidth_range": 3.0}, "bandwidth_range must be a (low, high) pair"),
        ({"grid_span_range": (0.0, 1.0)}, "grid_span_range must lie in (0.0, 1.0]"),
        (
            {"cluster_uniform_fraction_range": (0.2, 1.5)},
            "cluster_uniform_fraction_range must lie in",
        ),
        ({"num_clusters_range": (0, 3)}, "num_clusters_range must be integers 1 <= low <= high"),
        ({"max_frequency": -1.0}, "max_frequency must be >= 0.0"),
        ({"line_bandwidth": 0.0}, "line_bandwidth must be > 0.0"),
        ({"max_dims": 2.5}, "max_dims must be an int"),
    ],
)
def test_invalid_config_raises_clear_value_error(kwargs, message):
    with pytest.raises(ValueError) as err:
        PriorConfig(**kwargs)
    assert message in str(err.value)
    assert str(err.value).startswith("PriorConfig: ")


def test_partial_probability_dicts_are_allowed():
    cfg = PriorConfig(family_probs={"periodic": 2.0}, design_probs={"grid": 1.0, "sobol": 1.0})
    assert cfg.family_weights()[FAMILIES.index("periodic")] == 1.0
    assert cfg.design_weights()[DESIGNS.index("grid")] == 0.5


def test_sample_tasks_revalidates_a_mutated_config():
    cfg = PriorConfig()
    cfg.min_dims = 9
    with pytest.raises(ValueError, match="min_dims"):
        sample_tasks(cfg, 2, torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, "batch_size must be an int >= 1"),
        ({"num_dims": 0}, "num_dims must be an int >= 1"),
        ({"num_context": 0}, "num_context must be an int >= 1"),
        ({"num_targets": -1}, "num_targets must be an int >= 0"),
        ({"num_realizations": 0}, "num_realizations must be an int >= 1"),
        ({"max_peaks": 5}, "max_peaks (5) must be <= cfg.num_mixtures (4)"),
    ],
)
def test_sample_tasks_argument_errors(kwargs, message):
    args = {"batch_size": 2, "num_dims": 2, "num_context": 4, **kwargs}
    with pytest.raises(ValueError) as err:
        sample_tasks(PriorConfig(), generator=torch.Generator().manual_seed(0), **args)
    assert message in str(err.value)
