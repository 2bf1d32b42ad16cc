"""The harness's test problems: known optima, GP samples from the task prior."""

from __future__ import annotations

import math

import pytest
import torch

from pfn_kernels.experiments import GPSampleFunction, PROBLEMS, gp_prior_problem, make_problem


@pytest.mark.parametrize("name", [p for p in PROBLEMS if not p.startswith("gp_prior")])
def test_test_functions_reach_their_known_optimum(name):
    problem = make_problem(name)
    optimizers = {
        "branin": [[-math.pi, 12.275]],
        "hartmann6": [[0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573]],
        "ackley4": [[0.0] * 4],
        "levy4": [[1.0] * 4],
        "rosenbrock4": [[1.0] * 4],
        "dixonprice4": [[2 ** (-(2**i - 2) / 2**i) for i in range(1, 5)]],
        "powell4": [[0.0] * 4],
        "styblinskitang3": [[-2.903534] * 3],
        "cosine8": [[0.0] * 8],
        "levy12": [[1.0] * 12],
    }
    x = torch.tensor(optimizers[name], dtype=torch.float64)
    U = (x - problem.bounds[0]) / (problem.bounds[1] - problem.bounds[0])
    assert float(problem.evaluate_unit(U)[0]) == pytest.approx(problem.optimal_value, abs=1e-4)
    values = problem.evaluate_unit(torch.rand(256, problem.dim, dtype=torch.float64))
    assert bool((values <= problem.optimal_value + 1e-6).all())


def test_gp_prior_problem_is_deterministic_and_its_optimum_is_an_upper_estimate():
    a, b, c = (gp_prior_problem(2, seed, num_features=256, search_points=1024, num_polish=2)
               for seed in (3, 3, 4))
    U = torch.rand(500, 2, dtype=torch.float64)
    torch.testing.assert_close(a.evaluate_unit(U), b.evaluate_unit(U))
    assert not torch.allclose(a.evaluate_unit(U), c.evaluate_unit(U))
    assert a.optimal_value == b.optimal_value
    assert float(a.evaluate_unit(U).max()) <= a.optimal_value + 1e-9
    assert "task prior" in a.description


def test_gp_sample_function_has_unit_prior_variance():
    """Var f(x) = (2/L) sum_i (sin^2 + cos^2) = 1 at every x, over the coefficients' draws."""
    g = torch.Generator().manual_seed(0)
    omega = 3 * torch.randn(64, 2, generator=g, dtype=torch.float64)  # L/2 = 64 frequencies
    coeffs = torch.randn(128, 4000, generator=g, dtype=torch.float64)  # 4000 sample paths
    values = GPSampleFunction(omega, coeffs)(torch.rand(10, 2, generator=g, dtype=torch.float64))
    assert values.shape == (10, 4000)
    # the variance of 4000 Gaussian draws has a standard error of about sqrt(2 / 4000) = 0.022
    torch.testing.assert_close(values.var(-1), torch.ones(10, dtype=torch.float64), atol=0.1, rtol=0)


def test_unknown_problem_is_an_error():
    with pytest.raises(ValueError, match="Unknown problem"):
        make_problem("nope")
