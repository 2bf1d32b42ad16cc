"""decode_spectral_params: the whole path from data to hyperparameters, with any decoder."""

import math

import pytest
import torch

from decoders import SMALL
from pfn_kernels import AmortizedSpectralKernel, SpectralParams
from pfn_kernels.inference import InferenceConfig, decode_spectral_params
from pfn_kernels.inference.calibration import calibrate
from pfn_kernels.inference.evidence import evidence_check
from pfn_kernels.inference.outputscale import gls_mean, gls_mean_and_outputscale, profile_outputscale
from pfn_kernels.spectral_params import SpectralEstimate


def _data(*batch, n=20, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(*batch, n, d, generator=g)
    y = torch.sin(6 * X[..., 0]) + 0.1 * torch.randn(*batch, n, generator=g)
    return X, (y - y.mean(-1, keepdim=True)) / y.std(-1, keepdim=True)


@pytest.mark.parametrize("batch", [(), (2,), (2, 3)])
@pytest.mark.parametrize("d", [1, 4])
def test_output_shapes_and_constraints(small_decoder, batch, d):
    X, y = _data(*batch, d=d)
    p = decode_spectral_params(X, y, small_decoder)
    assert p.batch_shape == torch.Size(batch)
    assert p.weights.shape == (*batch, d, SMALL.num_components)
    SpectralParams(p.weights, p.means, p.scales, p.outputscale, p.noise)  # validates
    ratio = p.noise / p.outputscale
    assert (ratio >= SMALL.min_noise_ratio * (1 - 1e-3)).all()
    assert (ratio <= SMALL.max_noise_ratio * (1 + 1e-3)).all()
    assert (p.means <= SMALL.max_frequency * (1 + 1e-4)).all()


def test_the_stages_in_order(small_decoder):
    """Network, evidence check, calibration, GLS mean, profile outputscale of the residual,
    noise = outputscale * ratio: nothing else."""
    X, y = _data(2, n=30, d=2, seed=1)
    with torch.no_grad():
        est = small_decoder(X, y)
        checked, _ = evidence_check(X, y, est)
        cal = calibrate(X, y, checked)
        mean, os = gls_mean_and_outputscale(X, y, cal)
        # the one-factorization stage agrees with the two separate estimators
        torch.testing.assert_close(mean, gls_mean(X, y, cal), rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(os, profile_outputscale(X, y, cal, mean=mean), rtol=1e-5, atol=1e-7)
    p = decode_spectral_params(X, y, small_decoder)
    assert torch.equal(p.means, cal.means) and torch.equal(p.scales, cal.scales)
    assert torch.equal(p.weights, checked.weights) and torch.equal(p.outputscale, os)
    assert torch.equal(p.noise, os * cal.log_noise_ratio.exp())
    assert torch.equal(p.constant_mean, mean)
    off = decode_spectral_params(X, y, small_decoder, InferenceConfig(calibrate=False, evidence_check=False))
    assert torch.equal(off.means, est.means) and torch.equal(off.scales, est.scales)
    predicted = decode_spectral_params(
        X, y, small_decoder, InferenceConfig(calibrate=False, outputscale_mode="predicted")
    )
    assert torch.equal(predicted.outputscale, est.log_outputscale.exp())


def test_multi_realization_beyond_the_calibration_subsample(small_decoder):
    # n above max_calibration_points and max_profile_points: both subsample along n, not along M.
    config = InferenceConfig(max_calibration_points=32, max_profile_points=40)
    X, y = _data(n=90, d=2)
    one = decode_spectral_params(X, y, small_decoder, config)
    column = decode_spectral_params(X, y[:, None], small_decoder, config)
    several = decode_spectral_params(X, torch.stack([y, -y], dim=-1), small_decoder, config)
    for f in ("weights", "means", "scales", "outputscale", "noise"):
        torch.testing.assert_close(getattr(column, f), getattr(one, f))
    assert several.weights.shape == one.weights.shape


def test_dtype_follows_input(small_decoder):
    X, y = _data(d=2)
    p32, p64 = decode_spectral_params(X, y, small_decoder), decode_spectral_params(X.double(), y.double(), small_decoder)
    assert p32.weights.dtype == torch.float32 and p64.weights.dtype == torch.float64
    torch.testing.assert_close(p32.means, p64.means.float(), atol=1e-5, rtol=1e-5)


def test_batch_matches_single(small_decoder):
    X, y = _data(3, n=25, d=2)
    pb = decode_spectral_params(X, y, small_decoder)
    p1 = decode_spectral_params(X[1], y[1], small_decoder)
    torch.testing.assert_close(pb.means[1], p1.means, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pb.outputscale[1], p1.outputscale, rtol=1e-4, atol=0)


@pytest.mark.parametrize(
    "X, y, match",
    [
        (torch.rand(10), torch.randn(10), "shape"),
        (torch.rand(10, 2), torch.randn(9), "shape"),
        (torch.rand(10, 2), torch.full((10,), math.nan), "non-finite"),
        (torch.rand(10, 2).index_fill(0, torch.tensor([3]), math.inf), torch.randn(10), "non-finite"),
    ],
)
def test_clear_errors(small_decoder, X, y, match):
    with pytest.raises(ValueError, match=match):
        decode_spectral_params(X, y, small_decoder)


def test_decoded_params_fill_kernel(small_decoder):
    X, y = _data(n=30, d=2)
    p = decode_spectral_params(X, y, small_decoder)
    k = AmortizedSpectralKernel()
    k.set_spectral_params(p)
    K = k(X).to_dense().detach()
    torch.testing.assert_close(K.diagonal(), p.outputscale.expand(30), rtol=1e-4, atol=0)


def test_config_is_validated_and_round_trips():
    config = InferenceConfig(calibrate=False, calibration_sweeps=1, max_context=64)
    assert InferenceConfig.from_dict(config.to_dict()) == config
    assert InferenceConfig.coerce(config.to_dict()) == config and InferenceConfig.coerce(None) is None
    with pytest.raises(ValueError, match="calibration_sweeps"):
        InferenceConfig(calibration_sweeps=-1)
    with pytest.raises(ValueError, match="outputscale_mode"):
        InferenceConfig(outputscale_mode="fitted")
    with pytest.raises(ValueError, match="max_context"):
        InferenceConfig(max_context=0)
    with pytest.raises(ValueError, match="Unknown InferenceConfig options"):
        InferenceConfig.from_dict({"calibrat": False})
    with pytest.raises(TypeError, match="InferenceConfig"):
        InferenceConfig.coerce(3)


class FixedDecoder:
    """A decoder that is no network: it returns one fixed kernel whatever the data."""

    def __init__(self, d: int) -> None:
        self.d = d

    def __call__(self, X: torch.Tensor, y: torch.Tensor) -> SpectralParams:
        shape = (*X.shape[:-2], self.d, 2)
        one = torch.ones(X.shape[:-2], dtype=X.dtype)
        return SpectralParams(
            weights=torch.full(shape, 0.5, dtype=X.dtype),
            means=torch.tensor([0.0, 2.0], dtype=X.dtype).expand(shape),
            scales=torch.full(shape, 0.4, dtype=X.dtype),
            outputscale=2.0 * one, noise=0.02 * one,
        )


def test_any_decoder_as_it_is_or_through_the_stages():
    X, y = _data(n=40, d=2, seed=2)
    decoder = FixedDecoder(2)
    plain = decode_spectral_params(X, y, decoder)  # no config: the callable's output as it is
    assert torch.equal(plain.means, decoder(X, y).means) and float(plain.noise) == pytest.approx(0.02)
    staged = decode_spectral_params(X, y, decoder, InferenceConfig(evidence_check=False, sparsify=False, mean_mode="sample"))
    # the estimate it reads: noise as a ratio to the outputscale, the outputscale as the guess
    est = SpectralEstimate.from_params(decoder(X[None], y[None]))
    cal = calibrate(X[None], y[None], est)
    torch.testing.assert_close(staged.means, cal.means[0])
    torch.testing.assert_close(staged.outputscale, profile_outputscale(X[None], y[None], cal)[0])
    assert not torch.equal(staged.means, plain.means)  # the calibration moved something here


def test_new_config_options_are_validated_and_round_trip():
    config = InferenceConfig(calibration_steps=[0.5, 2.0], calibration_prior_std=1.0,
                             evidence_check=True, mean_mode="gls", outputscale_prior_count=4.0)
    assert config.calibration_steps == (0.5, 2.0)
    assert InferenceConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="mean_mode"):
        InferenceConfig(mean_mode="median")
    with pytest.raises(ValueError, match="calibration_steps"):
        InferenceConfig(calibration_steps=(0.0, 2.0))
    with pytest.raises(ValueError, match="outputscale_prior_count"):
        InferenceConfig(outputscale_prior_count=-1.0)
