import math

import pytest
import torch

from pfn_kernels import AmortizedSpectralKernel, SpectralParams
from pfn_kernels.network import DecoderConfig, SpectralDecoder, WeightsError, load_decoder, save_decoder

SMALL = DecoderConfig(width=32, num_heads=4, num_layers=2, num_bins=12)


@pytest.fixture(scope="module")
def decoder():
    torch.manual_seed(0)
    return SpectralDecoder(SMALL).eval()


def _data(*batch, n=20, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(*batch, n, d, generator=g)
    y = torch.sin(6 * X[..., 0]) + 0.1 * torch.randn(*batch, n, generator=g)
    return X, (y - y.mean(-1, keepdim=True)) / y.std(-1, keepdim=True)


@pytest.mark.parametrize("batch", [(), (2,), (2, 3)])
@pytest.mark.parametrize("d", [1, 4])
def test_output_shapes_and_constraints(decoder, batch, d):
    X, y = _data(*batch, d=d)
    with torch.no_grad():
        p = decoder(X, y)
    assert p.batch_shape == torch.Size(batch)
    assert p.weights.shape == (*batch, d, SMALL.num_components)
    SpectralParams(p.weights, p.means, p.scales, p.outputscale, p.noise)  # validates
    assert (p.noise > 0).all() and (p.outputscale > 0).all()
    assert (p.means <= SMALL.max_frequency + 1e-4).all()


def test_multi_realization_shape(decoder):
    X, _ = _data(n=15, d=2)
    Y = torch.randn(15, 5)
    with torch.no_grad():
        p = decoder(X, Y)
    assert p.batch_shape == torch.Size([]) and p.weights.shape == (2, SMALL.num_components)


def test_multi_realization_beyond_the_calibration_subsample(decoder):
    # n above max_calibration_points and max_profile_points: both subsample along n, not along M.
    n = max(SMALL.max_calibration_points, SMALL.max_profile_points) + 50
    X, y = _data(n=n, d=2)
    with torch.no_grad():
        one, column = decoder(X, y), decoder(X, y[:, None])
        several = decoder(X, torch.stack([y, -y], dim=-1))
    for f in ("weights", "means", "scales", "outputscale", "noise"):
        torch.testing.assert_close(getattr(column, f), getattr(one, f))
    assert several.weights.shape == one.weights.shape


def test_dtype_follows_input(decoder):
    X, y = _data(d=2)
    with torch.no_grad():
        p32, p64 = decoder(X, y), decoder(X.double(), y.double())
    assert p32.weights.dtype == torch.float32 and p64.weights.dtype == torch.float64
    assert torch.allclose(p32.means, p64.means.float(), atol=1e-5)


def test_deterministic_on_cpu(decoder):
    X, y = _data(n=40, d=3)
    with torch.no_grad():
        a, b = decoder(X, y), decoder(X, y)
    for f in ("weights", "means", "scales", "outputscale", "noise"):
        assert torch.equal(getattr(a, f), getattr(b, f))


def test_batch_matches_single(decoder):
    X, y = _data(3, n=25, d=2)
    with torch.no_grad():
        pb = decoder(X, y)
        p1 = decoder(X[1], y[1])
    assert torch.allclose(pb.means[1], p1.means, atol=1e-5)
    assert torch.allclose(pb.outputscale[1], p1.outputscale, rtol=1e-4)


def test_scan_attention_equals_full():
    torch.manual_seed(0)
    full = SpectralDecoder(DecoderConfig(width=32, num_layers=2, attention="full")).eval()
    scan = SpectralDecoder(DecoderConfig(width=32, num_layers=2, attention="scan", scan_block_size=16)).eval()
    scan.load_state_dict(full.state_dict())
    X, y = _data(n=50, d=2)
    with torch.no_grad():
        a, b = full(X, y), scan(X, y)
    assert torch.allclose(a.means, b.means, atol=1e-5) and torch.allclose(a.weights, b.weights, atol=1e-5)


def test_linear_attention_runs_at_large_n():
    dec = SpectralDecoder(DecoderConfig(width=32, num_layers=2, attention="linear", max_context=3000)).eval()
    X, y = _data(n=3000, d=2)
    with torch.no_grad():
        p = dec(X, y)
    assert torch.isfinite(p.means).all() and torch.isfinite(p.outputscale).all()


@pytest.mark.parametrize(
    "X, y, match",
    [
        (torch.rand(10), torch.randn(10), "shape"),
        (torch.rand(10, 2), torch.randn(9), "shape"),
        (torch.rand(10, 2), torch.full((10,), math.nan), "non-finite"),
        (torch.rand(10, 2).index_fill(0, torch.tensor([3]), math.inf), torch.randn(10), "non-finite"),
    ],
)
def test_clear_errors(decoder, X, y, match):
    with pytest.raises(ValueError, match=match):
        decoder(X, y)


def test_decoded_params_fill_kernel(decoder):
    X, y = _data(n=30, d=2)
    with torch.no_grad():
        p = decoder(X, y)
    k = AmortizedSpectralKernel()
    k.set_spectral_params(p)
    K = k(X).to_dense().detach()
    assert torch.allclose(K.diagonal(), p.outputscale.expand(30), rtol=1e-4)


def test_weights_round_trip(decoder, tmp_path):
    path = save_decoder(decoder, tmp_path / "w.safetensors", card={"steps": 0})
    loaded = load_decoder(path)
    X, y = _data(n=20, d=2)
    with torch.no_grad():
        assert torch.equal(decoder(X, y).means, loaded(X, y).means)
    assert (tmp_path / "w.json").is_file()


def test_corrupt_missing_and_mismatched_weights(decoder, tmp_path):
    with pytest.raises(WeightsError, match="No decoder weights"):
        load_decoder(tmp_path / "missing.safetensors")
    path = save_decoder(decoder, tmp_path / "w.safetensors")
    data = path.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="corrupt or truncated"):
        load_decoder(tmp_path / "trunc.safetensors")
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError):
        load_decoder(tmp_path / "garbage.safetensors")
    # wrong architecture: weights of a smaller model under a bigger config
    from safetensors.torch import load_file, save_file
    import json

    state = load_file(str(path))
    state.pop(next(iter(state)))
    save_file(state, str(tmp_path / "arch.safetensors"), metadata={"config": json.dumps(SMALL.to_dict())})
    with pytest.raises(WeightsError, match="does not match"):
        load_decoder(tmp_path / "arch.safetensors")


# ---------------------------------------------------------------------- calibration
def _profile(decoder, X, y, out):
    from pfn_kernels.bochner import spectral_mixture_covariance

    k = spectral_mixture_covariance(X, X, out.weights, out.means, out.scales)
    return decoder.profile_log_likelihood(k, y, out.log_noise_ratio)


def test_profile_log_likelihood_matches_closed_form():
    """-n/2 log(y'A^-1 y / n) - 1/2 log|A| with A = K + (r + 1e-6) I."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 12, 2, generator=g, dtype=torch.float64)
    k = torch.exp(-((x.unsqueeze(-2) - x.unsqueeze(-3)) ** 2).sum(-1) / 0.1)
    y = torch.randn(1, 12, generator=g, dtype=torch.float64)
    log_r = torch.tensor([math.log(0.05)], dtype=torch.float64)
    a = k[0] + (0.05 + 1e-6) * torch.eye(12, dtype=torch.float64)
    expected = -6 * torch.log(y[0] @ torch.linalg.solve(a, y[0]) / 12) - 0.5 * torch.logdet(a)
    assert torch.allclose(SpectralDecoder.profile_log_likelihood(k, y, log_r)[0], expected)


def test_calibration_raises_profile_likelihood_and_only_dilates(decoder):
    X, y = _data(4, n=30, d=3, seed=3)
    with torch.no_grad():
        out = decoder.decode(X, y)
        cal = decoder.calibrate(X, y, out)
        before, after = _profile(decoder, X, y, out), _profile(decoder, X, y, cal)
    assert (after >= before - 1e-9).all()
    assert torch.equal(cal.weights, out.weights)
    r = (cal.log_noise_ratio - out.log_noise_ratio).exp()  # a product of CALIBRATION_NOISE factors
    assert (r >= 0.1 ** (1 + SMALL.calibration_sweeps) * (1 - 1e-4)).all()
    assert (r <= 10.0 ** (1 + SMALL.calibration_sweeps) * (1 + 1e-4)).all()
    assert (cal.log_noise_ratio.exp() >= SMALL.min_noise_ratio * (1 - 1e-4)).all()
    assert (cal.log_noise_ratio.exp() <= SMALL.max_noise_ratio * (1 + 1e-4)).all()
    # one factor per (task, dimension) multiplies every component's mean and bandwidth
    ratio = cal.scales / out.scales
    assert torch.allclose(ratio, ratio[..., :1].expand_as(ratio), rtol=1e-4)
    lo, hi = 0.5 * 0.7**SMALL.calibration_sweeps, 2.0 * 1.4**SMALL.calibration_sweeps
    assert (ratio >= lo * (1 - 1e-4)).all() and (ratio <= hi * (1 + 1e-4)).all()


def test_calibration_can_be_switched_off():
    torch.manual_seed(0)
    on = SpectralDecoder(SMALL).eval()
    off = SpectralDecoder(DecoderConfig(**{**SMALL.to_dict(), "calibrate": False})).eval()
    off.load_state_dict(on.state_dict())
    X, y = _data(n=30, d=2, seed=4)
    with torch.no_grad():
        raw = off.decode(X[None], y[None])
        p = off(X, y)
    assert torch.equal(p.means, raw.means[0]) and torch.equal(p.scales, raw.scales[0])
    with pytest.raises(ValueError, match="calibration_sweeps"):
        DecoderConfig(calibration_sweeps=-1)


# ---------------------------------------------------------------------- pooling ablation
def test_mean_pooling_decoder_runs_and_round_trips(tmp_path):
    torch.manual_seed(0)
    cfg = DecoderConfig(**{**SMALL.to_dict(), "pooling": "mean"})
    dec = SpectralDecoder(cfg).eval()
    assert not hasattr(dec.pool_h, "queries")
    X, y = _data(2, n=20, d=2)
    with torch.no_grad():
        p = dec(X, y)
    assert p.weights.shape == (2, 2, SMALL.num_components)
    loaded = load_decoder(save_decoder(dec, tmp_path / "mean.safetensors"))
    assert loaded.config.pooling == "mean"
    with torch.no_grad():
        q = loaded(X, y)
    assert torch.equal(p.means, q.means)
    with pytest.raises(ValueError, match="pooling"):
        DecoderConfig(pooling="max")
