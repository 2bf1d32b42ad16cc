r"""The amortized spectral decoder: a DVA transformer that reads ``(X, y)`` and returns a kernel.

Data path (shapes for a batch of B tasks, n points, d input dimensions, width E):

1. tokens per (point, dimension): an x-stream from Fourier features of :math:`x_{ij}` and a value
   stream from an embedding of :math:`y_i`, each `(B, d, n, E)`;
2. ``num_layers`` blocks, each: x-stream mixing across dimensions (x only, so queries and keys see
   the whole input vector), decoupled-value attention across points within each dimension (queries
   and keys from the x-stream, values from the value stream, TNP-KR distance bias), and value mixing
   across dimensions. The final value stream is the attention output ``H``; the first is ``V``;
3. multi-query attention pooling of ``H``, ``V`` and ``H * V`` over points, fused by an MLP with a
   per-dimension periodogram of y: one vector per dimension `(B, d, E)`, and a global vector
   `(B, E)` from attention across dimensions;
4. a filter bank per dimension (:mod:`pfn_kernels.network.filter_bank`) gives Q spectral-mixture
   components; a global head gives the noise-to-signal ratio :math:`r` and a log-outputscale guess.

This module is the network alone. What turns its output into a GP's hyperparameters without
learned weights (input checks, subsampling, the marginal-likelihood calibration, the profile
outputscale, output bounds) is :mod:`pfn_kernels.inference`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pfn_kernels.network.attention import Coordinates, PointAttention
from pfn_kernels.network.filter_bank import BinOutputs, FilterBank
from pfn_kernels.spectral_params import SpectralEstimate

#: Fields of older weight files that were inference options, not architecture; they are read
#: and ignored (the options are :class:`pfn_kernels.inference.InferenceConfig` now).
LEGACY_INFERENCE_FIELDS = (
    "max_profile_points", "outputscale_mode", "calibrate", "calibration_sweeps",
    "max_calibration_points", "max_context", "extra",
)


@dataclass
class DecoderConfig:
    """Architecture of :class:`SpectralDecoder`, and the range of data it was trained on.

    :param width: token width E.
    :param num_heads: attention heads.
    :param num_layers: DVA blocks.
    :param ffn_mult: hidden width of feed-forward layers, as a multiple of E.
    :param num_x_frequencies: Fourier frequencies of the coordinate embedding.
    :param num_pool_queries: learned queries of the multi-query attention pooling.
    :param pooling: ``"attention"`` (multi-query attention pooling, the default) or ``"mean"``
        (plain mean over points, the ablation baseline of the paper).
    :param num_periodogram: frequencies of the per-dimension periodogram fed to the pooled vector.
    :param num_bins: log-spaced frequency bins besides the DC bin.
    :param min_frequency: lower bin edge, cycles per unit input.
    :param max_frequency: upper bin edge, cycles per unit input.
    :param num_components: Q, mixture components per dimension in the decoded kernel.
    :param attention: ``"full"``, ``"scan"`` or ``"linear"`` point attention.
    :param scan_block_size: query block of scan attention.
    :param num_random_features: random features of linear attention.
    :param random_feature_seed: seed of those features (they are saved with the weights, too).
    :param trained_max_dims: largest d seen in training (a warning beyond).
    :param trained_max_context: largest n seen in training (the default context of one pass).
    :param min_noise_ratio: lower bound of the decoded noise-to-signal ratio; ``max_noise_ratio``
        the upper one.
    """

    width: int = 64
    num_heads: int = 4
    num_layers: int = 4
    ffn_mult: int = 2
    num_x_frequencies: int = 8
    num_pool_queries: int = 4
    pooling: str = "attention"
    num_periodogram: int = 32
    num_bins: int = 24
    min_frequency: float = 0.25
    max_frequency: float = 64.0
    num_components: int = 4
    attention: str = "full"
    scan_block_size: int = 256
    num_random_features: int = 64
    random_feature_seed: int = 0
    trained_max_dims: int = 8
    trained_max_context: int = 256
    min_noise_ratio: float = 1e-6
    max_noise_ratio: float = 10.0

    def __post_init__(self) -> None:
        if self.width % self.num_heads:
            raise ValueError(f"width {self.width} must be divisible by num_heads {self.num_heads}.")
        if self.attention not in ("full", "scan", "linear"):
            raise ValueError(f"attention must be 'full', 'scan' or 'linear', got {self.attention!r}.")
        if self.pooling not in ("attention", "mean"):
            raise ValueError(f"pooling must be 'attention' or 'mean', got {self.pooling!r}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DecoderConfig":
        """The config of ``data``; unknown keys (e.g. :data:`LEGACY_INFERENCE_FIELDS` of older
        weight files) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# ---------------------------------------------------------------------- building blocks
class FeedForward(nn.Module):
    def __init__(self, width: int, mult: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, mult * width), nn.GELU(), nn.Linear(mult * width, width))

    def forward(self, t: Tensor) -> Tensor:
        return t + self.net(t)


class CoordinateEmbedding(nn.Module):
    """x_ij -> token, from ``[x, sin(2 pi f x), cos(2 pi f x)]`` with geometric f in [0.5, 32]."""

    def __init__(self, width: int, num_frequencies: int) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.logspace(math.log10(0.5), math.log10(32.0), num_frequencies), persistent=False)
        self.net = nn.Sequential(nn.Linear(1 + 2 * num_frequencies, width), nn.GELU(), nn.Linear(width, width))

    def forward(self, x: Tensor) -> Tensor:
        """`(B, n, d)` -> `(B, d, n, E)`."""
        x = x.transpose(-1, -2).unsqueeze(-1)  # (B, d, n, 1)
        ang = 2 * math.pi * x * self.freqs
        return self.net(torch.cat([x, ang.sin(), ang.cos()], dim=-1))


class ValueEmbedding(nn.Module):
    """y_i -> token (shared by every dimension)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, width), nn.GELU(), nn.Linear(width, width))

    def forward(self, y: Tensor, num_dims: int) -> Tensor:
        """`(B, n)` -> `(B, d, n, E)`."""
        feats = torch.stack([y, y.abs()], dim=-1)  # (B, n, 2)
        return self.net(feats).unsqueeze(1).expand(-1, num_dims, -1, -1)


class DimensionMixer(nn.Module):
    """Self-attention across the d dimensions of each point, then a feed-forward layer."""

    def __init__(self, width: int, num_heads: int, ffn_mult: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, num_heads, batch_first=True)
        self.ffn = FeedForward(width, ffn_mult)

    def forward(self, t: Tensor) -> Tensor:
        """`(B, d, n, E)` -> `(B, d, n, E)`."""
        b, d, n, e = t.shape
        if d == 1:
            return self.ffn(t)
        s = t.transpose(1, 2).reshape(b * n, d, e)
        h = self.norm(s)
        s = s + self.attn(h, h, h, need_weights=False)[0]
        return self.ffn(s.reshape(b, n, d, e).transpose(1, 2))


class DVABlock(nn.Module):
    """Decoupled-value attention across points (within each dimension) + feed-forward."""

    def __init__(self, cfg: DecoderConfig, layer: int = 0) -> None:
        super().__init__()
        self.norm_x = nn.LayerNorm(cfg.width)
        self.norm_v = nn.LayerNorm(cfg.width)
        self.attn = PointAttention(
            cfg.width, cfg.num_heads, cfg.attention, cfg.scan_block_size,
            num_features=cfg.num_random_features, seed=cfg.random_feature_seed + layer,
        )
        self.ffn = FeedForward(cfg.width, cfg.ffn_mult)

    def forward(self, x_tok: Tensor, v_tok: Tensor, coords: Coordinates, variant: str | None) -> Tensor:
        v_tok = v_tok + self.attn(self.norm_x(x_tok), self.norm_v(v_tok), coords, variant)
        return self.ffn(v_tok)


class Periodogram(nn.Module):
    r"""Per-dimension log periodogram of y along each coordinate (a spectral summary for pooling).

    :math:`P_j(f) = |\frac{1}{n}\sum_i y_i e^{2\pi i f x_{ij}}|^2 \cdot n` on log-spaced f in
    :math:`[f_{min}, f_{max}]`, returned as :math:`\log(10^{-3} + P_j(f))`, `(B, d, K)`.
    """

    def __init__(self, num_frequencies: int, min_frequency: float, max_frequency: float) -> None:
        super().__init__()
        freqs = torch.logspace(math.log10(min_frequency), math.log10(max_frequency), num_frequencies)
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        ang = 2 * math.pi * x.transpose(-1, -2).unsqueeze(-1) * self.freqs  # (B, d, n, K)
        yy = y.unsqueeze(1).unsqueeze(-1)  # (B, 1, n, 1)
        n = x.shape[-2]
        power = ((yy * ang.cos()).sum(-2).pow(2) + (yy * ang.sin()).sum(-2).pow(2)) / n
        return torch.log(1e-3 + power)


class MultiQueryPool(nn.Module):
    """Multi-query attention pooling over points: `(B, d, n, E)` -> `(B, d, P, E)`.

    With ``mean=True`` it is the ablation baseline instead: the mean over points of the value
    projection, `(B, d, 1, E)` (no queries).
    """

    def __init__(self, width: int, num_heads: int, num_queries: int, mean: bool = False) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.mean = mean
        if not mean:
            self.queries = nn.Parameter(torch.randn(num_queries, width) / math.sqrt(width))
        self.norm = nn.LayerNorm(width)
        self.kv = nn.Linear(width, 2 * width)

    @property
    def num_outputs(self) -> int:
        return 1 if self.mean else self.queries.shape[0]

    def forward(self, t: Tensor) -> Tensor:
        k, v = self.kv(self.norm(t)).chunk(2, dim=-1)
        if self.mean:
            return v.mean(-2, keepdim=True)
        h = self.num_heads
        split = lambda a: a.unflatten(-1, (h, -1)).transpose(-3, -2)  # noqa: E731  (..., H, n, e)
        q = split(self.queries.expand(*t.shape[:2], -1, -1))
        out = F.scaled_dot_product_attention(q, split(k), split(v))  # (B, d, H, P, e)
        return out.transpose(-3, -2).flatten(-2)


@dataclass
class DecoderOutput(SpectralEstimate):
    """One pass of the network: the estimate of :class:`~pfn_kernels.spectral_params.SpectralEstimate`
    (weights, means, scales `(B, d, Q)`, log noise-to-signal ratio and log outputscale guess
    `(B,)`), plus the raw per-bin predictions it was selected from (the training losses read them).
    """

    bins: BinOutputs | None = None


# ---------------------------------------------------------------------- the model
class SpectralDecoder(nn.Module):
    r"""The network: reads a data set and predicts a spectral-mixture kernel and noise level.

    ``decoder(x, y)`` with x `(B, n, d)` in :math:`[0, 1]^d` and y `(B, n)` standardized (or
    `(B, n, M)`: M realizations sharing x and one kernel) returns a :class:`DecoderOutput` with
    d dimensions and ``config.num_components`` components per dimension, in the network's dtype.
    The pass is deterministic on CPU; call it under :func:`torch.no_grad` for speed.

    To turn data into a GP's hyperparameters use :func:`pfn_kernels.inference.decode_spectral_params`
    (or :func:`pfn_kernels.fit_amortized`, :class:`~pfn_kernels.AmortizedSingleTaskGP`): it checks
    the inputs, reads a subsample of a large data set, runs this network, calibrates its
    frequency scale and noise by marginal likelihood and sets the outputscale (see
    :mod:`pfn_kernels.inference`).

    Example:
        >>> import torch
        >>> from pfn_kernels.network import SpectralDecoder, DecoderConfig
        >>> decoder = SpectralDecoder(DecoderConfig(width=32, num_layers=2)).eval()
        >>> x = torch.rand(1, 20, 3)  # (B, n, d)
        >>> y = torch.sin(6 * x[..., 0]); y = (y - y.mean()) / y.std()
        >>> with torch.no_grad():
        ...     out = decoder(x, y)
        >>> out.weights.shape, out.log_noise_ratio.shape
        (torch.Size([1, 3, 4]), torch.Size([1]))
    """

    def __init__(self, config: DecoderConfig | None = None) -> None:
        super().__init__()
        cfg = self.config = config or DecoderConfig()
        e = cfg.width
        self.x_embed = CoordinateEmbedding(e, cfg.num_x_frequencies)
        self.y_embed = ValueEmbedding(e)
        self.x_mixers = nn.ModuleList(DimensionMixer(e, cfg.num_heads, cfg.ffn_mult) for _ in range(cfg.num_layers))
        self.dva = nn.ModuleList(DVABlock(cfg, layer) for layer in range(cfg.num_layers))
        self.v_mixers = nn.ModuleList(DimensionMixer(e, cfg.num_heads, cfg.ffn_mult) for _ in range(cfg.num_layers))
        mean = cfg.pooling == "mean"
        self.pool_h = MultiQueryPool(e, cfg.num_heads, cfg.num_pool_queries, mean)
        self.pool_v = MultiQueryPool(e, cfg.num_heads, cfg.num_pool_queries, mean)
        self.pool_hv = MultiQueryPool(e, cfg.num_heads, cfg.num_pool_queries, mean)
        self.periodogram = Periodogram(cfg.num_periodogram, cfg.min_frequency, cfg.max_frequency)
        self.fuse = nn.Sequential(
            nn.Linear(3 * self.pool_h.num_outputs * e + cfg.num_periodogram + 1, 2 * e), nn.GELU(), nn.Linear(2 * e, e)
        )
        self.global_mixer = DimensionMixer(e, cfg.num_heads, cfg.ffn_mult)
        self.filter_bank = FilterBank(
            e, cfg.num_bins, cfg.min_frequency, cfg.max_frequency, num_components=cfg.num_components
        )
        self.global_head = nn.Sequential(nn.LayerNorm(e + 1), nn.Linear(e + 1, e), nn.GELU(), nn.Linear(e, 2))

    # ------------------------------------------------------------------ pieces
    def encode(self, x: Tensor, y: Tensor, attention: str | None = None) -> tuple[Tensor, Tensor]:
        """`(B, n, d)`, `(B, n)` -> attention output H and value encoding V, each `(B, d, n, E)`."""
        coords = Coordinates(x)
        x_tok = self.x_embed(x)
        values = v_tok = self.y_embed(y, x.shape[-1])
        for x_mix, dva, v_mix in zip(self.x_mixers, self.dva, self.v_mixers):
            x_tok = x_mix(x_tok)
            v_tok = v_mix(dva(x_tok, v_tok, coords, attention))
        return v_tok, values

    def pool(self, hidden: Tensor, values: Tensor, spectrum: Tensor) -> tuple[Tensor, Tensor]:
        """H, V `(B, d, n, E)` and the periodogram `(B, d, K)` -> per-dimension vectors
        `(B, d, E)` and a global vector `(B, E)`.

        Besides H and V, the pooling reads their product H * V: the correlation of each value with
        its attention-smoothed neighbourhood, i.e. the autocorrelation of y at the heads' scales.
        """
        b, d, n, _ = hidden.shape
        log_n = torch.full((b, d, 1), math.log(n), dtype=hidden.dtype, device=hidden.device)
        pooled = torch.cat(
            [
                self.pool_h(hidden).flatten(-2),
                self.pool_v(values).flatten(-2),
                self.pool_hv(hidden * values).flatten(-2),
                spectrum,
                log_n,
            ],
            dim=-1,
        )
        z = self.fuse(pooled)  # (B, d, E)
        z = self.global_mixer(z.unsqueeze(2)).squeeze(2)  # mixes across dimensions
        return z, z.mean(1)

    def forward(self, x: Tensor, y: Tensor, attention: str | None = None) -> DecoderOutput:
        """The pass on flat batches: x `(B, n, d)`, y `(B, n)` or `(B, n, M)`.

        :param attention: overrides ``config.attention`` for this call (``"scan"`` computes the
            same result as ``"full"`` in memory linear in n).
        """
        n = x.shape[-2]
        if y.dim() == x.dim():  # M realizations share X: encode each, average the pooled vectors
            m = y.shape[-1]
            xr = x.unsqueeze(1).expand(-1, m, -1, -1).reshape(-1, *x.shape[-2:])
            yr = y.transpose(-1, -2).reshape(-1, n)
            hidden, values = self.encode(xr, yr, attention)
            z, g = self.pool(hidden, values, self.periodogram(xr, yr))
            z, g = z.unflatten(0, (-1, m)).mean(1), g.unflatten(0, (-1, m)).mean(1)
        else:
            hidden, values = self.encode(x, y, attention)
            z, g = self.pool(hidden, values, self.periodogram(x, y))
        bins = self.filter_bank(z)
        weights, means, scales = self.filter_bank.components(bins)
        log_n = torch.full_like(g[..., :1], math.log(n))
        log_r, log_os = self.global_head(torch.cat([g, log_n], dim=-1)).unbind(-1)
        lo, hi = math.log(self.config.min_noise_ratio), math.log(self.config.max_noise_ratio)
        log_r = lo + (hi - lo) * torch.sigmoid(log_r + math.log(1e-2) - (lo + hi) / 2)
        return DecoderOutput(weights, means, scales, log_r, log_os.clamp(-10, 10), bins=bins)

    # ------------------------------------------------------------------ weights
    @classmethod
    def pretrained(cls, name: str = "default", path: str | Path | None = None) -> "SpectralDecoder":
        """Load shipped weights (``pfn_kernels/weights/<name>.safetensors``) or ``path``.

        No network access and no pickle: the file holds tensors and a JSON config only.
        """
        from pfn_kernels.network.weights import load_decoder, weights_path

        return load_decoder(path if path is not None else weights_path(name))
