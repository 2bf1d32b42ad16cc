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
