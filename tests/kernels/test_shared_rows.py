"""Rows shared by every batch member (an acquisition's baseline) are evaluated once, exactly."""

from __future__ import annotations

import math

import pytest
import torch

from pfn_kernels.kernels import covariance, spectral_mixture_covariance
from pfn_kernels.kernels.amortized_spectral_kernel import NEGLIGIBLE_WEIGHT, ZERO_FREQUENCY

DTYPE = torch.float64
SHORTCUTS = {"min_weight": NEGLIGIBLE_WEIGHT, "unit_frequency": ZERO_FREQUENCY}


def reference(x1, x2, w, mu, s, os):
    tau = (x1.unsqueeze(-2) - x2.unsqueeze(-3)).unsqueeze(-1)  # (*b, n, m, d, 1)
    terms = w * torch.exp(-2 * math.pi**2 * (s * tau) ** 2) * torch.cos(2 * math.pi * mu * tau)
    return os * terms.sum(-1).prod(-1)


def parameters(d=3, q=4, seed=0, dtype=DTYPE, rbf=False):
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(d, q, generator=g, dtype=dtype) + 0.1
    mu = 3 * torch.rand(d, q, generator=g, dtype=dtype)
    if rbf:  # one dimension an RBF factor, merged with the shortcuts (which give the zero weights
        w[0, 1:] = 0.0  # they leave out no gradient, nor the frequencies whose cosine they take
        mu[:, 0] = 1e-6  # as 1: the kernel's zero frequency, as it stores it)
    s = 0.05 + torch.rand(d, q, generator=g, dtype=dtype)
    os = torch.tensor(1.7, dtype=dtype)
    return [t.requires_grad_() for t in (w / w.sum(-1, keepdim=True), mu, s, os)]


def baseline_and_candidates(batch=5, k=6, q=2, m=40, d=3, seed=1, dtype=DTYPE):
    """x1 `(batch, k + q, d)` whose first k rows are the same in every member (a leaf, so each
    member's gradient is its own) and x2 `(batch, m, d)` expanded from one set of points."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(k, d, generator=g, dtype=dtype)
    cand = torch.rand(batch, q, d, generator=g, dtype=dtype)
    x1 = torch.cat([base.expand(batch, k, d), cand], -2).requires_grad_()
    train = torch.rand(m, d, generator=g, dtype=dtype).requires_grad_()
    return x1, train, train.expand(batch, m, d)


@pytest.fixture
def always_shared(monkeypatch):
    """Every kernel of two or more batch members takes the shared-rows path when it can (and the
    other blocks the tiles)."""
    monkeypatch.setattr(covariance, "SMALL_ELEMENTS", 0)
    monkeypatch.setattr(covariance, "SHARED_MIN_TERMS", 0)
    calls = []
    original = covariance._with_shared_heads

    def spy(*args, **kwargs):
        calls.append(args[-2:])  # (k1, k2)
        return original(*args, **kwargs)

    monkeypatch.setattr(covariance, "_with_shared_heads", spy)
    return calls


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_values_and_every_gradient_match_the_formula(always_shared, dtype):
    w, mu, s, os = parameters(dtype=dtype)
    x1, train, x2 = baseline_and_candidates(dtype=dtype)
    k = spectral_mixture_covariance(x1, x2, w, mu, s, os, **SHORTCUTS)
    assert always_shared == [(6, 40)]
    ref = reference(x1, x2, w, mu, s, os)
    # the shortcuts take the cosine of a zero-frequency component as 1: within 2e-11
    tol = {"rtol": 1e-9, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-5}
    torch.testing.assert_close(k, ref, **tol)
    g = torch.randn_like(k)
    inputs = (x1, train, w, mu, s, os)
    for got, want in zip(torch.autograd.grad(k, inputs, g), torch.autograd.grad(ref, inputs, g)):
        torch.testing.assert_close(got, want, **tol)


def test_an_rbf_dimension_merged_inside_the_shared_block(always_shared):
    w, mu, s, os = parameters(rbf=True)
    x1, train, x2 = baseline_and_candidates()
    k = spectral_mixture_covariance(x1, x2, w, mu, s, os, **SHORTCUTS)
    ref = reference(x1, x2, w, mu, s, os)
    torch.testing.assert_close(k, ref, rtol=1e-9, atol=1e-10)
    g = torch.randn_like(k)
    inputs = (x1, train, s, os)
    for got, want in zip(torch.autograd.grad(k, inputs, g), torch.autograd.grad(ref, inputs, g)):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


def test_each_member_gets_the_gradient_of_its_own_shared_rows(always_shared):
    w, mu, s, os = parameters()
    x1, _, x2 = baseline_and_candidates(batch=3)
    g = torch.randn(3, x1.shape[1], x2.shape[1], dtype=DTYPE)
    got = torch.autograd.grad(spectral_mixture_covariance(x1, x2, w, mu, s, os), x1, g)[0]
    want = torch.autograd.grad(reference(x1, x2, w, mu, s, os), x1, g)[0]
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(got[0, :6], got[1, :6])  # different output gradients, different input ones


def test_the_block_derivatives_are_reused_only_for_equal_inputs(always_shared):
    """One optimization evaluates the same block many times; a changed parameter or baseline
    must not reuse the last derivatives."""
    w, mu, s, os = parameters()
    x1, _, x2 = baseline_and_candidates()
    for step in range(3):
        if step == 1:
            with torch.no_grad():
                s.mul_(1.3)  # new hyperparameters, in place (as a refit writes them)
        if step == 2:
            x1 = x1.detach().clone()
            x1[:, :6] += 0.01  # a new baseline
            x1.requires_grad_()
        g = torch.randn(x1.shape[0], x1.shape[1], x2.shape[1], dtype=DTYPE)
        got = torch.autograd.grad(spectral_mixture_covariance(x1, x2, w, mu, s, os), x1, g)[0]
        want = torch.autograd.grad(reference(x1, x2, w, mu, s, os), x1, g)[0]
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert covariance._SharedBlockCache.entries


def test_shared_rows_on_both_sides(always_shared):
    """The joint covariance of baseline and candidates with itself: the baseline block once."""
    w, mu, s, os = parameters()
    x1, _, _ = baseline_and_candidates(batch=4, k=7, q=3)
    k = spectral_mixture_covariance(x1, x1, w, mu, s, os, **SHORTCUTS)
    assert always_shared[0] == (7, 7)
    ref = reference(x1, x1, w, mu, s, os)
    torch.testing.assert_close(k, ref, rtol=1e-9, atol=1e-10)
    g = torch.randn_like(k)
    for got, want in zip(torch.autograd.grad(k, (x1, w, mu, s), g), torch.autograd.grad(ref, (x1, w, mu, s), g)):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


def test_gradcheck(always_shared):
    w, mu, s, os = parameters(d=2, q=2)
    x1, train, _ = baseline_and_candidates(batch=3, k=2, q=1, m=4, d=2)
    assert torch.autograd.gradcheck(
        lambda a, b, *p: spectral_mixture_covariance(a, b.expand(3, 4, 2), *p), (x1, train, w, mu, s, os)
    )
    assert always_shared


def test_which_rows_count_as_shared():
    batch = torch.Size([4])
    x = torch.rand(4, 6, 2, dtype=DTYPE)
    x[:, :3] = x[0, :3]
    assert covariance._leading_shared_rows(x, batch) == 3
    x[2, 1, 0] += 1e-15  # equal means equal: one member differs in row 1
    assert covariance._leading_shared_rows(x, batch) == 1
    x[:, 0] = math.nan  # NaN never matches
    assert covariance._leading_shared_rows(x, batch) == 0
    assert covariance._leading_shared_rows(torch.rand(1, 6, 2), batch) == 6  # broadcast: all shared


def test_small_or_unshared_kernels_take_the_usual_paths(monkeypatch):
    w = parameters()[0]
    x1, _, x2 = baseline_and_candidates()  # 5 members, 6 shared rows of 8, 40 columns, d = 3, Q = 4
    assert covariance._shared_heads(x1, x2, w) == (6, 40)  # saves 4 * 6 * 40 * 12 terms
    monkeypatch.setattr(covariance, "SHARED_MIN_TERMS", 4 * 6 * 40 * 12 + 1)
    assert covariance._shared_heads(x1, x2, w) is None  # too little saved: one broadcast expression
    monkeypatch.setattr(covariance, "SHARED_MIN_TERMS", 0)
    assert covariance._shared_heads(x1[:1], x2[:1], w) is None  # one member: nothing to share
    other = torch.rand_like(x1)  # no shared rows
    assert covariance._shared_heads(other, x2, w) is None


def test_no_gradient_needed(always_shared):
    w, mu, s, os = parameters()
    x1, _, x2 = baseline_and_candidates()
    with torch.no_grad():
        k = spectral_mixture_covariance(x1, x2, w, mu, s, os, **SHORTCUTS)
        torch.testing.assert_close(k, reference(x1, x2, w, mu, s, os), rtol=1e-9, atol=1e-10)
    assert always_shared


def test_acquisition_decision_unchanged(monkeypatch):
    """qLogNEI over a baseline of 60 points, 4 restarts: the same candidate with and without."""
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement
    from botorch.optim import optimize_acqf

    from pfn_kernels import AmortizedSingleTaskGP
    from pfn_kernels.kernels import AmortizedSpectralKernel
    from pfn_kernels.spectral_params import SpectralParams

    g = torch.Generator().manual_seed(0)
    X = torch.rand(60, 3, generator=g, dtype=DTYPE)
    Y = torch.sin(5 * X).sum(-1, keepdim=True)
    model = AmortizedSingleTaskGP(X, Y)
    w, mu, s, _ = (t.detach() for t in parameters())
    kernel = AmortizedSpectralKernel(ard_num_dims=3)
    kernel.set_spectral_params(SpectralParams(w, mu, s, torch.tensor(1.0, dtype=DTYPE),
                                              torch.tensor(1e-3, dtype=DTYPE)))
    model.covar_module = kernel.to(DTYPE)
    model.likelihood.noise = 1e-3
    model.eval()
    bounds = torch.stack([torch.zeros(3), torch.ones(3)]).to(DTYPE)

    def candidate(shared: bool) -> torch.Tensor:
        if not shared:
            monkeypatch.setattr(covariance, "_shared_heads", lambda *args: None)
        torch.manual_seed(1)
        acq = qLogNoisyExpectedImprovement(model, X_baseline=X, prune_baseline=False)
        return optimize_acqf(acq, bounds, q=1, num_restarts=4, raw_samples=64)[0]

    monkeypatch.setattr(covariance, "SHARED_MIN_TERMS", 1 << 10)  # so that the shared path is taken
    taken = []
    original = covariance._with_shared_heads
    monkeypatch.setattr(covariance, "_with_shared_heads", lambda *a: taken.append(a[-2:]) or original(*a))
    shared = candidate(True)
    assert (60, 60) in taken  # the baseline (all 60 points) against the training points, once
    torch.testing.assert_close(shared, candidate(False), rtol=1e-6, atol=1e-6)


def test_candidate_gradients_alone_do_not_reevaluate_the_block(always_shared, monkeypatch):
    """An acquisition optimizer asks for the candidates' gradient alone: the block is then taken
    from the cache, and its parameter backward (a re-evaluation) never runs."""
    w, mu, s, os = parameters()
    x1, _, x2 = baseline_and_candidates()
    reevaluated = []
    backward = covariance._SharedBlock.backward
    monkeypatch.setattr(covariance._SharedBlock, "backward",
                        staticmethod(lambda ctx, g: reevaluated.append(1) or backward(ctx, g)))
    covariance._SharedBlockCache.entries = []
    computed = []
    tau_gradient = covariance._tau_gradient
    monkeypatch.setattr(covariance, "_tau_gradient", lambda *a: computed.append(1) or tau_gradient(*a))
    for _ in range(3):
        torch.autograd.grad(spectral_mixture_covariance(x1, x2, w, mu, s, os).sum(), x1)
    assert not reevaluated and len(computed) == 1  # the derivatives once, for three evaluations
    torch.autograd.grad(spectral_mixture_covariance(x1, x2, w, mu, s, os).sum(), w)
    assert reevaluated
