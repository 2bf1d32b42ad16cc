"""Robustness of :func:`fit_amortized` and :class:`AmortizedSingleTaskGP` on difficult data."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms.input import Normalize
from gpytorch.mlls import ExactMarginalLogLikelihood

from pfn_kernels import AmortizedSingleTaskGP, AmortizedSpectralKernel, fit_amortized
from pfn_kernels.fit import constant_target_params
from pfn_kernels.network import SpectralDecoder
from pfn_kernels.validation import DecoderWarning, OutsideUnitCubeWarning

DTYPE = torch.float64


@pytest.fixture(scope="module")
def decoder(tiny_decoder) -> SpectralDecoder:
    return tiny_decoder  # tests/conftest.py


def toy(n=20, d=2, m=1, seed=0, dtype=DTYPE, batch=()):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(*batch, n, d, generator=g, dtype=dtype)
    cols = [torch.sin(3 * (k + 1) * X[..., :1]) + X[..., 1:2] for k in range(m)]
    return X, torch.cat(cols, -1) + 0.05 * torch.randn(*batch, n, m, generator=g, dtype=dtype)


def fit(model):
    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    return model


def assert_finite_model(model, Xt):
    p = model.covar_module.spectral_params.detach()
    p.__class__(p.weights, p.means, p.scales, p.outputscale, p.noise)  # validates: finite, in range
    post = model.posterior(Xt, observation_noise=True)
    assert torch.isfinite(post.mean).all() and torch.isfinite(post.variance).all()
    assert (post.variance > 0).all()


# ---------------------------------------------------------------------- NaN / inf
@pytest.mark.parametrize("where", ["X", "Y", "Yvar"])
def test_non_finite_training_data_names_rows(decoder, where):
    X, Y = toy()
    Yvar = torch.full_like(Y, 0.01)
    {"X": X, "Y": Y, "Yvar": Yvar}[where][[2, 9]] = torch.tensor([math.nan, math.inf], dtype=DTYPE)[:, None]
    with pytest.raises(ValueError, match=rf"train_{where} has non-finite values \(NaN or inf\) in 2 of 20 rows; rows: 2, 9"):
        AmortizedSingleTaskGP(X, Y, Yvar, decoder=decoder)


def test_fit_amortized_checks_data_set_after_construction(decoder):
    """A model whose data bypassed BoTorch's checks still gets the row-naming error at fit time."""
    X, Y = toy()
    model = AmortizedSingleTaskGP(X, Y, decoder=decoder)
    X2 = X.clone()
    X2[5, 0] = math.inf
    model.set_train_data(X2, model.train_targets, strict=False)
    with pytest.raises(ValueError, match="train_X has non-finite values .* rows: 5"):
        fit_amortized(model)
    with pytest.raises(ValueError, match="train_Yvar must be >= 0"):
        AmortizedSingleTaskGP(X, Y, -torch.ones_like(Y), decoder=decoder)


# ---------------------------------------------------------------------- constant targets
@pytest.mark.parametrize("value", [0.0, 3.7, -1e6])
def test_constant_targets_use_the_fallback_kernel(decoder, value):
    X, _ = toy(n=15, d=3)
    Y = torch.full((15, 1), value, dtype=DTYPE)
    model = AmortizedSingleTaskGP(X, Y, decoder=decoder)
    with pytest.warns(DecoderWarning, match="constant"):
        fit(model)
    got = model.covar_module.spectral_params.detach()
    want = constant_target_params(15, 3, 4, dtype=DTYPE)
    assert torch.allclose(got.means, want.means.clamp_min(1e-6)) and torch.allclose(got.scales, want.scales)
    assert torch.allclose(got.weights, want.weights) and torch.allclose(got.outputscale, torch.tensor(1 / 16, dtype=DTYPE))
    assert_finite_model(model, torch.rand(6, 3, dtype=DTYPE))
    assert torch.allclose(model.posterior(X[:3]).mean, Y[:3], atol=1e-6)


def test_constant_fallback_is_per_output(decoder):
    X, Y = toy(m=2)
    Y[:, 1] = 5.0
    model = AmortizedSingleTaskGP(X, Y, decoder=decoder)
    with pytest.warns(DecoderWarning, match=r"constant \(1 of 2"):
        fit(model)
    p = model.covar_module.spectral_params.detach()
    assert torch.allclose(p.outputscale[1], torch.tensor(1 / 21, dtype=DTYPE))
    fallback = constant_target_params(20, 2, 4, dtype=DTYPE)
    assert not torch.allclose(p.scales[0], fallback.scales)  # the other output keeps its own kernel
    assert not torch.allclose(p.outputscale[0], torch.tensor(1 / 21, dtype=DTYPE))
    assert_finite_model(model, torch.rand(4, 2, dtype=DTYPE))


def test_rounding_noise_counts_as_constant(decoder):
    X, _ = toy(n=12)
    Y = (torch.full((12, 1), 0.1, dtype=DTYPE) + 0.2) * torch.tensor([1.0, 1 + 2e-16] * 6, dtype=DTYPE)[:, None]
    model = fit_quietly(AmortizedSingleTaskGP(X, Y, decoder=decoder))
    assert torch.allclose(model.covar_module.outputscale, torch.tensor(1 / 13, dtype=DTYPE))


def fit_quietly(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit(model)


# ---------------------------------------------------------------------- duplicates, tiny n
def test_duplicate_rows(decoder):
    X, Y = toy(n=10)
    model = fit_quietly(AmortizedSingleTaskGP(torch.cat([X, X, X]), torch.cat([Y, Y, Y + 0.01]), decoder=decoder))
    assert_finite_model(model, torch.cat([X[:3], torch.rand(3, 2, dtype=DTYPE)]))


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_and_two_points(decoder, n, dtype):
    X, Y = toy(n=n, dtype=dtype)
    model = fit_quietly(AmortizedSingleTaskGP(X, Y, decoder=decoder))
    assert_finite_model(model, torch.rand(5, 2, dtype=dtype))
    plain = SingleTaskGP(X, Y, covar_module=AmortizedSpectralKernel(), input_transform=Normalize(2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_amortized(plain, decoder=decoder)
    assert_finite_model(plain, torch.rand(5, 2, dtype=dtype))


# ---------------------------------------------------------------------- scales
@pytest.mark.parametrize("factor", [1e-12, 1e12])
def test_extreme_target_scales_give_equivalent_standardized_params(decoder, factor):
    X, Y = toy(n=25)
    base = fit(AmortizedSingleTaskGP(X, Y, decoder=decoder))
    scaled = fit(AmortizedSingleTaskGP(X, factor * Y, decoder=decoder))
    a, b = base.covar_module.spectral_params.detach(), scaled.covar_module.spectral_params.detach()
    for f in ("weights", "means", "scales", "outputscale"):
        assert torch.allclose(getattr(a, f), getattr(b, f), rtol=1e-6), f
    assert torch.allclose(base.likelihood.noise, scaled.likelihood.noise, rtol=1e-6)
    Xt = torch.rand(5, 2, dtype=DTYPE)
    pa = base.posterior(Xt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GPyTorch's variance floor, below
        pb = scaled.posterior(Xt)
    assert torch.isfinite(pb.mean).all() and torch.isfinite(pb.variance).all()
    assert torch.allclose(pb.mean / factor, pa.mean, rtol=1e-6)
    if factor > 1:  # GPyTorch floors predictive variances at 1e-10 (float64), in the targets' units
        assert torch.allclose(pb.variance / factor**2, pa.variance, rtol=1e-5)


@pytest.mark.parametrize("factor", [1e-12, 1e12])
def test_extreme_scales_without_outcome_transform(decoder, factor):
    """Without Standardize the spectrum is still scale-free; tiny targets hit the likelihood's
    noise floor (1e-4, with a warning) and the kernel's outputscale floor (1e-12)."""
    X, Y = toy(n=25)
    Y = (Y - Y.mean()) / Y.std()
    plain = lambda Y: SingleTaskGP(X, Y, covar_module=AmortizedSpectralKernel(), outcome_transform=None)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BoTorch's "not standardized" warning
        a = fit_amortized(plain(Y), decoder=decoder)
        b = plain(factor * Y)
        warnings.simplefilter("always", DecoderWarning)
        with warnings.catch_warnings(record=True) as caught:
            fit_amortized(b, decoder=decoder)
    floor_warned = any("noise lower bound" in str(w.message) for w in caught)
    assert floor_warned == (factor < 1)
    pa, pb = a.covar_module.spectral_params.detach(), b.covar_module.spectral_params.detach()
    for f in ("weights", "means", "scales"):
        assert torch.allclose(getattr(pa, f), getattr(pb, f), rtol=1e-6), f
    if factor > 1:
        assert torch.allclose(pb.outputscale / factor**2, pa.outputscale, rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = b.posterior(torch.rand(4, 2, dtype=DTYPE))
    assert torch.isfinite(post.mean).all() and torch.isfinite(post.variance).all()


# ---------------------------------------------------------------------- known noise
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_known_noise_with_duplicates(decoder, dtype):
    X, Y = toy(n=15, dtype=dtype)
    X, Y = torch.cat([X, X]), torch.cat([Y, Y])
    model = fit_quietly(AmortizedSingleTaskGP(X, Y, torch.zeros_like(Y), decoder=decoder))
    floor = 1e-4 if dtype == torch.float32 else 1e-6
    assert torch.allclose(model.likelihood.noise, torch.full_like(model.likelihood.noise, floor))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GPyTorch may round tiny negative float32 variances
        assert_finite_model(model, torch.cat([X[:3], torch.rand(3, 2, dtype=dtype)]))


# ---------------------------------------------------------------------- inputs, batches
def test_unnormalized_inputs_warn_once_with_the_fix(decoder):
    X, Y = toy()
    model = SingleTaskGP(10 * X, Y, covar_module=AmortizedSpectralKernel())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_amortized(model, decoder=decoder)
    cube = [w for w in caught if issubclass(w.category, OutsideUnitCubeWarning)]
    assert len(cube) == 1 and "Normalize(d=2)" in str(cube[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutsideUnitCubeWarning)
        fit_amortized(AmortizedSingleTaskGP(10 * X, Y, decoder=decoder))  # Normalize by default


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batched_multi_output_model(decoder, dtype):
    X, Y = toy(n=12, m=2, batch=(3,), dtype=dtype)
    Y[2, :, 1] = 1.0  # one constant output in one batch
    model = AmortizedSingleTaskGP(X, Y, decoder=decoder)
    with pytest.warns(DecoderWarning, match=r"constant \(1 of 6"):
        fit(model)
    assert model.covar_module.spectral_params.batch_shape == (3, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_finite_model(model, torch.rand(3, 4, 2, dtype=dtype))


def test_large_n_fit_is_fast(decoder):
    X, Y = toy(n=20_000, d=6)
    model = AmortizedSingleTaskGP(X, Y, decoder=decoder)
    with pytest.warns(DecoderWarning, match="subsample"):
        fit(model)
    p = model.covar_module.spectral_params.detach()
    assert all(torch.isfinite(getattr(p, f)).all() for f in ("weights", "means", "scales", "outputscale"))


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
def test_cuda_model(decoder):
    X, Y = toy()
    model = fit_quietly(AmortizedSingleTaskGP(X.cuda(), Y.cuda(), decoder=decoder))
    assert model.covar_module.raw_mixture_means.device.type == "cuda"
    assert_finite_model(model, torch.rand(4, 2, dtype=DTYPE, device="cuda"))
