"""GP numerics against closed forms."""

import math

import torch

from pfn_kernels.exact_gp import exact_gp_scores, profile_log_likelihood, profile_quadratic_form


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
