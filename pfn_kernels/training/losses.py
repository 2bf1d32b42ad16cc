r"""Training objective of the decoder.

Two parts:

- **End-to-end** (what makes the explicit kernel good): the exact-GP negative log predictive
  density of the held-out targets under the decoded kernel and noise, plus ``nlml_weight`` times
  the context negative log marginal likelihood, both per point (:mod:`pfn_kernels.exact_gp`).
- **Supervised** (the paper's filter-bank losses, on tasks whose ground truth is a spectral
  mixture, and down-weighted on those where it is a closed-form approximation): BCE of bin activity against the bins that hold a true peak, and squared errors of the
  offset and log-bandwidth of active bins (and of bin weights with several realizations); plus
  Huber errors of the global log noise-ratio and log outputscale heads on every task.
  Tasks with a polynomial trend (``PriorConfig.trend_prob``) get neither: their stationary
  spectrum and scale describe only part of the function, so they train end to end only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pfn_kernels.kernels import spectral_mixture_covariance
from pfn_kernels.exact_gp import exact_gp_scores
from pfn_kernels.inference.outputscale import profile_outputscale
from pfn_kernels.network.decoder import SpectralDecoder


@dataclass
class LossWeights:
    """Weights of the loss terms.

    :param nlml: context NLML per point (end-to-end).
    :param supervised: filter-bank BCE + regression terms.
    :param global_heads: log noise-ratio and log outputscale regression.
    :param bce_pos_weight: positive-class weight of the bin BCE (active bins are rare).
    :param approx_supervision: relative weight of the filter-bank terms on tasks whose ground truth
        is only a spectral-mixture approximation (Matérn, periodic, warped inputs): without it the
        bins of periodic harmonics and heavy spectral tails get no activity supervision at all.
    :param max_task_nll: per-task cap on the NLL terms (a single pathological task cannot dominate).
    """

    nlml: float = 0.3
    supervised: float = 0.2
    global_heads: float = 0.05
    bce_pos_weight: float = 10.0
    max_task_nll: float = 30.0
    approx_supervision: float = 0.5


class DecoderObjective(nn.Module):
    """Wraps a :class:`SpectralDecoder` so the loss is a module output (for DDP)."""

    def __init__(self, decoder: SpectralDecoder, weights: LossWeights | None = None) -> None:
        super().__init__()
        self.decoder = decoder
        self.w = weights or LossWeights()

    def forward(self, batch) -> tuple[Tensor, dict[str, float]]:  # batch: pfn_kernels.prior.TaskBatch
        dec, w = self.decoder, self.w
        x_c, y_c = batch.x_context.float(), batch.y_context.float()
        x_t, y_t = batch.x_target.float(), batch.y_target.float()
        out = dec(x_c, y_c)
        os = profile_outputscale(x_c, y_c, out)  # the inference stage, in the loop
        noise = os * out.log_noise_ratio.exp()
        kern = lambda a, b, diag=False: spectral_mixture_covariance(  # noqa: E731
            a, b, out.weights, out.means, out.scales, os, diag=diag
        )
        scores = exact_gp_scores(kern(x_c, x_c), kern(x_t, x_c), kern(x_t, x_t, diag=True), noise, y_c, y_t)
        e2e = scores.target_nll + w.nlml * scores.context_nlml
        e2e = e2e.clamp(max=w.max_task_nll)  # no gradient from tasks past the cap
        loss = e2e.mean()

        # global heads, on every task without a trend (standardized units)
        true = batch.params
        log_r_true = (true.noise / true.outputscale).clamp_min(dec.config.min_noise_ratio).log().to(out.log_noise_ratio)
        log_os_true = true.outputscale.log().to(out.log_outputscale)
        # Huber: the outputscale of very smooth standardized tasks is barely identifiable
        # (not on trend tasks: their stationary part's scale and noise ratio are not what a
        # stationary kernel of the whole function needs)
        stat = ~batch.has_trend
        glob = torch.zeros((), dtype=loss.dtype, device=loss.device)
        if bool(stat.any()):
            glob = F.smooth_l1_loss(out.log_noise_ratio[stat], log_r_true[stat]) + F.smooth_l1_loss(
                out.log_outputscale[stat], log_os_true[stat]
            )
            loss = loss + w.global_heads * glob

        # filter-bank supervision: exact on spectral-mixture tasks, down-weighted on tasks whose
        # ground truth is an approximation (``approx_supervision``)
        sup = torch.zeros((), dtype=loss.dtype, device=loss.device)
        # and none on trend tasks, whose stationary spectrum is only part of the function
        task_w = torch.where(batch.representable, 1.0, w.approx_supervision).to(loss)  # (B,)
        task_w = task_w.masked_fill(batch.has_trend.to(task_w.device), 0.0)
        mask = task_w > 0
        if mask.any():
            tw = task_w[mask]
            tgt = dec.filter_bank.bin_targets(true.weights[mask], true.means[mask], true.scales[mask])
            bins = out.bins
            a = bins.activity_logits[mask]  # (b, d, bins)
            bce = F.binary_cross_entropy_with_logits(
                a, tgt["active"].to(a), pos_weight=torch.tensor(w.bce_pos_weight, device=a.device),
                reduction="none",
            ).mean((-2, -1))
            bce = (tw * bce).sum() / tw.sum()
            act = tgt["active"] > 0
            cell_w = tw[:, None, None].expand_as(a)[act]  # task weight of every active bin
            sq = (bins.offsets[mask] - tgt["offset"].to(a)).pow(2)[act]
            sq = sq + 0.25 * (bins.log_scales[mask] - tgt["log_scale"].to(a)).pow(2)[act]
            reg = (cell_w * sq).sum() / cell_w.sum().clamp_min(1e-12)
            if y_c.dim() == 3:  # weights are identifiable only from several realizations
                pw = torch.softmax(bins.weight_logits[mask], dim=-1)
                reg = reg + (tw[:, None] * (pw - tgt["weight"].to(a)).pow(2).sum(-1)).sum() / (
                    tw.sum() * pw.shape[-2]
                )
            sup = bce + reg
            loss = loss + w.supervised * sup

        logs = {
            "loss": float(loss.detach()),
            "target_nll": float(scores.target_nll.detach().mean()),
            "context_nlml": float(scores.context_nlml.detach().mean()),
            "supervised": float(sup.detach()),
            "global": float(glob.detach()),
        }
        return loss, logs
