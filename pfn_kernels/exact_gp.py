r"""Exact GP predictions and scores from covariance matrices (batched, differentiable).

Used by the training loss (the decoded kernel), by the benchmarks (decoded, fitted and oracle
kernels alike) and by tests. With context covariance :math:`K = K_{cc} + \sigma_n^2 I`,

.. math::
    \mu_* = K_{*c} K^{-1} \mathbf y, \qquad
    \sigma_*^2 = k_{**} - K_{*c} K^{-1} K_{c*} + \sigma_n^2,

the per-point negative log predictive density of held-out targets is
:math:`\tfrac12 \log(2\pi\sigma_*^2) + (y_* - \mu_*)^2 / (2\sigma_*^2)` (averaged over targets),
and the context negative log marginal likelihood per point is
:math:`\tfrac{1}{2n}[\mathbf y^\top K^{-1}\mathbf y + \log|K| + n\log 2\pi]`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)


@dataclass
class GPScores:
    """Per-task scores, each `(B,)`: target NLL and squared error per point, context NLML per point."""

    target_nll: Tensor
    target_mse: Tensor
    context_nlml: Tensor
    cholesky_failed: Tensor


def exact_gp_scores(
    k_cc: Tensor,
    k_tc: Tensor,
    k_tt_diag: Tensor,
    noise: Tensor,
    y_c: Tensor,
    y_t: Tensor,
    jitter: float = 1e-6,
) -> GPScores:
    """Scores of the GP with the given covariances (computed in float64).

    :param k_cc: `(B, n, n)` context covariance (without noise).
    :param k_tc: `(B, m, n)` target-context covariance.
    :param k_tt_diag: `(B, m)` prior variances at the targets.
    :param noise: `(B,)` noise variances.
    :param y_c: `(B, n)` context targets, or `(B, n, M)` realizations (scores averaged over M).
    :param y_t: `(B, m)` or `(B, m, M)` held-out targets.
    :param jitter: added to the diagonal, relative to the mean prior variance.
    """
    k_cc, k_tc, k_tt_diag, noise = (t.double() for t in (k_cc, k_tc, k_tt_diag, noise))
    multi = y_c.dim() == 3
    yc = (y_c if multi else y_c.unsqueeze(-1)).double()  # (B, n, M)
    yt = (y_t if multi else y_t.unsqueeze(-1)).double()
    n = k_cc.shape[-1]
    scale = k_cc.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-12)
    eye = torch.eye(n, dtype=k_cc.dtype, device=k_cc.device)
    a = k_cc + (noise + jitter * scale)[..., None, None] * eye
    chol, info = torch.linalg.cholesky_ex(a)
    failed = info > 0
    if failed.any():  # retry with heavy jitter rather than emitting NaN
        a_retry = a + (1e-3 * scale)[..., None, None] * eye
        chol = torch.where(failed[..., None, None], torch.linalg.cholesky_ex(a_retry)[0], chol)
    alpha = torch.cholesky_solve(yc, chol)  # (B, n, M)
    logdet = 2 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    nlml = 0.5 * ((yc * alpha).sum(-2).mean(-1) + logdet) / n + 0.5 * LOG_2PI
    mean = k_tc @ alpha  # (B, m, M)
    v = torch.linalg.solve_triangular(chol, k_tc.transpose(-1, -2), upper=False)  # (B, n, m)
    var = (k_tt_diag - v.pow(2).sum(-2) + noise[..., None]).clamp_min(1e-10)  # (B, m)
    sq = (yt - mean).pow(2)
    nll = 0.5 * (LOG_2PI + var.log()[..., None] + sq / var[..., None])
    return GPScores(
        target_nll=nll.mean((-2, -1)),
        target_mse=sq.mean((-2, -1)),
        context_nlml=nlml,
        cholesky_failed=failed,
    )
