"""Tests for :class:`pfn_kernels.AmortizedSingleTaskGP` inside BoTorch.

A tiny, freshly initialized decoder stands in for the pretrained weights; it is passed explicitly.
"""

from __future__ import annotations

import copy
import doctest

import pytest
import torch
from botorch.acquisition.logei import qLogNoisyExpectedImprovement
from botorch.exceptions.warnings import InputDataWarning
from botorch.fit import fit_gpytorch_mll
from botorch.models import ModelListGP, SingleTaskGP
from botorch.models.transforms.input import Normalize
from botorch.models.transforms.outcome import Standardize
from botorch.optim import optimize_acqf
from botorch.sampling import SobolQMCNormalSampler
from gpytorch.likelihoods import FixedNoiseGaussianLikelihood
from gpytorch.mlls import ExactMarginalLogLikelihood, SumMarginalLogLikelihood

import pfn_kernels.models.amortized_gp as model_module
from pfn_kernels import AmortizedSingleTaskGP, AmortizedSpectralKernel, SpectralParams
from pfn_kernels.network import DecoderConfig, SpectralDecoder
from pfn_kernels.fit import model_spectral_params
from pfn_kernels.inference import decode_spectral_params


@pytest.fixture(scope="module")
def decoder(tiny_decoder) -> SpectralDecoder:
    return tiny_decoder  # tests/conftest.py


class CountingDecoder:
    """Wraps a decoder and records the shapes of every call."""

    def __init__(self, decoder: SpectralDecoder) -> None:
        self.decoder = decoder
        self.calls: list[tuple[torch.Size, torch.Size]] = []

    def __call__(self, X: torch.Tensor, y: torch.Tensor) -> SpectralParams:
        self.calls.append((X.shape, y.shape))
        return decode_spectral_params(X, y, self.decoder)


def toy_data(n=20, d=2, m=1, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    X = 5 * torch.rand(n, d, generator=g, dtype=dtype) - 1
    cols = [torch.sin((k + 1) * X[:, :1]) + 0.2 * X[:, 1:2] ** 2 for k in range(m)]
    return X, torch.cat(cols, -1) + 0.05 * torch.randn(n, m, generator=g, dtype=dtype)


def fit(model):
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    assert fit_gpytorch_mll(mll) is mll
    return mll


def decoded(decoder, model) -> SpectralParams:
    """One decoder pass on the model's normalized inputs and standardized targets."""
    model.train()
    X = model.transform_inputs(model.train_inputs[0])
    with torch.no_grad():
        params = decode_spectral_params(X, model.train_targets, decoder)
    model.eval()
    return params


# ---------------------------------------------------------------------- construction
def test_defaults_and_decoder_not_a_submodule(decoder):
    X, Y = toy_data()
    model = AmortizedSingleTaskGP(X, Y, decoder=decoder)
    assert isinstance(model, SingleTaskGP)
    assert isinstance(model.covar_module, AmortizedSpectralKernel)
    assert model.covar_module.ard_num_dims == 2 and model.covar_module.batch_shape == ()
    assert isinstance(model.input_transform, Normalize)
    assert isinstance(model.outcome_transform, Standardize)
    assert model.decoder is decoder
    assert not any(m is decoder for m in model.modules())
    decoder_ids = {id(p) for p in decoder.parameters()}
    assert not any(id(p) in decoder_ids for p in model.parameters())
    assert not any(k.startswith("decoder") or "_decoder" in k for k in model.state_dict())
    other = SpectralDecoder(DecoderConfig(width=16, num_heads=2, num_layers=1, num_bins=8))
    model.decoder = other  # assignment keeps it out of the submodules as well
    assert model.decoder is other and not any(m is other for m in model.modules())
    # Unfitted, the model is usable (default spectrum), as an unfitted SingleTaskGP is.
    assert model.posterior(X[:3]).mean.shape == (3, 1)
    # Copies (BoTorch's fantasy models deep-copy the GP) share the decoder, not clone it.
    assert copy.deepcopy(model).decoder is other


def test_fantasize(decoder):
    X, Y = toy_data()
    model = AmortizedSingleTaskGP(X, Y, decoder=decoder)
    fit(model)
    fantasy = model.fantasize(X[:2] + 0.1, SobolQMCNormalSampler(torch.Size([3])))
    assert fantasy.decoder is decoder
    assert fantasy.posterior(X[:4]).mean.shape == (3, 4, 1)


def test_transforms_can_be_disabled(decoder):
    X, Y = toy_data()
    model = AmortizedSingleTaskGP(X.clamp(0, 1), Y, decoder=decoder, input_transform=None,
                                  outcome_transform=None)
    assert not hasattr(model, "input_transform") and not hasattr(model, "outcome_transform")
    fit(model)
    assert model.posterior(X[:4].clamp(0, 1)).mean.shape == (4, 1)


def test_num_mixtures(decoder):
    X, Y = toy_data()
    base = AmortizedSingleTaskGP(X, Y, decoder=decoder)
    padded = AmortizedSingleTaskGP(X, Y, decoder=decoder, num_mixtures=6)
    fit(base), fit(padded)
    assert padded.covar_module.spectral_params.num_mixtures == 6
    Xt = torch.rand(5, 2, dtype=X.dtype)
    assert torch.allclose(base.posterior(Xt).mean, padded.posterior(Xt).mean, atol=1e-8)
    with pytest.raises(ValueError, match="num_mixtures"):
        fit(AmortizedSingleTaskGP(X, Y, decoder=decoder, num_mixtures=2))
    with pytest.raises(ValueError, match="num_mixtures"):
        AmortizedSingleTaskGP(X, Y, decoder=decoder, num_mixtures=0)


# ---------------------------------------------------------------------- fitting
def test_fit_gpytorch_mll_calls_custom_fit_without_optimizing(decoder, monkeypatch):
    import botorch.fit

    def no_optimizer(*args, **kwargs):
        raise AssertionError("fit_gpytorch_mll ran an MLL optimization")

    monkeypatch.setattr(botorch.fit, "_fit_fallback", no_optimizer)
    X, Y = toy_data()
    model = AmortizedSingleTaskGP(X, Y, decoder=decoder)
    mll = fit(model)
    assert not mll.training and not model.training
    expected = decoded(decoder, model)
    got = model_spectral_params(model).detach()
    for f in ("weights", "means", "scales", "outputscale"):
        torch.testing.assert_close(getattr(got, f), getattr(expected, f), rtol=1e-4, atol=1e-6)
    assert torch.allclose(model.likelihood.noise.squeeze(), expected.noise.clamp_min(1e-4),
                          rtol=2e-2)


def test_fit_is_fast(decoder):
    """One decoder pass per fit (timings live in benchmarks/): a batched pass for m outputs."""
    X, Y = toy_data(m=3)
    counting = CountingDecoder(decoder)
    model = AmortizedSingleTaskGP(X, Y, decoder=counting)
    fit(model)
    assert counting.calls == [(torch.Size([3, 20, 2]), torch.Size([3, 20]))]
    fit(model)
    assert len(counting.calls) == 2


def test_multi_output_matches_separate_models(decoder):
    X, Y = toy_data(m=2)
    joint = AmortizedSingleTaskGP(X, Y, decoder=decoder)
    fit(joint)
    assert joint.covar_module.batch_shape == (2,)
    Xt = 4 * torch.rand(6, 2, dtype=X.dtype)
    post = joint.posterior(Xt)
    assert post.mean.shape == (6, 2)
    for k in range(2):
        single = AmortizedSingleTaskGP(X, Y[:, k : k + 1], decoder=decoder)
        fit(single)
        assert single.covar_module.spectral_params.detach().allclose(
            joint.covar_module.spectral_params.detach()[k], rtol=1e-4, atol=1e-5
        )
        assert torch.allclose(single.posterior(Xt).mean.squeeze(-1), post.mean[:, k], atol=1e-4)


def test_model_list_through_fit_gpytorch_mll(decoder):
    X, Y = toy_data(m=2)
    counting = CountingDecoder(decoder)
    models = [AmortizedSingleTaskGP(X, Y[:, k : k + 1], decoder=counting) for k in range(2)]
    model = ModelListGP(*models)
    mll = SumMarginalLogLikelihood(model.likelihood, model)
    fit_gpytorch_mll(mll)
    assert len(counting.calls) == 2 and not model.training
    assert model.posterior(X[:5]).mean.shape == (5, 2)


def test_known_noise_is_kept(decoder):
    X, Y = toy_data()
    Yvar = torch.full_like(Y, 0.02)
    model = AmortizedSingleTaskGP(X, Y, Yvar, decoder=decoder)
    assert isinstance(model.likelihood, FixedNoiseGaussianLikelihood)
    noise = model.likelihood.noise.clone()  # standardized units
    fit(model)
    assert torch.equal(model.likelihood.noise, noise)
    got, expected = model_spectral_params(model).detach(), decoded(decoder, model)
    for f in ("weights", "means", "scales", "outputscale"):  # the kernel is the decoder's
        torch.testing.assert_close(getattr(got, f), getattr(expected, f), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(got.noise, noise.mean(-1).squeeze())  # the noise is the user's
    assert torch.isfinite(model.posterior(X[:3], observation_noise=True).variance).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes(decoder, dtype):
    X, Y = toy_data(dtype=dtype)
    if dtype == torch.float32:  # BoTorch recommends float64 and says so; float32 must work too
        with pytest.warns(InputDataWarning, match="double precision"):
            model = AmortizedSingleTaskGP(X, Y, decoder=decoder)
    else:
        model = AmortizedSingleTaskGP(X, Y, decoder=decoder)
    fit(model)
    assert all(p.dtype == dtype for p in model.parameters())
    post = model.posterior(X[:4])
    assert post.mean.dtype == dtype and torch.isfinite(post.variance).all()


@pytest.mark.parametrize("m", [1, 2])
def test_state_dict_round_trip(decoder, m):
    X, Y = toy_data(m=m)
    model = AmortizedSingleTaskGP(X, Y, decoder=decoder)
    fit(model)
    fresh = AmortizedSingleTaskGP(X, Y, decoder=CountingDecoder(decoder))
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    assert fresh.decoder.calls == []  # no refit
    Xt = 4 * torch.rand(7, 2, dtype=X.dtype)
    a, b = model.posterior(Xt), fresh.posterior(Xt)
    # Identical up to rounding (the same state; batched linear algebra may differ by an ulp).
    assert torch.allclose(a.mean, b.mean, rtol=0, atol=1e-12)
    assert torch.allclose(a.variance, b.variance, rtol=0, atol=1e-12)


def test_refine_through_fit_gpytorch_mll(decoder):
    X, Y = toy_data(n=30)
    model = AmortizedSingleTaskGP(X, Y, decoder=decoder)
    mll = fit(model)

    def value():
        model.train()
        with torch.no_grad():
            out = mll(model(*model.train_inputs), model.train_targets).item()
        model.eval()
        return out

    before = value()
    assert fit_gpytorch_mll(mll, refine=True, refine_steps=10) is mll
    assert not mll.training and value() > before
    fit(model)
    assert value() == pytest.approx(before, abs=1e-10)


def test_botorch_loop(decoder):
    """Three rounds of qLogNEI on a 2D function, fitted by fit_gpytorch_mll each round."""

    def objective(X):  # maximum near (0.7, 0.3) of the box [-1, 2] x [0, 1]
        return -((X[..., 0] - 0.7) ** 2) - 2 * (X[..., 1] - 0.3) ** 2 + 0.1 * torch.sin(5 * X[..., 0])

    bounds = torch.tensor([[-1.0, 0.0], [2.0, 1.0]], dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    X = bounds[0] + (bounds[1] - bounds[0]) * torch.rand(6, 2, generator=g, dtype=torch.float64)
    Y = objective(X).unsqueeze(-1)
    counting = CountingDecoder(decoder)
    for _ in range(3):
        model = AmortizedSingleTaskGP(X, Y, decoder=counting)
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        acqf = qLogNoisyExpectedImprovement(model, X_baseline=X)
        candidate, value = optimize_acqf(acqf, bounds=bounds, q=2, num_restarts=2, raw_samples=32)
        assert candidate.shape == (2, 2) and torch.isfinite(value)
        # the optimizer did its job on this model: no random batch of 2 scores higher
        random_batches = bounds[0] + (bounds[1] - bounds[0]) * torch.rand(16, 2, 2, generator=g, dtype=torch.float64)
        with torch.no_grad():
            assert value >= acqf(random_batches).max() - 1e-9
        X = torch.cat([X, candidate])
        Y = torch.cat([Y, objective(candidate).unsqueeze(-1)])
    assert len(counting.calls) == 3 and X.shape == (12, 2)


def test_doctest_examples():
    failures, _ = doctest.testmod(model_module, optionflags=doctest.ELLIPSIS)
    assert failures == 0
