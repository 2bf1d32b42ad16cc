"""The harness's surrogates: every method builds and fits an eval-mode model."""

from __future__ import annotations

import torch

from pfn_kernels.experiments import METHODS, fit_surrogate


def test_fit_surrogate_returns_eval_models(tiny_decoder):
    X = torch.rand(10, 3, dtype=torch.float64)
    Y = X.sum(-1, keepdim=True).sin()
    for method in METHODS:
        model, info = fit_surrogate(method, X, Y, decoder=tiny_decoder, sm_restarts=2,
                                    sm_maxiter=10)
        assert not model.training and info.seconds > 0 and info.failure is None
        assert model.posterior(X[:2]).mean.shape == (2, 1)
