r"""Filter-bank decoding: per-dimension frequency bins -> spectral-mixture components.

The frequency axis of each input dimension is split into a DC bin (frequency exactly 0, an
RBF-like component) and ``num_bins`` log-spaced bins covering :math:`[f_{min}, f_{max}]` cycles per
unit input. For every bin the head predicts

- an activity logit :math:`a_b` (trained with BCE against the bins holding a true peak),
- an offset :math:`o_b \in (0, 1)` locating the frequency inside the bin (log scale),
- a log-bandwidth :math:`\log s_b` bounded to :math:`[\log s_{min}, \log s_{max}]`,
- a weight logit :math:`\omega_b`.

The ``Q`` bins with the highest activity become the kernel's mixture components, with weights
:math:`w_q \propto \exp(\omega_q)\,\sigma(a_q)` renormalized over the selected bins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class BinOutputs:
    """Raw per-bin predictions, each `(*batch, d, num_bins + 1)` (bin 0 is DC)."""

    activity_logits: Tensor
    offsets: Tensor
    log_scales: Tensor
    weight_logits: Tensor


class FilterBank(nn.Module):
    """Bin geometry and the head that maps a per-dimension vector to bin predictions.

    :param width: input vector width.
    :param num_bins: log-spaced bins besides the DC bin.
    :param min_frequency: lower edge of the first non-DC bin (cycles/unit).
    :param max_frequency: upper edge of the last bin (cycles/unit).
    :param min_scale: smallest bandwidth (cycles/unit).
    :param max_scale: largest bandwidth (cycles/unit).
    :param num_components: Q, the number of bins kept as mixture components.
    """

    def __init__(
        self,
        width: int,
        num_bins: int = 24,
        min_frequency: float = 0.25,
        max_frequency: float = 64.0,
        min_scale: float = 1e-3,
        max_scale: float = 30.0,
        num_components: int = 4,
    ) -> None:
        super().__init__()
        if num_components > num_bins + 1:
            raise ValueError("num_components cannot exceed num_bins + 1.")
        self.num_bins = num_bins
        self.num_components = num_components
        self.log_min_scale, self.log_max_scale = math.log(min_scale), math.log(max_scale)
        edges = torch.logspace(math.log10(min_frequency), math.log10(max_frequency), num_bins + 1)
        self.register_buffer("log_lo", edges[:-1].log(), persistent=False)  # (num_bins,)
        self.register_buffer("log_hi", edges[1:].log(), persistent=False)
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(), nn.Linear(width, 4 * (num_bins + 1)))

    def forward(self, z: Tensor) -> BinOutputs:
        """`(*batch, d, E)` -> bin predictions `(*batch, d, num_bins + 1)` each."""
        a, o, s, w = self.head(z).unflatten(-1, (self.num_bins + 1, 4)).unbind(-1)
        log_s = self.log_min_scale + (self.log_max_scale - self.log_min_scale) * torch.sigmoid(s)
        return BinOutputs(activity_logits=a, offsets=torch.sigmoid(o), log_scales=log_s, weight_logits=w)

    def bin_frequencies(self, offsets: Tensor) -> Tensor:
        """Frequencies of every bin given offsets `(..., num_bins + 1)`; the DC bin is 0."""
        log_f = self.log_lo + offsets[..., 1:] * (self.log_hi - self.log_lo)
        return torch.cat([torch.zeros_like(offsets[..., :1]), log_f.exp()], dim=-1)

    def components(self, bins: BinOutputs) -> tuple[Tensor, Tensor, Tensor]:
        """Select the Q most active bins: `(weights, means, scales)`, each `(*batch, d, Q)`."""
        idx = bins.activity_logits.topk(self.num_components, dim=-1).indices
        take = lambda t: t.gather(-1, idx)  # noqa: E731
        logits = take(bins.weight_logits) + F.logsigmoid(take(bins.activity_logits))
        weights = torch.softmax(logits, dim=-1)
        means = take(self.bin_frequencies(bins.offsets))
        scales = take(bins.log_scales).exp()
        return weights, means, scales

    # ------------------------------------------------------------------ supervision
    def bin_targets(self, weights: Tensor, means: Tensor, scales: Tensor) -> dict[str, Tensor]:
        """Assign ground-truth components `(*batch, d, Q)` to bins.

        Components with zero weight are ignored; a mean below 1e-6 goes to the DC bin; a mean
        outside the bank is clamped to the edge bin. When several components fall into one bin,
        their weights add and the offset/bandwidth of the heaviest is the target.

        :return: ``active`` `(*batch, d, B+1)` float 0/1, ``offset``, ``log_scale`` and
            ``weight`` targets of the same shape (meaningful where active).
        """
        nb = self.num_bins + 1
        present = weights > 0
        log_m = means.clamp_min(1e-12).log()
        inner = torch.bucketize(log_m.contiguous(), self.log_hi[:-1].contiguous()) + 1  # 1..B
        bin_idx = torch.where(means < 1e-6, torch.zeros_like(inner), inner)
        span = (self.log_hi - self.log_lo)[(bin_idx - 1).clamp_min(0)]
        lo = self.log_lo[(bin_idx - 1).clamp_min(0)]
        offset = ((log_m - lo) / span).clamp(0.0, 1.0)
        offset = torch.where(bin_idx == 0, torch.full_like(offset, 0.5), offset)
        log_s = scales.clamp(math.exp(self.log_min_scale), math.exp(self.log_max_scale)).log()

        shape = (*weights.shape[:-1], nb)
        w_eff = torch.where(present, weights, torch.zeros_like(weights))
        active = torch.zeros(shape, dtype=weights.dtype, device=weights.device)
        active.scatter_add_(-1, bin_idx, present.to(weights.dtype))
        weight = torch.zeros(shape, dtype=weights.dtype, device=weights.device).scatter_add_(-1, bin_idx, w_eff)
        # Heaviest component per bin supplies offset and bandwidth targets: scatter in order of
        # increasing weight so that the last write (the heaviest) wins.
        order = w_eff.argsort(dim=-1)
        off_t = torch.full(shape, 0.5, dtype=weights.dtype, device=weights.device)
        ls_t = torch.zeros(shape, dtype=weights.dtype, device=weights.device)
        for q in range(weights.shape[-1]):
            j = order[..., q : q + 1]
            b = bin_idx.gather(-1, j)
            keep = present.gather(-1, j)
            off_t = off_t.scatter(-1, b, torch.where(keep, offset.gather(-1, j), off_t.gather(-1, b)))
            ls_t = ls_t.scatter(-1, b, torch.where(keep, log_s.gather(-1, j), ls_t.gather(-1, b)))
        return {"active": (active > 0).to(weights.dtype), "offset": off_t, "log_scale": ls_t, "weight": weight}
