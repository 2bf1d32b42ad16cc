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


@pytest.fixture(params=["broadcast", "tiles"])
def path(request, monkeypatch):
    """Force :func:`spectral_mixture_covariance` onto one path: the single broadcast expression
    (small kernels) or the tiles and per-dimension loops (large ones)."""
    import pfn_kernels.kernels.covariance as covariance

    monkeypatch.setattr(covariance, "SMALL_ELEMENTS", 1 << 40 if request.param == "broadcast" else 0)
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
    gk = torch.randn_like(k)
    args = (x1, x2, w, mu, s)
    for got, ref in zip(torch.autograd.grad(k, args, gk), torch.autograd.grad(want, args, gk)):
        torch.testing.assert_close(got, ref, **tol)
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
