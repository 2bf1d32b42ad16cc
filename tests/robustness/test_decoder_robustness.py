"""Robustness of the decoder pass (:func:`decode_spectral_params`): errors, warnings, bounds.

The guards sit around the network and the inference stages; for finite in-range data the public
pass must equal the bare stages (network, calibration, outputscale) bit for bit, which the first
test pins down.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from decoders import TINY
from pfn_kernels import SpectralParams
from pfn_kernels.inference import InferenceConfig, OutputRanges, decode_spectral_params
from pfn_kernels.inference.bounds import OUTPUTSCALE_RANGE
from pfn_kernels.inference.calibration import calibrate
from pfn_kernels.inference.evidence import evidence_check
from pfn_kernels.inference.outputscale import gls_mean_and_outputscale
from pfn_kernels.inference.pipeline import DEFAULT_MAX_CONTEXT, SUBSAMPLE_SEED
from pfn_kernels.network import DecoderConfig, SpectralDecoder
from pfn_kernels.network.weights import weights_path
from pfn_kernels.validation import MAX_INPUT_DIMS, DecoderWarning, OutsideUnitCubeWarning

FIELDS = ("weights", "means", "scales", "outputscale", "noise", "constant_mean")


@pytest.fixture(scope="module")
def tiny(tiny_decoder) -> SpectralDecoder:
    return tiny_decoder  # tests/conftest.py


@pytest.fixture(scope="module")
def full() -> SpectralDecoder:
    """The shipped weights if present, else the default architecture, randomly initialized."""
    if weights_path("default").is_file():
        return SpectralDecoder.pretrained()
    torch.manual_seed(0)
    return SpectralDecoder(DecoderConfig(num_layers=3)).eval()


def data(*batch, n=20, d=3, m=None, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(*batch, n, d, generator=g, dtype=dtype)
    shape = (*batch, n) if m is None else (*batch, n, m)
    y = torch.randn(shape, generator=g, dtype=dtype)
    if n > 1:
        y = (y - y.mean(len(batch), keepdim=True)) / y.std(len(batch), keepdim=True)
    return X, y


def run(decoder, X, y, config=None):
    return decode_spectral_params(X, y, decoder, config)


def bare_network(decoder, X, y):
    """The stages without any guard: network, evidence check, calibration, GLS mean, profile
    outputscale."""
    x = X.reshape(-1, *X.shape[-2:]).float()
    yy = y.reshape(-1, *y.shape[X.dim() - 2 :]).float()
    ranges = OutputRanges.of(decoder)
    with torch.no_grad():
        out, _ = evidence_check(x, yy, decoder(x, yy), ranges)
        out = calibrate(x, yy, out, ranges)
        mean, os = gls_mean_and_outputscale(x, yy, out)
    noise = os * out.log_noise_ratio.exp()
    b = X.shape[:-2]
    return [t.reshape(b + t.shape[1:]).to(X.dtype)
            for t in (out.weights, out.means, out.scales, os, noise, mean.to(os))]


def assert_in_bounds(p: SpectralParams, cfg: DecoderConfig) -> None:
    SpectralParams(p.weights, p.means, p.scales, p.outputscale, p.noise)  # validates
    for f in FIELDS:
        assert torch.isfinite(getattr(p, f)).all(), f
    assert (p.means >= 0).all() and (p.means <= cfg.max_frequency * (1 + 1e-4)).all()
    assert (p.scales >= 1e-3 * (1 - 1e-4)).all() and (p.scales <= 30 * (1 + 1e-4)).all()
    assert (p.outputscale >= OUTPUTSCALE_RANGE[0]).all() and (p.outputscale <= OUTPUTSCALE_RANGE[1]).all()
    ratio = p.noise / p.outputscale
    assert (ratio >= cfg.min_noise_ratio * (1 - 1e-3)).all() and (ratio <= cfg.max_noise_ratio * (1 + 1e-3)).all()


# ---------------------------------------------------------------------- unchanged where valid
@pytest.mark.parametrize(
    "batch, n, d, m, dtype",
    [((), 1, 1, None, torch.float32), ((), 37, 3, None, torch.float64), ((2, 3), 12, 2, None, torch.float32),
     ((), 256, 8, None, torch.float32), ((), 30, 4, 3, torch.float64)],
)
def test_guards_leave_in_range_results_bit_identical(full, batch, n, d, m, dtype):
    X, y = data(*batch, n=n, d=d, m=m, dtype=dtype)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for in-range data either
        p = run(full, X, y)
        ref = bare_network(full, X, y)
    for f, r in zip(FIELDS, ref):
        assert torch.equal(getattr(p, f), r), f


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize("what", ["X", "y"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_data_names_rows(tiny, what, bad):
    X, y = data(n=30, d=2)
    rows = [3, 7, 8, 11, 20, 25, 29]
    if what == "X":
        X[rows, 1] = bad
    else:
        y[rows] = bad
    with pytest.raises(ValueError, match=rf"{what} has non-finite values \(NaN or inf\) in 7 of 30 rows; rows: 3, 7, 8, 11, 20, \.\.\."):
        run(tiny, X, y)


def test_non_finite_in_a_batch_names_batch_and_row(tiny):
    X, y = data(3, n=10, d=2)
    X[1, 4, 0] = math.nan
    with pytest.raises(ValueError, match=r"1 of 30 rows; rows \(batch index, \.\.\., row\): \(1, 4\)"):
        run(tiny, X, y)
    X, _ = data(n=10, d=2)
    Y = torch.randn(10, 3)
    Y[6, 2] = math.inf  # several realizations: a row is bad if any of them is
    with pytest.raises(ValueError, match="y has .* in 1 of 10 rows; rows: 6"):
        run(tiny, X, Y)


@pytest.mark.parametrize(
    "X, y, match",
    [
        (torch.rand(0, 2), torch.randn(0), "n >= 1"),
        (torch.rand(5, 0), torch.randn(5), "d >= 1"),
        (torch.randint(0, 2, (5, 2)), torch.randn(5), "floating-point"),
        (torch.rand(5, 2), torch.randint(0, 2, (5,)), "floating-point"),
        (torch.rand(5, MAX_INPUT_DIMS + 1), torch.randn(5), f"at most {MAX_INPUT_DIMS}"),
    ],
)
def test_documented_errors(tiny, X, y, match):
    with pytest.raises(ValueError, match=match):
        run(tiny, X, y)


# ---------------------------------------------------------------------- warnings with a defined result
def test_dimensions_beyond_training_warn_up_to_the_hard_limit(tiny):
    for d in (TINY.trained_max_dims + 1, MAX_INPUT_DIMS):
        X, y = data(n=12, d=d)
        with pytest.warns(DecoderWarning, match=f"d={d} input dimensions, more than"):
            p = run(tiny, X, y)
        assert p.num_dims == d
        assert_in_bounds(p, TINY)


def test_inputs_outside_unit_cube_warn_but_not_rounding(tiny):
    X, y = data(n=15, d=2)
    with pytest.warns(OutsideUnitCubeWarning, match="Normalize"):
        run(tiny, 5 * X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run(tiny, X * (1 + 1e-6) - 1e-7, y)  # floating error at the edges: silent


def test_large_n_reads_a_deterministic_subsample_quickly(full):
    """n = 20000, d = 6: one pass reads max_context points, the same ones every time."""
    X, y = data(n=20_000, d=6, seed=1)
    seen = []
    hook = full.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape))
    try:
        with pytest.warns(DecoderWarning, match="deterministic random subsample"):
            a = run(full, X, y)
        with pytest.warns(DecoderWarning):
            b = run(full, X, y)
    finally:
        hook.remove()
    limit = max(DEFAULT_MAX_CONTEXT, full.config.trained_max_context)
    assert seen == [torch.Size([1, limit, 6])] * 2  # the network reads `limit` points, not n
    assert_in_bounds(a, full.config)
    for f in FIELDS:
        assert torch.equal(getattr(a, f), getattr(b, f))


def test_beyond_the_context_mean_and_outputscale_read_all_points(tiny):
    """The network reads the subsample; the GLS mean and the outputscale read every point (up
    to max_profile_points): a shift of the points outside the subsample moves them."""
    n, limit = 300, 40
    X, y = data(n=n, d=2, seed=3, dtype=torch.float64)
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(SUBSAMPLE_SEED))[:limit]
    rest = torch.ones(n, dtype=torch.bool)
    rest[idx] = False
    shifted = y + 5.0 * rest  # the subsample keeps its values
    config = InferenceConfig(max_context=limit)
    with pytest.warns(DecoderWarning, match="subsample"):
        a, b = run(tiny, X, y, config), run(tiny, X, shifted, config)
    for f in ("weights", "means", "scales"):  # the network and the stages read the same points
        assert torch.equal(getattr(a, f), getattr(b, f))
    assert b.constant_mean - a.constant_mean > 2.0  # 87% of the points moved by 5
    assert b.outputscale > 2 * a.outputscale


def test_max_context_is_configurable(tiny):
    config = InferenceConfig(max_context=40)
    X, y = data(n=41, d=2)
    with pytest.warns(DecoderWarning, match="context of 40"):
        run(tiny, X, y, config)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run(tiny, X[:40], y[:40], config)


# ---------------------------------------------------------------------- outputs always in bounds
def test_far_outside_inputs_give_finite_bounded_outputs(tiny):
    X, y = data(n=20, d=2)
    for Xb, yb in ((X * 1e30, y), (X, y * 1e30), (X * 1e30, y * 1e30)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DecoderWarning)
            p = run(tiny, Xb, yb)
        assert_in_bounds(p, TINY)


def test_repaired_outputs_are_reported(tiny, monkeypatch):
    X, y = data(n=20, d=2)
    forward = tiny.forward

    def broken(x, yy, *args, **kwargs):
        out = forward(x, yy, *args, **kwargs)
        out.means[..., 0, 1] = math.nan
        out.scales[..., 1, 0] = math.inf
        out.weights[..., 0, :] = math.nan
        out.log_noise_ratio[...] = math.nan
        return out

    monkeypatch.setattr(tiny, "forward", broken)
    plain = InferenceConfig(evidence_check=False, calibrate=False, mean_mode="sample")
    with torch.no_grad(), pytest.warns(DecoderWarning, match="replaced by the documented fallbacks"):
        p = run(tiny, X, y, plain)
    assert_in_bounds(p, TINY)
    assert torch.allclose(p.weights[0], torch.full((4,), 0.25))
    assert p.means[0, 1] == 0
    assert torch.allclose(p.noise / p.outputscale, torch.tensor(1e-2))
    # with the evidence check (the default), a kernel whose likelihood is not finite loses to
    # the best RBF alternative before the bounds stage sees it
    with warnings.catch_warnings():
        warnings.simplefilter("error", DecoderWarning)
        p = run(tiny, X, y)
    assert_in_bounds(p, TINY)
    assert torch.equal(p.means, torch.zeros_like(p.means))


@pytest.mark.parametrize("n", [1, 2])
def test_tiny_data_sets(tiny, n):
    X, y = data(n=n, d=3)
    p = run(tiny, X, y)
    assert_in_bounds(p, TINY)


def test_constant_y_and_duplicate_rows(tiny):
    X, y = data(n=20, d=3)
    assert_in_bounds(run(tiny, X, torch.zeros(20)), TINY)
    assert_in_bounds(run(tiny, torch.cat([X, X, X]), torch.cat([y, y, y])), TINY)
    assert_in_bounds(run(tiny, X[:1].expand(20, 3), y), TINY)  # one location, 20 values


# ---------------------------------------------------------------------- dtypes, devices, determinism
@pytest.mark.parametrize("dtype, out", [(torch.float32, torch.float32), (torch.float64, torch.float64),
                                        (torch.bfloat16, torch.float32), (torch.float16, torch.float32)])
def test_dtypes(tiny, dtype, out):
    X, y = data(n=16, d=2)
    p = run(tiny, X.to(dtype), y.to(dtype))
    assert all(getattr(p, f).dtype == out for f in FIELDS)
    assert_in_bounds(p, TINY)


def test_same_data_same_bits(tiny):
    X, y = data(2, n=50, d=3)
    with torch.no_grad():
        a, b = run(tiny, X, y), run(tiny, X.clone(), y.clone())
    for f in FIELDS:
        assert torch.equal(getattr(a, f), getattr(b, f))


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
def test_cuda_decoder_and_data(tiny):
    X, y = data(2, n=30, d=3)
    dec = SpectralDecoder(TINY).eval()
    dec.load_state_dict(tiny.state_dict())
    dec = dec.cuda()
    with torch.no_grad():
        p = run(dec, X.cuda(), y.cuda())
        ref = run(tiny, X, y)
    assert p.device.type == "cuda"
    assert_in_bounds(p.to("cpu"), TINY)
    assert p.to("cpu").allclose(ref, rtol=1e-3, atol=1e-5)


@cuda
def test_cpu_decoder_cuda_data_comes_back_on_cuda(tiny):
    X, y = data(n=30, d=3)
    with torch.no_grad():
        p = run(tiny, X.cuda(), y.cuda())
    assert p.device.type == "cuda"
    # same CPU computation, but on copies with another memory layout: vectorized reductions may
    # round differently (bit equality failed on an H100 machine), so compare to float32 precision
    assert p.to("cpu").allclose(run(tiny, X, y), rtol=1e-5, atol=1e-6)
