"""Tests for :class:`pfn_kernels.AmortizedSpectralKernel`.

The reference covariance is written out independently of :mod:`pfn_kernels.kernels.bochner`, as plain
loops over points i, j, input dimensions and mixture components.
"""

from __future__ import annotations

import copy
import doctest
import io
import math

import numpy as np
import pytest
import torch
from gpytorch.kernels import SpectralMixtureKernel

import pfn_kernels.kernels.amortized_spectral_kernel as kernel_module
from pfn_kernels import AmortizedSpectralKernel, SpectralParams
from pfn_kernels.kernels.bochner import spectral_density
from pfn_kernels.kernels.amortized_spectral_kernel import MIN_MEAN

DTYPE = torch.float64


def random_params(batch=(), d=2, q=3, dtype=DTYPE, seed=0, max_mean=3.0) -> SpectralParams:
    g = torch.Generator().manual_seed(seed)
    shape = (*batch, d, q)
    w = torch.rand(shape, generator=g, dtype=dtype) + 0.05
    return SpectralParams(
        weights=w / w.sum(-1, keepdim=True),
        means=max_mean * torch.rand(shape, generator=g, dtype=dtype),
        scales=0.05 + torch.rand(shape, generator=g, dtype=dtype),
        outputscale=0.5 + 2 * torch.rand(batch, generator=g, dtype=dtype),
        noise=0.1 * torch.rand(batch, generator=g, dtype=dtype),
    )


def make_kernel(params: SpectralParams) -> AmortizedSpectralKernel:
    kernel = AmortizedSpectralKernel().to(params.dtype)
    kernel.set_spectral_params(params)
    return kernel


def reference_covariance(x1, x2, weights, means, scales, outputscale) -> np.ndarray:
    """k(x, x') = s_f^2 prod_dim sum_q w exp(-2 pi^2 tau^2 s^2) cos(2 pi mu tau), term by term."""
    x1, x2 = np.asarray(x1, dtype=float), np.asarray(x2, dtype=float)
    w, mu, s = (np.asarray(t, dtype=float) for t in (weights, means, scales))
    n, m = x1.shape[0], x2.shape[0]
    num_dims, num_mix = w.shape
    out = np.empty((n, m))
    for i in range(n):
        for j in range(m):
            value = float(outputscale)
            for dim in range(num_dims):
                tau = x1[i, dim] - x2[j, dim]
                factor = 0.0
                for q in range(num_mix):
                    factor += (
                        w[dim, q]
                        * math.exp(-2.0 * math.pi**2 * tau**2 * s[dim, q] ** 2)
                        * math.cos(2.0 * math.pi * mu[dim, q] * tau)
                    )
                value *= factor
            out[i, j] = value
    return out


def rand(*shape, seed=0, dtype=DTYPE):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---------------------------------------------------------------------------- closed form
@pytest.mark.parametrize("d,q", [(1, 1), (1, 4), (3, 2), (5, 3)])
def test_matches_independent_closed_form(d, q):
    p = random_params(d=d, q=q, seed=d * 10 + q)
    kernel = make_kernel(p)
    x1, x2 = 2 * rand(7, d, seed=1), 2 * rand(5, d, seed=2)
    expected = reference_covariance(x1, x2, p.weights, p.means, p.scales, p.outputscale)
    actual = kernel(x1, x2).to_dense().detach().numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-13)
    # Stationarity and k(x, x) = outputscale.
    diag = kernel(x1, diag=True).detach()
    torch.testing.assert_close(diag, p.outputscale.expand(7), rtol=1e-12, atol=0)


def test_hand_computed_value():
    # d=1, one component: k(tau) = 2 * exp(-2 pi^2 tau^2 0.25^2) * cos(2 pi * 1.5 * tau).
    p = SpectralParams(
        weights=torch.tensor([[1.0]], dtype=DTYPE),
        means=torch.tensor([[1.5]], dtype=DTYPE),
        scales=torch.tensor([[0.25]], dtype=DTYPE),
        outputscale=torch.tensor(2.0, dtype=DTYPE),
        noise=torch.tensor(0.0, dtype=DTYPE),
    )
    kernel = make_kernel(p)
    tau = 0.3
    expected = 2 * math.exp(-2 * math.pi**2 * tau**2 / 16) * math.cos(2 * math.pi * 1.5 * tau)
    value = kernel(
        torch.tensor([[0.1]], dtype=DTYPE), torch.tensor([[0.4]], dtype=DTYPE)
    ).to_dense()
    assert value.item() == pytest.approx(expected, rel=1e-12)


def test_default_spectrum_when_sized_at_construction():
    kernel = AmortizedSpectralKernel(ard_num_dims=3, num_mixtures=2).double()
    p = kernel.spectral_params
    torch.testing.assert_close(p.weights, torch.full((3, 2), 0.5, dtype=DTYPE))
    torch.testing.assert_close(p.means, torch.tensor([[MIN_MEAN, 1.0]] * 3, dtype=DTYPE))
    torch.testing.assert_close(p.scales, torch.full((3, 2), 0.5, dtype=DTYPE))
    torch.testing.assert_close(kernel.outputscale, torch.tensor(1.0, dtype=DTYPE))
    x = rand(4, 3)
    torch.testing.assert_close(kernel(x, diag=True).detach(), torch.ones(4, dtype=DTYPE))


@pytest.mark.parametrize(
    "kwargs,match", [({"num_mixtures": 0}, "num_mixtures"), ({"ard_num_dims": 0}, "ard_num_dims")]
)
def test_constructor_validates_sizes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AmortizedSpectralKernel(**kwargs)


# ---------------------------------------------------------------------------- gpytorch interop
def random_gpytorch_kernel(d, q, batch=(), seed=0) -> SpectralMixtureKernel:
    g = torch.Generator().manual_seed(seed)
    sm = SpectralMixtureKernel(
        num_mixtures=q, ard_num_dims=d, batch_shape=torch.Size(batch)
    ).double()
    # Weights deliberately not normalized: gpytorch's k(x, x) = (sum_q w_q)^d.
    sm.mixture_weights = 0.2 + 1.5 * torch.rand(*batch, q, generator=g, dtype=DTYPE)
    sm.mixture_means = 3 * torch.rand(*batch, q, 1, d, generator=g, dtype=DTYPE)
    sm.mixture_scales = 0.05 + torch.rand(*batch, q, 1, d, generator=g, dtype=DTYPE)
    return sm


@pytest.mark.parametrize("d,q", [(1, 1), (1, 3), (2, 4), (4, 2)])
def test_from_gpytorch_is_exact(d, q):
    sm = random_gpytorch_kernel(d, q, seed=d + q)
    kernel = AmortizedSpectralKernel.from_gpytorch(sm)
    assert kernel.raw_outputscale.dtype == DTYPE
    x1, x2 = 2 * rand(9, d, seed=3), 2 * rand(6, d, seed=4)
    torch.testing.assert_close(
        kernel(x1, x2).to_dense(), sm(x1, x2).to_dense(), rtol=1e-10, atol=1e-13
    )
    total = sm.mixture_weights.detach().sum()
    torch.testing.assert_close(kernel.outputscale.detach(), total**d, rtol=1e-10, atol=0)


def test_from_gpytorch_batched():
    sm = random_gpytorch_kernel(d=2, q=3, batch=(2,), seed=7)
    kernel = AmortizedSpectralKernel.from_gpytorch(sm)
    assert kernel.batch_shape == torch.Size([2])
    x = rand(2, 6, 2, seed=5)
    torch.testing.assert_close(kernel(x).to_dense(), sm(x).to_dense(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("d,q,batch", [(1, 3, ()), (3, 2, ()), (2, 4, (2,))])
def test_to_gpytorch_is_exact_for_shared_weights(d, q, batch):
    p = random_params(batch=batch, d=d, q=q, seed=11)
    shared = p.weights[..., :1, :].expand_as(p.weights).clone()
    p = SpectralParams(shared, p.means, p.scales, p.outputscale, p.noise)
    kernel = make_kernel(p)
    sm = kernel.to_gpytorch()
    assert isinstance(sm, SpectralMixtureKernel)
    assert sm.batch_shape == torch.Size(batch)
    x1, x2 = rand(*batch, 8, d, seed=6), rand(*batch, 5, d, seed=8)
    torch.testing.assert_close(
        sm(x1, x2).to_dense(), kernel(x1, x2).to_dense(), rtol=1e-12, atol=1e-14
    )
    # ... and back again.
    again = AmortizedSpectralKernel.from_gpytorch(sm)
    for name in ("weights", "means", "scales", "outputscale"):  # gpytorch's kernel has no noise
        torch.testing.assert_close(
            getattr(again.spectral_params, name),
            getattr(kernel.spectral_params, name),
            rtol=1e-10,
            atol=1e-12,
        )


def test_to_gpytorch_d1_always_works():
    kernel = make_kernel(random_params(d=1, q=4, seed=2))
    x = rand(7, 1)
    torch.testing.assert_close(
        kernel.to_gpytorch()(x).to_dense(), kernel(x).to_dense(), rtol=1e-12, atol=1e-14
    )


def test_to_gpytorch_rejects_per_dimension_weights():
    kernel = make_kernel(random_params(d=2, q=3, seed=3))
    with pytest.raises(ValueError, match="different mixture weights per dimension"):
        kernel.to_gpytorch()


# ---------------------------------------------------------------------------- PSD
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("d", [1, 3, 6])
def test_kernel_matrix_is_psd(d, seed):
    q = 1 + seed
    p = random_params(d=d, q=q, seed=100 * d + seed, max_mean=8.0)
    kernel = make_kernel(p)
    x = rand(40, d, seed=seed)
    x = torch.cat([x, x[:5] + 1e-4])  # near-duplicates make the matrix close to singular
    with torch.no_grad():
        K = kernel(x).to_dense()
    torch.testing.assert_close(K, K.mT, rtol=0, atol=1e-14)
    eig = torch.linalg.eigvalsh(K)
    assert eig.min() >= -1e-6 * eig.max()


# ---------------------------------------------------------------------------- batch shapes
def test_batch_shapes_match_per_batch_reference():
    p = random_params(batch=(2,), d=3, q=2, seed=21)
    kernel = make_kernel(p)
    assert kernel.batch_shape == torch.Size([2])

    x = rand(2, 5, 3, seed=1)
    K = kernel(x).to_dense().detach()
    assert K.shape == torch.Size([2, 5, 5])
    for b in range(2):
        pb = p[b]
        expected = reference_covariance(x[b], x[b], pb.weights, pb.means, pb.scales, pb.outputscale)
        np.testing.assert_allclose(K[b].numpy(), expected, rtol=1e-10, atol=1e-13)

    x3 = rand(3, 2, 5, 3, seed=2)
    K3 = kernel(x3).to_dense().detach()
    assert K3.shape == torch.Size([3, 2, 5, 5])
    assert kernel(x3, diag=True).shape == torch.Size([3, 2, 5])
    for a in range(3):
        for b in range(2):
            pb = p[b]
            expected = reference_covariance(
                x3[a, b], x3[a, b], pb.weights, pb.means, pb.scales, pb.outputscale
            )
            np.testing.assert_allclose(K3[a, b].numpy(), expected, rtol=1e-10, atol=1e-13)


def test_unbatched_inputs_broadcast_against_kernel_batch():
    p = random_params(batch=(2,), d=2, q=2, seed=4)
    kernel = make_kernel(p)
    x = rand(6, 2)
    K = kernel(x).to_dense().detach()
    assert K.shape == torch.Size([2, 6, 6])
    for b in range(2):
        torch.testing.assert_close(K[b], make_kernel(p[b])(x).to_dense().detach())


# ---------------------------------------------------------------------------- diag
@pytest.mark.parametrize("batch", [(), (2,)])
def test_diag_equals_diagonal_of_full_matrix(batch):
    p = random_params(batch=batch, d=3, q=3, seed=5)
    kernel = make_kernel(p)
    x1, x2 = rand(*batch, 7, 3, seed=1), rand(*batch, 7, 3, seed=2)
    with torch.no_grad():
        for a, b in ((x1, x1), (x1, x2)):
            full = kernel(a, b).to_dense()
            diag = kernel(a, b, diag=True)
            assert diag.shape == torch.Size([*batch, 7])
            torch.testing.assert_close(
                diag, full.diagonal(dim1=-2, dim2=-1), rtol=1e-13, atol=1e-15
            )
    # For x1 != x2 the diagonal is not constant: the check above is not trivially outputscale.
    assert not torch.allclose(diag, p.outputscale[..., None].expand_as(diag))


# ---------------------------------------------------------------------------- dtypes
def test_float32_and_float64():
    p64 = random_params(d=3, q=4, seed=9)
    k64 = make_kernel(p64)
    k32 = make_kernel(p64.to(torch.float32))
    assert k32.raw_mixture_means.dtype == torch.float32
    x64 = rand(12, 3, seed=3)
    K64 = k64(x64).to_dense().detach()
    K32 = k32(x64.float()).to_dense().detach()
    assert K64.dtype == torch.float64 and K32.dtype == torch.float32
    torch.testing.assert_close(K32.double(), K64, rtol=1e-4, atol=1e-5)
    assert k32(x64.float(), diag=True).dtype == torch.float32
    # The output follows the input's dtype.
    assert k64(x64.float()).to_dense().dtype == torch.float32


def test_float64_params_into_default_float32_kernel_are_cast():
    kernel = AmortizedSpectralKernel()
    kernel.set_spectral_params(random_params())
    assert kernel.raw_mixture_logits.dtype == torch.get_default_dtype()


# ---------------------------------------------------------------------------- parameter round trips
def noise_free(p: SpectralParams) -> SpectralParams:
    """``p`` as a kernel holds it: no observation noise."""
    return SpectralParams(p.weights, p.means, p.scales, p.outputscale, torch.zeros_like(p.noise))


def test_set_then_get_spectral_params_round_trip():
    p = random_params(batch=(), d=3, q=4, seed=13)
    kernel = make_kernel(p)
    got = kernel.spectral_params
    assert got.allclose(noise_free(p), rtol=1e-10, atol=1e-12)
    assert torch.equal(got.noise, torch.zeros_like(p.noise))  # the likelihood's, not the kernel's
    torch.testing.assert_close(kernel.mixture_weights.sum(-1), torch.ones(3, dtype=DTYPE))
    assert (kernel.ard_num_dims, kernel.num_mixtures) == (3, 4)


def test_set_spectral_params_resizes_d_and_q():
    kernel = AmortizedSpectralKernel(ard_num_dims=2, num_mixtures=4).double()
    for d, q in [(5, 1), (1, 6), (3, 3)]:
        p = random_params(d=d, q=q, seed=d * q)
        kernel.set_spectral_params(p)
        assert (kernel.ard_num_dims, kernel.num_mixtures) == (d, q)
        assert kernel.raw_mixture_scales.shape == torch.Size([d, q])
        assert kernel.spectral_params.allclose(noise_free(p), rtol=1e-10, atol=1e-12)
        assert kernel(rand(4, d)).to_dense().shape == torch.Size([4, 4])


def test_set_spectral_params_batch_shape_adoption():
    kernel = AmortizedSpectralKernel().double()
    p2 = random_params(batch=(2,), d=2, q=3, seed=1)
    kernel.set_spectral_params(p2)  # unsized, unbatched kernel adopts (2,)
    assert kernel.batch_shape == torch.Size([2])
    assert kernel.raw_outputscale.shape == torch.Size([2])
    assert kernel.spectral_params.allclose(noise_free(p2), rtol=1e-10, atol=1e-12)

    p0 = random_params(batch=(), d=2, q=3, seed=2)
    kernel.set_spectral_params(p0)  # broadcasts to the kernel's (2,)
    assert kernel.batch_shape == torch.Size([2])
    assert kernel.spectral_params.allclose(noise_free(p0.expand(2)), rtol=1e-10, atol=1e-12)

    p34 = random_params(batch=(3, 4), d=1, q=2, seed=3)
    kernel.set_spectral_params(p34)  # not broadcastable to (2,): adopted
    assert kernel.batch_shape == torch.Size([3, 4])
    assert kernel.raw_mixture_logits.shape == torch.Size([3, 4, 1, 2])
    assert kernel.spectral_params.noise.shape == torch.Size([3, 4])
    assert kernel.spectral_params.allclose(noise_free(p34), rtol=1e-10, atol=1e-12)
    assert kernel(rand(5, 1)).to_dense().shape == torch.Size([3, 4, 5, 5])


def test_set_spectral_params_floors_and_type_check():
    p = random_params(d=1, q=2)
    p = SpectralParams(p.weights, torch.zeros_like(p.means), p.scales, p.outputscale, p.noise)
    kernel = make_kernel(p)
    torch.testing.assert_close(
        kernel.mixture_means.detach(), torch.full((1, 2), MIN_MEAN, dtype=DTYPE)
    )
    with pytest.raises(TypeError, match="expects SpectralParams"):
        kernel.set_spectral_params({"weights": p.weights})


def test_set_spectral_params_copies_values():
    p = random_params()
    p = SpectralParams(
        **{
            k: getattr(p, k).clone().requires_grad_()
            for k in ("weights", "means", "scales", "outputscale", "noise")
        }
    )
    kernel = make_kernel(p)
    kernel(rand(3, 2)).to_dense().sum().backward()
    assert p.means.grad is None


def test_state_dict_round_trip_into_fresh_unsized_kernel():
    p = random_params(batch=(2,), d=3, q=5, seed=17)
    kernel = make_kernel(p)
    buffer = io.BytesIO()
    torch.save(kernel.state_dict(), buffer)
    buffer.seek(0)
    fresh = AmortizedSpectralKernel().double()
    assert not fresh.is_sized
    fresh.load_state_dict(torch.load(buffer))
    assert fresh.is_sized
    assert fresh.batch_shape == torch.Size([2])
    assert (fresh.ard_num_dims, fresh.num_mixtures) == (3, 5)
    assert fresh.spectral_params.allclose(kernel.spectral_params, rtol=0, atol=0)
    x = rand(2, 6, 3)
    torch.testing.assert_close(fresh(x).to_dense(), kernel(x).to_dense(), rtol=0, atol=0)


def test_state_dict_load_into_differently_sized_kernel():
    kernel = make_kernel(random_params(d=2, q=2, seed=1))
    other = AmortizedSpectralKernel(ard_num_dims=4, num_mixtures=7).double()
    other.load_state_dict(kernel.state_dict())
    assert (other.ard_num_dims, other.num_mixtures) == (2, 2)
    assert other.spectral_params.allclose(kernel.spectral_params, rtol=0, atol=0)


def test_deepcopy():
    kernel = make_kernel(random_params(d=2, q=2))
    clone = copy.deepcopy(kernel)
    x = rand(4, 2)
    torch.testing.assert_close(clone(x).to_dense(), kernel(x).to_dense())


# ---------------------------------------------------------------------------- gradients
def test_gradients_reach_every_raw_parameter():
    from gpytorch.distributions import MultivariateNormal
    from gpytorch.likelihoods import GaussianLikelihood
    from gpytorch.means import ZeroMean
    from gpytorch.mlls import ExactMarginalLogLikelihood
    from gpytorch.models import ExactGP

    class GP(ExactGP):
        def __init__(self, x, y, kernel):
            super().__init__(x, y, GaussianLikelihood())
            self.mean_module, self.covar_module = ZeroMean(), kernel

        def forward(self, x):
            return MultivariateNormal(self.mean_module(x), self.covar_module(x))

    x = rand(20, 2, seed=1)
    y = torch.sin(6 * x[:, 0]) + x[:, 1]
    model = GP(x, y, make_kernel(random_params(d=2, q=3))).double()
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    model.train()
    loss = -mll(model(x), y)
    loss.backward()
    for name in (
        "raw_mixture_logits",
        "raw_mixture_means",
        "raw_mixture_scales",
        "raw_outputscale",
    ):
        grad = getattr(model.covar_module, name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    # A few optimizer steps improve the marginal likelihood.
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    first = loss.item()
    for _ in range(10):
        opt.zero_grad()
        loss = -mll(model(x), y)
        loss.backward()
        opt.step()
    assert loss.item() < first


def test_gradcheck_against_finite_differences():
    kernel = make_kernel(random_params(d=2, q=2, seed=5))
    x1, x2 = rand(4, 2, seed=1), rand(3, 2, seed=2)
    names = ["raw_mixture_logits", "raw_mixture_means", "raw_mixture_scales", "raw_outputscale"]
    raw = tuple(getattr(kernel, n).detach().clone().requires_grad_() for n in names)

    def covariance(*values):
        out = torch.func.functional_call(kernel, dict(zip(names, values)), (x1, x2))
        return out.to_dense()

    assert torch.autograd.gradcheck(covariance, raw)


# ---------------------------------------------------------------------------- errors
def test_unsized_kernel_raises_clear_runtime_error():
    kernel = AmortizedSpectralKernel()
    assert not kernel.is_sized
    with pytest.raises(RuntimeError, match="no spectral parameters yet"):
        kernel(rand(3, 2))
    with pytest.raises(RuntimeError, match="no spectral parameters yet"):
        _ = kernel.spectral_params
    with pytest.raises(RuntimeError, match="no spectral parameters yet"):
        kernel.forward(rand(3, 2), rand(3, 2))


def test_mismatched_input_dimension_raises_value_error():
    kernel = make_kernel(random_params(d=2, q=2))
    with pytest.raises(ValueError, match="sized for d=2 input dimensions but got inputs with d=3"):
        kernel(rand(4, 3))
    with pytest.raises(ValueError, match="d=2 .* d=3"):
        kernel.forward(rand(4, 3), rand(4, 3))


def test_active_dims():
    p = random_params(d=2, q=2)
    kernel = AmortizedSpectralKernel(active_dims=(0, 2)).double()
    kernel.set_spectral_params(p)
    x = rand(5, 4)
    torch.testing.assert_close(
        kernel(x).to_dense(), make_kernel(p)(x[:, [0, 2]]).to_dense(), rtol=0, atol=0
    )


# ------------------------------------------------------------------ spectral density and docs
def test_spectral_density_method():
    p = random_params(d=2, q=3)
    kernel = make_kernel(p)
    omega = torch.linspace(-5, 5, 101, dtype=DTYPE)
    torch.testing.assert_close(
        kernel.spectral_density(omega).detach(), spectral_density(omega, p), rtol=1e-10, atol=1e-12
    )


def test_docstring_example_runs():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = finder.find(AmortizedSpectralKernel, "AmortizedSpectralKernel", globs={})
    examples = sum(len(t.examples) for t in tests)
    for t in tests:
        runner.run(t)
    assert examples >= 5
    assert runner.failures == 0
    assert doctest.testmod(kernel_module).failed == 0


# ---------------------------------------------------------------------------- setters and priors
def test_public_setters_write_the_raw_parameters():
    p = random_params(batch=(2,), d=2, q=3, seed=21)
    kernel = make_kernel(p)
    q = random_params(batch=(2,), d=2, q=3, seed=22)
    kernel.mixture_weights, kernel.mixture_means, kernel.mixture_scales = q.weights, q.means, q.scales
    kernel.outputscale = q.outputscale
    assert kernel.spectral_params.allclose(noise_free(q), rtol=1e-10, atol=1e-12)
    kernel.mixture_weights = 3 * q.weights  # stored as logarithms: the softmax renormalizes
    torch.testing.assert_close(kernel.mixture_weights, q.weights)
    kernel.mixture_means = torch.zeros(2, 2, 3, dtype=DTYPE)  # floored, never 0 under a softplus
    assert (kernel.mixture_means >= MIN_MEAN * (1 - 1e-9)).all()
    with pytest.raises(RuntimeError, match="no spectral parameters yet"):
        AmortizedSpectralKernel().mixture_means = torch.ones(1, 1)


def test_priors_are_constructor_arguments_and_enter_the_mll():
    from botorch.models import SingleTaskGP
    from gpytorch.mlls import ExactMarginalLogLikelihood
    from gpytorch.priors import GammaPrior, LogNormalPrior

    p = random_params(d=2, q=2, seed=23)
    X = rand(15, 2)
    Y = torch.sin(4 * X[:, :1])

    def mll_value(kernel):
        model = SingleTaskGP(X, Y, covar_module=kernel, outcome_transform=None)
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        model.train()
        return mll(model(X), Y[:, 0]).item(), model

    plain, _ = mll_value(make_kernel(p))
    os_prior, means_prior = GammaPrior(2.0, 0.5), LogNormalPrior(0.0, 1.0)
    kernel = AmortizedSpectralKernel(outputscale_prior=os_prior, mixture_means_prior=means_prior).double()
    kernel.set_spectral_params(p)
    names = {name for name, *_ in kernel.named_priors()}
    assert names == {"outputscale_prior", "mixture_means_prior"}
    with_priors, model = mll_value(kernel)
    expected = (os_prior.log_prob(kernel.outputscale).sum()
                + means_prior.log_prob(kernel.mixture_means).sum()).item() / 15
    assert with_priors - plain == pytest.approx(expected, rel=1e-9)
    with pytest.raises(TypeError, match="gpytorch Prior"):
        AmortizedSpectralKernel(outputscale_prior=0.5)
