"""GP numerics against closed forms."""

import math

import numpy as np
import pytest
import torch

from pfn_kernels.exact_gp import (
    PROFILE_JITTER,
    exact_gp_scores,
    gls_quadratic_form,
    profile_log_likelihood,
    profile_quadratic_form,
)


def _rbf(a, b):
    return torch.exp(-((a.unsqueeze(-2) - b.unsqueeze(-3)) ** 2).sum(-1) / 0.1)


def _problem(n=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, n, 2, generator=g, dtype=torch.float64)
    y = torch.randn(1, n, generator=g, dtype=torch.float64)
    return _rbf(x, x), y


def test_profile_log_likelihood_matches_closed_form():
    """-n/2 log(y'A^-1 y / n) - 1/2 log|A| with A = K + (r + 1e-6) I."""
    k, y = _problem()
    log_r = torch.tensor([math.log(0.05)], dtype=torch.float64)
    a = k[0] + (0.05 + 1e-6) * torch.eye(12, dtype=torch.float64)
    expected = -6 * torch.log(y[0] @ torch.linalg.solve(a, y[0]) / 12) - 0.5 * torch.logdet(a)
    torch.testing.assert_close(profile_log_likelihood(k, y, log_r)[0], expected)
    quad, _, info = profile_quadratic_form(k, y, log_r)
    torch.testing.assert_close(quad[0], y[0] @ torch.linalg.solve(a, y[0]))
    assert int(info[0]) == 0


def test_profile_log_likelihood_of_a_failed_factor_is_minus_inf():
    k, y = _problem()
    bad = k.clone()
    bad[0, 0, 1] = bad[0, 1, 0] = 5.0  # not positive definite
    log_r = torch.tensor([math.log(1e-3)], dtype=torch.float64)
    assert profile_log_likelihood(torch.stack([k, bad]), y, log_r).tolist()[1] == [-math.inf]


def test_exact_gp_scores_match_closed_form():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(1, 14, 2, generator=g, dtype=torch.float64)
    k, k_tc = _rbf(x[:, :10], x[:, :10]), _rbf(x[:, 10:], x[:, :10])
    y = torch.randn(1, 10, generator=g, dtype=torch.float64)
    y_t = torch.randn(1, 4, generator=g, dtype=torch.float64)
    noise = torch.tensor([0.1], dtype=torch.float64)
    s = exact_gp_scores(k, k_tc, torch.ones(1, 4, dtype=torch.float64), noise, y, y_t, jitter=0.0)
    a = k[0] + 0.1 * torch.eye(10, dtype=torch.float64)
    mean = k_tc[0] @ torch.linalg.solve(a, y[0])
    var = 1 - (k_tc[0] @ torch.linalg.solve(a, k_tc[0].T)).diagonal() + 0.1
    nll = 0.5 * (math.log(2 * math.pi) + var.log() + (y_t[0] - mean) ** 2 / var)
    torch.testing.assert_close(s.target_nll[0], nll.mean())
    torch.testing.assert_close(s.target_mse[0], ((y_t[0] - mean) ** 2).mean())
    nlml = 0.5 * (y[0] @ torch.linalg.solve(a, y[0]) + torch.logdet(a)) / 10 + 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(s.context_nlml[0], nlml)
    assert not bool(s.cholesky_failed[0])


def test_gls_mean_and_residual_form_match_closed_form():
    """c = 1'A^-1 y / 1'A^-1 1 and q = (y - c)'A^-1 (y - c), with A = K + (r + 1e-6) I."""
    k, y = _problem(n=15, seed=4)
    y = y + 3.0  # an offset the GLS mean must find
    log_r = torch.tensor([math.log(0.02)], dtype=torch.float64)
    a = (k[0] + (0.02 + PROFILE_JITTER) * torch.eye(15, dtype=torch.float64)).numpy()
    yn, one = y[0].numpy(), np.ones(15)
    c = one @ np.linalg.solve(a, yn) / (one @ np.linalg.solve(a, one))
    q = (yn - c) @ np.linalg.solve(a, yn - c)
    got_c, got_q, info = gls_quadratic_form(k, y, log_r)
    assert got_c.item() == pytest.approx(c, rel=1e-10) and got_q.item() == pytest.approx(q, rel=1e-10)
    assert int(info) == 0
    # the maximum-likelihood constant: no other c gives a smaller residual form
    for shift in (-0.1, 0.1):
        r = yn - c - shift
        assert r @ np.linalg.solve(a, r) > q
    # M realizations share one mean: the mean over columns; q averages the columns' forms
    y3 = torch.stack([y[0], y[0] + 1.0], -1)[None]
    c3, q3, _ = gls_quadratic_form(k, y3, log_r)
    assert c3.item() == pytest.approx(c + 0.5, rel=1e-10)
    r1, r2 = yn - c - 0.5, yn + 1.0 - c - 0.5
    assert q3.item() == pytest.approx(0.5 * (r1 @ np.linalg.solve(a, r1) + r2 @ np.linalg.solve(a, r2)), rel=1e-10)


def test_gls_mean_of_uncorrelated_points_is_the_sample_mean():
    y = torch.randn(1, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 2
    c, q, _ = gls_quadratic_form(torch.eye(9, dtype=torch.float64)[None], y, torch.zeros(1, dtype=torch.float64))
    assert c.item() == pytest.approx(y.mean().item(), rel=1e-12)
    assert q.item() == pytest.approx(((y - y.mean()) ** 2).sum().item() / (1 + 1 + PROFILE_JITTER), rel=1e-9)


def test_exact_gp_scores_with_a_constant_mean_score_the_centred_targets():
    k, y = _problem(n=10)
    g = torch.Generator().manual_seed(5)
    k_tc, y_t = 0.3 * k[:, :4], torch.randn(1, 4, generator=g, dtype=torch.float64)
    noise, c = torch.tensor([0.1], dtype=torch.float64), torch.tensor([2.5], dtype=torch.float64)
    ones = torch.ones(1, 4, dtype=torch.float64)
    shifted = exact_gp_scores(k, k_tc, ones, noise, y + c, y_t + c, mean=c)
    plain = exact_gp_scores(k, k_tc, ones, noise, y, y_t)
    torch.testing.assert_close(shifted.target_nll, plain.target_nll)
    torch.testing.assert_close(shifted.context_nlml, plain.context_nlml)
