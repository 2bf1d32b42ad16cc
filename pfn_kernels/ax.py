r"""Ax integration: amortized spectral-mixture GPs in Ax's modular BoTorch generator.

``import pfn_kernels.ax`` registers, in Ax's own registries and dispatchers:

- ``fit_botorch_model`` for ``SingleTaskGP`` and its subclasses: a model whose ``covar_module``
  is an :class:`~pfn_kernels.AmortizedSpectralKernel` (a stock ``SingleTaskGP`` with
  ``covar_module_class=AmortizedSpectralKernel``, or an :class:`~pfn_kernels.AmortizedSingleTaskGP`)
  is fitted by :func:`pfn_kernels.fit_amortized`, one decoder pass. Every other model falls through
  to Ax's own fit (``fit_gpytorch_mll``), unchanged.
- ``covar_module_argparse`` for :class:`~pfn_kernels.AmortizedSpectralKernel`: the kernel is built
  with ``ard_num_dims`` and ``batch_shape`` (one kernel per output of a batched multi-output model).
- ``submodel_input_constructor`` for :class:`~pfn_kernels.AmortizedSingleTaskGP`: it always gets
  Ax's search-space ``Normalize`` (or none where the search space is already the unit cube), never
  its own data-learned one, and accepts ``model_options={"num_mixtures": Q}``.
- the JSON (and SQA) storage registries for both classes, so that experiments and generation
  strategies using them are saved and loaded by ``Client.save_to_json_file`` /
  ``Client.load_from_json_file`` (in a new process, import this module before loading).

The decoder expects inputs in the unit cube. Ax's modular BoTorch generator maps each parameter's
range onto :math:`[0, 1]` with a ``Normalize`` input transform built from the search space (not
from the data), so the decoder sees the points where they lie in the search space and candidates
are optimized inside the same cube. Keep Ax's default input transforms
(``ModelConfig.input_transform_classes=DEFAULT``) for a stock ``SingleTaskGP`` with the kernel.

Options of the fit travel in ``ModelConfig.mll_options`` (plain values, so they survive a JSON
round trip); all are optional:

- ``"decoder"``: the name of shipped weights (``"default"``) or the path of a ``.safetensors``
  file written by :func:`pfn_kernels.network.weights.save_decoder` (see :func:`resolve_decoder`);
- ``"inference"``: a dict of :class:`pfn_kernels.inference.InferenceConfig` options (the
  stages after the network: calibration, outputscale, context size);
- ``"refine"``: polish the decoded kernel by :func:`pfn_kernels.refine_amortized`;
- ``"refine_steps"``: optimizer iterations of the refinement;
- ``"refine_priors"``: a dict of :class:`pfn_kernels.RefinePriors` widths.

Any other entries are passed to ``mll_class`` for the refinement's objective, as Ax does for its
marginal-likelihood fit.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Any

import torch
from ax.api.utils.generation_strategy_dispatch import choose_generation_strategy
from ax.api.utils.structs import GenerationStrategyDispatchStruct
from ax.core.search_space import SearchSpaceDigest
from ax.generation_strategy.generation_strategy import GenerationStrategy
from ax.generators.torch.botorch_modular.input_constructors.covar_modules import (
    _get_default_ard_num_dims_and_batch_shape,
    covar_module_argparse,
)
from ax.generators.torch.botorch_modular.surrogate import (
    ModelConfig,
    Surrogate,
    submodel_input_constructor,
)
from ax.generators.torch.botorch_modular.utils import fit_botorch_model
from ax.storage.botorch_modular_registry import register_kernel, register_model
from botorch.acquisition import AcquisitionFunction
from botorch.acquisition.logei import qLogNoisyExpectedImprovement
from botorch.models import SingleTaskGP
from botorch.models.model import Model
from botorch.utils.datasets import SupervisedDataset
from botorch.utils.dispatcher import MDNotImplementedError
from botorch.utils.types import DEFAULT, _DefaultType
from gpytorch.mlls import MarginalLogLikelihood

from pfn_kernels.fit import RefinePriors, fit_amortized
from pfn_kernels.inference import Decoder, InferenceConfig
from pfn_kernels.kernels import AmortizedSpectralKernel
from pfn_kernels.models import AmortizedSingleTaskGP
from pfn_kernels.network import SpectralDecoder, default_decoder
from pfn_kernels.network.weights import weights_path

#: The ``ModelConfig.mll_options`` keys read by the amortized fit (the rest go to ``mll_class``).
FIT_OPTIONS = ("decoder", "inference", "refine", "refine_steps", "refine_priors")


# ---------------------------------------------------------------------- decoders by name or path
def resolve_decoder(decoder: str | os.PathLike | Decoder | None) -> Decoder | None:
    """The decoder named by a fit option: shipped weights, a weights file, or a decoder itself.

    :param decoder: ``None`` (the model's own decoder, else
        :func:`pfn_kernels.network.default_decoder`);
        a name of shipped weights (``"default"``, i.e. ``pfn_kernels/weights/default.safetensors``);
        the path of a ``.safetensors`` file written by
        :func:`~pfn_kernels.network.weights.save_decoder`; or a decoder (any callable
        ``(X, y) -> SpectralParams``), used as is but not storable in Ax's JSON.
    :return: the decoder, or ``None``. Files are loaded once and cached; a file rewritten since
        (e.g. by a training run) is loaded again.
    """
    if decoder is None or callable(decoder):
        return decoder
    spec = os.fspath(decoder)
    if not isinstance(spec, str):
        raise TypeError(f"decoder must be a name, a path or a decoder, got {decoder!r}.")
    if spec == "default":
        return default_decoder()  # shared with every model fitted outside Ax
    is_path = spec.endswith(".safetensors") or os.sep in spec or "/" in spec
    path = Path(spec).expanduser().resolve() if is_path else weights_path(spec)
    stat = path.stat() if path.is_file() else None  # a missing file: load_decoder's clear error
    return _load_decoder(str(path), stat.st_mtime_ns if stat else 0, stat.st_size if stat else 0)


@functools.lru_cache(maxsize=8)
def _load_decoder(path: str, mtime_ns: int, size: int) -> SpectralDecoder:
    """One load per file version (the key holds its modification time and size)."""
    return SpectralDecoder.pretrained(path=path).eval()


# ---------------------------------------------------------------------- fitting
@fit_botorch_model.register(SingleTaskGP)
def _fit_botorch_model_amortized(
    model: SingleTaskGP,
    mll_class: type[MarginalLogLikelihood],
    mll_options: dict[str, Any] | None = None,
) -> None:
    """Ax's fit of a ``SingleTaskGP``: one decoder pass if its kernel is amortized.

    Any other ``SingleTaskGP`` falls through to the next registered fit (Ax's
    ``fit_gpytorch_mll`` for GPyTorch models).
    """
    if not isinstance(getattr(model, "covar_module", None), AmortizedSpectralKernel):
        raise MDNotImplementedError  # the dispatcher moves on to Ax's marginal-likelihood fit
    # A copy: the dict belongs to Ax's ModelConfig, which is reused for every fit.
    mll_options = dict(mll_options or {})
    fit = {key: mll_options.pop(key) for key in FIT_OPTIONS if key in mll_options}
    refine = bool(fit.get("refine", False))
    refine_kwargs: dict[str, Any] = {}
    if refine:
        refine_kwargs["mll"] = mll_class(likelihood=model.likelihood, model=model, **mll_options)
        priors = fit.get("refine_priors")
        if priors is not None:
            if not isinstance(priors, RefinePriors):
                priors = RefinePriors(**priors)
            refine_kwargs["priors"] = priors
    steps = fit.get("refine_steps")
    fit_amortized(
        model,
        decoder=resolve_decoder(fit.get("decoder")),
        inference=InferenceConfig.coerce(fit.get("inference")),
        refine=refine,
        refine_steps=None if steps is None else int(steps),
        **refine_kwargs,
    )


# ---------------------------------------------------------------------- model construction
@covar_module_argparse.register(AmortizedSpectralKernel)
def _covar_module_argparse_amortized(
    covar_module_class: type[AmortizedSpectralKernel],
    botorch_model_class: type[Model],
    dataset: SupervisedDataset,
    ard_num_dims: int | _DefaultType = DEFAULT,
    batch_shape: torch.Size | _DefaultType = DEFAULT,
    active_dims: list[int] | None = None,
    remove_task_features: bool = False,
    **kwargs: Any,
) -> dict[str, Any]:
    """Kernel arguments: ``ard_num_dims`` (input dimension) and ``batch_shape`` (outputs)."""
    ard_num_dims, batch_shape, active_dims = _get_default_ard_num_dims_and_batch_shape(
        ard_num_dims=ard_num_dims,
        batch_shape=batch_shape,
        botorch_model_class=botorch_model_class,
        dataset=dataset,
        remove_task_features=remove_task_features,
        active_dims=active_dims,
    )
    if ard_num_dims is DEFAULT:
        ard_num_dims = len(active_dims) if active_dims is not None else dataset.X.shape[-1]
    if batch_shape is DEFAULT:
        batch_shape = torch.Size()
    if active_dims is not None:
        kwargs["active_dims"] = tuple(active_dims)
    return {"ard_num_dims": ard_num_dims, "batch_shape": batch_shape, **kwargs}


@submodel_input_constructor.register(AmortizedSingleTaskGP)
def _submodel_input_constructor_amortized(
    botorch_model_class: type[Model],
    model_config: ModelConfig,
    dataset: SupervisedDataset,
    search_space_digest: SearchSpaceDigest,
    surrogate: Surrogate,
) -> dict[str, Any]:
    """Ax's inputs of a ``SingleTaskGP`` plus ``num_mixtures``; always an explicit input transform.

    ``input_transform_classes=None`` would leave the model its default ``Normalize`` learned from
    the training data, which maps candidates away from the training points outside the unit
    cube; Ax's default input transforms (the search space's bounds) are used instead.
    """
    model_options = dict(model_config.model_options)
    extra = {k: model_options.pop(k) for k in ("num_mixtures",) if k in model_options}
    changes: dict[str, Any] = {"model_options": model_options}
    if model_config.input_transform_classes is None:
        changes["input_transform_classes"] = DEFAULT
    base = submodel_input_constructor.dispatch(SingleTaskGP)  # Ax's constructor for any Model
    inputs = base(
        botorch_model_class,
        model_config=dataclasses.replace(model_config, **changes),
        dataset=dataset,
        search_space_digest=search_space_digest,
        surrogate=surrogate,
    )
    return {**inputs, **extra}


# ---------------------------------------------------------------------- storage
register_kernel(AmortizedSpectralKernel)
register_model(AmortizedSingleTaskGP)


# ---------------------------------------------------------------------- generation strategy
def amortized_model_config(
    refine: bool = False,
    refine_steps: int | None = None,
    decoder: str | os.PathLike | None = None,
    num_mixtures: int | None = None,
    name: str = "AmortizedSingleTaskGP",
    inference: InferenceConfig | dict[str, Any] | None = None,
) -> ModelConfig:
    r"""An Ax ``ModelConfig`` of an :class:`~pfn_kernels.AmortizedSingleTaskGP` surrogate.

    The model is fitted by one decoder pass; its inputs are normalized to the search space and its
    outcomes standardized by Ax. Everything is stored as plain values, so the config survives a
    JSON round trip.

    :param refine: polish the decoded kernel by :func:`pfn_kernels.refine_amortized`.
    :param refine_steps: optimizer iterations of the refinement (default
        :data:`pfn_kernels.fit.DEFAULT_REFINE_STEPS`).
    :param decoder: the name of shipped weights or the path of a ``.safetensors`` file (see
        :func:`resolve_decoder`); default: the shipped pretrained decoder.
    :param num_mixtures: components per dimension of the kernel; default: the decoder's.
    :param name: the config's name in Ax's reports.
    :param inference: options of the inference stages after the network
        (:class:`~pfn_kernels.inference.InferenceConfig` or its dict), stored as a dict.

    Example:
        >>> from ax.generators.torch.botorch_modular.surrogate import SurrogateSpec
        >>> from pfn_kernels.ax import amortized_model_config
        >>> spec = SurrogateSpec(model_configs=[amortized_model_config(refine=True)])
        >>> spec.model_configs[0].mll_options
        {'refine': True}
    """
    mll_options: dict[str, Any] = {}
    if decoder is not None:
        if not isinstance(decoder, (str, os.PathLike)):
            raise TypeError(
                "decoder must be a name or a path (stored with the experiment); got "
                f"{type(decoder).__name__}. Save a decoder with "
                "pfn_kernels.network.weights.save_decoder and pass its path."
            )
        mll_options["decoder"] = os.fspath(decoder)
    inference = InferenceConfig.coerce(inference)
    if inference is not None:
        mll_options["inference"] = inference.to_dict()
    if refine:
        mll_options["refine"] = True
        if refine_steps is not None:
            mll_options["refine_steps"] = int(refine_steps)
    model_options = {} if num_mixtures is None else {"num_mixtures": int(num_mixtures)}
    return ModelConfig(
        botorch_model_class=AmortizedSingleTaskGP,
        model_options=model_options,
        mll_options=mll_options,
        name=name,
    )


def amortized_generation_strategy(
    num_sobol: int = 5,
    refine: bool = False,
    refine_steps: int | None = None,
    acquisition_class: type[AcquisitionFunction] | None = qLogNoisyExpectedImprovement,
    decoder: str | os.PathLike | None = None,
    num_mixtures: int | None = None,
    min_observed: int | None = None,
    seed: int | None = None,
    torch_device: str | None = None,
    optimizer_kwargs: dict[str, Any] | None = None,
    inference: InferenceConfig | dict[str, Any] | None = None,
) -> GenerationStrategy:
    r"""Sobol initialization, then Bayesian optimization with an amortized spectral-mixture GP.

    Built by Ax's own dispatch (``choose_generation_strategy`` with ``method="custom"`` and the
    model config of :func:`amortized_model_config`), so its two nodes are Ax's:

    1. ``"Sobol"``: ``num_sobol`` quasi-random trials (trials already in the experiment count
       towards them; no center point). Generation moves on once ``num_sobol`` trials exist and
       ``min_observed`` of them are completed with data; asking for more Sobol trials while too
       few have data raises Ax's "more data needed" error.
    2. ``"MBM"``: Ax's modular BoTorch generator whose surrogate is an
       :class:`~pfn_kernels.AmortizedSingleTaskGP`, fitted by one pass of the decoder on the
       search-space-normalized inputs (optionally refined), and whose candidates maximize
       ``acquisition_class``.

    The strategy holds plain values only; it is saved and loaded with the experiment
    (``Client.save_to_json_file`` / ``Client.load_from_json_file``) once :mod:`pfn_kernels.ax` is
    imported.

    :param num_sobol: initialization trials (0: Bayesian optimization from the first trial, which
        then needs data attached to the experiment).
    :param refine: polish each decoded kernel by :func:`pfn_kernels.refine_amortized`.
    :param refine_steps: optimizer iterations of the refinement.
    :param acquisition_class: BoTorch acquisition function class; ``None`` lets Ax choose (e.g.
        ``qLogNoisyExpectedHypervolumeImprovement`` for multiple objectives). It must be in Ax's
        storage registry for the strategy to be saved (BoTorch's standard ones are).
    :param decoder: the name of shipped weights or the path of a ``.safetensors`` file; default:
        the shipped pretrained decoder.
    :param num_mixtures: components per dimension of the kernel; default: the decoder's.
    :param min_observed: completed initialization trials needed before Bayesian optimization
        starts; default ``max(1, num_sobol // 2)``, as in Ax.
    :param seed: seed of the Sobol sequence.
    :param torch_device: device of the model and acquisition optimization, e.g. ``"cuda"``.
    :param optimizer_kwargs: options of BoTorch's ``optimize_acqf`` for every candidate, e.g.
        ``{"num_restarts": 10, "raw_samples": 512}``; default: Ax's (20 restarts, 1024 raw
        samples). The spectral-mixture kernel costs a few times an RBF's per evaluation, so in long
        runs (hundreds of points) a smaller budget shortens each trial noticeably.
    :param inference: options of the inference stages after the network
        (:class:`~pfn_kernels.inference.InferenceConfig` or its dict); saved with the strategy.
    :return: a ``GenerationStrategy`` for ``Client.set_generation_strategy``.

    Example:
        >>> from ax.api.client import Client
        >>> from ax.api.configs import RangeParameterConfig
        >>> from pfn_kernels.ax import amortized_generation_strategy
        >>> client = Client()
        >>> client.configure_experiment(parameters=[
        ...     RangeParameterConfig(name="x1", bounds=(-5.0, 10.0), parameter_type="float"),
        ...     RangeParameterConfig(name="x2", bounds=(0.0, 15.0), parameter_type="float"),
        ... ])
        >>> client.configure_optimization(objective="-loss")
        >>> strategy = amortized_generation_strategy(num_sobol=4, refine=True)
        >>> client.set_generation_strategy(strategy)
        >>> list(strategy.nodes_by_name)
        ['Sobol', 'MBM']
    """
    if num_sobol < 0:
        raise ValueError(f"num_sobol must be >= 0, got {num_sobol}.")
    model_config = amortized_model_config(
        refine=refine, refine_steps=refine_steps, decoder=decoder, num_mixtures=num_mixtures,
        inference=inference,
    )
    struct = GenerationStrategyDispatchStruct(
        method="custom",
        initialization_budget=num_sobol,
        initialization_random_seed=seed,
        initialize_with_center=False,
        use_existing_trials_for_initialization=True,
        min_observed_initialization_trials=min_observed,
        torch_device=torch_device,
    )
    strategy = choose_generation_strategy(
        struct, model_config=model_config, botorch_acqf_class=acquisition_class
    )
    set_optimizer_kwargs(strategy, optimizer_kwargs)
    return strategy


def set_optimizer_kwargs(strategy: GenerationStrategy, optimizer_kwargs: dict[str, Any] | None) -> None:
    """Give the ``"MBM"`` node of ``strategy`` these ``optimize_acqf`` options for every candidate
    (e.g. ``{"num_restarts": 10, "raw_samples": 512}``); ``None`` or ``{}`` keeps Ax's."""
    if optimizer_kwargs:
        spec = strategy.nodes_by_name["MBM"].generator_specs[0]
        spec.generator_gen_kwargs = {"model_gen_options": {"optimizer_kwargs": dict(optimizer_kwargs)}}


__all__ = [
    "FIT_OPTIONS",
    "amortized_generation_strategy",
    "amortized_model_config",
    "resolve_decoder",
    "set_optimizer_kwargs",
]
