r"""The inference path from data to hyperparameters: checks, subsample, network, calibration,
outputscale, bounds.

:func:`decode_spectral_params` runs, for ``X`` `(*batch, n, d)` and standardized ``y``:

1. **checks** (:func:`~pfn_kernels.validation.check_decoder_inputs`): errors for bad shapes,
   NaN or inf (naming the rows), d > :data:`~pfn_kernels.validation.MAX_INPUT_DIMS`; warnings
   (:class:`~pfn_kernels.validation.DecoderWarning`) for X outside the unit cube and for d beyond
   the decoder's ``trained_max_dims``;
2. **subsample**: beyond ``max_context`` points (default :data:`DEFAULT_MAX_CONTEXT`, or the
   decoder's ``trained_max_context`` if larger), a seeded random subset of that size, in the
   data's order (:data:`SUBSAMPLE_SEED`: the same points for the same n), with a warning. The
   network, the evidence check and the calibration read the subset; the mean and outputscale
   (step 7) read up to ``max_profile_points`` of all points. Time and memory stay bounded
   whatever n;
3. **the network** (:class:`~pfn_kernels.network.SpectralDecoder`), in its own device and dtype:
   a :class:`~pfn_kernels.spectral_params.SpectralEstimate`;
4. **evidence check** (:func:`~pfn_kernels.inference.evidence.evidence_check`, if
   ``config.evidence_check``): the decoded kernel against plain RBF kernels, against its own
   spectrum folded to frequency 0 and, for d = 1, against spectra on the periodogram's highest
   peaks, by marginal likelihood; a clearly better one replaces it;
5. **sparse spectra** (:func:`~pfn_kernels.inference.sparsity.sparsify`, if ``config.sparsify``):
   dimensions collapsed to one zero-frequency Gaussian (an RBF factor, cheap to evaluate)
   wherever that costs at most ``config.sparsity_margin`` nats per point of evidence;
6. **calibration** (:func:`~pfn_kernels.inference.calibration.calibrate`, if
   ``config.calibrate``): per-dimension frequency dilations and a noise factor by profile
   marginal likelihood, with priors on both;
7. **mean and outputscale**: the constant mean (0, the standardized sample mean, or the GLS
   mean with ``mean_mode="gls"``), then the profile outputscale of the residual, from one
   factorization (:func:`~pfn_kernels.inference.outputscale.gls_mean_and_outputscale`;
   :func:`~pfn_kernels.inference.outputscale.profile_outputscale` for the sample mean), or the
   network's guess with ``outputscale_mode="predicted"``;
8. **bounds** (:func:`~pfn_kernels.inference.bounds.bound_estimate`): the documented output
   ranges, non-finite values replaced, with a warning; for finite in-range data no bit changes.

Any other decoder, a callable ``(X, y) -> SpectralParams``, is used as it is unless a config is
given; with one, its output goes through steps 4 to 8 like the network's (its noise read as a
ratio to its outputscale, its outputscale as the guess).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Union

import torch
from torch import Tensor, nn

from pfn_kernels.inference.bounds import OutputRanges, bound_estimate
from pfn_kernels.inference.calibration import (
    CALIBRATION_NOISE_PRIOR_STD, CALIBRATION_PRIOR_STD, CALIBRATION_STEPS, MAX_CALIBRATION_POINTS,
    calibrate,
)
from pfn_kernels.inference.evidence import EVIDENCE_MARGIN, evidence_check
from pfn_kernels.inference.outputscale import gls_mean, gls_mean_and_outputscale, profile_outputscale
from pfn_kernels.inference.sparsity import SPARSITY_MARGIN, sparsify
from pfn_kernels.network import SpectralDecoder
from pfn_kernels.spectral_params import SpectralEstimate, SpectralParams
from pfn_kernels.validation import DecoderWarning, check_decoder_inputs, warn_outside_unit_cube

#: Anything that maps ``(X (*batch, n, d), y (*batch, n))`` to :class:`SpectralParams`.
DecoderFn = Callable[[Tensor, Tensor], SpectralParams]
#: What the fitting functions accept as a decoder: the network, or any such callable.
Decoder = Union[SpectralDecoder, DecoderFn]
#: Seed of the subsample read when n exceeds the context (the same points every call).
SUBSAMPLE_SEED = 0
#: Points one pass reads whole by default (``InferenceConfig.max_context=None``). The shipped
#: network was trained on up to 256; on prior tasks of 512 points, reading them all gives a
#: better kernel than a 256-point subsample at every d tried (BENCHMARKS.md, "Large contexts").
DEFAULT_MAX_CONTEXT = 512
OUTPUTSCALE_MODES = ("profile", "predicted")
MEAN_MODES = ("sample", "gls")


@dataclass(frozen=True)
class InferenceConfig:
    """Options of the inference stages (not of the network: they are not in any weight file).

    :param calibrate: calibrate each dimension's frequency scale and the noise by profile
        marginal likelihood (:mod:`pfn_kernels.inference.calibration`); ``False`` keeps the
        network's spectrum and noise ratio (faster, less accurate).
    :param calibration_sweeps: per-dimension sweeps of the calibration (0: the shared grid only).
    :param calibration_steps: the per-dimension dilation factors each sweep tries.
    :param calibration_prior_std: std of a Normal prior on the log dilations (MAP calibration);
        ``None``: maximum likelihood.
    :param max_calibration_points: points the evidence check and the calibration read (a
        strided subsample beyond). Fewer points than the GP will condition on bias the noise
        factor low (an overconfident GP), so the default reads every point of a context up to
        the network's trained size.
    :param outputscale_mode: ``"profile"`` (the profile-likelihood outputscale, shrunk towards
        the network's guess) or ``"predicted"`` (the guess alone).
    :param max_profile_points: points the profile outputscale reads (a strided subsample beyond).
    :param max_context: most points the network reads (``None``: :data:`DEFAULT_MAX_CONTEXT`
        or the decoder's ``trained_max_context``, whichever is larger; no limit for a decoder
        without one); beyond, a seeded random subsample of this many points, with a warning.
        The mean and outputscale still read up to ``max_profile_points`` of all points.
    :param evidence_check: compare the decoded kernel with plain RBF kernels (and, with
        ``evidence_folded``, its own folded spectrum) by marginal likelihood first, and keep a
        clearly better one (:mod:`pfn_kernels.inference.evidence`).
    :param evidence_margin: nats per point an alternative must win by.
    :param evidence_folded: the evidence check also tries the decoded spectrum folded to
        frequency 0 (:func:`~pfn_kernels.inference.evidence.fold_to_zero_frequency`).
    :param evidence_periodogram: for d = 1, the evidence check also tries spectra built from
        the periodogram's highest peaks
        (:func:`~pfn_kernels.inference.evidence.periodogram_candidates`).
    :param calibration_noise_prior_std: std of a Normal prior on the calibration's log noise
        factor (its departure from the ratio it starts from); ``None``: none (maximum
        likelihood, as before this prior).
    :param mean_mode: ``"sample"`` (the constant mean is the targets' mean) or ``"gls"`` (the
        generalized-least-squares mean under the decoded kernel, the maximum-likelihood one).
    :param outputscale_prior_count: weight, in points, of the network's outputscale guess in
        the profile outputscale (the inverse-gamma prior's :math:`n_0`).
    :param sparsify: collapse dimensions to one zero-frequency Gaussian (an RBF factor) where
        the data's evidence allows it (:mod:`pfn_kernels.inference.sparsity`): the kernel then
        costs one exponential per entry for all such dimensions together, which makes every
        acquisition evaluation cheaper. On held-out prior tasks it also predicts better
        (``benchmarks/one_pass.py``, variant ``sparse``); in whole BO runs its regret was level
        with the dense spectra but its acquisition optimizations took more evaluations, so it
        is off by default (BENCHMARKS.md, "Sparse spectra").
    :param sparsity_margin: nats per point of evidence the collapse may cost.

    Example:
        >>> from pfn_kernels.inference import InferenceConfig
        >>> InferenceConfig(calibrate=False).to_dict()["calibrate"]
        False
    """

    calibrate: bool = True
    calibration_sweeps: int = 2
    calibration_steps: tuple[float, ...] = CALIBRATION_STEPS
    calibration_prior_std: float | None = CALIBRATION_PRIOR_STD
    max_calibration_points: int = MAX_CALIBRATION_POINTS
    outputscale_mode: str = "profile"
    max_profile_points: int = 2048
    max_context: int | None = None
    evidence_check: bool = True
    evidence_margin: float = EVIDENCE_MARGIN
    mean_mode: str = "gls"
    outputscale_prior_count: float = 1.0
    evidence_folded: bool = True
    evidence_periodogram: bool = True
    calibration_noise_prior_std: float | None = CALIBRATION_NOISE_PRIOR_STD
    sparsify: bool = False
    sparsity_margin: float = SPARSITY_MARGIN

    def __post_init__(self) -> None:
        object.__setattr__(self, "calibration_steps", tuple(float(v) for v in self.calibration_steps))
        if not all(v > 0 for v in self.calibration_steps):
            raise ValueError(f"calibration_steps must be positive, got {self.calibration_steps}.")
        if self.mean_mode not in MEAN_MODES:
            raise ValueError(f"mean_mode must be 'sample' or 'gls', got {self.mean_mode!r}.")
        if not (self.evidence_margin >= 0 and self.outputscale_prior_count >= 0 and self.sparsity_margin >= 0):
            raise ValueError("evidence_margin, outputscale_prior_count and sparsity_margin must be >= 0.")
        if self.outputscale_mode not in OUTPUTSCALE_MODES:
            raise ValueError(
                f"outputscale_mode must be 'profile' or 'predicted', got {self.outputscale_mode!r}."
            )
        if self.calibration_sweeps < 0 or self.max_calibration_points < 1:
            raise ValueError("calibration_sweeps must be >= 0 and max_calibration_points >= 1.")
        if self.calibration_noise_prior_std is not None and not self.calibration_noise_prior_std > 0:
            raise ValueError(
                f"calibration_noise_prior_std must be > 0 or None, got {self.calibration_noise_prior_std}."
            )
        if self.max_profile_points < 1:
            raise ValueError(f"max_profile_points must be >= 1, got {self.max_profile_points}.")
        if self.max_context is not None and self.max_context < 1:
            raise ValueError(f"max_context must be >= 1 or None, got {self.max_context}.")

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON, Ax's storage)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "InferenceConfig":
        """The config of ``data``; unknown keys are an error (a typo must not pass silently)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown InferenceConfig options {unknown}; known: {sorted(known)}.")
        return cls(**data)

    @classmethod
    def coerce(cls, value: "InferenceConfig | dict[str, Any] | None") -> "InferenceConfig | None":
        """``None``, a config, or its dict (as stored by Ax) -> ``None`` or a config."""
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls.from_dict(value)
        raise TypeError(f"inference must be an InferenceConfig or a dict, got {type(value).__name__}.")


def decode_spectral_params(
    X: Tensor,
    y: Tensor,
    decoder: Decoder | None = None,
    config: InferenceConfig | None = None,
) -> SpectralParams:
    r"""Hyperparameters of a spectral-mixture GP for the data ``(X, y)``, in one pass.

    The steps are those of the module docstring. No gradients flow; a
    :class:`~torch.nn.Module` decoder runs in eval mode (its mode is restored after) on the
    device of its parameters.

    :param X: `(*batch, n, d)` inputs in :math:`[0, 1]^d`.
    :param y: `(*batch, n)` standardized targets, or `(*batch, n, M)`: M realizations sharing
        X and one kernel.
    :param decoder: a :class:`~pfn_kernels.network.SpectralDecoder` or any callable
        ``(X, y) -> SpectralParams``; default: the shipped pretrained network
        (:func:`~pfn_kernels.network.default_decoder`, on ``X``'s device).
    :param config: the inference options; default :class:`InferenceConfig` for the network,
        none (the callable's output as it is) for another decoder.
    :return: :class:`~pfn_kernels.SpectralParams` with batch shape `(*batch)`, on ``X``'s device
        and in its dtype (float32 for half-precision inputs); deterministic on CPU.

    Example:
        >>> import torch
        >>> from pfn_kernels.inference import InferenceConfig, decode_spectral_params
        >>> X = torch.rand(30, 2, dtype=torch.float64)
        >>> y = torch.sin(6 * X[:, 0]); y = (y - y.mean()) / y.std()
        >>> params = decode_spectral_params(X, y)
        >>> params.weights.shape, params.outputscale.shape
        (torch.Size([2, 4]), torch.Size([]))
        >>> fast = decode_spectral_params(X, y, config=InferenceConfig(calibrate=False))
    """
    if decoder is None:
        from pfn_kernels.network.weights import default_decoder

        decoder = default_decoder(X.device if isinstance(X, Tensor) else None)
    if not isinstance(decoder, SpectralDecoder) and config is None:
        return _call_decoder(decoder, X, y)  # a callable's own output, as it is
    config = config or InferenceConfig()
    # Inference mode skips autograd's bookkeeping on every op (about a tenth of the pass at
    # n = 50); the results are cloned out of it, so they are ordinary tensors for the caller.
    with torch.inference_mode():
        params = _decode(X, y, decoder, config)
    return params.clone()


def _decode(X: Tensor, y: Tensor, decoder: Decoder, config: InferenceConfig) -> SpectralParams:
    """The steps of :func:`decode_spectral_params` (which runs this in inference mode)."""
    network = decoder if isinstance(decoder, SpectralDecoder) else None
    trained_dims = network.config.trained_max_dims if network is not None else None
    check_decoder_inputs(X, y, trained_dims)
    batch_shape, (n, d) = X.shape[:-2], X.shape[-2:]
    x = X.reshape(-1, n, d)
    yy = y.reshape(-1, *y.shape[X.dim() - 2 :])  # (B, n) or (B, n, M)
    warn_outside_unit_cube(
        x, "Decoder inputs X",
        "Normalize X to [0, 1]^d first, e.g. with BoTorch's Normalize input transform "
        "(input_transform=Normalize(d)).",
        stacklevel=4,
    )
    if trained_dims is not None and d > trained_dims:
        warnings.warn(
            f"X has d={d} input dimensions, more than the decoder was trained on "
            f"({trained_dims}); its kernel may be poor.",
            DecoderWarning, stacklevel=3,
        )
    x_all, y_all = x, yy
    x, yy = subsample_context(x, yy, context_limit(config, network))
    if network is not None:
        est = _run_network(network, x, yy)
    else:
        est = SpectralEstimate.from_params(_call_decoder(decoder, x, yy))
    x, yy = x.to(est.weights), yy.to(est.weights)
    ranges = OutputRanges.of(decoder)
    if config.evidence_check:
        est, _ = evidence_check(x, yy, est, ranges, config.evidence_margin,
                                config.max_calibration_points, config.evidence_folded,
                                config.evidence_periodogram)
    if config.sparsify:
        est, _ = sparsify(x, yy, est, ranges, config.sparsity_margin, config.max_calibration_points)
    if config.calibrate:
        est = calibrate(x, yy, est, ranges, config.calibration_sweeps, config.max_calibration_points,
                        config.calibration_steps, config.calibration_prior_std,
                        config.calibration_noise_prior_std)
    mean, n0, points = None, config.outputscale_prior_count, config.max_profile_points
    if x_all.shape[-2] > x.shape[-2]:  # beyond the context: the profile stages read all points
        x, yy = x_all.to(est.weights), y_all.to(est.weights)
    if config.outputscale_mode == "predicted":
        os = est.log_outputscale.exp()
        if config.mean_mode == "gls":
            mean = gls_mean(x, yy, est, max_points=points)
    elif config.mean_mode == "gls":  # one factorization for both
        mean, os = gls_mean_and_outputscale(x, yy, est, prior_count=n0, max_points=points)
    else:
        os = profile_outputscale(x, yy, est, prior_count=n0, max_points=points)
    if mean is not None:
        mean = mean.nan_to_num(0.0)
    weights, means, scales, os, log_r = bound_estimate(est, os, ranges, stacklevel=4)
    noise = os * log_r.exp()
    mean = torch.zeros_like(os) if mean is None else mean.to(os)
    dtype = X.dtype if X.dtype in (torch.float32, torch.float64) else torch.float32
    unflat = lambda t: t.reshape(batch_shape + t.shape[1:]).to(device=X.device, dtype=dtype)  # noqa: E731
    return SpectralParams(
        weights=unflat(weights), means=unflat(means), scales=unflat(scales),
        outputscale=unflat(os), noise=unflat(noise), constant_mean=unflat(mean), validate=False,
    )


def context_limit(config: InferenceConfig, network: SpectralDecoder | None) -> int | None:
    """Most points the network reads under ``config``: ``config.max_context``, else
    :data:`DEFAULT_MAX_CONTEXT` or the network's ``trained_max_context`` if larger (``None``, no
    limit, for a decoder that is not a :class:`~pfn_kernels.network.SpectralDecoder`)."""
    if config.max_context is not None or network is None:
        return config.max_context
    return max(DEFAULT_MAX_CONTEXT, network.config.trained_max_context)


def subsample_context(x: Tensor, y: Tensor, limit: int | None) -> tuple[Tensor, Tensor]:
    """At most ``limit`` points of x `(B, n, d)` and y `(B, n[, M])`: a seeded random subset (in
    the data's order, :data:`SUBSAMPLE_SEED`) beyond, with a :class:`DecoderWarning`."""
    n = x.shape[-2]
    if limit is None or n <= limit:
        return x, y
    warnings.warn(
        f"{n} points exceed the decoder's context of {limit}; it reads a deterministic random "
        f"subsample of {limit} points (InferenceConfig.max_context sets the number).",
        DecoderWarning, stacklevel=4,
    )
    g = torch.Generator().manual_seed(SUBSAMPLE_SEED)
    idx = torch.randperm(n, generator=g)[:limit].sort().values.to(x.device)
    return x[:, idx], y[:, idx]


def _run_network(network: SpectralDecoder, x: Tensor, y: Tensor) -> SpectralEstimate:
    """The network's estimate, computed in its weights' device and dtype, in eval mode."""
    weight = next(network.parameters())
    with _eval_mode(network), torch.no_grad():
        return network(x.to(weight), y.to(weight))


def _call_decoder(decoder: DecoderFn, X: Tensor, y: Tensor) -> SpectralParams:
    """A callable decoder's output on ``X``'s device and dtype (an ``nn.Module`` runs in eval
    mode on its parameters' device)."""
    device = X.device
    if isinstance(decoder, nn.Module):
        device = next(iter(decoder.parameters()), X).device
    with _eval_mode(decoder), torch.no_grad():
        params = decoder(X.to(device), y.to(device))
    if not isinstance(params, SpectralParams):
        raise TypeError(f"The decoder must return SpectralParams, got {type(params).__name__}.")
    return params.to(device=X.device, dtype=X.dtype)


class _eval_mode:
    """Eval mode for an ``nn.Module`` inside the block (restored after); a no-op otherwise.
    Switching modes walks every submodule, so a module already in eval mode is left alone."""

    def __init__(self, module: object) -> None:
        self.module = module if isinstance(module, nn.Module) and module.training else None

    def __enter__(self) -> None:
        if self.module is not None:
            self.module.eval()

    def __exit__(self, *exc: object) -> None:
        if self.module is not None:
            self.module.train()


__all__ = [
    "DEFAULT_MAX_CONTEXT",
    "Decoder",
    "DecoderFn",
    "InferenceConfig",
    "SUBSAMPLE_SEED",
    "context_limit",
    "decode_spectral_params",
    "subsample_context",
]
