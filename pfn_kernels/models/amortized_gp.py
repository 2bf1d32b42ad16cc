r"""A BoTorch ``SingleTaskGP`` whose hyperparameters come from one pass of a pretrained decoder."""

from __future__ import annotations

from typing import Any, Callable

import torch
from botorch.models import SingleTaskGP
from botorch.models.transforms.input import InputTransform, Normalize
from botorch.models.transforms.outcome import OutcomeTransform, Standardize
from botorch.models.utils.gpytorch_modules import MIN_INFERRED_NOISE_LEVEL
from botorch.utils.types import DEFAULT, _DefaultType
from gpytorch.constraints import GreaterThan
from gpytorch.likelihoods import GaussianLikelihood
from gpytorch.mlls import MarginalLogLikelihood
from torch import Tensor

from pfn_kernels.fit import constant_tolerance, fit_amortized
from pfn_kernels.inference import Decoder, InferenceConfig
from pfn_kernels.kernels import AmortizedSpectralKernel
from pfn_kernels.network import default_decoder
from pfn_kernels.validation import check_finite_rows


def get_amortized_likelihood(batch_shape: torch.Size | None = None) -> GaussianLikelihood:
    """Gaussian likelihood with BoTorch's noise floor and no prior: the decoder sets the noise."""
    return GaussianLikelihood(
        batch_shape=batch_shape or torch.Size(),
        noise_constraint=GreaterThan(MIN_INFERRED_NOISE_LEVEL, transform=None, initial_value=1e-2),
    )


def get_amortized_input_transform(train_X: Tensor, train_Y: Tensor) -> Normalize:
    """``Normalize`` with bounds learned from ``train_X``: per batch element, except for a batched
    multi-output model, whose bounds are shared across the batch (BoTorch transforms its training
    inputs with an extra output dimension but its test inputs without one, and only batch-free
    bounds broadcast against both)."""
    batch_shape = train_X.shape[:-2] if train_Y.shape[-1] == 1 else torch.Size()
    return Normalize(d=train_X.shape[-1], batch_shape=batch_shape)


def get_amortized_outcome_transform(train_X: Tensor, train_Y: Tensor) -> Standardize:
    """``Standardize`` whose ``min_stdv`` is relative to the targets' largest magnitude.

    BoTorch's default ``min_stdv=1e-8`` is absolute: targets of scale 1e-12 would stay unscaled, far
    below the likelihood's noise floor. Here only targets constant up to rounding
    (:func:`pfn_kernels.fit.constant_tolerance`) are left unscaled.
    """
    magnitude = float(train_Y.abs().max()) if train_Y.numel() else 0.0
    min_stdv = max(constant_tolerance(train_Y.dtype) * magnitude, torch.finfo(train_Y.dtype).tiny)
    return Standardize(m=train_Y.shape[-1], batch_shape=train_X.shape[:-2], min_stdv=min_stdv)


class _Shared:
    """Holds a value that copies of a model share: ``deepcopy`` (used by BoTorch's fantasy
    models) does not copy the decoder's weights."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __deepcopy__(self, memo: dict) -> "_Shared":
        return self


class AmortizedSingleTaskGP(SingleTaskGP):
    r"""``SingleTaskGP`` with an :class:`~pfn_kernels.AmortizedSpectralKernel`, fitted in one pass.

    The covariance is the product spectral mixture

    .. math::

        k(\mathbf x, \mathbf x') = \sigma_f^2 \prod_{j=1}^{d} \sum_{q=1}^{Q}
            w_{jq} \exp\!\left(-2\pi^2 \tau_j^2 s_{jq}^2\right) \cos\!\left(2\pi \mu_{jq} \tau_j\right),
        \qquad \boldsymbol\tau = \mathbf x - \mathbf x',

    in the normalized inputs, with a Gaussian noise :math:`\sigma_n^2` and a constant mean.
    ``botorch.fit.fit_gpytorch_mll(mll)`` calls :meth:`custom_fit`, which runs the decoder once on
    the training data and sets :math:`w, \mu, s, \sigma_f^2, \sigma_n^2` (no marginal-likelihood
    optimization). Everything else is ``SingleTaskGP``: posteriors, batched outputs (``train_Y`` of
    shape `(n, m)` gives a kernel of batch shape `(m,)`, fitted by one batched decoder pass),
    fantasies, ``state_dict`` round trips.

    The decoder is held as a plain attribute, not a submodule: it is not in the model's
    ``parameters()`` or ``state_dict``, and marginal-likelihood training never touches it.

    :param train_X: `(*batch, n, d)` training inputs.
    :param train_Y: `(*batch, n, m)` training observations.
    :param train_Yvar: optional `(*batch, n, m)` known observation noise variances (>= 0). The
        likelihood is then a ``FixedNoiseGaussianLikelihood`` and keeps this noise, raised to
        GPyTorch's ``min_fixed_noise`` where smaller (zeros work); the decoder sets the kernel only.
    :param decoder: the network (a :class:`~pfn_kernels.network.SpectralDecoder`) or any callable
        ``(X, y) -> SpectralParams``; default: the pretrained
        :func:`pfn_kernels.network.default_decoder`, loaded at the first fit and shared by all
        models.
    :param input_transform: default: ``Normalize(d)`` with bounds learned from ``train_X`` (the
        decoder expects inputs in the unit cube; see :func:`get_amortized_input_transform`). Pass
        ``None`` when ``train_X`` already lies in :math:`[0, 1]^d` (e.g. Ax normalizes to the
        search space), or any ``InputTransform``. Inputs outside the unit cube at fit time give a
        warning.
    :param outcome_transform: default: ``Standardize(m)`` as in ``SingleTaskGP``, but with
        ``min_stdv`` relative to the targets' magnitude (:func:`pfn_kernels.fit.constant_tolerance`)
        so that targets of any scale (1e-12 or 1e12) are standardized and only constant ones are
        left unscaled. ``None`` works too: the fit standardizes the targets internally and maps the
        decoded values back.
    :param num_mixtures: components per dimension Q of the kernel; default: the decoder's. A larger
        value appends zero-weight components (the same kernel); a smaller one is an error at fit
        time.
    :param inference: options of the inference stages after the network
        (:class:`~pfn_kernels.inference.InferenceConfig` or its dict), e.g.
        ``InferenceConfig(calibrate=False)`` for the network's spectrum as it is; default: the
        defaults for the network, none for a callable decoder.
    :raises ValueError: NaN or inf in ``train_X``, ``train_Y`` or ``train_Yvar`` (the message
        names the rows), or a negative ``train_Yvar``. See :mod:`pfn_kernels.fit` for the
        behaviour on other difficult data (constant targets, duplicates, extreme scales).

    Example:
        >>> import torch
        >>> from botorch.fit import fit_gpytorch_mll
        >>> from gpytorch.mlls import ExactMarginalLogLikelihood
        >>> from pfn_kernels import AmortizedSingleTaskGP
        >>> from pfn_kernels.network import DecoderConfig, SpectralDecoder
        >>> decoder = SpectralDecoder(DecoderConfig(width=16, num_heads=2, num_layers=1))
        >>> X = 4 * torch.rand(20, 2, dtype=torch.float64)
        >>> Y = torch.sin(3 * X[:, :1]) + X[:, 1:]
        >>> model = AmortizedSingleTaskGP(X, Y, decoder=decoder)
        >>> _ = fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        >>> model.posterior(4 * torch.rand(5, 2, dtype=torch.float64)).mean.shape
        torch.Size([5, 1])
        >>> model.covar_module.spectral_params.weights.shape  # (d, Q)
        torch.Size([2, 4])
    """

    def __init__(
        self,
        train_X: Tensor,
        train_Y: Tensor,
        train_Yvar: Tensor | None = None,
        decoder: Decoder | None = None,
        input_transform: InputTransform | _DefaultType | None = DEFAULT,
        outcome_transform: OutcomeTransform | _DefaultType | None = DEFAULT,
        num_mixtures: int | None = None,
        inference: InferenceConfig | dict[str, Any] | None = None,
    ) -> None:
        if num_mixtures is not None and num_mixtures < 1:
            raise ValueError(f"num_mixtures must be >= 1 or None, got {num_mixtures}.")
        # Before BoTorch's transforms, which would spread a NaN or hide which rows hold it.
        check_finite_rows("train_X", train_X, row_dim=-2)
        check_finite_rows("train_Y", train_Y, row_dim=-2)
        if train_Yvar is not None:
            check_finite_rows("train_Yvar", train_Yvar, row_dim=-2)
            if (train_Yvar < 0).any():
                raise ValueError(
                    f"train_Yvar must be >= 0; its minimum is {float(train_Yvar.min()):.3g}."
                )
        if outcome_transform is DEFAULT:
            outcome_transform = get_amortized_outcome_transform(train_X, train_Y)
        if input_transform is DEFAULT:
            input_transform = get_amortized_input_transform(train_X, train_Y)
        with torch.no_grad():
            d = self.transform_inputs(train_X, input_transform=input_transform).shape[-1]
        # One kernel per output, after the input batch dims (SingleTaskGP's _aug_batch_shape).
        _, batch_shape = self.get_batch_dimensions(train_X, train_Y)
        covar_module = AmortizedSpectralKernel(
            ard_num_dims=d, num_mixtures=num_mixtures or 4, batch_shape=batch_shape
        )
        likelihood = None if train_Yvar is not None else get_amortized_likelihood(batch_shape)
        super().__init__(
            train_X=train_X,
            train_Y=train_Y,
            train_Yvar=train_Yvar,
            likelihood=likelihood,
            covar_module=covar_module,
            outcome_transform=outcome_transform,
            input_transform=input_transform,
        )
        if likelihood is not None:
            self._is_custom_likelihood = False  # our default, not the user's
        self._num_mixtures = num_mixtures
        self.decoder = decoder
        self.inference = InferenceConfig.coerce(inference)

    @property
    def decoder(self) -> Decoder:
        """The decoder used by :meth:`custom_fit` (the shared pretrained one unless given)."""
        holder = self.__dict__.get("_decoder_holder")
        return default_decoder() if holder is None or holder.value is None else holder.value

    def __setattr__(self, name: str, value: Any) -> None:
        # Kept in __dict__, not registered as a submodule: a decoder has no place in the GP's
        # parameters() or state_dict.
        if name == "decoder":
            if value is not None and not callable(value):
                raise TypeError(f"decoder must be callable (X, y) -> SpectralParams, got {value!r}.")
            self.__dict__["_decoder_holder"] = _Shared(value)
            return
        super().__setattr__(name, value)

    def custom_fit(
        self,
        mll: MarginalLogLikelihood,
        closure: Callable[[], Any] | None = None,
        optimizer: Callable[..., Any] | None = None,
        closure_kwargs: dict[str, Any] | None = None,
        optimizer_kwargs: dict[str, Any] | None = None,
        refine: bool = False,
        refine_steps: int | None = None,
        **kwargs: Any,
    ) -> MarginalLogLikelihood:
        """Fit by one decoder pass; called by ``botorch.fit.fit_gpytorch_mll(mll)``.

        Without ``refine`` no marginal-likelihood optimization happens and ``closure``,
        ``optimizer`` and their kwargs are ignored. ``fit_gpytorch_mll(mll, refine=True)`` adds
        :func:`pfn_kernels.fit.refine_amortized` on ``mll``, with the given optimizer and closure.

        :return: ``mll``, in eval mode (as ``fit_gpytorch_mll`` leaves a successful fit).
        """
        if mll.model is not self:
            raise ValueError("custom_fit: mll.model is not this model.")
        fit_amortized(
            self,
            decoder=self.decoder,
            inference=self.inference,
            refine=refine,
            refine_steps=refine_steps,
            mll=mll,
            optimizer=optimizer,
            optimizer_kwargs=optimizer_kwargs,
            closure=closure,
            closure_kwargs=closure_kwargs,
        )
        return mll.eval()


__all__ = [
    "AmortizedSingleTaskGP",
    "get_amortized_input_transform",
    "get_amortized_likelihood",
    "get_amortized_outcome_transform",
]
