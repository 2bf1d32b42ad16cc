"""The shared BO loop: every method runs, designs are shared, failures are recorded."""

from __future__ import annotations

import doctest
import math

import pytest
import torch

from pfn_kernels.experiments import METHODS, loop, make_problem, run_bo


def test_unknown_method_is_an_error():
    with pytest.raises(ValueError, match="Unknown method"):
        run_bo(make_problem("branin"), "nope", n_init=3, n_iter=1)


@pytest.mark.parametrize("method", METHODS)
def test_run_bo_every_method(method, tiny_decoder):
    problem = make_problem("branin")
    result = run_bo(problem, method, seed=1, n_init=4, n_iter=2, decoder=tiny_decoder,
                    num_restarts=2, raw_samples=32, sm_restarts=2, sm_maxiter=20)
    assert result.X.shape == (6, 2) and result.Y.shape == (6,)
    # The design is the seed's scrambled Sobol points (shared by every method), and Y is f(X).
    sobol = torch.quasirandom.SobolEngine(2, scramble=True, seed=1).draw(4, dtype=torch.float64)
    torch.testing.assert_close(result.X[:4], problem.to_bounds(sobol))
    torch.testing.assert_close(result.Y, problem.function(result.X))
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


def test_doctest_example():
    result = doctest.testmod(loop)
    assert result.attempted > 0 and result.failed == 0
