"""The network alone: shapes, dtypes, determinism, attention variants, weight files."""

import pytest
import torch

from decoders import SMALL, make_decoder
from pfn_kernels.network import DecoderConfig, DecoderOutput, WeightsError, load_decoder, save_decoder


def _data(*batch, n=20, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(*batch, n, d, generator=g)
    y = torch.sin(6 * X[..., 0]) + 0.1 * torch.randn(*batch, n, generator=g)
    return X, (y - y.mean(-1, keepdim=True)) / y.std(-1, keepdim=True)


@pytest.mark.parametrize("d", [1, 4])
def test_output_shapes_and_ranges(small_decoder, d):
    X, y = _data(3, d=d)
    with torch.no_grad():
        out = small_decoder(X, y)
    assert isinstance(out, DecoderOutput)
    assert out.weights.shape == out.means.shape == out.scales.shape == (3, d, SMALL.num_components)
    assert out.log_noise_ratio.shape == out.log_outputscale.shape == (3,)
    torch.testing.assert_close(out.weights.sum(-1), torch.ones(3, d))
    assert (out.means >= 0).all() and (out.means <= SMALL.max_frequency * (1 + 1e-6)).all()
    assert (out.scales >= 1e-3 * (1 - 1e-6)).all() and (out.scales <= 30 * (1 + 1e-6)).all()
    r = out.log_noise_ratio.exp()
    assert (r >= SMALL.min_noise_ratio * (1 - 1e-5)).all() and (r <= SMALL.max_noise_ratio * (1 + 1e-5)).all()
    assert out.bins.activity_logits.shape == (3, d, SMALL.num_bins + 1)


def test_multi_realization_averages_pooled_vectors(small_decoder):
    X, y = _data(2, n=15, d=2)
    with torch.no_grad():
        one = small_decoder(X, y)
        column = small_decoder(X, y[..., None])  # M = 1: the same pass
        several = small_decoder(X, torch.stack([y, -y], dim=-1))
    torch.testing.assert_close(column.means, one.means)
    assert several.weights.shape == one.weights.shape
    assert not torch.allclose(several.log_noise_ratio, one.log_noise_ratio)


def test_deterministic_and_batch_matches_single(small_decoder):
    X, y = _data(3, n=25, d=2)
    with torch.no_grad():
        a, b = small_decoder(X, y), small_decoder(X, y)
        single = small_decoder(X[1:2], y[1:2])
    assert torch.equal(a.means, b.means) and torch.equal(a.log_noise_ratio, b.log_noise_ratio)
    torch.testing.assert_close(a.means[1:2], single.means, atol=1e-5, rtol=1e-5)


def test_scan_attention_equals_full():
    full = make_decoder(DecoderConfig(width=32, num_layers=2, attention="full"))
    scan = make_decoder(DecoderConfig(width=32, num_layers=2, attention="scan", scan_block_size=16))
    scan.load_state_dict(full.state_dict())
    X, y = _data(1, n=50, d=2)
    with torch.no_grad():
        a, b = full(X, y), scan(X, y)
    torch.testing.assert_close(a.means, b.means, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.weights, b.weights, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("batch", [1, 3])
def test_full_attention_in_dimension_chunks_is_bit_identical(monkeypatch, batch):
    """The CPU path takes dimensions (and tasks) in chunks of at most ``SCORE_CHUNK_BYTES`` of scores:
    the outputs equal those of one chunk bit for bit, the parameter gradients to float32
    rounding (autograd sums the chunks' contributions to shared weights in another order)."""
    import pfn_kernels.network.attention as attention

    decoder = make_decoder(DecoderConfig(width=32, num_layers=2))
    X, y = _data(batch, n=40, d=5)

    def run(chunk_bytes):
        monkeypatch.setattr(attention, "SCORE_CHUNK_BYTES", chunk_bytes)
        decoder.zero_grad()
        out = decoder(X, y)
        (out.means.sum() + out.log_noise_ratio.sum()).backward()
        return out, [p.grad.clone() for p in decoder.parameters() if p.grad is not None]

    whole, grads = run(1 << 40)
    # 40 x 40 scores per head: two dimensions of every task per chunk, one dimension of two
    # tasks, or one of one
    for chunk_bytes in (batch * 4 * 40 * 40 * 4 * 2, 2 * 4 * 40 * 40 * 4, 1):
        part, part_grads = run(chunk_bytes)
        for field in ("weights", "means", "scales", "log_noise_ratio", "log_outputscale"):
            assert torch.equal(getattr(part, field), getattr(whole, field)), field
        assert len(part_grads) == len(grads)
        for a, b in zip(part_grads, grads):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_linear_attention_runs_at_large_n():
    dec = make_decoder(DecoderConfig(width=32, num_layers=2, attention="linear"))
    X, y = _data(1, n=3000, d=2)
    with torch.no_grad():
        out = dec(X, y)
    assert torch.isfinite(out.means).all() and torch.isfinite(out.log_outputscale).all()


def test_linear_attention_features_are_seeded_and_saved(tmp_path):
    """A reloaded linear-attention decoder computes what it computed before it was saved."""
    cfg = DecoderConfig(width=16, num_heads=2, num_layers=2, num_bins=8, attention="linear")
    a, b = make_decoder(cfg, seed=0), make_decoder(cfg, seed=1)
    torch.testing.assert_close(a.dva[0].attn.rff, b.dva[0].attn.rff)  # the seed, not torch's RNG
    assert not torch.equal(a.dva[0].attn.rff, a.dva[1].attn.rff)  # one draw per layer
    other = make_decoder(DecoderConfig(**{**cfg.to_dict(), "random_feature_seed": 5}))
    assert not torch.equal(other.dva[0].attn.rff, a.dva[0].attn.rff)
    with torch.no_grad():
        a.dva[0].attn.rff.normal_()  # features that no fresh decoder has
    loaded = load_decoder(save_decoder(a, tmp_path / "linear.safetensors"))
    torch.testing.assert_close(loaded.dva[0].attn.rff, a.dva[0].attn.rff, rtol=0, atol=0)
    X, y = _data(1, n=40, d=2)
    with torch.no_grad():
        assert torch.equal(a(X, y).means, loaded(X, y).means)


def test_weights_round_trip(small_decoder, tmp_path):
    path = save_decoder(small_decoder, tmp_path / "w.safetensors", card={"steps": 0})
    loaded = load_decoder(path)
    X, y = _data(1, n=20, d=2)
    with torch.no_grad():
        assert torch.equal(small_decoder(X, y).means, loaded(X, y).means)
    assert (tmp_path / "w.json").is_file()


def test_corrupt_missing_and_mismatched_weights(small_decoder, tmp_path):
    with pytest.raises(WeightsError, match="No decoder weights"):
        load_decoder(tmp_path / "missing.safetensors")
    path = save_decoder(small_decoder, tmp_path / "w.safetensors")
    data = path.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="corrupt or truncated"):
        load_decoder(tmp_path / "trunc.safetensors")
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError):
        load_decoder(tmp_path / "garbage.safetensors")
    # wrong architecture: weights of a smaller model under a bigger config
    import json

    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    state.pop(next(iter(state)))
    save_file(state, str(tmp_path / "arch.safetensors"), metadata={"config": json.dumps(SMALL.to_dict())})
    with pytest.raises(WeightsError, match="does not match"):
        load_decoder(tmp_path / "arch.safetensors")


def test_mean_pooling_decoder_runs_and_round_trips(tmp_path):
    dec = make_decoder(SMALL, pooling="mean")
    assert not hasattr(dec.pool_h, "queries")
    X, y = _data(2, n=20, d=2)
    with torch.no_grad():
        out = dec(X, y)
    assert out.weights.shape == (2, 2, SMALL.num_components)
    loaded = load_decoder(save_decoder(dec, tmp_path / "mean.safetensors"))
    assert loaded.config.pooling == "mean"
    with torch.no_grad():
        assert torch.equal(out.means, loaded(X, y).means)
    with pytest.raises(ValueError, match="pooling"):
        DecoderConfig(pooling="max")
