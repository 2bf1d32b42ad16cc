"""The shared BO loop: problems, surrogates, failure handling and regret curves."""

from __future__ import annotations

import math

import pytest
import torch

from pfn_kernels.benchmarking import (
    METHODS,
    PROBLEMS,
    REGRET_FLOOR,
    fit_surrogate,
    gp_prior_problem,
    log_regret_curves,
    make_problem,
    mean_stderr,
    run_bo,
)
from pfn_kernels.network import DecoderConfig, SpectralDecoder


@pytest.fixture(scope="module")
def tiny_decoder():
    torch.manual_seed(0)
    return SpectralDecoder(DecoderConfig(width=16, num_heads=2, num_layers=1, num_bins=8)).eval()


@pytest.mark.parametrize("name", [p for p in PROBLEMS if not p.startswith("gp_prior")])
def test_test_functions_reach_their_known_optimum(name):
    problem = make_problem(name)
    optimizers = {
        "branin": [[-math.pi, 12.275]],
        "hartmann6": [[0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573]],
        "ackley4": [[0.0] * 4],
        "levy4": [[1.0] * 4],
        "rosenbrock4": [[1.0] * 4],
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


def test_gp_prior_function_has_about_unit_variance():
    values = torch.cat([
        gp_prior_problem(2, s, num_features=256, search_points=256, num_polish=1)
        .evaluate_unit(torch.rand(400, 2, dtype=torch.float64))
        for s in range(6)
    ])
    assert 0.2 < float(values.var()) < 5.0


def test_unknown_problem_and_method_are_errors():
    with pytest.raises(ValueError, match="Unknown problem"):
        make_problem("nope")
    with pytest.raises(ValueError, match="Unknown method"):
        run_bo(make_problem("branin"), "nope", n_init=3, n_iter=1)


@pytest.mark.parametrize("method", METHODS)
def test_run_bo_every_method(method, tiny_decoder):
    problem = make_problem("branin")
    result = run_bo(problem, method, seed=1, n_init=4, n_iter=2, decoder=tiny_decoder,
                    num_restarts=2, raw_samples=32, sm_restarts=2, sm_maxiter=20)
    assert result.X.shape == (6, 2) and result.Y.shape == (6,)
    assert bool((result.X >= problem.bounds[0]).all() and (result.X <= problem.bounds[1]).all())
    assert len(result.regret) == 6 and len(result.fit_times) == len(result.acq_times) == 2
    assert all(math.isfinite(r) and r >= 0 for r in result.regret)
    assert all(b <= a for a, b in zip(result.regret, result.regret[1:]))
    assert result.failures == []
    d = result.to_dict()
    assert d["method"] == method and d["fit_time_total"] == pytest.approx(sum(result.fit_times))


def test_same_seed_same_sobol_design_across_methods(tiny_decoder):
    problem = make_problem("branin")
    a = run_bo(problem, "amortized", seed=2, n_init=4, n_iter=1, decoder=tiny_decoder,
               num_restarts=2, raw_samples=16)
    b = run_bo(problem, "default_stgp", seed=2, n_init=4, n_iter=1, num_restarts=2, raw_samples=16)
    torch.testing.assert_close(a.X[:4], b.X[:4])


def test_a_failing_fit_is_recorded_and_the_run_goes_on():
    def broken_decoder(X, y):
        raise RuntimeError("decoder exploded")

    result = run_bo(make_problem("branin"), "amortized", seed=0, n_init=4, n_iter=2,
                    decoder=broken_decoder, num_restarts=2, raw_samples=16)
    assert len(result.Y) == 6
    assert sum("fit: RuntimeError: decoder exploded" in f for f in result.failures) == 2
    assert all(math.isfinite(r) for r in result.regret)


def test_fit_surrogate_returns_eval_models(tiny_decoder):
    X = torch.rand(10, 3, dtype=torch.float64)
    Y = X.sum(-1, keepdim=True).sin()
    for method in METHODS:
        model, info = fit_surrogate(method, X, Y, decoder=tiny_decoder, sm_restarts=2,
                                    sm_maxiter=10)
        assert not model.training and info.seconds > 0 and info.failure is None
        assert model.posterior(X[:2]).mean.shape == (2, 1)


def test_log_regret_curves_floor_and_stderr():
    runs = [{"regret": [1.0, 0.1, 0.0]}, {"regret": [1.0, 0.01, -1e-3]}]
    mean, se = log_regret_curves(runs)
    assert mean[0] == 0 and se[0] == 0
    assert mean[1] == pytest.approx(-1.5)
    assert mean[2] == pytest.approx(math.log10(REGRET_FLOOR))
    assert mean_stderr([1.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert mean_stderr([2.0]) == (2.0, 0.0)
