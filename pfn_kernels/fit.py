r"""Fitting BoTorch GPs whose kernel is an :class:`~pfn_kernels.AmortizedSpectralKernel`.

"Fitting" is one forward pass of a pretrained :class:`~pfn_kernels.network.SpectralDecoder` on the
model's (transformed) training data, :func:`fit_amortized`. The decoded kernel can optionally be
polished by a short maximum-a-posteriori optimization, :func:`refine_amortized`, whose priors are
centred on the decoded values so that a few data points cannot pull the many spectral parameters
far from the network's estimate (unregularized marginal likelihood overfits them badly).

Robustness: what :func:`fit_amortized` (and so :class:`~pfn_kernels.AmortizedSingleTaskGP`,
through ``fit_gpytorch_mll``) does with difficult data.

- **NaN or inf** in the training inputs, targets or known noise: ``ValueError`` naming how many
  rows and the first few (:class:`~pfn_kernels.AmortizedSingleTaskGP` checks at construction,
  before BoTorch's transforms can spread a NaN; negative ``train_Yvar`` is an error too).
- **Inputs outside the unit cube** (by more than 0.01; no ``Normalize``): an
  :class:`~pfn_kernels.validation.OutsideUnitCubeWarning` saying to add one.
- **Constant targets** (no variation relative to their magnitude, :func:`constant_tolerance`;
  also n = 1): the decoder's result is replaced by :func:`constant_target_params`, a smooth RBF
  with outputscale :math:`1/(n+1)` and noise :math:`10^{-4}` times that, in the targets' units
  (a :class:`~pfn_kernels.validation.DecoderWarning` for n >= 2).
- **Duplicate inputs, n = 1, 2**: handled; the likelihood's noise floor keeps the kernel matrix
  positive definite.
- **Extreme target scales** (e.g. :math:`10^{\pm 12}`): targets are standardized relative to their
  own scale, so the decoded parameters in standardized units do not depend on it. A likelihood
  noise lower bound larger than the decoded signal variance (tiny targets without
  ``Standardize``) gives a warning.
- **Known noise** (``FixedNoiseGaussianLikelihood``) of zero or below GPyTorch's
  ``min_fixed_noise`` (1e-6 in float64, 1e-4 in float32, in the model's target units) is raised to
  that floor, the jitter that keeps Cholesky factorizations working.
- **Large n, large d, devices, dtypes, out-of-range outputs**: see
  :mod:`pfn_kernels.inference.pipeline` (subsample beyond the context, a warning beyond the
  trained d, an error beyond 64 dimensions, clamped outputs). The decoder runs on the device
  of its parameters; the parameters are written back on the model's device and dtype. Batched
  and multi-output models are fitted by one batched pass, each batch element and output on its
  own (a constant output falls back alone).
"""

from __future__ import annotations

import functools
import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from botorch.models.model_list_gp_regression import ModelListGP
from botorch.models.transforms.outcome import Standardize
from botorch.optim.fit import fit_gpytorch_mll_scipy
from botorch.utils.context_managers import module_rollback_ctx
from gpytorch.kernels import ScaleKernel
from gpytorch.likelihoods import FixedNoiseGaussianLikelihood, GaussianLikelihood
from gpytorch.means import ConstantMean
from gpytorch.mlls import ExactMarginalLogLikelihood, MarginalLogLikelihood
from gpytorch.priors import NormalPrior
from gpytorch.settings import min_fixed_noise
from linear_operator.utils.errors import NotPSDError
from torch import Tensor

from pfn_kernels.inference import Decoder, InferenceConfig, decode_spectral_params
from pfn_kernels.kernels import AmortizedSpectralKernel
from pfn_kernels.network import default_decoder
from pfn_kernels.spectral_params import SpectralParams
from pfn_kernels.validation import (
    DecoderWarning,
    OutsideUnitCubeWarning,
    check_finite_rows,
    warn_outside_unit_cube,
)

#: Default number of optimizer iterations of :func:`refine_amortized`.
DEFAULT_REFINE_STEPS = 20

#: Noise-to-signal ratio of :func:`constant_target_params`.
CONSTANT_NOISE_RATIO = 1e-4


def constant_tolerance(dtype: torch.dtype) -> float:
    """Relative spread below which targets count as constant: 100 machine epsilons
    (2.2e-14 in float64, 1.2e-5 in float32) of their largest magnitude."""
    return 100 * torch.finfo(dtype).eps


# ---------------------------------------------------------------------- one decoder pass
def fit_amortized(
    model: Any,
    decoder: Decoder | None = None,
    inference: InferenceConfig | dict[str, Any] | None = None,
    refine: bool = False,
    refine_steps: int | None = None,
    **kwargs: Any,
) -> Any:
    r"""Set a GP's hyperparameters from one pass of the decoder; optionally refine them.

    The decoder reads the model's transformed training inputs (which it expects in the unit cube,
    e.g. through a ``Normalize`` input transform) and its training targets, standardized here per
    output (a no-op after BoTorch's default ``Standardize``). It returns the spectral mixture, the
    signal variance and the noise variance, which are written into the model:

    - the kernel, through :meth:`AmortizedSpectralKernel.set_spectral_params` (outputscale scaled
      back to the targets' units);
    - the noise of a :class:`~gpytorch.likelihoods.GaussianLikelihood`, raised to its constraint's
      lower bound if needed. A :class:`~gpytorch.likelihoods.FixedNoiseGaussianLikelihood` (known
      ``train_Yvar``) keeps its noise;
    - the constant of a :class:`~gpytorch.means.ConstantMean`: the decoded constant mean (the
      targets' mean, 0 after ``Standardize``, unless the inference stages estimate another, e.g.
      ``InferenceConfig(mean_mode="gls")``).

    A batched multi-output model (``train_Y`` of shape `(n, m)`) is fitted by one batched pass.
    Difficult data (NaN, constant targets, extreme scales, inputs outside the unit cube, ...) are
    handled as the module docstring describes.

    :param model: a BoTorch/GPyTorch exact GP whose ``covar_module`` is an
        :class:`~pfn_kernels.AmortizedSpectralKernel` itself (not wrapped in a
        :class:`~gpytorch.kernels.ScaleKernel`: it has its own outputscale), e.g.
        ``SingleTaskGP(X, Y, covar_module=AmortizedSpectralKernel())`` or an
        :class:`~pfn_kernels.AmortizedSingleTaskGP`; or a :class:`~botorch.models.ModelListGP` of
        such models (each fitted in turn).
    :param decoder: a :class:`~pfn_kernels.network.SpectralDecoder` or any callable
        ``(X, y) -> SpectralParams``; default: the model's own ``decoder`` if it has one, else
        the pretrained :func:`~pfn_kernels.network.default_decoder`.
    :param inference: options of the inference stages after the network (calibration,
        outputscale, context size; :class:`~pfn_kernels.inference.InferenceConfig` or its dict);
        default: the model's own ``inference`` if it has one, else the defaults for a network and
        none for a callable (its output is used as it is).
    :param refine: polish the decoded values by :func:`refine_amortized`.
    :param refine_steps: optimizer iterations of the refinement (default
        :data:`DEFAULT_REFINE_STEPS`).
    :param kwargs: passed to :func:`refine_amortized` when ``refine`` (e.g. ``priors``,
        ``optimizer``, ``optimizer_kwargs``); ignored otherwise, as in ``fit_gpytorch_mll``.
    :return: the model, in eval mode.
    :raises TypeError: if the covariance module is not an ``AmortizedSpectralKernel``.
    :raises ValueError: for NaN or inf in the training data (naming the rows), or more input
        dimensions than the decoder supports.

    Example:
        >>> import torch
        >>> from botorch.models import SingleTaskGP
        >>> from botorch.models.transforms.input import Normalize
        >>> from pfn_kernels import AmortizedSpectralKernel, fit_amortized
        >>> from pfn_kernels.network import DecoderConfig, SpectralDecoder
        >>> decoder = SpectralDecoder(DecoderConfig(width=16, num_heads=2, num_layers=1))
        >>> X = torch.rand(20, 2, dtype=torch.float64)
        >>> Y = torch.sin(6 * X[:, :1]) + X[:, 1:]
        >>> model = SingleTaskGP(
        ...     X, Y, covar_module=AmortizedSpectralKernel(), input_transform=Normalize(2)
        ... )
        >>> model = fit_amortized(model, decoder=decoder)
        >>> model.posterior(torch.rand(5, 2, dtype=torch.float64)).mean.shape
        torch.Size([5, 1])
    """
    if isinstance(model, ModelListGP):
        for sub in model.models:
            fit_amortized(sub, decoder=decoder, inference=inference, refine=refine,
                          refine_steps=refine_steps, **kwargs)
        return model.eval()
    kernel = amortized_kernel_of(model)
    if decoder is None:
        decoder = getattr(model, "decoder", None)  # an AmortizedSingleTaskGP's own
        decoder = default_decoder() if decoder is None else decoder
    inference = InferenceConfig.coerce(inference)
    if inference is None:
        inference = getattr(model, "inference", None)
    model.train()  # raw train inputs; also drops cached posterior solves
    X, y = _training_data(model)
    if X.device.type != "cpu" and decoder is default_decoder():
        decoder = default_decoder(X.device)  # the shipped decoder runs where the data is
    warn_outside_unit_cube(
        X, "The model's (transformed) training inputs",
        "Add an input transform that maps them to [0, 1]^d, e.g. "
        f"input_transform=Normalize(d={X.shape[-1]}) (botorch.models.transforms.input), or pass "
        "normalized inputs.",
    )
    y_mean, y_std, constant = _target_statistics(y, _raw_magnitude(model, y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutsideUnitCubeWarning)  # warned just above, for the model
        params = decode_spectral_params(X, (y - y_mean[..., None]) / y_std[..., None], decoder, inference)
    if constant.any():
        params = _constant_fallback(params, constant, n=y.shape[-1])
    scale = y_std**2
    params = SpectralParams(
        weights=params.weights,
        means=params.means,
        scales=params.scales,
        outputscale=params.outputscale * scale,
        noise=params.noise * scale,
        constant_mean=y_mean + y_std * params.constant_mean,
        validate=True,  # a clear error for a broken decoder, not a NaN posterior later
    )
    wanted = getattr(model, "_num_mixtures", None)
    if wanted is not None:
        if wanted < params.num_mixtures:
            raise ValueError(
                f"num_mixtures={wanted} is smaller than the decoder's {params.num_mixtures} "
                "components per dimension; pass num_mixtures=None or a larger value."
            )
        params = params.pad_mixtures(wanted)
    kernel.set_spectral_params(params)
    _set_noise(model.likelihood, params.noise, params.outputscale)
    mean_module = getattr(model, "mean_module", None)
    if isinstance(mean_module, ConstantMean):
        mean_module.constant = params.constant_mean.reshape(mean_module.constant.shape)
    if refine:
        refine_amortized(model, steps=refine_steps, **kwargs)
    return model.eval()


def model_spectral_params(model: Any) -> SpectralParams:
    """A fitted GP's kernel, noise and mean as :class:`SpectralParams`, in the model's
    (transformed) target units: the kernel's mixture and outputscale, the likelihood's noise (for
    known noise, its mean over the training points), a ``ConstantMean``'s constant (else 0)."""
    params = amortized_kernel_of(model).spectral_params
    noise = model.likelihood.noise
    if isinstance(model.likelihood, FixedNoiseGaussianLikelihood):
        noise = noise.mean(-1)
    else:
        noise = noise.squeeze(-1) if noise.dim() > params.outputscale.dim() else noise
    noise = noise.to(params.outputscale).expand(params.batch_shape)
    mean_module = getattr(model, "mean_module", None)
    mean = torch.zeros_like(params.outputscale)
    if isinstance(mean_module, ConstantMean):
        mean = mean_module.constant.to(mean).reshape(mean.shape)
    return SpectralParams(params.weights, params.means, params.scales, params.outputscale, noise,
                          constant_mean=mean, validate=False)


def amortized_kernel_of(model: Any) -> AmortizedSpectralKernel:
    """The model's ``covar_module``, checked to be an :class:`AmortizedSpectralKernel`."""
    covar = getattr(model, "covar_module", None)
    if isinstance(covar, AmortizedSpectralKernel):
        return covar
    if isinstance(covar, ScaleKernel) and isinstance(covar.base_kernel, AmortizedSpectralKernel):
        raise TypeError(
            "The AmortizedSpectralKernel is wrapped in a ScaleKernel. Pass the "
            "AmortizedSpectralKernel itself as covar_module: it has its own outputscale, and the "
            "decoder sets it."
        )
    raise TypeError(
        "fit_amortized needs a GP whose covar_module is an AmortizedSpectralKernel, e.g. "
        "SingleTaskGP(X, Y, covar_module=AmortizedSpectralKernel()) or AmortizedSingleTaskGP(X, Y); "
        f"got {type(model).__name__} with covar_module {type(covar).__name__}. "
        "Fit other kernels with botorch.fit_gpytorch_mll."
    )


def _training_data(model: Any) -> tuple[Tensor, Tensor]:
    """Transformed inputs `(*aug_batch, n, d)` and targets `(*aug_batch, n)` (model in train mode),
    checked to be finite.

    In train mode BoTorch stores the raw inputs; ``transform_inputs`` applies the input transform
    as the model's own forward pass would.
    """
    (X,) = model.train_inputs
    check_finite_rows("train_X", X, row_dim=-2)
    transform = getattr(model, "transform_inputs", None)
    if transform is not None:
        with torch.no_grad():
            X = transform(X)
        check_finite_rows("train_X after the model's input transform", X, row_dim=-2)
    y = model.train_targets
    try:
        check_finite_rows("train_Y", y, row_dim=-1)
    except ValueError as err:
        if bool((~torch.isfinite(y)).all()):
            raise ValueError(f"{err} (Every row: an outcome transform may have spread one NaN or "
                             "inf to all of them; check the raw train_Y.)") from None
        raise
    likelihood = getattr(model, "likelihood", None)
    if isinstance(likelihood, FixedNoiseGaussianLikelihood):
        check_finite_rows("train_Yvar", likelihood.noise, row_dim=-1)
    return X, y


def _raw_magnitude(model: Any, y: Tensor) -> Tensor | None:
    """Largest |target| per batch element before a ``Standardize`` outcome transform, in the
    transformed units of ``y``; ``None`` without one (``y``'s own magnitude is used)."""
    transform = getattr(model, "outcome_transform", None)
    if not isinstance(transform, Standardize):
        return None
    try:
        mu, sd = transform.means.squeeze(-2), transform.stdvs.squeeze(-2)  # (*batch, m)
        if y.dim() > mu.dim():  # multi-output targets (*batch, m, n)
            mu, sd = mu.unsqueeze(-1), sd.unsqueeze(-1)
        raw = y * sd + mu
        return (raw.abs().amax(-1, keepdim=True) / sd).squeeze(-1).expand(y.shape[:-1])
    except RuntimeError:  # an unusual layout: fall back to the transformed targets
        return None


def _target_statistics(y: Tensor, magnitude: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Mean and unbiased std over points, as ``Standardize`` computes them, and which targets are
    constant (std 1 there): spread at most :func:`constant_tolerance` times ``magnitude``
    (default: the largest |y|), or a single point. Relative, so tiny and huge scales standardize
    alike."""
    mean = y.mean(-1)
    if y.shape[-1] < 2:
        return mean, torch.ones_like(mean), torch.ones_like(mean, dtype=torch.bool)
    std = y.std(-1)
    magnitude = y.abs().amax(-1) if magnitude is None else magnitude
    constant = ~(std > constant_tolerance(y.dtype) * magnitude)
    return mean, torch.where(constant, torch.ones_like(std), std), constant


def constant_target_params(
    num_points: int,
    num_dims: int,
    num_mixtures: int,
    batch_shape: torch.Size = torch.Size(),
    dtype: torch.dtype | None = None,
    device: torch.device | None = None,
) -> SpectralParams:
    r"""The kernel :func:`fit_amortized` uses for constant targets (in standardized units).

    Nothing can be learned from data without variation, so this is a fixed, smooth choice: every
    component at frequency 0 with bandwidth :math:`s = 1 / (2\pi\ell)`,
    :math:`\ell = 0.25\sqrt d` (an RBF kernel of lengthscale :math:`\ell` per dimension), the
    outputscale :math:`1 / (n + 1)` (the decoder's profile-likelihood estimate for
    :math:`\mathbf y = 0` with a prior guess of 1: small, shrinking as more equal values arrive)
    and noise :data:`CONSTANT_NOISE_RATIO` times the outputscale.
    """
    kw = {"dtype": dtype or torch.get_default_dtype(), "device": device}
    shape = (*batch_shape, num_dims, num_mixtures)
    outputscale = torch.full(batch_shape, 1.0 / (num_points + 1), **kw)
    return SpectralParams(
        weights=torch.full(shape, 1.0 / num_mixtures, **kw),
        means=torch.zeros(shape, **kw),
        scales=torch.full(shape, 1 / (2 * math.pi * 0.25 * math.sqrt(num_dims)), **kw),
        outputscale=outputscale,
        noise=CONSTANT_NOISE_RATIO * outputscale,
    )


def _constant_fallback(params: SpectralParams, constant: Tensor, n: int) -> SpectralParams:
    """``params`` with the batch elements flagged ``constant`` replaced by the fallback kernel."""
    fallback = constant_target_params(n, params.num_dims, params.num_mixtures, params.batch_shape,
                                      params.dtype, params.device)
    if n >= 2:
        warnings.warn(
            f"The training targets are constant ({int(constant.sum())} of {constant.numel()} "
            "outputs/batches): nothing to learn a kernel from. Using the documented fallback, a "
            "smooth RBF kernel with a small outputscale (pfn_kernels.fit.constant_target_params).",
            DecoderWarning,
            stacklevel=3,
        )
    c = constant.to(params.device)
    pick = lambda a, b, extra: torch.where(c.reshape(c.shape + (1,) * extra), a, b)  # noqa: E731
    return SpectralParams(
        weights=pick(fallback.weights, params.weights, 2),
        means=pick(fallback.means, params.means, 2),
        scales=pick(fallback.scales, params.scales, 2),
        outputscale=pick(fallback.outputscale, params.outputscale, 0),
        noise=pick(fallback.noise, params.noise, 0),
        constant_mean=pick(fallback.constant_mean, params.constant_mean, 0),
        validate=False,
    )


def _set_noise(likelihood: Any, noise: Tensor, outputscale: Tensor) -> None:
    """Write the decoded noise into a Gaussian likelihood; known (fixed) noise is kept, raised to
    GPyTorch's ``min_fixed_noise`` where below."""
    if isinstance(likelihood, FixedNoiseGaussianLikelihood):
        fixed = likelihood.noise_covar.noise
        floor = min_fixed_noise.value(fixed.dtype)
        if (fixed < floor).any():
            likelihood.noise_covar.noise = fixed.clamp_min(floor)
        return
    if not isinstance(likelihood, GaussianLikelihood):
        warnings.warn(
            f"Decoded noise not used: {type(likelihood).__name__} is not a GaussianLikelihood.",
            stacklevel=3,
        )
        return
    lower = float(likelihood.noise_covar.raw_noise_constraint.lower_bound)
    if (outputscale < lower).any():
        warnings.warn(
            f"The likelihood's noise lower bound {lower:.3g} exceeds the decoded signal variance "
            f"{float(outputscale.min()):.3g}: the targets' scale is tiny for this likelihood and "
            "the model will treat the data as noise. Standardize the targets (e.g. "
            "outcome_transform=Standardize(m)) or lower the noise constraint.",
            DecoderWarning,
            stacklevel=3,
        )
    noise = noise.clamp_min(lower + max(1e-2 * lower, 1e-12))
    likelihood.noise = noise.to(likelihood.noise).reshape(likelihood.noise.shape)


# ---------------------------------------------------------------------- refinement
@dataclass(frozen=True)
class RefinePriors:
    r"""Widths of the Normal priors centred on the decoded values, used by :func:`refine_amortized`.

    Each prior acts on an unconstrained quantity: the raw mixture logits (softmax gives the
    weights) and the logarithms of the frequencies, bandwidths, outputscale and noise. A width of
    0.3 on a logarithm lets a value move by about 35% at one standard deviation.

    :param logits: std of the raw mixture logits.
    :param log_means: std of :math:`\log \mu_{jq}`.
    :param log_scales: std of :math:`\log s_{jq}`.
    :param log_outputscale: std of :math:`\log \sigma_f^2`.
    :param log_noise: std of :math:`\log \sigma_n^2` (unused with fixed noise).
    """

    logits: float = 0.5
    log_means: float = 0.2
    log_scales: float = 0.3
    log_outputscale: float = 0.5
    log_noise: float = 0.5

    def __post_init__(self) -> None:
        for name, width in vars(self).items():
            if not (math.isfinite(width) and width > 0):
                raise ValueError(f"RefinePriors widths must be positive and finite; {name}={width}.")


def refine_amortized(
    model: Any,
    steps: int | None = None,
    priors: RefinePriors | None = None,
    mll: MarginalLogLikelihood | None = None,
    optimizer: Callable[..., Any] | None = None,
    optimizer_kwargs: dict[str, Any] | None = None,
    closure: Callable[[], Any] | None = None,
    closure_kwargs: dict[str, Any] | None = None,
    **ignore: Any,
) -> Any:
    r"""Polish a decoded GP by a short MAP optimization with priors centred on the current values.

    Maximizes the marginal likelihood plus the log densities of :class:`RefinePriors` (Normal priors
    on the unconstrained hyperparameters, centred on their current, decoded values). Since the
    starting point is the priors' mode, any step that improves this objective also improves the
    plain marginal likelihood. The priors exist only during the optimization: afterwards the
    model's priors and ``state_dict`` are as before, so a later :func:`fit_amortized` is
    unaffected. Should the optimization fail (non-positive-definite matrix, non-finite loss),
    the decoded values are restored with a warning.

    :param model: a GP fitted by :func:`fit_amortized` (its covar_module an
        :class:`AmortizedSpectralKernel`), or a :class:`~botorch.models.ModelListGP` of them.
    :param steps: optimizer iterations (default :data:`DEFAULT_REFINE_STEPS`), passed as scipy's
        ``maxiter`` to :func:`~botorch.optim.fit.fit_gpytorch_mll_scipy`.
    :param priors: prior widths (default :class:`RefinePriors`).
    :param mll: the objective (default: exact marginal log likelihood of the model).
    :param optimizer: replaces :func:`~botorch.optim.fit.fit_gpytorch_mll_scipy`; called as
        ``optimizer(mll, closure=closure, **optimizer_kwargs)``, with ``steps`` not used.
    :param optimizer_kwargs: keyword arguments of the optimizer (merged into the scipy ``options``
        for the default one).
    :param closure: loss-and-gradient closure, as in :func:`botorch.fit.fit_gpytorch_mll`.
    :param closure_kwargs: keyword arguments of the closure.
    :return: the model, in eval mode.
    """
    if isinstance(model, ModelListGP):
        for sub in model.models:
            refine_amortized(sub, steps=steps, priors=priors, optimizer=optimizer,
                             optimizer_kwargs=optimizer_kwargs)
        return model.eval()
    kernel = amortized_kernel_of(model)
    kernel._require_sized()
    steps = DEFAULT_REFINE_STEPS if steps is None else int(steps)
    if steps < 1:
        return model.eval()
    mll = ExactMarginalLogLikelihood(model.likelihood, model) if mll is None else mll
    optimizer_kwargs = dict(optimizer_kwargs or {})
    failure = None
    with module_rollback_ctx(model) as checkpoint, _centred_priors(model, kernel, priors or RefinePriors()):
        mll.train()
        try:
            if optimizer is None:
                options = {"maxiter": steps, **optimizer_kwargs.pop("options", {})}
                result = fit_gpytorch_mll_scipy(mll, closure=closure, closure_kwargs=closure_kwargs,
                                                options=options, **optimizer_kwargs)
            else:
                if closure is not None and closure_kwargs is not None:
                    closure = functools.partial(closure, **closure_kwargs)
                result = optimizer(mll, closure=closure, **optimizer_kwargs)
        except (NotPSDError, ValueError, RuntimeError) as err:
            failure = f"{type(err).__name__}: {err}"
        else:
            # Not the optimizer's status: stopping at maxiter is the point of a short refinement,
            # and BoTorch's batched L-BFGS reports that as FAILURE ("0/m outputs converged").
            fval = getattr(result, "fval", None)
            if fval is not None and not math.isfinite(float(fval)):
                failure = f"non-finite objective {fval}"
            elif not all(torch.isfinite(p).all() for p in model.parameters()):
                failure = "non-finite hyperparameters"
        if failure is None:
            checkpoint.clear()  # keep the refined values
    if failure is not None:
        warnings.warn(f"refine_amortized failed ({failure}); keeping the decoded values.",
                      stacklevel=2)
    return model.eval()


@contextmanager
def _centred_priors(model: Any, kernel: AmortizedSpectralKernel, widths: RefinePriors) -> Iterator[None]:
    """Register :class:`RefinePriors` centred on the current values; remove them on exit."""
    like = kernel.raw_outputscale
    with torch.no_grad():
        entries = [
            (kernel, "raw_mixture_logits", kernel.raw_mixture_logits.clone(), widths.logits,
             lambda m: m.raw_mixture_logits,
             lambda m, v: m.initialize(raw_mixture_logits=v)),
            (kernel, "log_mixture_means", kernel.mixture_means.log(), widths.log_means,
             lambda m: m.mixture_means.log(),
             lambda m, v: setattr(m, "mixture_means", v.exp())),
            (kernel, "log_mixture_scales", kernel.mixture_scales.log(), widths.log_scales,
             lambda m: m.mixture_scales.log(),
             lambda m, v: setattr(m, "mixture_scales", v.exp())),
            (kernel, "log_outputscale", kernel.outputscale.log(), widths.log_outputscale,
             lambda m: m.outputscale.log(),
             lambda m, v: setattr(m, "outputscale", v.exp())),
        ]
        likelihood = model.likelihood
        if isinstance(likelihood, GaussianLikelihood) and not isinstance(
            likelihood, FixedNoiseGaussianLikelihood
        ):
            noise_covar = likelihood.noise_covar
            entries.append(
                (noise_covar, "log_noise", noise_covar.noise.log(), widths.log_noise,
                 lambda m: m.noise.log(),
                 lambda m, v: setattr(m, "noise", v.exp()))
            )
    added = []
    try:
        for module, what, centre, width, closure, setting in entries:
            name = f"_refine_{what}_prior"
            prior = NormalPrior(centre, torch.full_like(centre, width)).to(like)
            module.register_prior(name, prior, closure, setting)
            added.append((module, name))
        yield
    finally:
        for module, name in added:  # GPyTorch has no public way to unregister a prior
            module._priors.pop(name, None)
            delattr(module, name)


__all__ = [
    "DEFAULT_REFINE_STEPS",
    "RefinePriors",
    "amortized_kernel_of",
    "constant_target_params",
    "constant_tolerance",
    "fit_amortized",
    "model_spectral_params",
    "refine_amortized",
]
