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
   components; a global head gives the noise-to-signal ratio :math:`r` and a log-outputscale guess;
5. at inference, a per-dimension dilation of the decoded spectrum and a factor on r, chosen by
   profile marginal likelihood (see :meth:`SpectralDecoder.calibrate`);
6. the outputscale by profile likelihood (see :meth:`SpectralDecoder.outputscale`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pfn_kernels.bochner import dimension_factor, spectral_mixture_covariance
from pfn_kernels.network.attention import Coordinates, PointAttention
from pfn_kernels.network.filter_bank import BinOutputs, FilterBank
from pfn_kernels.spectral_params import WEIGHT_SUM_ATOL, SpectralParams
from pfn_kernels.validation import DecoderWarning, check_finite_rows, warn_outside_unit_cube

#: Hard limit on the input dimension d (a ``ValueError`` beyond); between
#: ``config.trained_max_dims`` and this, the decoder works with a :class:`DecoderWarning`.
MAX_INPUT_DIMS = 64
#: Range of the decoded outputscale, in the units of a standardized y (never reached for such y).
OUTPUTSCALE_RANGE = (1e-8, 1e8)
#: Relative slack of the documented output ranges (float32 rounding at the bounds).
BOUND_RTOL = 1e-4
#: Noise-to-signal ratio that replaces a non-finite one.
FALLBACK_NOISE_RATIO = 1e-2
#: Frequency dilations of :meth:`SpectralDecoder.calibrate`: a grid shared by all dimensions,
#: then per-dimension steps, for ``DecoderConfig.calibration_sweeps`` sweeps over the dimensions.
CALIBRATION_GRID = (0.5, 0.6, 0.7, 0.85, 1.2, 1.4, 1.7, 2.0)
CALIBRATION_STEPS = (0.7, 1.4)
#: Factors of the noise-to-signal ratio tried by :meth:`SpectralDecoder.calibrate`.
CALIBRATION_NOISE = (0.1, 0.25, 0.5, 2.0, 4.0, 10.0)
#: Seed of the subsample read when n exceeds ``config.max_context`` (the same points every call).
SUBSAMPLE_SEED = 0


@dataclass
class DecoderConfig:
    """Architecture of :class:`SpectralDecoder`.

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
    :param max_profile_points: points used by the profile-likelihood outputscale (a strided
        subsample beyond this).
    :param outputscale_mode: ``"profile"`` (default) or ``"predicted"``.
    :param calibrate: refine the decoded frequency scale of each dimension by profile marginal
        likelihood (see :meth:`SpectralDecoder.calibrate`); inference only, training never uses it.
    :param calibration_sweeps: per-dimension sweeps of the calibration (0: the shared grid only).
    :param max_calibration_points: points the calibration reads (a strided subsample beyond).
    :param trained_max_dims: largest d seen in training (a warning beyond; an error beyond
        :data:`MAX_INPUT_DIMS`).
    :param trained_max_context: largest n seen in training.
    :param min_noise_ratio: lower bound of the decoded noise-to-signal ratio; ``max_noise_ratio``
        the upper one.
    :param max_context: most points one pass reads (default: ``trained_max_context``); a larger
        data set is read through a deterministic subsample of this many points, with a warning.
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
    max_profile_points: int = 2048
    outputscale_mode: str = "profile"
    calibrate: bool = True
    calibration_sweeps: int = 2
    max_calibration_points: int = 128
    trained_max_dims: int = 8
    trained_max_context: int = 256
    min_noise_ratio: float = 1e-6
    max_noise_ratio: float = 10.0
    max_context: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.width % self.num_heads:
            raise ValueError(f"width {self.width} must be divisible by num_heads {self.num_heads}.")
        if self.attention not in ("full", "scan", "linear"):
            raise ValueError(f"attention must be 'full', 'scan' or 'linear', got {self.attention!r}.")
        if self.pooling not in ("attention", "mean"):
            raise ValueError(f"pooling must be 'attention' or 'mean', got {self.pooling!r}.")
        if self.outputscale_mode not in ("profile", "predicted"):
            raise ValueError(f"outputscale_mode must be 'profile' or 'predicted', got {self.outputscale_mode!r}.")
        if self.calibration_sweeps < 0 or self.max_calibration_points < 1:
            raise ValueError("calibration_sweeps must be >= 0 and max_calibration_points >= 1.")
        if self.max_context is not None and self.max_context < 1:
            raise ValueError(f"max_context must be >= 1 or None, got {self.max_context}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DecoderConfig":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


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

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.norm_x = nn.LayerNorm(cfg.width)
        self.norm_v = nn.LayerNorm(cfg.width)
        self.attn = PointAttention(cfg.width, cfg.num_heads, cfg.attention, cfg.scan_block_size)
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
class DecoderOutput:
    """Everything one decoder pass produces (the training losses read all of it).

    ``hidden`` is the attention output H and ``values`` the value encoding V, `(B, d, n, E)`;
    ``dim_vectors`` `(B, d, E)` and ``global_vector`` `(B, E)` are the pooled features.
    """

    bins: BinOutputs
    weights: Tensor
    means: Tensor
    scales: Tensor
    log_noise_ratio: Tensor
    log_outputscale: Tensor
    hidden: Tensor
    values: Tensor
    dim_vectors: Tensor
    global_vector: Tensor


# ---------------------------------------------------------------------- the model
def _keep_best(ll: Tensor, cand: Tensor, current: Tensor, best: Tensor) -> tuple[Tensor, Tensor]:
    """Per batch member, the candidate with the highest log likelihood if it beats ``best``.

    :param ll: `(C, B)` log likelihoods of C candidates.
    :param cand: `(C, B, ...)` the candidates; ``current`` `(B, ...)` is kept where none is better.
    :return: the chosen values `(B, ...)` and their log likelihoods `(B,)` (ties keep ``current``).
    """
    i = ll.argmax(0)
    top = ll.gather(0, i[None])[0]
    extra = (1,) * (cand.dim() - 2)
    pick = cand.gather(0, i.view(1, -1, *extra).expand(1, *cand.shape[1:]))[0]
    better = top > best
    return torch.where(better.view(-1, *extra), pick, current), torch.where(better, top, best)


class SpectralDecoder(nn.Module):
    r"""Reads a data set and returns the hyperparameters of a spectral-mixture GP.

    ``decoder(X, y)`` with X `(*batch, n, d)` in :math:`[0, 1]^d` and y `(*batch, n)` standardized
    (or `(*batch, n, M)`: M realizations sharing X and one kernel) returns
    :class:`~pfn_kernels.SpectralParams` with batch shape `(*batch)`, d dimensions and
    ``config.num_components`` components. Call it under :func:`torch.no_grad` for speed. The pass
    is deterministic on CPU, and runs on the device of the decoder's parameters; the parameters
    come back on the device of ``X``, in its dtype (float32 for half-precision inputs).

    Robustness (inputs outside what the network was trained on):

    - **errors** (``ValueError``): shapes that do not match, n = 0, d = 0, non-floating tensors,
      NaN or inf in X or y (the message names how many rows and the first of them), and
      d > :data:`MAX_INPUT_DIMS`.
    - **warnings** (:class:`~pfn_kernels.validation.DecoderWarning`), with a defined result:
      X outside the unit cube (by more than 0.01; normalize it, e.g. BoTorch's ``Normalize``);
      d > ``config.trained_max_dims``; n > ``config.max_context`` (default
      ``trained_max_context``), where the pass reads a deterministic random subsample of
      ``max_context`` points (seed :data:`SUBSAMPLE_SEED`: the same points for the same n),
      which bounds time and memory whatever n.
    - **outputs** always satisfy: weights >= 0 summing to 1 per dimension; means (frequencies)
      in [0, ``max_frequency``]; scales in the filter bank's [1e-3, 30] cycles per unit; outputscale
      in :data:`OUTPUTSCALE_RANGE`; noise / outputscale in [``min_noise_ratio``,
      ``max_noise_ratio``] (bounds to :data:`BOUND_RTOL`). The network's heads guarantee these for
      finite activations; should a non-finite value appear (e.g. X far outside the unit cube), it is
      replaced (uniform weights, mean 0, the RBF bandwidth :math:`1 / (2\pi \cdot 0.25 \sqrt d)`,
      the network's outputscale guess, noise ratio :data:`FALLBACK_NOISE_RATIO`) with a warning.
      For finite in-range data none of this changes a single bit of the result.
    - constant y (zero variance) is a valid input; :func:`pfn_kernels.fit_amortized` replaces its
      result by a documented fallback kernel.

    Example:
        >>> import torch
        >>> from pfn_kernels.network import SpectralDecoder, DecoderConfig
        >>> decoder = SpectralDecoder(DecoderConfig(width=32, num_layers=2)).eval()
        >>> X = torch.rand(20, 3)
        >>> y = torch.sin(6 * X[:, 0]); y = (y - y.mean()) / y.std()
        >>> with torch.no_grad():
        ...     params = decoder(X, y)
        >>> params.weights.shape
        torch.Size([3, 4])
    """

    def __init__(self, config: DecoderConfig | None = None) -> None:
        super().__init__()
        cfg = self.config = config or DecoderConfig()
        e = cfg.width
        self.x_embed = CoordinateEmbedding(e, cfg.num_x_frequencies)
        self.y_embed = ValueEmbedding(e)
        self.x_mixers = nn.ModuleList(DimensionMixer(e, cfg.num_heads, cfg.ffn_mult) for _ in range(cfg.num_layers))
        self.dva = nn.ModuleList(DVABlock(cfg) for _ in range(cfg.num_layers))
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

    def decode(self, x: Tensor, y: Tensor, attention: str | None = None) -> DecoderOutput:
        """The full pass on flat batches: x `(B, n, d)`, y `(B, n)` or `(B, n, M)`."""
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
        return DecoderOutput(bins, weights, means, scales, log_r, log_os.clamp(-10, 10), hidden, values, z, g)

    @staticmethod
    def _quadratic_form(k: Tensor, y: Tensor, log_noise_ratio: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        r""":math:`\mathbf y^\top (K + (r + 10^{-6}) I)^{-1} \mathbf y` (mean over M realizations) in
        float64, with the Cholesky factor and its ``info``; shapes as in :meth:`profile_log_likelihood`."""
        eye = torch.eye(k.shape[-1], dtype=torch.float64, device=k.device)
        chol, info = torch.linalg.cholesky_ex(k.double() + (log_noise_ratio.double().exp()[..., None, None] + 1e-6) * eye)
        rhs = y.double() if y.dim() == 3 else y.double().unsqueeze(-1)
        rhs = rhs.expand(*chol.shape[:-1], rhs.shape[-1])
        return (rhs * torch.cholesky_solve(rhs, chol)).sum(-2).mean(-1), chol, info

    @staticmethod
    def profile_log_likelihood(k: Tensor, y: Tensor, log_noise_ratio: Tensor) -> Tensor:
        r"""Log marginal likelihood with the outputscale maximized out, up to a constant.

        .. math::
            \ell = -\frac n2 \log \frac{\mathbf y^\top (K + rI)^{-1} \mathbf y}{n}
                - \frac12 \log |K + rI|

        for a unit-outputscale kernel matrix K `(*c, B, n, n)` (any leading candidate dimensions),
        y `(B, n)` or `(B, n, M)` (averaged over M) and :math:`\log r` `(B,)`. Computed in
        float64; a failed Cholesky factorization gives ``-inf``.
        """
        n = k.shape[-1]
        quad, chol, info = SpectralDecoder._quadratic_form(k, y, log_noise_ratio)
        ll = -0.5 * n * torch.log(quad.clamp_min(1e-300) / n) - chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        return torch.where((info == 0) & torch.isfinite(ll), ll, torch.full_like(ll, -math.inf))

    @torch.no_grad()
    def calibrate(self, x: Tensor, y: Tensor, out: DecoderOutput) -> DecoderOutput:
        r"""Dilate each dimension's decoded spectrum, and scale the noise, by profile likelihood.

        The network's spectrum is a point estimate read from n points; its frequency scale (the
        lengthscale, for a smooth kernel) is what a marginal likelihood pins down best. This step
        multiplies the means and bandwidths of dimension j by a factor :math:`c_j`, chosen by
        :meth:`profile_log_likelihood` among :math:`c_j = 1` (the network's own output, kept on
        ties), a grid shared by all dimensions (:data:`CALIBRATION_GRID`), then, for
        ``config.calibration_sweeps`` sweeps over the dimensions, per-dimension steps
        (:data:`CALIBRATION_STEPS`). After the grid and after each sweep, the noise-to-signal
        ratio r is likewise multiplied by the best of :data:`CALIBRATION_NOISE` (or kept), within
        ``[min_noise_ratio, max_noise_ratio]``. Since the kernel is a product over dimensions, a
        step in dimension j recomputes only that dimension's factor; the candidates of a step share one
        batched Cholesky factorization. It reads at most ``config.max_calibration_points`` points
        (a strided subsample beyond). Results stay inside the documented output ranges, and the
        step is deterministic.

        What it gains and costs is measured by ``benchmarks/calibration.py`` (see ``BENCHMARKS.md``).
        """
        stride = max(1, math.ceil(x.shape[-2] / self.config.max_calibration_points))
        x, y = x[:, ::stride], y[:, ::stride]  # x (B, n, d); y (B, n) or (B, n, M)
        w, mu, s, log_r = out.weights, out.means, out.scales, out.log_noise_ratio
        b, d = mu.shape[0], mu.shape[-2]
        fb = self.filter_bank
        lo_s, hi_s = math.exp(fb.log_min_scale), math.exp(fb.log_max_scale)
        tau = (x.unsqueeze(-2) - x.unsqueeze(-3)).unsqueeze(-1)  # (B, n, n, d, 1)

        def dilate(c: Tensor) -> tuple[Tensor, Tensor]:  # c (..., B, d, 1)
            return (mu * c).clamp(0.0, self.config.max_frequency), (s * c).clamp(lo_s, hi_s)

        def factor(j: int, c: Tensor) -> Tensor:  # dimension j's kernel for factors c (..., B)
            m = (mu[:, j] * c[..., None]).clamp(0.0, self.config.max_frequency)[..., None, None, :]
            sc = (s[:, j] * c[..., None]).clamp(lo_s, hi_s)[..., None, None, :]
            return dimension_factor(tau[..., j, :], w[:, j, None, None, :], m, sc)  # tau (B, n, n, 1)

        def noise_step(k: Tensor, log_r: Tensor, best: Tensor) -> tuple[Tensor, Tensor]:
            lo, hi = math.log(self.config.min_noise_ratio), math.log(self.config.max_noise_ratio)
            cand = (log_r + noise[:, None]).clamp(lo, hi)  # (F, B)
            return _keep_best(self.profile_log_likelihood(k, y, cand), cand, log_r, best)

        noise = torch.tensor(CALIBRATION_NOISE, dtype=log_r.dtype, device=log_r.device).log()
        c = torch.ones(b, d, 1, dtype=mu.dtype, device=mu.device)
        dims = [factor(j, c[:, j, 0]) for j in range(d)]  # per-dimension kernel matrices (B, n, n)
        best = self.profile_log_likelihood(torch.stack(dims).prod(0), y, log_r)
        grid = torch.tensor(CALIBRATION_GRID, dtype=mu.dtype, device=mu.device)
        cand = c * grid[:, None, None, None]  # (G, B, d, 1)
        k = torch.stack([factor(j, cand[:, :, j, 0]) for j in range(d)]).prod(0)
        c, best = _keep_best(self.profile_log_likelihood(k, y, log_r), cand, c, best)
        dims = [factor(j, c[:, j, 0]) for j in range(d)]
        log_r, best = noise_step(torch.stack(dims).prod(0), log_r, best)
        steps = torch.tensor(CALIBRATION_STEPS, dtype=mu.dtype, device=mu.device)
        for _ in range(self.config.calibration_sweeps if d > 1 else 0):
            for j in range(d):
                others = torch.stack(dims[:j] + dims[j + 1 :]).prod(0)  # (B, n, n)
                cand = c.repeat(len(steps), 1, 1, 1)
                cand[:, :, j, 0] *= steps[:, None]
                ll = self.profile_log_likelihood(others * factor(j, cand[:, :, j, 0]), y, log_r)
                c, best = _keep_best(ll, cand, c, best)
                dims[j] = factor(j, c[:, j, 0])
            log_r, best = noise_step(torch.stack(dims).prod(0), log_r, best)
        means, scales = dilate(c)
        return replace(out, means=means, scales=scales, log_noise_ratio=log_r)

    def outputscale(self, x: Tensor, y: Tensor, out: DecoderOutput, prior_count: float = 1.0) -> Tensor:
        r"""Profile-likelihood outputscale, shrunk towards the network's own guess.

        .. math::
            \hat\alpha = \frac{\mathbf y^\top (K + rI)^{-1} \mathbf y + n_0 \alpha_{net}}{n + n_0}

        with K the decoded unit-outputscale kernel and :math:`n_0` = ``prior_count``: the posterior
        mode under a conjugate inverse-gamma prior centred on the network's guess; it stays finite
        for n = 1 (where a standardized y is 0). With ``outputscale_mode="predicted"`` the guess
        alone is used.
        """
        guess = out.log_outputscale.exp()
        if self.config.outputscale_mode == "predicted":
            return guess
        n = x.shape[-2]
        stride = max(1, math.ceil(n / self.config.max_profile_points))
        xs, ys = x[:, ::stride], y[:, ::stride]  # x (B, n, d); y (B, n) or (B, n, M)
        k = spectral_mixture_covariance(xs, xs, out.weights, out.means, out.scales)
        ns = xs.shape[-2]
        quad, _, _ = self._quadratic_form(k, ys, out.log_noise_ratio)
        quad = torch.where(torch.isfinite(quad), quad, torch.full_like(quad, float(ns)))
        return ((quad + prior_count * guess.double()) / (ns + prior_count)).to(guess.dtype)

    # ------------------------------------------------------------------ public API
    def forward(self, X: Tensor, y: Tensor) -> SpectralParams:
        x, yy, batch_shape = self._flatten(X, y)
        self._warn_out_of_range(x)
        x, yy = self._subsample(x, yy)
        weight = next(self.parameters())  # the network runs in its weights' device and dtype
        x, yy = x.to(weight), yy.to(weight)
        out = self.decode(x, yy)
        if self.config.calibrate:
            out = self.calibrate(x, yy, out)
        weights, means, scales, os, log_r = self._bounded(out, self.outputscale(x, yy, out))
        noise = os * log_r.exp()
        dtype = X.dtype if X.dtype in (torch.float32, torch.float64) else torch.float32
        unflat = lambda t: t.reshape(batch_shape + t.shape[1:]).to(device=X.device, dtype=dtype)  # noqa: E731
        return SpectralParams(
            weights=unflat(weights),
            means=unflat(means),
            scales=unflat(scales),
            outputscale=unflat(os),
            noise=unflat(noise),
            validate=False,
        )

    def _flatten(self, X: Tensor, y: Tensor) -> tuple[Tensor, Tensor, torch.Size]:
        """Checks (the errors of the class docstring); X `(B, n, d)`, y `(B, n)` or `(B, n, M)`."""
        if not (isinstance(X, Tensor) and isinstance(y, Tensor)):
            raise TypeError(f"X and y must be tensors, got {type(X).__name__} and {type(y).__name__}.")
        if X.dim() < 2:
            raise ValueError(f"X must have shape (*batch, n, d); got {tuple(X.shape)}.")
        batch_shape, (n, d) = X.shape[:-2], X.shape[-2:]
        if y.shape[: X.dim() - 1] != X.shape[:-1] or y.dim() not in (X.dim() - 1, X.dim()):
            raise ValueError(
                f"y must have shape (*batch, n) or (*batch, n, M) matching X {tuple(X.shape)}; "
                f"got {tuple(y.shape)}."
            )
        if not (X.is_floating_point() and y.is_floating_point()):
            raise ValueError(f"X and y must be floating-point tensors; got {X.dtype} and {y.dtype}.")
        if X.device != y.device:
            raise ValueError(f"X and y must be on the same device; got {X.device} and {y.device}.")
        if n < 1:
            raise ValueError("The decoder needs at least one data point (n >= 1).")
        if d < 1:
            raise ValueError("The decoder needs at least one input dimension (d >= 1).")
        if d > MAX_INPUT_DIMS:
            raise ValueError(
                f"X has d={d} input dimensions; the decoder supports at most {MAX_INPUT_DIMS} (it "
                f"was trained on d <= {self.config.trained_max_dims}). Reduce the dimension (e.g. "
                "fix or embed some inputs) or use a standard kernel."
            )
        check_finite_rows("X", X, row_dim=-2)
        check_finite_rows("y", y, row_dim=X.dim() - 2)
        x = X.reshape(-1, n, d)
        yy = y.reshape(-1, *y.shape[X.dim() - 2 :])
        return x, yy, batch_shape

    def _warn_out_of_range(self, x: Tensor) -> None:
        """Warnings for data outside the training range (results are still defined)."""
        cfg = self.config
        warn_outside_unit_cube(
            x, "Decoder inputs X",
            "Normalize X to [0, 1]^d first, e.g. with BoTorch's Normalize input transform "
            "(input_transform=Normalize(d)).", stacklevel=6,
        )
        d = x.shape[-1]
        if d > cfg.trained_max_dims:
            warnings.warn(
                f"X has d={d} input dimensions, more than the decoder was trained on "
                f"({cfg.trained_max_dims}); its kernel may be poor (hard limit {MAX_INPUT_DIMS}).",
                DecoderWarning, stacklevel=5,
            )

    def _subsample(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """At most ``max_context`` points: a seeded random subset (in the data's order) beyond."""
        n = x.shape[-2]
        limit = self.config.max_context or self.config.trained_max_context
        if n <= limit:
            return x, y
        warnings.warn(
            f"{n} points exceed the decoder's context of {limit}; it reads a deterministic random "
            f"subsample of {limit} points (DecoderConfig.max_context sets the number).",
            DecoderWarning, stacklevel=5,
        )
        g = torch.Generator().manual_seed(SUBSAMPLE_SEED)
        idx = torch.randperm(n, generator=g)[:limit].sort().values.to(x.device)
        return x[:, idx], y[:, idx]

    def _bounded(self, out: DecoderOutput, os: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The documented output ranges, non-finite values replaced (see the class docstring).

        Returns the network's own values, bit for bit, wherever they are finite and in range: the
        heads keep them there by construction, so only overflowing activations change anything.
        """
        cfg, fb = self.config, self.filter_bank
        lo, hi = 1 - BOUND_RTOL, 1 + BOUND_RTOL
        w = out.weights
        w_ok = (torch.isfinite(w) & (w >= 0)).all(-1, keepdim=True)
        w_ok &= (w.sum(-1, keepdim=True) - 1).abs() <= WEIGHT_SUM_ATOL
        s_rbf = 1 / (2 * math.pi * 0.25 * math.sqrt(w.shape[-2]))
        guess = out.log_outputscale.exp().nan_to_num(1.0)
        bounded = (
            torch.where(w_ok, w, torch.full_like(w, 1.0 / w.shape[-1])),
            out.means.nan_to_num(0.0).clamp(0.0, cfg.max_frequency * hi),
            out.scales.nan_to_num(s_rbf).clamp(math.exp(fb.log_min_scale) * lo, math.exp(fb.log_max_scale) * hi),
            torch.where(torch.isfinite(os), os, guess).clamp(*OUTPUTSCALE_RANGE),
            out.log_noise_ratio.nan_to_num(math.log(FALLBACK_NOISE_RATIO)).clamp(
                math.log(cfg.min_noise_ratio) - BOUND_RTOL, math.log(cfg.max_noise_ratio) + BOUND_RTOL
            ),
        )
        raw = (w, out.means, out.scales, os, out.log_noise_ratio)
        fixed = sum(int((a != b).sum()) for a, b in zip(raw, bounded))  # NaN != NaN counts
        if fixed:
            warnings.warn(
                f"The decoder produced {fixed} non-finite or out-of-range values (inputs far from its "
                "training data?); they were replaced by the documented fallbacks.",
                DecoderWarning, stacklevel=5,
            )
        return bounded

    # ------------------------------------------------------------------ weights
    @classmethod
    def pretrained(cls, name: str = "default", path: str | Path | None = None) -> "SpectralDecoder":
        """Load shipped weights (``pfn_kernels/weights/<name>.safetensors``) or ``path``.

        No network access and no pickle: the file holds tensors and a JSON config only.
        """
        from pfn_kernels.network.weights import load_decoder, weights_path

        return load_decoder(path if path is not None else weights_path(name))
