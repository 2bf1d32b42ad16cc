"""Property-based tests of the entry points: decoder, kernel, model.

Over shapes, dtypes and values (duplicates, constant targets, inputs off the unit cube, extreme
scales, NaN), every call either raises one of the documented errors or returns finite parameters
within the documented ranges. A tiny random decoder keeps each example cheap.
"""

from __future__ import annotations

import math
import warnings

import torch
from botorch.fit import fit_gpytorch_mll
from gpytorch.mlls import ExactMarginalLogLikelihood
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decoders import make_decoder
from pfn_kernels import AmortizedSingleTaskGP, AmortizedSpectralKernel, SpectralParams
from pfn_kernels.inference import decode_spectral_params
from pfn_kernels.inference.bounds import OUTPUTSCALE_RANGE
from pfn_kernels.network import DecoderConfig
from pfn_kernels.validation import MAX_INPUT_DIMS

DECODER = make_decoder()  # module level: hypothesis's @given tests cannot take fixtures
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def data_sets(draw, max_n=24, max_d=10, batch=True):
    """(X, y, nan_rows): X `(*b, n, d)`, y `(*b, n)` or `(*b, n, M)`, with difficult values."""
    b = draw(st.sampled_from([(), (2,)])) if batch else ()
    n = draw(st.integers(1, max_n))
    d = draw(st.integers(1, max_d))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    X = torch.rand(*b, n, d, generator=g, dtype=dtype)
    if draw(st.booleans()):  # duplicates: repeat a few rows
        idx = torch.randint(0, n, (n,), generator=g)
        X = X[..., idx, :]
    X = X * draw(st.sampled_from([1.0, 1.0, 1e-6, 3.0, 100.0])) + draw(st.sampled_from([0.0, 0.0, -0.5]))
    m = draw(st.sampled_from([None, None, 3])) if batch else None
    y = torch.randn(*b, n, *(() if m is None else (m,)), generator=g, dtype=dtype)
    kind = draw(st.sampled_from(["standard", "constant", "scaled", "smooth"]))
    if kind == "constant":
        y = torch.full_like(y, draw(st.sampled_from([0.0, 2.5])))
    elif kind == "scaled":
        y = y * draw(st.sampled_from([1e-12, 1e-3, 1e3, 1e12]))
    elif kind == "smooth":
        s = torch.sin(6 * X[..., 0])
        y = s if m is None else s.unsqueeze(-1).expand_as(y).clone()
    nan_rows = []
    if draw(st.integers(0, 5)) == 0:  # sometimes a NaN or inf
        row = draw(st.integers(0, n - 1))
        target = draw(st.sampled_from(["X", "y"]))
        value = draw(st.sampled_from([math.nan, math.inf]))
        if target == "X":
            X[..., row, 0] = value
        elif y.dim() == X.dim():  # several realizations
            y[..., row, 0] = value
        else:
            y[..., row] = value
        nan_rows = [target]
    return X, y, nan_rows


def assert_valid(p: SpectralParams, cfg: DecoderConfig) -> None:
    SpectralParams(p.weights, p.means, p.scales, p.outputscale, p.noise)  # finite, ranges
    assert (p.means <= cfg.max_frequency * (1 + 1e-4)).all()
    assert (p.scales >= 1e-3 * (1 - 1e-4)).all() and (p.scales <= 30 * (1 + 1e-4)).all()
    assert (p.outputscale >= OUTPUTSCALE_RANGE[0]).all() and (p.outputscale <= OUTPUTSCALE_RANGE[1]).all()
    assert (p.noise >= 0.999 * cfg.min_noise_ratio * p.outputscale).all()


@FAST
@given(data_sets())
def test_decoder_never_emits_invalid_parameters(case):
    X, y, nan_rows = case
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DecoderWarnings are part of the contract, not failures
        if nan_rows:
            try:
                decode_spectral_params(X, y, DECODER)
            except ValueError as err:
                assert f"{nan_rows[0]} has non-finite values" in str(err)
                return
            raise AssertionError("non-finite data accepted")
        p = decode_spectral_params(X, y, DECODER)
    assert p.batch_shape == X.shape[:-2] and p.num_dims == X.shape[-1]
    assert p.dtype == X.dtype
    assert_valid(p, DECODER.config)


@FAST
@given(data_sets(max_n=16, max_d=6, batch=False), st.booleans())
def test_kernel_matrix_is_finite_and_positive_semidefinite(case, diag):
    X, y, nan_rows = case
    if nan_rows:
        return
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = decode_spectral_params(X, y, DECODER)
    kernel = AmortizedSpectralKernel().to(X.dtype)
    kernel.set_spectral_params(p)
    Xn = (X - X.min()) / (X.max() - X.min()).clamp_min(1e-12)
    with torch.no_grad():
        K = kernel(Xn, diag=diag) if diag else kernel(Xn).to_dense()
    assert torch.isfinite(K).all()
    if diag:
        assert torch.allclose(K, p.outputscale.expand_as(K), rtol=1e-4)
        return
    assert torch.allclose(K, K.transpose(-1, -2), atol=1e-6 * float(p.outputscale))
    eig = torch.linalg.eigvalsh(K.double())
    assert eig.min() >= -1e-4 * float(p.outputscale)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(1, 12), st.integers(1, 4), st.integers(1, 2),
    st.sampled_from([torch.float32, torch.float64]),
    st.sampled_from(["standard", "constant", "tiny", "huge", "duplicates"]),
    st.booleans(), st.integers(0, 2**31 - 1),
)
def test_model_fit_gives_finite_posterior(n, d, m, dtype, kind, known_noise, seed):
    g = torch.Generator().manual_seed(seed)
    X = 5 * torch.rand(n, d, generator=g, dtype=dtype) - 2
    Y = torch.randn(n, m, generator=g, dtype=dtype)
    if kind == "constant":
        Y = torch.full_like(Y, 1.5)
    elif kind in ("tiny", "huge"):
        Y = Y * (1e-12 if kind == "tiny" else 1e12)
    elif kind == "duplicates":
        X, Y = torch.cat([X, X]), torch.cat([Y, Y])
    Yvar = torch.zeros_like(Y) if known_noise else None
    model = AmortizedSingleTaskGP(X, Y, Yvar, decoder=DECODER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        post = model.posterior(5 * torch.rand(3, d, generator=g, dtype=dtype) - 2, observation_noise=True)
    p = model.covar_module.spectral_params.detach()
    SpectralParams(p.weights, p.means, p.scales, p.outputscale, p.noise)  # finite, ranges
    assert torch.isfinite(post.mean).all() and torch.isfinite(post.variance).all()
    assert (post.variance >= 0).all()


@FAST
@given(st.integers(MAX_INPUT_DIMS + 1, MAX_INPUT_DIMS + 40), st.integers(1, 5))
def test_too_many_dimensions_is_a_clear_error(d, n):
    try:
        decode_spectral_params(torch.rand(n, d), torch.randn(n), DECODER)
    except ValueError as err:
        assert f"at most {MAX_INPUT_DIMS}" in str(err)
    else:
        raise AssertionError("d beyond the hard limit accepted")
