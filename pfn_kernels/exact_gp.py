r"""GP numerics on covariance matrices: exact scores, the profile likelihood, safe factors.

Every Cholesky factorization of the package outside GPyTorch's own lives here, each with the
failure policy its caller needs:

- :func:`exact_gp_scores` (training loss, benchmarks, tests): a heavier jitter where a factor
  fails, and the failures reported, so that a loss never raises;
- :func:`profile_quadratic_form` / :func:`profile_log_likelihood` (the inference stages): a
  failed candidate scores :math:`-\infty` and is never chosen;
- :func:`robust_cholesky` (sampling the prior): increasing jitters, then an eigendecomposition,
  so that every task gets a factor.

Scores: with context covariance :math:`K = K_{cc} + \sigma_n^2 I`,

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
#: Diagonal jitters (relative to the unit prior variance) tried in turn by :func:`robust_cholesky`.
JITTERS = (1e-8, 1e-6, 1e-4, 1e-2)
#: Diagonal jitter of the profile likelihood, relative to a unit-outputscale kernel.
PROFILE_JITTER = 1e-6


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
    mean: Tensor | None = None,
) -> GPScores:
    """Scores of the GP with the given covariances (computed in float64).

    :param k_cc: `(B, n, n)` context covariance (without noise).
    :param k_tc: `(B, m, n)` target-context covariance.
    :param k_tt_diag: `(B, m)` prior variances at the targets.
    :param noise: `(B,)` noise variances.
    :param y_c: `(B, n)` context targets, or `(B, n, M)` realizations (scores averaged over M).
    :param y_t: `(B, m)` or `(B, m, M)` held-out targets.
    :param jitter: added to the diagonal, relative to the mean prior variance.
    :param mean: `(B,)` the GP's constant mean, subtracted from both targets (default 0).
    """
    k_cc, k_tc, k_tt_diag, noise = (t.double() for t in (k_cc, k_tc, k_tt_diag, noise))
    if mean is not None:
        shift = mean.reshape(-1, *([1] * (y_c.dim() - 1)))
        y_c, y_t = y_c - shift.to(y_c), y_t - shift.to(y_t)
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


def profile_quadratic_form(k: Tensor, y: Tensor, log_noise_ratio: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r""":math:`\mathbf y^\top (K + (r + 10^{-6}) I)^{-1} \mathbf y` in float64, with the Cholesky
    factor and its ``info`` (nonzero where the factorization failed).

    :param k: `(*c, B, n, n)` unit-outputscale kernel matrices (any leading candidate dimensions).
    :param y: `(B, n)` targets, or `(B, n, M)` realizations (the form is averaged over M).
    :param log_noise_ratio: :math:`\log r`, broadcastable to `(*c, B)`.
    :return: the forms `(*c, B)`, the factors `(*c, B, n, n)` and ``info`` `(*c, B)`.
    """
    eye = torch.eye(k.shape[-1], dtype=torch.float64, device=k.device)
    ratio = log_noise_ratio.double().exp()[..., None, None] + PROFILE_JITTER
    chol, info = torch.linalg.cholesky_ex(k.double() + ratio * eye)
    rhs = y.double() if y.dim() == 3 else y.double().unsqueeze(-1)
    rhs = rhs.expand(*chol.shape[:-1], rhs.shape[-1])
    return (rhs * torch.cholesky_solve(rhs, chol)).sum(-2).mean(-1), chol, info


def gls_quadratic_form(k: Tensor, y: Tensor, log_noise_ratio: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r"""The generalized-least-squares constant mean and the quadratic form of the residual.

    With :math:`A = K + (r + 10^{-6}) I`,

    .. math::
        \hat c = \frac{\mathbf 1^\top A^{-1} \mathbf y}{\mathbf 1^\top A^{-1} \mathbf 1},
        \qquad q = (\mathbf y - \hat c \mathbf 1)^\top A^{-1} (\mathbf y - \hat c \mathbf 1),

    the maximum-likelihood constant mean of a GP with covariance proportional to A (any
    outputscale) and the form the profile outputscale :math:`q / n` then uses.

    :param k: `(B, n, n)` unit-outputscale kernel matrices.
    :param y: `(B, n)` targets, or `(B, n, M)` realizations sharing one mean (q is averaged over M).
    :param log_noise_ratio: `(B,)` :math:`\log r`.
    :return: ``(c, q, info)``, each `(B,)`, in float64; ``info`` is nonzero where the Cholesky
        factorization failed (``c`` is then 0 and ``q`` non-finite).
    """
    eye = torch.eye(k.shape[-1], dtype=torch.float64, device=k.device)
    ratio = log_noise_ratio.double().exp()[..., None, None] + PROFILE_JITTER
    chol, info = torch.linalg.cholesky_ex(k.double() + ratio * eye)
    yy = y.double() if y.dim() == 3 else y.double().unsqueeze(-1)  # (B, n, M)
    ones = torch.ones_like(yy[..., :1])
    sol = torch.cholesky_solve(torch.cat([ones, yy], dim=-1), chol)  # A^-1 [1, y]
    a1, ay = sol[..., :1], sol[..., 1:]
    c = (ones * ay).sum(-2).mean(-1) / (ones * a1).sum((-2, -1))  # (B,)
    c = torch.where(info == 0, c, torch.zeros_like(c))
    resid = yy - c[..., None, None]
    q = (resid * (ay - c[..., None, None] * a1)).sum(-2).mean(-1)
    q = torch.where(info == 0, q, torch.full_like(q, math.nan))
    return c, q, info


def profile_log_likelihood(k: Tensor, y: Tensor, log_noise_ratio: Tensor) -> Tensor:
    r"""Log marginal likelihood with the outputscale maximized out, up to a constant.

    .. math::
        \ell = -\frac n2 \log \frac{\mathbf y^\top (K + rI)^{-1} \mathbf y}{n}
            - \frac12 \log |K + rI|

    for unit-outputscale kernel matrices K `(*c, B, n, n)` (any leading candidate dimensions),
    y `(B, n)` or `(B, n, M)` (averaged over M) and :math:`\log r` broadcastable to `(*c, B)`.
    Computed in float64; a failed Cholesky factorization gives ``-inf``.
    """
    n = k.shape[-1]
    quad, chol, info = profile_quadratic_form(k, y, log_noise_ratio)
    ll = -0.5 * n * torch.log(quad.clamp_min(1e-300) / n) - chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return torch.where((info == 0) & torch.isfinite(ll), ll, torch.full_like(ll, -math.inf))


def robust_cholesky(
    K: Tensor, jitters: tuple[float, ...] = JITTERS, overwrite: bool = False,
    return_jitter: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""A square-root factor :math:`L` with :math:`L L^\top \approx K` for every matrix in a batch.

    Tries :func:`torch.linalg.cholesky_ex` on :math:`K + \epsilon I` with each jitter in turn,
    refactorizing only the matrices that failed; any left over get the symmetric square root of
    the eigenvalue-clipped :math:`K` (not triangular, but as good for sampling). Never raises for
    finite input. Only the lower triangle of ``K`` is read.

    :param K: `(B, N, N)` symmetric positive semi-definite matrices (unit-scale diagonal).
    :param jitters: increasing diagonal jitters, relative to a unit prior variance.
    :param overwrite: use ``K`` as scratch space (its diagonal gets the jitter; saves a copy).
    :param return_jitter: also return the jitter each factor includes, `(B,)` (0 for the
        eigendecomposition fallback).
    :return: `(B, N, N)` factors (and the jitters).
    """
    A = K if overwrite else K.clone()
    diagonal = A.diagonal(dim1=-2, dim2=-1)  # (B, N) view
    diagonal.add_(jitters[0])
    L, info = torch.linalg.cholesky_ex(A)
    used = torch.full(A.shape[:-2], jitters[0], dtype=A.dtype, device=A.device)
    previous = jitters[0]
    for jitter in jitters[1:]:
        failed = (info > 0).nonzero().squeeze(-1)
        if failed.numel() == 0:
            break
        diagonal[failed] += jitter - previous
        used[failed] = jitter
        previous = jitter
        L[failed], info[failed] = torch.linalg.cholesky_ex(A[failed])
    failed = (info > 0).nonzero().squeeze(-1)
    if failed.numel():
        diagonal[failed] -= previous
        evals, evecs = torch.linalg.eigh(A[failed])  # reads the lower triangle, like Cholesky
        L[failed] = evecs * evals.clamp_min(0.0).sqrt()[..., None, :] @ evecs.transpose(-1, -2)
        used[failed] = 0.0
    return (L, used) if return_jitter else L
