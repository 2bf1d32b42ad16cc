r"""The GPyTorch kernel of pfn_kernels: a product of per-dimension spectral mixtures."""

from __future__ import annotations

from typing import Any

import torch
from gpytorch.constraints import Interval, Positive
from gpytorch.kernels import Kernel, SpectralMixtureKernel
from gpytorch.priors import Prior
from torch import Tensor

from pfn_kernels.kernels.bochner import spectral_density
from pfn_kernels.kernels.covariance import spectral_mixture_covariance
from pfn_kernels.spectral_params import SpectralParams

#: Frequencies are stored through a softplus; exact zeros are set to this value (cycles/unit).
#: At :math:`\mu = 10^{-6}` the cosine differs from 1 by less than :math:`2\cdot 10^{-11}`
#: on the unit cube.
MIN_MEAN = 1e-6
#: Smallest stored spectral bandwidth (cycles/unit); an envelope lengthscale of ~1.6e5 units.
MIN_SCALE = 1e-6
#: Weights are stored as logits; zero weights are set to this value before taking the log.
MIN_WEIGHT = 1e-20
#: Components whose weight is at most this are left out of kernel evaluations (each per-dimension
#: factor changes by at most this much: below float64 resolution of a unit-variance kernel).
NEGLIGIBLE_WEIGHT = 1e-16
#: Components at most this frequency (the floor :data:`MIN_MEAN`, i.e. a zero frequency) are
#: evaluated without their cosine, which differs from 1 by at most
#: :math:`2\pi^2\mu^2\tau^2 < 2\cdot 10^{-11}` on the unit cube.
ZERO_FREQUENCY = 1.000001 * MIN_MEAN


class AmortizedSpectralKernel(Kernel):
    r"""Product of per-dimension spectral mixtures, filled in by a pretrained decoder.

    .. math::

        k(\mathbf{x}, \mathbf{x}') = \sigma_f^2 \prod_{j=1}^{d} \sum_{q=1}^{Q}
            w_{jq} \exp\!\left(-2\pi^2 \tau_j^2 s_{jq}^2\right) \cos\!\left(2\pi \mu_{jq} \tau_j\right),
        \qquad \boldsymbol\tau = \mathbf{x} - \mathbf{x}'.

    **Where to start.** The kernel's hyperparameters come from a pretrained decoder that reads
    the training data; you rarely fill them in by hand:

    - :class:`~pfn_kernels.AmortizedSingleTaskGP`: a BoTorch ``SingleTaskGP`` with this kernel,
      ``Normalize`` and ``Standardize`` by default, fitted by ``fit_gpytorch_mll`` in one decoder
      pass;
    - :func:`~pfn_kernels.fit_amortized`: the same pass for any exact GP whose ``covar_module`` is
      this kernel (e.g. ``SingleTaskGP(X, Y, covar_module=AmortizedSpectralKernel())``);
    - :mod:`pfn_kernels.ax`: generation strategies and a model option for Ax.

    **Inputs must lie in the unit cube** :math:`[0, 1]^d`, where the decoder was trained: give the
    model ``input_transform=Normalize(d=...)`` (from ``botorch.models.transforms.input``) or pass
    normalized inputs; outside it the fit warns (``OutsideUnitCubeWarning``). Frequencies below
    are in cycles per unit of those normalized inputs.

    By Bochner's theorem each factor is the Fourier transform of the symmetrized Gaussian mixture
    :math:`S_j(\omega) = \sum_q \tfrac{w_{jq}}{2}[\mathcal N(\omega;\mu_{jq},s_{jq}^2) +
    \mathcal N(\omega;-\mu_{jq},s_{jq}^2)]` (see :meth:`spectral_density`). Frequencies
    :math:`\mu_{jq}` and bandwidths :math:`s_{jq}` are in cycles per unit of the (normalized)
    input; :math:`\sum_q w_{jq} = 1` so that :math:`k(\mathbf x, \mathbf x) = \sigma_f^2`.

    Unlike :class:`gpytorch.kernels.SpectralMixtureKernel`, which shares one weight vector across
    dimensions (so its :math:`k(\mathbf x, \mathbf x) = (\sum_q w_q)^d`), every dimension has its
    own weights here, and the signal variance is the explicit ``outputscale``; do not wrap this
    kernel in a :class:`~gpytorch.kernels.ScaleKernel`. :meth:`from_gpytorch` converts any
    gpytorch spectral mixture exactly; :meth:`to_gpytorch` converts back when the weights are
    shared across dimensions (always for d = 1).

    Evaluation costs :math:`O(n m d Q)` exponentials and cosines. A small matrix (the candidates of
    an acquisition step against the training points) is one broadcast expression; a larger one,
    on the CPU, is computed in cache-sized tiles with closed-form gradients
    (:mod:`pfn_kernels.kernels.tiled_kernel`; see :func:`spectral_mixture_covariance`);
    components of weight at most :data:`NEGLIGIBLE_WEIGHT` are left out and those at the
    frequency floor skip their cosine (:data:`ZERO_FREQUENCY`). Dimensions left with a single
    zero-frequency component (RBF factors; the one pass collapses dimensions to these where the
    data allow, see :mod:`pfn_kernels.inference.sparsity`) are merged into one exponential of a
    weighted squared distance: a kernel of such dimensions only costs what an RBF costs. Rows
    shared by every batch member (an acquisition's baseline, repeated for each restart) are
    evaluated once.

    Hyperparameters are registered raw parameters, so the kernel can also be trained or refined
    by marginal likelihood: ``raw_mixture_logits`` (softmax over Q gives the weights),
    ``raw_mixture_means`` and ``raw_mixture_scales`` (softplus, see :data:`MIN_MEAN`), and
    ``raw_outputscale``, each behind a property with a setter (``mixture_weights``,
    ``mixture_means``, ``mixture_scales``, ``outputscale``), as in GPyTorch. Read and write them
    all at once with :attr:`spectral_params` and :meth:`set_spectral_params`.

    :param ard_num_dims: input dimension d. ``None`` defers sizing to the first
        :meth:`set_spectral_params` (e.g. by :func:`pfn_kernels.fit_amortized`); calling the kernel
        before that raises an error.
    :param num_mixtures: components per dimension Q (default 4).
    :param batch_shape: kernel batch shape (e.g. `(m,)` for m independent outputs).
    :param active_dims: input columns the kernel acts on, as in GPyTorch.
    :param mixture_means_constraint: constraint on the frequencies (default ``Positive()``).
    :param mixture_scales_constraint: constraint on the bandwidths (default ``Positive()``).
    :param outputscale_constraint: constraint on :math:`\sigma_f^2` (default ``Positive()``).
    :param mixture_means_prior: optional GPyTorch prior on the frequencies `(*batch, d, Q)`
        (used by marginal-likelihood fits, e.g. ``fit_gpytorch_mll``); likewise
        ``mixture_scales_prior`` and ``outputscale_prior``.

    Example:
        >>> import torch
        >>> from pfn_kernels import AmortizedSpectralKernel, SpectralParams
        >>> kernel = AmortizedSpectralKernel()
        >>> kernel.set_spectral_params(SpectralParams(
        ...     weights=torch.tensor([[1.0, 0.0], [0.5, 0.5]]),      # (d=2, Q=2)
        ...     means=torch.tensor([[0.0, 0.0], [0.0, 3.0]]),        # cycles / unit
        ...     scales=torch.tensor([[0.8, 0.1], [0.3, 0.2]]),
        ...     outputscale=torch.tensor(2.0),
        ...     noise=torch.tensor(1e-3),
        ... ))
        >>> x = torch.rand(10, 2)
        >>> kernel(x).to_dense().shape
        torch.Size([10, 10])
        >>> round(kernel(x, diag=True)[0].item(), 6)
        2.0
    """

    is_stationary = True
    has_lengthscale = False

    def __init__(
        self,
        ard_num_dims: int | None = None,
        num_mixtures: int = 4,
        batch_shape: torch.Size | None = None,
        active_dims: tuple[int, ...] | None = None,
        mixture_means_constraint: Interval | None = None,
        mixture_scales_constraint: Interval | None = None,
        outputscale_constraint: Interval | None = None,
        mixture_means_prior: Prior | None = None,
        mixture_scales_prior: Prior | None = None,
        outputscale_prior: Prior | None = None,
        **kwargs: Any,
    ) -> None:
        if num_mixtures < 1:
            raise ValueError(f"num_mixtures must be >= 1, got {num_mixtures}.")
        if ard_num_dims is not None and ard_num_dims < 1:
            raise ValueError(f"ard_num_dims must be >= 1 or None, got {ard_num_dims}.")
        super().__init__(batch_shape=batch_shape, active_dims=active_dims, **kwargs)
        self.ard_num_dims = ard_num_dims
        self.num_mixtures = num_mixtures
        self.register_parameter("raw_outputscale", torch.nn.Parameter(torch.zeros(self.batch_shape)))
        self.register_constraint("raw_outputscale", outputscale_constraint or Positive())
        self._means_constraint = mixture_means_constraint or Positive()
        self._scales_constraint = mixture_scales_constraint or Positive()
        self.outputscale = 1.0
        if ard_num_dims is not None:
            self._allocate(ard_num_dims, num_mixtures)
            self._set_default_spectrum()
        # Priors act through the public properties, so they work on a lazily sized kernel too.
        for name, prior in (("mixture_means", mixture_means_prior),
                            ("mixture_scales", mixture_scales_prior),
                            ("outputscale", outputscale_prior)):
            if prior is not None:
                if not isinstance(prior, Prior):
                    raise TypeError(f"{name}_prior must be a gpytorch Prior, got {type(prior).__name__}.")
                self.register_prior(
                    f"{name}_prior", prior,
                    lambda m, name=name: getattr(m, name),
                    lambda m, v, name=name: setattr(m, name, v),
                )

    # ------------------------------------------------------------------ sizing
    @property
    def is_sized(self) -> bool:
        """Whether the mixture parameters exist (d is known)."""
        return hasattr(self, "raw_mixture_logits")

    def _allocate(self, d: int, q: int) -> None:
        like = self.raw_outputscale
        shape = (*self.batch_shape, d, q)
        for name, constraint in (
            ("raw_mixture_logits", None),
            ("raw_mixture_means", self._means_constraint),
            ("raw_mixture_scales", self._scales_constraint),
        ):
            if hasattr(self, name):
                delattr(self, name)
            self.register_parameter(name, torch.nn.Parameter(like.new_zeros(shape)))
            if constraint is not None:
                self.register_constraint(name, constraint)
        self.ard_num_dims, self.num_mixtures = d, q

    def _set_default_spectrum(self) -> None:
        d, q = self.ard_num_dims, self.num_mixtures
        like = self.raw_outputscale
        shape = (*self.batch_shape, d, q)
        self._set_mixture(
            weights=like.new_full(shape, 1.0 / q),
            means=torch.arange(q, dtype=like.dtype, device=like.device).expand(shape),
            scales=like.new_full(shape, 0.5),
        )

    def _resize_batch(self, batch_shape: torch.Size) -> None:
        self.batch_shape = torch.Size(batch_shape)
        self.raw_outputscale.data = self.raw_outputscale.data.new_zeros(self.batch_shape)

    # ------------------------------------------------------------------ properties
    def _require_sized(self) -> None:
        if not self.is_sized:
            raise RuntimeError(
                "AmortizedSpectralKernel has no spectral parameters yet: pass ard_num_dims=d, or "
                "fit it first (pfn_kernels.fit_amortized(model) or kernel.set_spectral_params(p))."
            )

    @property
    def mixture_weights(self) -> Tensor:
        """`(*batch, d, Q)` weights, summing to 1 over Q."""
        self._require_sized()
        return torch.softmax(self.raw_mixture_logits, dim=-1)

    @mixture_weights.setter
    def mixture_weights(self, value: Tensor) -> None:
        """Weights `(*batch, d, Q)`, stored as their logarithms (the softmax normalizes them over
        Q; zeros become :data:`MIN_WEIGHT`)."""
        self._require_sized()
        value = torch.as_tensor(value).to(self.raw_mixture_logits).expand_as(self.raw_mixture_logits)
        self.initialize(raw_mixture_logits=value.clamp_min(MIN_WEIGHT).log())

    @property
    def mixture_means(self) -> Tensor:
        """`(*batch, d, Q)` frequencies in cycles per unit input."""
        self._require_sized()
        return self.raw_mixture_means_constraint.transform(self.raw_mixture_means)

    @mixture_means.setter
    def mixture_means(self, value: Tensor) -> None:
        """Frequencies `(*batch, d, Q)`, raised to :data:`MIN_MEAN`."""
        self._set_constrained("mixture_means", value, MIN_MEAN)

    @property
    def mixture_scales(self) -> Tensor:
        """`(*batch, d, Q)` spectral standard deviations in cycles per unit input."""
        self._require_sized()
        return self.raw_mixture_scales_constraint.transform(self.raw_mixture_scales)

    @mixture_scales.setter
    def mixture_scales(self, value: Tensor) -> None:
        """Bandwidths `(*batch, d, Q)`, raised to :data:`MIN_SCALE`."""
        self._set_constrained("mixture_scales", value, MIN_SCALE)

    def _set_constrained(self, name: str, value: Tensor, floor: float) -> None:
        """Write ``value`` (raised to ``floor``) into ``raw_<name>`` through its constraint."""
        self._require_sized()
        raw = getattr(self, f"raw_{name}")
        value = torch.as_tensor(value).to(raw).expand_as(raw).clamp_min(floor)
        constraint = getattr(self, f"raw_{name}_constraint")
        self.initialize(**{f"raw_{name}": constraint.inverse_transform(value)})

    @property
    def outputscale(self) -> Tensor:
        r"""`(*batch)` signal variance :math:`\sigma_f^2 = k(\mathbf x, \mathbf x)`."""
        return self.raw_outputscale_constraint.transform(self.raw_outputscale)

    @outputscale.setter
    def outputscale(self, value: Tensor | float) -> None:
        value = torch.as_tensor(value).to(self.raw_outputscale).expand(self.batch_shape)
        lower = self.raw_outputscale_constraint.lower_bound.to(value)
        value = value.clamp_min(float(lower) + 1e-12)
        self.initialize(raw_outputscale=self.raw_outputscale_constraint.inverse_transform(value))

    def _set_mixture(self, weights: Tensor, means: Tensor, scales: Tensor) -> None:
        with torch.no_grad():
            self.mixture_weights, self.mixture_means, self.mixture_scales = weights, means, scales

    @property
    def spectral_params(self) -> SpectralParams:
        """The current hyperparameters as :class:`~pfn_kernels.SpectralParams` (differentiable).

        ``noise`` is 0: a kernel holds no observation noise, a GP's likelihood does
        (:func:`pfn_kernels.fit.model_spectral_params` gives a model's kernel with its noise).
        """
        os = self.outputscale
        return SpectralParams(
            weights=self.mixture_weights,
            means=self.mixture_means,
            scales=self.mixture_scales,
            outputscale=os,
            noise=torch.zeros_like(os),
            validate=False,
        )

    def set_spectral_params(self, params: SpectralParams) -> None:
        """Set every hyperparameter from ``params``, resizing the kernel to its d and Q.

        The batch shape of ``params`` must equal, or broadcast to, the kernel's; a kernel with a
        different batch shape adopts the batch shape of ``params``. Values are copied (no
        gradient flows back to ``params``); frequencies below :data:`MIN_MEAN` and bandwidths below
        :data:`MIN_SCALE` are raised to those floors. ``params.noise`` is not the kernel's: set it
        on the likelihood (:func:`pfn_kernels.fit_amortized` does).
        """
        if not isinstance(params, SpectralParams):
            raise TypeError(f"set_spectral_params expects SpectralParams, got {type(params).__name__}.")
        params = params.detach()
        batch = params.batch_shape
        if batch != self.batch_shape:
            try:
                target = torch.broadcast_shapes(batch, self.batch_shape)
            except RuntimeError:
                target = None
            if target == self.batch_shape:
                params = params.expand(self.batch_shape)
            else:
                self._resize_batch(batch)
        d, q = params.num_dims, params.num_mixtures
        if not self.is_sized or (self.ard_num_dims, self.num_mixtures) != (d, q) or (
            self.raw_mixture_logits.shape[:-2] != self.batch_shape
        ):
            self._allocate(d, q)
        self._set_mixture(params.weights, params.means, params.scales)
        self.outputscale = params.outputscale

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        # A fresh, unsized kernel takes its d, Q and batch shape from the saved state.
        key = prefix + "raw_mixture_logits"
        if key in state_dict:
            shape = state_dict[key].shape
            if shape[:-2] != self.batch_shape:
                self._resize_batch(shape[:-2])
            if not self.is_sized or self.raw_mixture_logits.shape != shape:
                self._allocate(shape[-2], shape[-1])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ math
    def _check_input_dim(self, d: int) -> None:
        self._require_sized()
        if d != self.ard_num_dims:
            raise ValueError(
                f"AmortizedSpectralKernel is sized for d={self.ard_num_dims} input dimensions but "
                f"got inputs with d={d}; refit it on this data (fit_amortized)."
            )

    def __call__(
        self, x1: Tensor, x2: Tensor | None = None, diag: bool = False, **params: Any
    ) -> Any:
        # Check eagerly: gpytorch evaluates kernels lazily (the error would surface deep inside a
        # posterior call), and its own dimension check would hide the ValueError of forward().
        if self.active_dims is not None:
            d = len(self.active_dims)
        else:
            d = x1.shape[-1] if x1.dim() > 1 else 1
        self._check_input_dim(d)
        return super().__call__(x1, x2, diag=diag, **params)

    def forward(
        self, x1: Tensor, x2: Tensor, diag: bool = False, last_dim_is_batch: bool = False, **params: Any
    ) -> Tensor:
        if last_dim_is_batch:
            raise NotImplementedError("AmortizedSpectralKernel does not support last_dim_is_batch.")
        self._check_input_dim(x1.shape[-1])
        return spectral_mixture_covariance(
            x1, x2, self.mixture_weights, self.mixture_means, self.mixture_scales, self.outputscale,
            diag=diag, min_weight=NEGLIGIBLE_WEIGHT, unit_frequency=ZERO_FREQUENCY,
        )

    def spectral_density(self, omega: Tensor) -> Tensor:
        r"""Per-dimension spectral densities :math:`S_j(\omega)`, `(*batch, d, L)` for `(L,)` omega.

        Each integrates to 1 over :math:`\omega \in \mathbb R` (cycles per unit input); the kernel's
        power spectrum is ``outputscale`` times their product.
        """
        return spectral_density(omega, self.spectral_params)

    # ------------------------------------------------------------------ gpytorch interop
    @classmethod
    def from_gpytorch(cls, kernel: SpectralMixtureKernel) -> "AmortizedSpectralKernel":
        r"""Exact conversion of a :class:`gpytorch.kernels.SpectralMixtureKernel`.

        GPyTorch's kernel is :math:`\prod_j \sum_q w_q e^{\dots}\cos(\dots)` with weights shared
        across dimensions, hence :math:`w_{jq} = w_q / \sum_r w_r` and
        :math:`\sigma_f^2 = (\sum_q w_q)^d`.
        """
        w = kernel.mixture_weights.detach()  # (*b, Q)
        means = kernel.mixture_means.detach().squeeze(-2).transpose(-1, -2)  # (*b, d, Q)
        scales = kernel.mixture_scales.detach().squeeze(-2).transpose(-1, -2)
        d = means.shape[-2]
        total = w.sum(-1)
        weights = (w / total[..., None]).unsqueeze(-2).expand_as(means)
        # Cast before setting: building in the default dtype would round float64 values.
        out = cls(num_mixtures=w.shape[-1], batch_shape=w.shape[:-1]).to(w)
        out.set_spectral_params(
            SpectralParams(weights, means, scales, total**d, torch.zeros_like(total))
        )
        return out

    def to_gpytorch(self, atol: float = 1e-6) -> SpectralMixtureKernel:
        """Exact conversion to a :class:`gpytorch.kernels.SpectralMixtureKernel`.

        Only possible when every dimension has the same weights (always when d = 1); otherwise a
        ``ValueError`` explains why.
        """
        p = self.spectral_params.detach()
        w = p.weights  # (*b, d, Q)
        if (w - w[..., :1, :]).abs().max() > atol:
            raise ValueError(
                "This kernel has different mixture weights per dimension; gpytorch's "
                "SpectralMixtureKernel shares one weight vector across dimensions, so it cannot "
                "represent it exactly."
            )
        d = p.num_dims
        sm = SpectralMixtureKernel(
            num_mixtures=p.num_mixtures, ard_num_dims=d, batch_shape=p.batch_shape
        ).to(w)
        sm.mixture_weights = w[..., 0, :] * p.outputscale[..., None] ** (1.0 / d)
        sm.mixture_means = p.means.transpose(-1, -2).unsqueeze(-2).clamp_min(MIN_MEAN)
        sm.mixture_scales = p.scales.transpose(-1, -2).unsqueeze(-2)
        return sm


__all__ = ["AmortizedSpectralKernel", "MIN_MEAN", "MIN_SCALE", "MIN_WEIGHT"]
