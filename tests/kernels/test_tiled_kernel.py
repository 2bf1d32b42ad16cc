"""The tiled product spectral-mixture kernel against the formula written with plain tensor ops."""

from __future__ import annotations

import math

import pytest
import torch

import pfn_kernels.kernels.tiled_kernel as tiled
from pfn_kernels.kernels import spectral_mixture_covariance
from pfn_kernels.kernels.tiled_kernel import SpectralProduct

DTYPE = torch.float64
NONE = frozenset()


def reference(x1, x2, w, mu, s):
    """`(B, n, m)` kernel from `(B, n, d)`, `(B, m, d)`, `(P, d, Q)` with broadcasting only."""
    tau = x1[:, :, None, :, None] - x2[:, None, :, :, None]  # (B, n, m, d, 1)
    w, mu, s = (t[:, None, None] for t in (w, mu, s))  # (P, 1, 1, d, Q)
    terms = w * torch.exp(-2 * math.pi**2 * (tau * s) ** 2) * torch.cos(2 * math.pi * mu * tau)
    return terms.sum(-1).prod(-1)


def inputs(batch=3, n=5, m=7, d=3, q=3, shared=True, seed=0, dtype=DTYPE):
    g = torch.Generator().manual_seed(seed)
    p = 1 if shared else batch
    x1 = torch.rand(batch, n, d, generator=g, dtype=dtype)
    x2 = torch.rand(batch, m, d, generator=g, dtype=dtype)
    w = torch.rand(p, d, q, generator=g, dtype=dtype) + 0.1
    mu = 3 * torch.rand(p, d, q, generator=g, dtype=dtype)
    s = 0.05 + torch.rand(p, d, q, generator=g, dtype=dtype)
    return [t.requires_grad_() for t in (x1, x2, w / w.sum(-1, keepdim=True), mu, s)]


def assert_matches_reference(args, skip, unit):
    """Values and all five gradients of SpectralProduct equal those of :func:`reference`."""
    k = SpectralProduct.apply(*args, skip, unit)
    ref = reference(*args)
    torch.testing.assert_close(k, ref, rtol=1e-12, atol=1e-14)
    g = torch.randn_like(k)
    for got, want in zip(torch.autograd.grad(k, args, g), torch.autograd.grad(ref, args, g)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles of 16 entries, so that rows and batch members are split across many tiles."""
    monkeypatch.setattr(tiled, "TILE_ELEMENTS", 16)
    monkeypatch.setattr(tiled, "_tile_size", lambda: 16)


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("shape", [(3, 5, 7, 3, 3), (2, 40, 30, 2, 4), (1, 1, 1, 1, 1)])
def test_forward_and_gradients_match_reference(shared, shape):
    b, n, m, d, q = shape
    assert_matches_reference(inputs(b, n, m, d, q, shared), (NONE,) * d, (NONE,) * d)


@pytest.mark.parametrize("shared", [True, False])
def test_many_small_tiles_give_the_same_values_and_gradients(small_tiles, shared):
    args = inputs(batch=3, n=9, m=5, d=3, q=2, shared=shared, seed=1)
    assert_matches_reference(args, (NONE,) * 3, (NONE,) * 3)


def test_gradcheck():
    args = inputs(batch=2, n=3, m=4, d=2, q=2, shared=False, seed=2)
    skip, unit = (frozenset({1}), NONE), (NONE, frozenset({0}))
    assert torch.autograd.gradcheck(lambda *t: SpectralProduct.apply(*t, skip, unit), args)


def test_skipped_and_unit_cosine_components_are_exact_removals():
    x1, x2, w, mu, s = inputs(batch=2, n=6, m=4, d=2, q=3, seed=3)
    skip, unit = (frozenset({2}), NONE), (frozenset({0}), frozenset({1, 2}))
    w_ref, mu_ref = w.detach().clone(), mu.detach().clone()
    w_ref[:, 0, 2] = 0.0
    mu_ref[:, 0, 0] = 0.0
    mu_ref[:, 1, 1:] = 0.0
    k = SpectralProduct.apply(x1, x2, w, mu, s, skip, unit)
    torch.testing.assert_close(k, reference(x1, x2, w_ref, mu_ref, s), rtol=1e-12, atol=1e-14)


def test_only_the_requested_gradients_are_computed(monkeypatch):
    # An acquisition function asks for d value / d X alone although the kernel's parameters
    # require grad; the backward pass must not spend time on the parameters' gradients.
    x1, x2, raw_w, mu, s = inputs(seed=4)
    w = raw_w.softmax(-1)  # kernel parameters reach the kernel through transforms, as in a GP
    seen = []
    original = tiled._backward

    def spy(*args):
        seen.append(args[-1])
        return original(*args)

    monkeypatch.setattr(tiled, "_backward", spy)
    k = SpectralProduct.apply(x1, x2, w, mu, s, (NONE,) * 3, (NONE,) * 3)
    (gx,) = torch.autograd.grad(k.sum(), x1)
    torch.testing.assert_close(gx, torch.autograd.grad(reference(x1, x2, w, mu, s).sum(), x1)[0])
    assert seen[-1] == (True, False, False, False, False)


def test_all_components_skipped_gives_zero_factor():
    x1, x2, w, mu, s = inputs(d=2, q=2, seed=5)
    skip = (frozenset({0, 1}), NONE)
    k = SpectralProduct.apply(x1, x2, w, mu, s, skip, (NONE, NONE))
    assert torch.equal(k, torch.zeros_like(k))
    g = torch.autograd.grad(k.sum(), (x1, w))
    assert all(torch.isfinite(t).all() for t in g)


def test_float32_and_empty_inputs():
    args = inputs(dtype=torch.float32, seed=6)
    k = SpectralProduct.apply(*args, (NONE,) * 3, (NONE,) * 3)
    assert k.dtype == torch.float32
    torch.testing.assert_close(k, reference(*args), rtol=1e-5, atol=1e-6)
    w = torch.ones(2, 1, dtype=DTYPE)
    assert spectral_mixture_covariance(torch.rand(0, 2), torch.rand(3, 2), w, w, w).shape == (0, 3)
    assert spectral_mixture_covariance(torch.rand(4, 2), torch.rand(0, 2), w, w, w).shape == (4, 0)


def test_public_function_broadcasts_batches_like_the_plain_formula():
    g = torch.Generator().manual_seed(7)
    x1 = torch.rand(4, 1, 5, 2, generator=g, dtype=DTYPE)  # inputs batch (4, 1)
    x2 = torch.rand(6, 2, generator=g, dtype=DTYPE)  # no batch
    w = torch.rand(3, 2, 2, generator=g, dtype=DTYPE)  # kernel batch (3,)
    mu, s = 2 * torch.rand(3, 2, 2, generator=g, dtype=DTYPE), torch.rand(3, 2, 2, generator=g, dtype=DTYPE)
    k = spectral_mixture_covariance(x1, x2, w, mu, s)
    assert k.shape == (4, 3, 5, 6)
    for i in range(4):
        for b in range(3):
            want = reference(x1[i], x2[None], w[b : b + 1], mu[b : b + 1], s[b : b + 1])[0]
            torch.testing.assert_close(k[i, b], want, rtol=1e-12, atol=1e-14)


def test_torch_func_transforms_fall_back_to_plain_operations():
    # The tiled Function has no vmap/functorch rules; inside torch.func the plain path is used.
    g = torch.Generator().manual_seed(8)
    x1, x2 = torch.rand(4, 2, generator=g, dtype=DTYPE), torch.rand(3, 2, generator=g, dtype=DTYPE)
    w = torch.full((2, 2), 0.5, dtype=DTYPE)
    mu, s = torch.rand(2, 2, generator=g, dtype=DTYPE), torch.rand(2, 2, generator=g, dtype=DTYPE)
    f = lambda a: spectral_mixture_covariance(a, x2, w, mu, s).sum()  # noqa: E731
    jac = torch.func.grad(f)(x1)
    a = x1.clone().requires_grad_()
    torch.testing.assert_close(jac, torch.autograd.grad(f(a), a)[0], rtol=1e-12, atol=1e-14)
    batched = torch.func.vmap(lambda a: spectral_mixture_covariance(a, x2, w, mu, s))(x1[:, None])
    torch.testing.assert_close(batched[:, 0], spectral_mixture_covariance(x1, x2, w, mu, s))


@pytest.fixture(params=["broadcast", "separable", "tiles"])
def path(request, monkeypatch):
    """Force :func:`spectral_mixture_covariance` onto one path: the single broadcast expression
    (small kernels), with its cosines per entry or per input row (``separable``), or the tiles
    and per-dimension loops (large ones)."""
    import pfn_kernels.kernels.covariance as covariance

    monkeypatch.setattr(covariance, "SMALL_ELEMENTS", 0 if request.param == "tiles" else 1 << 40)
    monkeypatch.setattr(covariance, "SEPARABLE_MIN_TERMS", 0 if request.param == "separable" else 1 << 40)
    return request.param


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_both_paths_match_the_formula_with_all_gradients(path, dtype):
    """Values, the gradients of inputs and parameters, the diagonal, kernel batches."""
    g = torch.Generator().manual_seed(11)
    x1 = torch.rand(4, 1, 5, 3, generator=g, dtype=dtype).requires_grad_()
    x2 = torch.rand(7, 3, generator=g, dtype=dtype).requires_grad_()
    w = torch.softmax(torch.randn(2, 3, 4, generator=g, dtype=dtype), -1).requires_grad_()
    mu = (3 * torch.rand(2, 3, 4, generator=g, dtype=dtype)).requires_grad_()
    s = (0.05 + torch.rand(2, 3, 4, generator=g, dtype=dtype)).requires_grad_()
    os = torch.tensor([1.5, 0.7], dtype=dtype)
    k = spectral_mixture_covariance(x1, x2, w, mu, s, outputscale=os)
    assert k.shape == (4, 2, 5, 7) and k.dtype == dtype
    want = torch.stack([os[b] * reference(x1[:, 0], x2.expand(4, 7, 3), w[b:b + 1], mu[b:b + 1], s[b:b + 1])
                        for b in range(2)], 1)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(k, want, **tol)
    gk = torch.randn(k.shape, generator=g, dtype=dtype)
    args = (x1, x2, w, mu, s)
    # float32 gradients (per entry or per input row cosines alike) are within about 1e-5 of the
    # float64 ones, and so is the float32 formula's
    gtol = dict(rtol=1e-4, atol=3e-5) if dtype == torch.float32 else tol
    for got, ref in zip(torch.autograd.grad(k, args, gk), torch.autograd.grad(want, args, gk)):
        torch.testing.assert_close(got, ref, **gtol)
    xd = torch.rand(4, 1, 7, 3, generator=g, dtype=dtype)
    diag = spectral_mixture_covariance(xd, x2, w, mu, s, outputscale=os, diag=True)
    full = spectral_mixture_covariance(xd, x2, w, mu, s, outputscale=os)
    torch.testing.assert_close(diag, full.diagonal(dim1=-2, dim2=-1), **tol)


def test_the_broadcast_path_passes_gradcheck(path):
    args = inputs(batch=2, n=3, m=4, d=2, q=2, shared=False, seed=12)
    assert torch.autograd.gradcheck(lambda *t: spectral_mixture_covariance(*t), args)


def test_small_kernels_take_the_broadcast_path(monkeypatch):
    """An acquisition-sized call (4 candidates, 40 training points, d = 6, Q = 4) is one broadcast
    expression; a 300 x 300 training matrix is tiled."""
    import pfn_kernels.kernels.covariance as covariance

    calls = []
    real = covariance._broadcast_covariance
    monkeypatch.setattr(covariance, "_broadcast_covariance", lambda *a: calls.append(1) or real(*a))
    w = torch.full((6, 4), 0.25, dtype=DTYPE)
    spectral_mixture_covariance(torch.rand(4, 1, 6, dtype=DTYPE), torch.rand(40, 6, dtype=DTYPE), w, w, w)
    assert calls == [1]
    spectral_mixture_covariance(torch.rand(300, 6, dtype=DTYPE), torch.rand(300, 6, dtype=DTYPE), w, w, w)
    assert calls == [1]


# ---------------------------------------------------------------- merged RBF dimensions
SHORTCUTS = dict(min_weight=1e-16, unit_frequency=1.000001e-6)


def collapsed_inputs(dtype=DTYPE, seed=13, kbatch=(2,)):
    """d = 5 spectra, Q = 4, with dimensions 0, 2 and 3 one zero-frequency Gaussian (at
    component 0, 1 and 0: the others of weight 1e-20, as the kernel stores zeros)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.softmax(torch.randn(*kbatch, 5, 4, generator=g, dtype=dtype), -1)
    mu = 2 * torch.rand(*kbatch, 5, 4, generator=g, dtype=dtype)
    s = 0.1 + torch.rand(*kbatch, 5, 4, generator=g, dtype=dtype)
    for j, q in ((0, 0), (2, 1), (3, 0)):
        w[..., j, :] = 1e-20
        w[..., j, q] = 1.0
        mu[..., j, :] = 1e-6
    return w, mu, s


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_merged_rbf_dimensions_match_the_formula_with_gradients(path, dtype):
    """Dimensions left with one zero-frequency component are one exponential of a weighted
    squared distance: values, input and bandwidth gradients, the diagonal and kernel batches
    agree with the plain formula (the dropped components of weight 1e-20 aside)."""
    import pfn_kernels.kernels.covariance as covariance

    w, mu, s = collapsed_inputs(dtype)
    s.requires_grad_()
    g = torch.Generator().manual_seed(14)
    x1 = torch.rand(4, 1, 6, 5, generator=g, dtype=dtype).requires_grad_()
    x2 = torch.rand(9, 5, generator=g, dtype=dtype).requires_grad_()
    os = torch.tensor([1.5, 0.7], dtype=dtype)
    calls = []
    real = covariance._rbf_covariance
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(covariance, "_rbf_covariance", lambda *a: calls.append(a[-2]) or real(*a))
        k = spectral_mixture_covariance(x1, x2, w, mu, s, outputscale=os, **SHORTCUTS)
    # merged in a large kernel; a small one with only some dimensions collapsed stays one
    # broadcast expression
    assert calls == ([{0: 0, 2: 1, 3: 0}] if path == "tiles" else [])
    want = os[:, None, None] * torch.stack(
        [reference(x1[:, 0], x2.expand(4, 9, 5), w[b:b + 1], mu[b:b + 1], s[b:b + 1]) for b in range(2)], 1
    )
    # float64: the zero-frequency cosine taken as 1 changes each factor by < 2 pi^2 (1e-6)^2
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(k, want, **tol)
    gk = torch.randn_like(k)
    args = (x1, x2, s)
    # float32 gradients: within about 1e-5 of the float64 ones (see the test above)
    gtol = dict(rtol=1e-4, atol=3e-5) if dtype == torch.float32 else tol
    for got, ref in zip(torch.autograd.grad(k, args, gk), torch.autograd.grad(want, args, gk)):
        torch.testing.assert_close(got, ref, **gtol)
    xd = torch.rand(4, 1, 9, 5, generator=g, dtype=dtype)
    diag = spectral_mixture_covariance(xd, x2, w, mu, s, outputscale=os, diag=True, **SHORTCUTS)
    torch.testing.assert_close(diag, want.new_tensor(0) + spectral_mixture_covariance(
        xd, x2, w, mu, s, outputscale=os).diagonal(dim1=-2, dim2=-1), **tol)


def test_merged_rbf_dimensions_pass_gradcheck(monkeypatch):
    import pfn_kernels.kernels.covariance as covariance

    monkeypatch.setattr(covariance, "SMALL_ELEMENTS", 0)  # the merge, not one broadcast expression
    w, mu, s = collapsed_inputs(kbatch=())
    g = torch.Generator().manual_seed(15)
    x1 = torch.rand(3, 5, generator=g, dtype=DTYPE).requires_grad_()
    x2 = torch.rand(4, 5, generator=g, dtype=DTYPE).requires_grad_()
    f = lambda a, b, c: spectral_mixture_covariance(a, b, w, mu, c, **SHORTCUTS)  # noqa: E731
    assert torch.autograd.gradcheck(f, (x1, x2, s.requires_grad_()))


def test_every_dimension_collapsed_is_gpytorch_rbf():
    """One zero-frequency Gaussian of bandwidth s per dimension is an ARD RBF kernel with
    lengthscale 1 / (2 pi s) (Bochner), computed without any per-dimension factor."""
    from gpytorch.kernels import RBFKernel

    import pfn_kernels.kernels.covariance as covariance

    g = torch.Generator().manual_seed(16)
    d = 4
    s = 0.2 + torch.rand(d, 3, generator=g, dtype=DTYPE)
    w = torch.full((d, 3), 1e-20, dtype=DTYPE)
    w[:, 0] = 1.0
    mu = torch.full((d, 3), 1e-6, dtype=DTYPE)
    rbf = RBFKernel(ard_num_dims=d).to(DTYPE)
    rbf.lengthscale = 1 / (2 * math.pi * s[:, 0])
    x1, x2 = torch.rand(2, 7, d, generator=g, dtype=DTYPE), torch.rand(2, 30, d, generator=g, dtype=DTYPE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(covariance, "dimension_factor", None)  # never called
        mp.setattr(covariance, "_broadcast_covariance", None)
        k = spectral_mixture_covariance(x1, x2, w, mu, s, **SHORTCUTS)
    torch.testing.assert_close(k, rbf(x1, x2).to_dense(), rtol=1e-12, atol=1e-14)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_merged_rbf_dimensions_on_cuda_match_the_cpu():
    w, mu, s = collapsed_inputs()
    g = torch.Generator().manual_seed(17)
    x1, x2 = torch.rand(3, 6, 5, generator=g, dtype=DTYPE), torch.rand(3, 40, 5, generator=g, dtype=DTYPE)
    cpu = spectral_mixture_covariance(x1, x2, w[:1], mu[:1], s[:1], **SHORTCUTS)
    gpu = spectral_mixture_covariance(*(t.cuda() for t in (x1, x2, w[:1], mu[:1], s[:1])), **SHORTCUTS)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-10, atol=1e-12)


def test_merging_does_not_change_the_acquisition_decision(monkeypatch):
    """With a collapsed kernel, ``optimize_acqf`` picks the same candidates whether the RBF
    dimensions are merged or evaluated as spectral-mixture factors."""
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement
    from botorch.models import SingleTaskGP
    from botorch.optim import optimize_acqf

    import pfn_kernels.kernels.covariance as covariance
    from pfn_kernels import AmortizedSpectralKernel, SpectralParams

    g = torch.Generator().manual_seed(18)
    X = torch.rand(20, 3, generator=g, dtype=DTYPE)
    Y = (torch.sin(5 * X[:, :1]) + X[:, 1:2] ** 2).to(DTYPE)
    w = torch.zeros(3, 4, dtype=DTYPE)
    w[:, 0] = 1.0
    params = SpectralParams(w, torch.zeros_like(w), torch.full_like(w, 0.8), torch.tensor(1.0, dtype=DTYPE),
                            torch.tensor(1e-4, dtype=DTYPE))

    def candidates() -> torch.Tensor:
        kernel = AmortizedSpectralKernel().to(DTYPE)
        kernel.set_spectral_params(params)
        model = SingleTaskGP(X, Y, covar_module=kernel, outcome_transform=None).eval()
        model.likelihood.noise = params.noise
        torch.manual_seed(0)  # the sampler's seed and the raw samples
        acq = qLogNoisyExpectedImprovement(model, X_baseline=X)
        bounds = torch.stack([torch.zeros(3), torch.ones(3)]).to(DTYPE)
        return optimize_acqf(acq, bounds=bounds, q=2, num_restarts=2, raw_samples=32)[0]

    merged = candidates()
    monkeypatch.setattr(covariance, "rbf_dimensions", lambda *a: {})
    unmerged = candidates()
    torch.testing.assert_close(merged, unmerged, rtol=1e-6, atol=1e-8)


def test_broadcast_shape_agrees_with_torch():
    from pfn_kernels.kernels.covariance import _broadcast_shape

    for shapes in [((4, 1), (3,)), ((), (2, 5)), ((1,), (1,)), ((2, 1, 3), (7, 1), ())]:
        assert _broadcast_shape(*shapes) == torch.broadcast_shapes(*shapes)
    with pytest.raises(RuntimeError, match="do not broadcast"):
        _broadcast_shape((4, 2), (3, 2))
