"""Tests for :class:`pfn_kernels.SpectralParams`: validation, batch handling and serialization."""

from __future__ import annotations

import json
import math

import pytest
import torch

from pfn_kernels import SpectralParams
from pfn_kernels.spectral_params import FIELD_NAMES, WEIGHT_SUM_ATOL


def random_params(batch=(), d=2, q=3, dtype=torch.float64, seed=0) -> SpectralParams:
    g = torch.Generator().manual_seed(seed)
    shape = (*batch, d, q)
    w = torch.rand(shape, generator=g, dtype=dtype) + 0.1
    return SpectralParams(
        weights=w / w.sum(-1, keepdim=True),
        means=3.0 * torch.rand(shape, generator=g, dtype=dtype),
        scales=0.1 + torch.rand(shape, generator=g, dtype=dtype),
        outputscale=0.5 + torch.rand(batch, generator=g, dtype=dtype),
        noise=0.1 * torch.rand(batch, generator=g, dtype=dtype),
    )


def fields_of(p: SpectralParams) -> dict[str, torch.Tensor]:
    return {k: getattr(p, k) for k in FIELD_NAMES}


def replaced(p: SpectralParams, **changes) -> dict[str, torch.Tensor]:
    out = {k: v.clone() for k, v in fields_of(p).items()}
    out.update(changes)
    return out


# ---------------------------------------------------------------------------- construction
def test_field_names_and_properties():
    p = random_params(batch=(4, 5), d=3, q=2)
    assert FIELD_NAMES == ("weights", "means", "scales", "outputscale", "noise", "constant_mean")
    assert p.batch_shape == torch.Size([4, 5])
    assert (p.num_dims, p.num_mixtures) == (3, 2)
    assert p.dtype == torch.float64
    assert p.device == torch.device("cpu")
    assert repr(p) == "SpectralParams(batch_shape=(4, 5), d=3, Q=2, dtype=torch.float64)"


def test_non_tensor_inputs_become_default_dtype_tensors():
    p = SpectralParams(
        weights=[[0.25, 0.75]], means=[[0.0, 1.0]], scales=[[1.0, 0.5]], outputscale=2.0, noise=0.0
    )
    assert all(isinstance(v, torch.Tensor) for v in fields_of(p).values())
    assert p.dtype == torch.get_default_dtype()
    assert p.outputscale.shape == torch.Size([])


def test_docstring_example_runs():
    import doctest

    import pfn_kernels.spectral_params as module

    result = doctest.testmod(module, extraglobs={"torch": torch})
    assert result.attempted > 0 and result.failed == 0


def test_float32_softmax_weights_pass_validation():
    logits = torch.randn(64, 6, 8, generator=torch.Generator().manual_seed(1))
    w = torch.softmax(logits, dim=-1)  # float32: sums deviate from 1 by ~1e-7
    assert (w.sum(-1) - 1).abs().max() < WEIGHT_SUM_ATOL
    SpectralParams(w, torch.rand_like(w), torch.rand_like(w) + 0.1, torch.ones(64), torch.zeros(64))


def test_zero_mean_and_zero_noise_are_valid():
    p = random_params()
    SpectralParams(**replaced(p, means=torch.zeros_like(p.means), noise=torch.zeros_like(p.noise)))


# ---------------------------------------------------------------------------- validation
@pytest.mark.parametrize("field", FIELD_NAMES)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_entries_are_rejected(field, bad):
    p = random_params(batch=(2,))
    value = getattr(p, field).clone()
    value.view(-1)[0] = bad
    with pytest.raises(ValueError, match=rf"SpectralParams\.{field} has 1 non-finite entries"):
        SpectralParams(**replaced(p, **{field: value}))


def test_weights_need_at_least_two_dims():
    with pytest.raises(ValueError, match=r"weights must have shape \(\*batch, d, Q\); got \(3,\)"):
        SpectralParams(
            torch.ones(3) / 3, torch.zeros(3), torch.ones(3), torch.tensor(1.0), torch.tensor(0.0)
        )


@pytest.mark.parametrize("field", ["means", "scales"])
def test_mixture_shape_mismatch(field):
    p = random_params(d=2, q=3)
    wrong = torch.ones(2, 4, dtype=p.dtype)
    with pytest.raises(
        ValueError, match=rf"{field} has shape \(2, 4\) but weights have shape \(2, 3\)"
    ):
        SpectralParams(**replaced(p, **{field: wrong}))


@pytest.mark.parametrize("field", ["outputscale", "noise"])
def test_global_batch_shape_mismatch(field):
    p = random_params(batch=(3,))
    with pytest.raises(
        ValueError, match=rf"{field} must have the batch shape \(3,\) .* got \(2,\)"
    ):
        SpectralParams(**replaced(p, **{field: torch.ones(2, dtype=p.dtype)}))
    # A scalar where a batch is expected is also a mismatch (no silent broadcasting).
    with pytest.raises(ValueError, match=rf"{field} must have the batch shape \(3,\) .* got \(\)"):
        SpectralParams(**replaced(p, **{field: torch.tensor(1.0, dtype=p.dtype)}))


def test_mixture_batch_shape_mismatch():
    p = random_params(batch=(2,))
    means = torch.ones(3, p.num_dims, p.num_mixtures, dtype=p.dtype)
    with pytest.raises(
        ValueError, match=r"means has shape \(3, 2, 3\) but weights have shape \(2, 2, 3\)"
    ):
        SpectralParams(**replaced(p, means=means))


def test_integer_tensors_are_rejected():
    p = random_params()
    with pytest.raises(ValueError, match=r"means must be a floating tensor, got torch\.int64"):
        SpectralParams(**replaced(p, means=torch.zeros(p.means.shape, dtype=torch.long)))


def test_negative_means_are_rejected():
    p = random_params()
    means = p.means.clone()
    means[0, 1] = -0.5
    with pytest.raises(ValueError, match=r"means \(frequencies\) must be >= 0; min is -0\.5"):
        SpectralParams(**replaced(p, means=means))


@pytest.mark.parametrize("value", [0.0, -1.0])
def test_non_positive_scales_are_rejected(value):
    p = random_params()
    scales = p.scales.clone()
    scales[1, 2] = value
    with pytest.raises(ValueError, match=r"scales must be > 0"):
        SpectralParams(**replaced(p, scales=scales))


def test_weights_must_sum_to_one():
    p = random_params(d=2, q=3)
    weights = p.weights.clone()
    weights[1] *= 1.1
    with pytest.raises(ValueError, match=r"weights must sum to 1 .* largest deviation is 0\.1"):
        SpectralParams(**replaced(p, weights=weights))


def test_negative_weights_are_rejected_even_when_they_sum_to_one():
    p = random_params(d=1, q=2)
    weights = torch.tensor([[1.25, -0.25]], dtype=p.dtype)
    with pytest.raises(ValueError, match=r"weights must be >= 0; min is -0\.25"):
        SpectralParams(**replaced(p, weights=weights))


@pytest.mark.parametrize("value", [0.0, -2.0])
def test_non_positive_outputscale_is_rejected(value):
    p = random_params(batch=(2,))
    os = torch.tensor([1.0, value], dtype=p.dtype)
    with pytest.raises(ValueError, match=r"outputscale must be > 0"):
        SpectralParams(**replaced(p, outputscale=os))


def test_negative_noise_is_rejected():
    p = random_params(batch=(2,))
    with pytest.raises(ValueError, match=r"noise must be >= 0; min is -0\.001"):
        SpectralParams(**replaced(p, noise=torch.tensor([0.1, -1e-3], dtype=p.dtype)))


def test_validate_false_skips_checks():
    p = random_params()
    bad = replaced(p, scales=-p.scales, weights=2 * p.weights)
    q = SpectralParams(**bad, validate=False)
    assert torch.equal(q.scales, -p.scales)


# ---------------------------------------------------------------------------- batch handling
def test_indexing_matches_tensor_indexing():
    p = random_params(batch=(3, 4), d=2, q=5)
    q = p[1]
    assert q.batch_shape == torch.Size([4])
    for k in FIELD_NAMES:
        assert torch.equal(getattr(q, k), getattr(p, k)[1])
    r = p[:, 2]
    assert r.batch_shape == torch.Size([3])
    assert torch.equal(r.weights, p.weights[:, 2])
    assert torch.equal(r.outputscale, p.outputscale[:, 2])
    s = p[1, -1]
    assert s.batch_shape == torch.Size([])
    assert torch.equal(s.scales, p.scales[1, -1])
    assert torch.equal(s.noise, p.noise[1, -1])
    t = p[torch.tensor([0, 2])]
    assert t.batch_shape == torch.Size([2, 4])
    assert torch.equal(t.means, p.means[[0, 2]])


def test_indexing_unbatched_raises():
    with pytest.raises(IndexError, match="without batch dimensions"):
        random_params()[0]


def test_stack_then_index_round_trip():
    items = [random_params(batch=(2,), seed=s) for s in range(3)]
    stacked = SpectralParams.stack(items)
    assert stacked.batch_shape == torch.Size([3, 2])
    for i, item in enumerate(items):
        assert stacked[i].allclose(item, rtol=0, atol=0)
    last = SpectralParams.stack(items, dim=-1)
    assert last.batch_shape == torch.Size([2, 3])
    assert last.weights.shape == torch.Size([2, 3, 2, 3])
    for i, item in enumerate(items):
        assert last[:, i].allclose(item, rtol=0, atol=0)


def test_stack_validates_and_rejects_empty():
    with pytest.raises(ValueError, match="at least one element"):
        SpectralParams.stack([])
    with pytest.raises(RuntimeError):  # torch.stack: different Q
        SpectralParams.stack([random_params(q=2), random_params(q=3)])


def test_expand():
    p = random_params(d=2, q=3)
    for e in (p.expand(4, 5), p.expand(torch.Size([4, 5])), p.expand((4, 5))):
        assert e.batch_shape == torch.Size([4, 5])
        assert e.weights.shape == torch.Size([4, 5, 2, 3])
        assert e.noise.shape == torch.Size([4, 5])
        assert e[3, 1].allclose(p, rtol=0, atol=0)
    b = random_params(batch=(1,))
    assert b.expand(6).batch_shape == torch.Size([6])


def test_to_dtype_detach_clone():
    p = random_params(batch=(2,))
    f = p.to(torch.float32)
    assert all(v.dtype == torch.float32 for v in fields_of(f).values())
    assert f.allclose(p, rtol=1e-6)
    back = f.to(dtype=torch.float64)
    assert back.dtype == torch.float64
    c = p.clone()
    c.weights[0, 0, 0] = 0.123
    assert p.weights[0, 0, 0] != 0.123
    g = SpectralParams(**{k: v.clone().requires_grad_() for k, v in fields_of(p).items()})
    assert not any(v.requires_grad for v in fields_of(g.detach()).values())


def test_pad_mixtures():
    p = random_params(batch=(2,), d=3, q=2)
    padded = p.pad_mixtures(5)
    assert padded.num_mixtures == 5 and padded.batch_shape == p.batch_shape
    assert torch.equal(padded.weights[..., :2], p.weights)
    assert torch.equal(padded.weights[..., 2:], torch.zeros(2, 3, 3, dtype=p.dtype))
    assert torch.equal(padded.means[..., 2:], torch.zeros(2, 3, 3, dtype=p.dtype))
    assert torch.equal(padded.scales[..., 2:], torch.ones(2, 3, 3, dtype=p.dtype))
    assert torch.equal(padded.outputscale, p.outputscale)
    SpectralParams(**fields_of(padded))  # still valid: zero weights, unit scales
    assert p.pad_mixtures(2) is p
    with pytest.raises(ValueError, match="Cannot pad 2 mixtures down to 1"):
        p.pad_mixtures(1)


def test_pad_mixtures_leaves_the_kernel_unchanged():
    from pfn_kernels.kernels import spectral_mixture_covariance

    p = random_params(d=2, q=2)
    padded = p.pad_mixtures(4)
    x = torch.rand(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    k = spectral_mixture_covariance(x, x, p.weights, p.means, p.scales, p.outputscale)
    k_pad = spectral_mixture_covariance(
        x, x, padded.weights, padded.means, padded.scales, padded.outputscale
    )
    torch.testing.assert_close(k_pad, k, rtol=0, atol=1e-15)


# ---------------------------------------------------------------------------- serialization
def test_to_dict_from_dict_round_trip_through_json():
    p = random_params(batch=(2,), d=3, q=4)
    data = json.loads(json.dumps(p.to_dict()))
    assert set(data) == set(FIELD_NAMES)
    q = SpectralParams.from_dict(data, dtype=torch.float64)
    assert q.dtype == torch.float64
    assert q.allclose(p, rtol=0, atol=0)  # float64 -> Python float -> float64 is exact
    f = SpectralParams.from_dict(data)
    assert f.dtype == torch.get_default_dtype()
    assert f.allclose(p, rtol=1e-6)


def test_from_dict_validates():
    data = random_params().to_dict()
    data["noise"] = -1.0
    with pytest.raises(ValueError, match="noise must be >= 0"):
        SpectralParams.from_dict(data)


def test_allclose_detects_differences():
    p = random_params()
    q = p.clone()
    assert p.allclose(q)
    q.means[0, 0] += 1e-3
    assert not p.allclose(q)
    assert p.allclose(q, atol=1e-2)
