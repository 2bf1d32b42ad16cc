"""Tests for :mod:`pfn_kernels.ax`: Ax's fit dispatch, model construction, strategy and storage.

A tiny, freshly initialized decoder, saved to a temporary ``.safetensors`` file, stands in for the
pretrained one; it reaches Ax as the ``"decoder"`` fit option, a plain path that is stored with
the experiment.
"""

from __future__ import annotations

import copy
import dataclasses
import doctest
import math
import warnings

import pytest
import torch
from ax.api.client import Client
from ax.api.configs import RangeParameterConfig
from ax.core.search_space import SearchSpaceDigest
from ax.generators.torch.botorch_modular import utils as ax_fit_utils
from ax.generators.torch.botorch_modular.input_constructors.covar_modules import (
    covar_module_argparse,
)
from ax.generators.torch.botorch_modular.surrogate import ModelConfig, Surrogate, SurrogateSpec
from ax.generators.torch.botorch_modular.utils import fit_botorch_model
from ax.storage.botorch_modular_registry import CLASS_TO_REGISTRY, CLASS_TO_REVERSE_REGISTRY
from ax.storage.json_store.decoder import object_from_json
from ax.storage.json_store.encoder import object_to_json
from ax.storage.json_store.registry import (
    CORE_CLASS_DECODER_REGISTRY,
    CORE_CLASS_ENCODER_REGISTRY,
    CORE_DECODER_REGISTRY,
    CORE_ENCODER_REGISTRY,
)
from botorch.acquisition.logei import qLogExpectedImprovement, qLogNoisyExpectedImprovement
from botorch.models import SingleTaskGP
from botorch.models.model import Model
from botorch.models.transforms.input import Normalize
from botorch.utils.datasets import SupervisedDataset
from gpytorch.kernels import Kernel
from gpytorch.mlls import ExactMarginalLogLikelihood

import pfn_kernels.ax as pax
import pfn_kernels.fit as fit_module
from pfn_kernels import AmortizedSingleTaskGP, AmortizedSpectralKernel, fit_amortized
from pfn_kernels.network import DecoderConfig, SpectralDecoder
from pfn_kernels.network.weights import WeightsError, save_decoder
from pfn_kernels.inference import InferenceConfig, decode_spectral_params

DTYPE = torch.float64


@pytest.fixture(scope="module")
def decoder(tiny_decoder) -> SpectralDecoder:
    return tiny_decoder  # tests/conftest.py


@pytest.fixture(scope="module")
def decoder_path(decoder, tmp_path_factory) -> str:
    return str(save_decoder(decoder, tmp_path_factory.mktemp("weights") / "small.safetensors"))


@pytest.fixture
def mll_fits(monkeypatch) -> list:
    """Calls of Ax's marginal-likelihood fit (``fit_gpytorch_mll`` as Ax's fit dispatch sees it)."""
    calls = []
    real = ax_fit_utils.fit_gpytorch_mll

    def spy(mll, *args, **kwargs):
        calls.append(type(mll.model).__name__)
        return real(mll, *args, **kwargs)

    monkeypatch.setattr(ax_fit_utils, "fit_gpytorch_mll", spy)
    return calls


def unit_data(n=16, d=2, m=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, generator=g, dtype=DTYPE)
    Y = torch.cat([torch.sin(6.0 * (k + 1) * X[:, :1]) + X[:, 1:2] for k in range(m)], -1)
    return X, Y


def branin(x1: float, x2: float) -> float:
    return (
        (x2 - 5.1 / (4 * math.pi**2) * x1**2 + 5 / math.pi * x1 - 6) ** 2
        + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1)
        + 10
    )


def run_trials(client: Client, num: int) -> list[str]:
    """Run ``num`` trials of Branin one at a time; the generation node of each."""
    nodes = []
    for _ in range(num):
        ((index, params),) = client.get_next_trials(max_trials=1).items()
        client.complete_trial(index, raw_data={"loss": branin(params["x1"], params["x2"])})
        nodes.append(client._experiment.trials[index].generator_runs[0]._generation_node_name)
    return nodes


def branin_client(strategy) -> Client:
    client = Client()
    client.configure_experiment(
        parameters=[
            RangeParameterConfig(name="x1", bounds=(-5.0, 10.0), parameter_type="float"),
            RangeParameterConfig(name="x2", bounds=(0.0, 15.0), parameter_type="float"),
        ]
    )
    client.configure_optimization(objective="-loss")
    client.set_generation_strategy(strategy)
    return client


# ---------------------------------------------------------------------- registration and dispatch
def test_registration():
    assert CLASS_TO_REGISTRY[Kernel][AmortizedSpectralKernel] == "AmortizedSpectralKernel"
    assert CLASS_TO_REGISTRY[Model][AmortizedSingleTaskGP] == "AmortizedSingleTaskGP"
    assert CLASS_TO_REVERSE_REGISTRY[Kernel]["AmortizedSpectralKernel"] is AmortizedSpectralKernel
    assert CLASS_TO_REVERSE_REGISTRY[Model]["AmortizedSingleTaskGP"] is AmortizedSingleTaskGP
    for cls in (AmortizedSpectralKernel, AmortizedSingleTaskGP):
        encoded = object_to_json(
            cls,
            encoder_registry=CORE_ENCODER_REGISTRY,
            class_encoder_registry=CORE_CLASS_ENCODER_REGISTRY,
        )
        decoded = object_from_json(
            encoded,
            decoder_registry=CORE_DECODER_REGISTRY,
            class_decoder_registry=CORE_CLASS_DECODER_REGISTRY,
        )
        assert decoded is cls


@pytest.mark.parametrize("model_class", ["SingleTaskGP", "AmortizedSingleTaskGP"])
def test_ax_fit_runs_the_decoder(model_class, decoder, decoder_path, mll_fits):
    X, Y = unit_data()
    if model_class == "SingleTaskGP":
        model = SingleTaskGP(X, Y, covar_module=AmortizedSpectralKernel(ard_num_dims=2))
    else:
        model = AmortizedSingleTaskGP(X, Y, input_transform=None)
    expected = fit_amortized(copy.deepcopy(model), decoder=decoder)
    fit_botorch_model(
        model, mll_class=ExactMarginalLogLikelihood, mll_options={"decoder": decoder_path}
    )
    assert mll_fits == []  # no marginal-likelihood optimization
    got, want = model.state_dict(), expected.state_dict()
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], msg=key)
    assert not model.training


def test_other_models_still_fitted_by_mll(mll_fits):
    X, Y = unit_data()
    model = SingleTaskGP(X, Y)
    before = model.covar_module.lengthscale.detach().clone()
    fit_botorch_model(model, mll_class=ExactMarginalLogLikelihood, mll_options={})
    assert mll_fits == ["SingleTaskGP"]
    assert not torch.allclose(model.covar_module.lengthscale, before)


def test_no_input_warnings_with_search_space_normalize(decoder_path):
    X, Y = unit_data()
    bounds = torch.tensor([[0.0, 0.0], [10.0, 10.0]], dtype=DTYPE)
    model = SingleTaskGP(10.0 * X, Y, covar_module=AmortizedSpectralKernel(),
                         input_transform=Normalize(2, bounds=bounds))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        fit_botorch_model(
            model, mll_class=ExactMarginalLogLikelihood, mll_options={"decoder": decoder_path}
        )
    assert model.covar_module.ard_num_dims == 2


def test_refine_option(decoder, decoder_path, monkeypatch):
    calls = []
    real = fit_module.refine_amortized

    def spy(model, steps=None, **kwargs):
        calls.append((steps, type(kwargs.get("mll")).__name__, kwargs.get("priors")))
        return real(model, steps=steps, **kwargs)

    monkeypatch.setattr(fit_module, "refine_amortized", spy)
    X, Y = unit_data(n=20)
    decoded = fit_amortized(AmortizedSingleTaskGP(X, Y, input_transform=None), decoder=decoder)
    calls.clear()
    config = pax.amortized_model_config(refine=True, refine_steps=3, decoder=decoder_path)
    assert config.mll_options == {"decoder": decoder_path, "refine": True, "refine_steps": 3}
    model = AmortizedSingleTaskGP(X, Y, input_transform=None)
    options = {**config.mll_options, "refine_priors": {"log_means": 0.1}}
    fit_botorch_model(model, mll_class=ExactMarginalLogLikelihood, mll_options=options)
    assert options["refine_steps"] == 3  # the caller's options are not consumed
    ((num_steps, mll_name, priors),) = calls
    assert (num_steps, mll_name) == (3, "ExactMarginalLogLikelihood")
    assert priors == fit_module.RefinePriors(log_means=0.1)

    def log_marginal_likelihood(gp):
        gp.train()
        with torch.no_grad():
            objective = ExactMarginalLogLikelihood(gp.likelihood, gp)
            value = objective(gp(*gp.train_inputs), gp.train_targets)
        gp.eval()
        return float(value)

    scales = model.covar_module.mixture_scales
    assert not torch.allclose(scales, decoded.covar_module.mixture_scales)
    assert log_marginal_likelihood(model) >= log_marginal_likelihood(decoded) - 1e-9


# ---------------------------------------------------------------------- model construction
def test_covar_module_argparse():
    X, Y = unit_data(n=8, d=3, m=2)
    for m, batch in ((1, torch.Size()), (2, torch.Size([2]))):
        dataset = SupervisedDataset(X, Y[:, :m], feature_names=["a", "b", "c"],
                                    outcome_names=[f"y{k}" for k in range(m)])
        kwargs = covar_module_argparse(
            AmortizedSpectralKernel, botorch_model_class=SingleTaskGP, dataset=dataset
        )
        assert kwargs == {"ard_num_dims": 3, "batch_shape": batch}
        kernel = AmortizedSpectralKernel(**kwargs)
        assert (kernel.ard_num_dims, kernel.batch_shape) == (3, batch)


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(botorch_model_class=SingleTaskGP, covar_module_class=AmortizedSpectralKernel),
        ModelConfig(botorch_model_class=AmortizedSingleTaskGP),
        ModelConfig(botorch_model_class=AmortizedSingleTaskGP, input_transform_classes=None,
                    model_options={"num_mixtures": 6}),
    ],
    ids=["SingleTaskGP+kernel", "AmortizedSingleTaskGP", "no-input-transforms"],
)
def test_surrogate_normalizes_to_the_search_space(config, decoder_path, mll_fits):
    config = dataclasses.replace(config, mll_options={"decoder": decoder_path})
    bounds = [(-5.0, 10.0), (0.0, 15.0)]
    X01, Y = unit_data(n=12)
    low, high = torch.tensor(bounds, dtype=DTYPE).T
    X = low + (high - low) * (0.1 + 0.8 * X01)  # the data cover part of the search space only
    dataset = SupervisedDataset(X, Y, feature_names=["x1", "x2"], outcome_names=["y"])
    surrogate = Surrogate(surrogate_spec=SurrogateSpec(model_configs=[config]))
    surrogate.fit(datasets=[dataset], search_space_digest=SearchSpaceDigest(["x1", "x2"], bounds))
    model = surrogate.model
    assert mll_fits == []
    assert isinstance(model.covar_module, AmortizedSpectralKernel)
    assert model.covar_module.ard_num_dims == 2
    if config.model_options:
        assert model.covar_module.num_mixtures == 6
    transform = model.input_transform
    assert isinstance(transform, Normalize) and not transform.learn_bounds
    torch.testing.assert_close(transform.bounds, torch.stack([low, high]))
    Xt = transform(X)
    assert Xt.min() >= 0.1 - 1e-9 and Xt.max() <= 0.9 + 1e-9


# ---------------------------------------------------------------------- strategy, Client, storage
def test_generation_strategy_options(decoder_path):
    strategy = pax.amortized_generation_strategy(
        num_sobol=3, acquisition_class=qLogExpectedImprovement, decoder=decoder_path, seed=1
    )
    assert list(strategy.nodes_by_name) == ["Sobol", "MBM"]
    spec = strategy.nodes_by_name["MBM"].generator_specs[0]
    assert spec.generator_kwargs["botorch_acqf_class"] is qLogExpectedImprovement
    (config,) = spec.generator_kwargs["surrogate_spec"].model_configs
    assert config.botorch_model_class is AmortizedSingleTaskGP
    assert config.mll_options == {"decoder": decoder_path}
    assert list(pax.amortized_generation_strategy(num_sobol=0).nodes_by_name) == ["MBM"]

    refined = pax.amortized_generation_strategy(num_sobol=2, refine=True, refine_steps=4,
                                                optimizer_kwargs={"num_restarts": 3})
    encoded = object_to_json(refined, encoder_registry=CORE_ENCODER_REGISTRY,
                             class_encoder_registry=CORE_CLASS_ENCODER_REGISTRY)
    decoded = object_from_json(encoded, decoder_registry=CORE_DECODER_REGISTRY,
                               class_decoder_registry=CORE_CLASS_DECODER_REGISTRY)
    spec = decoded.nodes_by_name["MBM"].generator_specs[0]
    assert spec.generator_kwargs["botorch_acqf_class"] is qLogNoisyExpectedImprovement
    (config,) = spec.generator_kwargs["surrogate_spec"].model_configs
    assert config.botorch_model_class is AmortizedSingleTaskGP
    assert config.mll_options == {"refine": True, "refine_steps": 4}
    assert spec.generator_gen_kwargs == {"model_gen_options": {"optimizer_kwargs": {"num_restarts": 3}}}
    staged = pax.amortized_generation_strategy(inference=InferenceConfig(calibrate=False))
    decoded = object_from_json(
        object_to_json(staged, encoder_registry=CORE_ENCODER_REGISTRY,
                       class_encoder_registry=CORE_CLASS_ENCODER_REGISTRY),
        decoder_registry=CORE_DECODER_REGISTRY, class_decoder_registry=CORE_CLASS_DECODER_REGISTRY)
    (config,) = decoded.nodes_by_name["MBM"].generator_specs[0].generator_kwargs[
        "surrogate_spec"].model_configs
    assert InferenceConfig.from_dict(config.mll_options["inference"]) == InferenceConfig(calibrate=False)
    with pytest.raises(TypeError, match="name or a path"):
        pax.amortized_generation_strategy(decoder=SpectralDecoder(DecoderConfig(width=16)))


def test_client_bo_and_json_round_trip(decoder, decoder_path, tmp_path, mll_fits, monkeypatch):
    import ax.generators.torch.botorch_modular.acquisition as ax_acquisition

    budgets = []
    optimize = ax_acquisition.optimize_acqf

    def spy(*args, **kwargs):
        budgets.append((kwargs["num_restarts"], kwargs["raw_samples"]))
        return optimize(*args, **kwargs)

    monkeypatch.setattr(ax_acquisition, "optimize_acqf", spy)
    strategy = pax.amortized_generation_strategy(
        num_sobol=3, decoder=decoder_path, seed=0, optimizer_kwargs={"num_restarts": 3, "raw_samples": 24}
    )
    client = branin_client(strategy)
    assert run_trials(client, 5) == ["Sobol"] * 3 + ["MBM"] * 2
    assert mll_fits == [] and budgets == [(3, 24)] * 2
    model = client._generation_strategy.adapter.generator.surrogate.model
    assert isinstance(model, AmortizedSingleTaskGP)
    # The decoder read Ax's unit-cube inputs and set every hyperparameter.
    model.train()
    X = model.transform_inputs(model.train_inputs[0])
    assert X.shape == (4, 2) and X.min() >= 0.0 and X.max() <= 1.0
    expected = fit_amortized(copy.deepcopy(model), decoder=decoder)
    for key, value in expected.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, msg=key)

    path = tmp_path / "snapshot.json"
    client.save_to_json_file(str(path))
    loaded = Client.load_from_json_file(str(path))
    assert len(loaded._experiment.trials) == 5
    assert loaded._generation_strategy.current_node_name == "MBM"
    assert run_trials(loaded, 1) == ["MBM"]
    assert isinstance(loaded._generation_strategy.adapter.generator.surrogate.model,
                      AmortizedSingleTaskGP)
    assert mll_fits == [] and budgets[-1] == (3, 24)  # the budget was saved with the strategy


def test_json_round_trip_of_stock_single_task_gp_config(decoder_path):
    config = ModelConfig(
        botorch_model_class=SingleTaskGP,
        covar_module_class=AmortizedSpectralKernel,
        mll_options={"decoder": decoder_path, "refine": True},
    )
    encoded = object_to_json(SurrogateSpec(model_configs=[config]),
                             encoder_registry=CORE_ENCODER_REGISTRY,
                             class_encoder_registry=CORE_CLASS_ENCODER_REGISTRY)
    (decoded,) = object_from_json(encoded, decoder_registry=CORE_DECODER_REGISTRY,
                                  class_decoder_registry=CORE_CLASS_DECODER_REGISTRY).model_configs
    assert decoded.covar_module_class is AmortizedSpectralKernel
    assert decoded.mll_options == config.mll_options


# ---------------------------------------------------------------------- decoders by name or path
def test_resolve_decoder(decoder, decoder_path, tmp_path):
    assert pax.resolve_decoder(None) is None
    assert pax.resolve_decoder(decoder) is decoder
    first = pax.resolve_decoder(decoder_path)
    assert isinstance(first, SpectralDecoder) and first is pax.resolve_decoder(decoder_path)
    X, Y = unit_data()
    torch.testing.assert_close(decode_spectral_params(X, Y[:, 0], first).means,
                               decode_spectral_params(X, Y[:, 0], decoder).means)
    path = tmp_path / "rewritten.safetensors"
    save_decoder(decoder, path)
    before = pax.resolve_decoder(path)
    torch.manual_seed(1)
    save_decoder(SpectralDecoder(DecoderConfig(width=16, num_heads=2, num_layers=1, num_bins=8)),
                 path)
    assert pax.resolve_decoder(str(path)) is not before  # rewritten: loaded again
    with pytest.raises(WeightsError):
        pax.resolve_decoder(tmp_path / "missing.safetensors")


def test_docstring_examples():
    result = doctest.testmod(pax, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
