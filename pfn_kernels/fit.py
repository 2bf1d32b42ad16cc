r"""Fitting BoTorch GPs whose kernel is an :class:`~pfn_kernels.AmortizedSpectralKernel`.

"Fitting" is one forward pass of a pretrained :class:`~pfn_kernels.network.SpectralDecoder` on the
model's (transformed) training data, :func:`fit_amortized`. The decoded kernel can optionally be
polished by a short maximum-a-posteriori optimization, :func:`refine_amortized`, whose priors are
centred on the decoded values so that a few data points cannot pull the many spectral parameters
far from the network's estimate (unregularized marginal likelihood overfits them badly).
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
from botorch.optim.fit import fit_gpytorch_mll_scipy
from gpytorch.kernels import ScaleKernel
from gpytorch.likelihoods import FixedNoiseGaussianLikelihood, GaussianLikelihood
from gpytorch.means import ConstantMean
from gpytorch.mlls import ExactMarginalLogLikelihood, MarginalLogLikelihood
from gpytorch.priors import NormalPrior
from linear_operator.utils.errors import NotPSDError
from torch import Tensor, nn

from pfn_kernels.kernels import AmortizedSpectralKernel
from pfn_kernels.network import SpectralDecoder
from pfn_kernels.spectral_params import SpectralParams

#: Anything that maps ``(X (*batch, n, d), y (*batch, n))`` to :class:`SpectralParams`.
Decoder = Callable[[Tensor, Tensor], SpectralParams]

#: Default number of optimizer iterations of :func:`refine_amortized`.
DEFAULT_REFINE_STEPS = 20


@functools.lru_cache(maxsize=1)
def default_decoder() -> SpectralDecoder:
    """The shipped pretrained decoder, loaded on first use and cached (one load per process)."""
    return SpectralDecoder.pretrained().eval()


# ---------------------------------------------------------------------- one decoder pass
def fit_amortized(
    model: Any,
    decoder: Decoder | None = None,
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
    - the constant of a :class:`~gpytorch.means.ConstantMean`: the targets' mean (0 after
      ``Standardize``), the mean the decoder assumes.

    A batched multi-output model (``train_Y`` of shape `(n, m)`) is fitted by one batched pass.

    :param model: a BoTorch/GPyTorch exact GP whose ``covar_module`` is an
        :class:`~pfn_kernels.AmortizedSpectralKernel` itself (not wrapped in a
        :class:`~gpytorch.kernels.ScaleKernel`: it has its own outputscale), e.g.
        ``SingleTaskGP(X, Y, covar_module=AmortizedSpectralKernel())`` or an
        :class:`~pfn_kernels.AmortizedSingleTaskGP`; or a :class:`~botorch.models.ModelListGP` of
        such models (each fitted in turn).
    :param decoder: the network; default: the model's own ``decoder`` if it has one, else the
        pretrained :func:`default_decoder`.
    :param refine: polish the decoded values by :func:`refine_amortized`.
    :param refine_steps: optimizer iterations of the refinement (default
        :data:`DEFAULT_REFINE_STEPS`).
    :param kwargs: passed to :func:`refine_amortized` when ``refine`` (e.g. ``priors``,
        ``optimizer``, ``optimizer_kwargs``); ignored otherwise, as in ``fit_gpytorch_mll``.
    :return: the model, in eval mode.
    :raises TypeError: if the covariance module is not an ``AmortizedSpectralKernel``.

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
            fit_amortized(sub, decoder=decoder, refine=refine, refine_steps=refine_steps, **kwargs)
        return model.eval()
    kernel = amortized_kernel_of(model)
    if decoder is None:
        decoder = getattr(model, "decoder", None)  # an AmortizedSingleTaskGP's own
        decoder = default_decoder() if decoder is None else decoder
    model.train()  # raw train inputs; also drops cached posterior solves
    X, y = _training_data(model)
    y_mean, y_std = _target_statistics(y)
    params = run_decoder(decoder, X, (y - y_mean[..., None]) / y_std[..., None])
    scale = y_std**2
    params = SpectralParams(
        weights=params.weights,
        means=params.means,
        scales=params.scales,
        outputscale=params.outputscale * scale,
        noise=params.noise * scale,
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
    _set_noise(model.likelihood, params.noise)
    mean_module = getattr(model, "mean_module", None)
    if isinstance(mean_module, ConstantMean):
        mean_module.constant = y_mean.reshape(mean_module.constant.shape)
    if refine:
        refine_amortized(model, steps=refine_steps, **kwargs)
    return model.eval()


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


def run_decoder(decoder: Decoder, X: Tensor, y: Tensor) -> SpectralParams:
    """One gradient-free decoder pass; parameters come back on ``X``'s device and dtype.

    A :class:`torch.nn.Module` decoder is evaluated in eval mode (its mode is restored after),
    on the device of its parameters.
    """
    module = decoder if isinstance(decoder, nn.Module) else None
    device = X.device
    if module is not None:
        device = next(iter(module.parameters()), X).device
        was_training = module.training
        module.eval()
    try:
        with torch.no_grad():
            params = decoder(X.to(device), y.to(device))
    finally:
        if module is not None:
            module.train(was_training)
    if not isinstance(params, SpectralParams):
        raise TypeError(f"The decoder must return SpectralParams, got {type(params).__name__}.")
    return params.to(device=X.device, dtype=X.dtype)


def _training_data(model: Any) -> tuple[Tensor, Tensor]:
    """Transformed inputs `(*aug_batch, n, d)` and targets `(*aug_batch, n)` (model in train mode).

    In train mode BoTorch stores the raw inputs; ``transform_inputs`` applies the input transform
    as the model's own forward pass would.
    """
    (X,) = model.train_inputs
    transform = getattr(model, "transform_inputs", None)
    if transform is not None:
        with torch.no_grad():
            X = transform(X)
    return X, model.train_targets


def _target_statistics(y: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and unbiased std over points, as ``Standardize`` computes them (std 1 if degenerate)."""
    mean = y.mean(-1)
    if y.shape[-1] < 2:
        return mean, torch.ones_like(mean)
    std = y.std(-1)
    return mean, torch.where(std < 1e-8, torch.ones_like(std), std)


def _set_noise(likelihood: Any, noise: Tensor) -> None:
    """Write the decoded noise into a Gaussian likelihood; known (fixed) noise is kept."""
    if isinstance(likelihood, FixedNoiseGaussianLikelihood):
        return
    if not isinstance(likelihood, GaussianLikelihood):
        warnings.warn(
            f"Decoded noise not used: {type(likelihood).__name__} is not a GaussianLikelihood.",
            stacklevel=3,
        )
        return
    lower = float(likelihood.noise_covar.raw_noise_constraint.lower_bound)
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
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    optimizer_kwargs = dict(optimizer_kwargs or {})
    failure = None
    with _centred_priors(model, kernel, priors or RefinePriors()):
        mll.train()
        try:
            with warnings.catch_warnings():
                # Stopping at maxiter is the point of a short refinement, not a problem.
                warnings.filterwarnings("ignore", message=".*TOTAL NO. OF ITERATIONS.*")
                warnings.filterwarnings("ignore", message=".*ITERATIONS REACHED LIMIT.*")
                if optimizer is None:
                    options = {"maxiter": steps, **optimizer_kwargs.pop("options", {})}
                    fit_gpytorch_mll_scipy(mll, closure=closure, closure_kwargs=closure_kwargs,
                                           options=options, **optimizer_kwargs)
                else:
                    if closure is not None and closure_kwargs is not None:
                        closure = functools.partial(closure, **closure_kwargs)
                    optimizer(mll, closure=closure, **optimizer_kwargs)
        except (NotPSDError, ValueError, RuntimeError) as err:
            failure = f"{type(err).__name__}: {err}"
        if failure is None and not all(
            torch.isfinite(p).all() for p in model.parameters()
        ):
            failure = "non-finite hyperparameters"
    if failure is not None:
        model.load_state_dict(start)
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
             lambda m, v: m.initialize(
                 raw_mixture_means=m.raw_mixture_means_constraint.inverse_transform(v.exp()))),
            (kernel, "log_mixture_scales", kernel.mixture_scales.log(), widths.log_scales,
             lambda m: m.mixture_scales.log(),
             lambda m, v: m.initialize(
                 raw_mixture_scales=m.raw_mixture_scales_constraint.inverse_transform(v.exp()))),
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
        for module, name in added:
            module._priors.pop(name, None)
            delattr(module, name)


__all__ = [
    "DEFAULT_REFINE_STEPS",
    "Decoder",
    "RefinePriors",
    "amortized_kernel_of",
    "default_decoder",
    "fit_amortized",
    "refine_amortized",
    "run_decoder",
]
