r"""The one container for a decoded (or ground-truth) spectral-mixture kernel.

A :class:`SpectralParams` describes the product spectral-mixture kernel

.. math::

    k(\mathbf{x}, \mathbf{x}') = \sigma_f^2 \prod_{j=1}^{d} \sum_{q=1}^{Q}
        w_{jq} \exp\!\left(-2\pi^2 \tau_j^2 s_{jq}^2\right) \cos\!\left(2\pi \mu_{jq} \tau_j\right),
    \qquad \boldsymbol\tau = \mathbf{x} - \mathbf{x}',

plus a Gaussian observation noise variance :math:`\sigma_n^2`. Frequencies :math:`\mu` and
bandwidths :math:`s` are in cycles per unit of (normalized) input.

A :class:`SpectralEstimate` is what a decoder predicts before the inference stages of
:mod:`pfn_kernels.inference` turn it into :class:`SpectralParams`: the same mixture, with the
noise as a ratio to the signal variance and only a guess of that variance.
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass, fields
from typing import Any, Iterable

import torch
from torch import Tensor

#: Tolerance on :math:`|\sum_q w_{jq} - 1|` accepted by validation (float32 softmax outputs pass).
WEIGHT_SUM_ATOL = 1e-4

_MIXTURE_FIELDS = ("weights", "means", "scales")
_GLOBAL_FIELDS = ("outputscale", "noise", "constant_mean")


@dataclass
class SpectralParams:
    r"""Parameters of a per-dimension spectral-mixture kernel, with batch dimensions.

    :param weights: `(*batch, d, Q)` mixture weights :math:`w_{jq} \ge 0`, summing to one over
        :math:`Q` for every dimension :math:`j`.
    :param means: `(*batch, d, Q)` frequencies :math:`\mu_{jq} \ge 0` in cycles per unit input.
        A zero frequency gives an RBF-like (non-oscillating) component.
    :param scales: `(*batch, d, Q)` standard deviations :math:`s_{jq} > 0` of the spectral
        Gaussians (cycles per unit input). A component's envelope lengthscale is
        :math:`1 / (2\pi s_{jq})`.
    :param outputscale: `(*batch)` signal variance :math:`\sigma_f^2 > 0` (the kernel at
        :math:`\tau = 0`).
    :param noise: `(*batch)` observation noise variance :math:`\sigma_n^2 \ge 0`. It belongs to
        the likelihood, not the kernel.
    :param constant_mean: `(*batch)` the GP's constant mean :math:`c` (default 0: centred
        targets). It belongs to the mean module, not the kernel.
    :param validate: check shapes, finiteness and ranges (default). Pass ``False`` only in hot
        loops whose outputs are constrained by construction.

    Example:
        >>> p = SpectralParams(
        ...     weights=torch.tensor([[0.7, 0.3]]),
        ...     means=torch.tensor([[0.0, 2.0]]),
        ...     scales=torch.tensor([[0.5, 0.1]]),
        ...     outputscale=torch.tensor(1.0),
        ...     noise=torch.tensor(1e-2),
        ... )
        >>> p.num_dims, p.num_mixtures, p.batch_shape
        (1, 2, torch.Size([]))
    """

    weights: Tensor
    means: Tensor
    scales: Tensor
    outputscale: Tensor
    noise: Tensor
    constant_mean: Tensor | None = None
    validate: InitVar[bool] = True

    def __post_init__(self, validate: bool) -> None:
        for name in _MIXTURE_FIELDS + _GLOBAL_FIELDS:
            value = getattr(self, name)
            if name == "constant_mean" and value is None:
                value = torch.zeros_like(self.outputscale)
            if not isinstance(value, Tensor):
                value = torch.as_tensor(value, dtype=torch.get_default_dtype())
            setattr(self, name, value)
        if validate:
            self._validate()

    # ----------------------------------------------------------------- validation
    def _validate(self) -> None:
        w, mu, s = self.weights, self.means, self.scales
        if w.dim() < 2:
            raise ValueError(
                f"SpectralParams.weights must have shape (*batch, d, Q); got {tuple(w.shape)}."
            )
        for name in ("means", "scales"):
            if getattr(self, name).shape != w.shape:
                raise ValueError(
                    f"SpectralParams.{name} has shape {tuple(getattr(self, name).shape)} but "
                    f"weights have shape {tuple(w.shape)}; all three must be (*batch, d, Q)."
                )
        batch = w.shape[:-2]
        for name in _GLOBAL_FIELDS:
            if getattr(self, name).shape != batch:
                raise ValueError(
                    f"SpectralParams.{name} must have the batch shape {tuple(batch)} of the "
                    f"mixture parameters; got {tuple(getattr(self, name).shape)}."
                )
        for name in _MIXTURE_FIELDS + _GLOBAL_FIELDS:
            value = getattr(self, name)
            if not torch.is_floating_point(value):
                raise ValueError(f"SpectralParams.{name} must be a floating tensor, got {value.dtype}.")
            bad = ~torch.isfinite(value)
            if bad.any():
                raise ValueError(
                    f"SpectralParams.{name} has {int(bad.sum())} non-finite entries (NaN or inf)."
                )
        if (w < 0).any():
            raise ValueError(f"SpectralParams.weights must be >= 0; min is {w.min().item():.3g}.")
        err = (w.sum(-1) - 1).abs().max().item() if w.numel() else 0.0
        if err > WEIGHT_SUM_ATOL:
            raise ValueError(
                "SpectralParams.weights must sum to 1 over the mixture dimension (last) for every "
                f"input dimension; the largest deviation is {err:.3g}."
            )
        if (mu < 0).any():
            raise ValueError(
                f"SpectralParams.means (frequencies) must be >= 0; min is {mu.min().item():.3g}."
            )
        if (s <= 0).any():
            raise ValueError(f"SpectralParams.scales must be > 0; min is {s.min().item():.3g}.")
        if (self.outputscale <= 0).any():
            raise ValueError(
                f"SpectralParams.outputscale must be > 0; min is {self.outputscale.min().item():.3g}."
            )
        if (self.noise < 0).any():
            raise ValueError(f"SpectralParams.noise must be >= 0; min is {self.noise.min().item():.3g}.")

    # ----------------------------------------------------------------- shapes
    @property
    def batch_shape(self) -> torch.Size:
        """The leading batch dimensions `(*batch)`."""
        return self.weights.shape[:-2]

    @property
    def num_dims(self) -> int:
        """The input dimension `d`."""
        return self.weights.shape[-2]

    @property
    def num_mixtures(self) -> int:
        """The number of mixture components `Q` per dimension."""
        return self.weights.shape[-1]

    @property
    def dtype(self) -> torch.dtype:
        return self.weights.dtype

    @property
    def device(self) -> torch.device:
        return self.weights.device

    # ----------------------------------------------------------------- helpers
    def _map(self, fn_mix, fn_glob=None, validate: bool = False) -> "SpectralParams":
        fn_glob = fn_mix if fn_glob is None else fn_glob
        return SpectralParams(
            **{k: fn_mix(getattr(self, k)) for k in _MIXTURE_FIELDS},
            **{k: fn_glob(getattr(self, k)) for k in _GLOBAL_FIELDS},
            validate=validate,
        )

    def to(self, *args: Any, **kwargs: Any) -> "SpectralParams":
        """Move/cast every tensor, with the arguments of :meth:`torch.Tensor.to`."""
        return self._map(lambda t: t.to(*args, **kwargs))

    def detach(self) -> "SpectralParams":
        return self._map(lambda t: t.detach())

    def clone(self) -> "SpectralParams":
        return self._map(lambda t: t.clone())

    def __getitem__(self, index: Any) -> "SpectralParams":
        """Index the batch dimensions, e.g. ``params[0]`` or ``params[:, 1]``."""
        if not self.batch_shape:
            raise IndexError("SpectralParams without batch dimensions cannot be indexed.")
        index = index if isinstance(index, tuple) else (index,)
        return self._map(lambda t: t[index], lambda t: t[index])

    def expand(self, *batch_shape: int) -> "SpectralParams":
        """Broadcast to a new batch shape."""
        shape = torch.Size(batch_shape[0] if len(batch_shape) == 1 and not isinstance(batch_shape[0], int) else batch_shape)
        tail = torch.Size([self.num_dims, self.num_mixtures])
        return self._map(lambda t: t.expand(shape + tail), lambda t: t.expand(shape))

    def pad_mixtures(self, num_mixtures: int) -> "SpectralParams":
        """Append zero-weight components (mean 0, scale 1) up to ``num_mixtures`` per dimension."""
        extra = num_mixtures - self.num_mixtures
        if extra < 0:
            raise ValueError(f"Cannot pad {self.num_mixtures} mixtures down to {num_mixtures}.")
        if extra == 0:
            return self
        pad = lambda t, v: torch.cat([t, t.new_full((*t.shape[:-1], extra), v)], dim=-1)  # noqa: E731
        return SpectralParams(
            weights=pad(self.weights, 0.0),
            means=pad(self.means, 0.0),
            scales=pad(self.scales, 1.0),
            outputscale=self.outputscale,
            noise=self.noise,
            constant_mean=self.constant_mean,
            validate=False,
        )

    @classmethod
    def stack(cls, params: Iterable["SpectralParams"], dim: int = 0) -> "SpectralParams":
        """Stack several parameter sets (same d and Q) along a new batch dimension ``dim``."""
        params = list(params)
        if not params:
            raise ValueError("SpectralParams.stack needs at least one element.")
        nb = len(params[0].batch_shape)
        if dim < 0:
            dim += nb + 1
        out = {}
        for k in _MIXTURE_FIELDS + _GLOBAL_FIELDS:
            out[k] = torch.stack([getattr(p, k) for p in params], dim=dim)
        return cls(**out)

    def to_dict(self) -> dict[str, list]:
        """Plain nested lists (JSON-serializable)."""
        return {k: getattr(self, k).tolist() for k in _MIXTURE_FIELDS + _GLOBAL_FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any], dtype: torch.dtype | None = None) -> "SpectralParams":
        dtype = dtype or torch.get_default_dtype()
        return cls(**{k: torch.as_tensor(data[k], dtype=dtype)
                      for k in _MIXTURE_FIELDS + _GLOBAL_FIELDS if k in data})  # older dicts: mean 0

    def allclose(self, other: "SpectralParams", rtol: float = 1e-5, atol: float = 1e-8) -> bool:
        return all(
            torch.allclose(getattr(self, k), getattr(other, k).to(getattr(self, k)), rtol=rtol, atol=atol)
            for k in _MIXTURE_FIELDS + _GLOBAL_FIELDS
        )

    def __repr__(self) -> str:
        return (
            f"SpectralParams(batch_shape={tuple(self.batch_shape)}, d={self.num_dims}, "
            f"Q={self.num_mixtures}, dtype={self.dtype})"
        )


FIELD_NAMES = tuple(f.name for f in fields(SpectralParams))


@dataclass
class SpectralEstimate:
    r"""A decoder's estimate of a kernel, before the inference stages (flat batch `(B,)`).

    :param weights: `(B, d, Q)` mixture weights (as in :class:`SpectralParams`).
    :param means: `(B, d, Q)` frequencies, cycles per unit input.
    :param scales: `(B, d, Q)` spectral bandwidths, cycles per unit input.
    :param log_noise_ratio: `(B,)` :math:`\log(\sigma_n^2 / \sigma_f^2)`.
    :param log_outputscale: `(B,)` a guess of :math:`\log \sigma_f^2`, which the profile
        outputscale of :mod:`pfn_kernels.inference.outputscale` refines.
    """

    weights: Tensor
    means: Tensor
    scales: Tensor
    log_noise_ratio: Tensor
    log_outputscale: Tensor

    @classmethod
    def from_params(cls, params: SpectralParams) -> "SpectralEstimate":
        """The estimate of a decoder that returns :class:`SpectralParams` with batch `(B,)`."""
        os = params.outputscale
        return cls(params.weights, params.means, params.scales,
                   params.noise.log() - os.log(), os.log())
