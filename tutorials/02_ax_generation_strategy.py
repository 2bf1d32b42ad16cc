# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# ## An Ax experiment with the amortized generation strategy
#
# Ax runs Bayesian optimization through a *generation strategy*: a sequence of nodes, typically
# quasi-random (Sobol) initialization followed by a BoTorch model. `pfn_kernels.ax` provides
# `amortized_generation_strategy`, whose BoTorch node uses an `AmortizedSingleTaskGP` as the
# surrogate: at every step its kernel hyperparameters come from one pass of the pretrained
# decoder instead of a marginal-likelihood optimization.
#
# Importing `pfn_kernels.ax` registers the amortized model and kernel with Ax (its fitting
# dispatcher, kernel construction and JSON storage), so an experiment that uses them can be
# saved and loaded like any other. This tutorial
#
# 1. sets up an experiment with Ax's `Client` and the amortized strategy,
# 2. runs a few trials and looks at the surrogate Ax built,
# 3. saves the experiment to JSON, loads it back and continues,
# 4. compares the time per generated trial with Ax's default strategy.

# %%
import math
import os
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are written to files
import matplotlib.pyplot as plt
from ax.api.client import Client
from ax.api.configs import RangeParameterConfig

import pfn_kernels.ax  # noqa: F401  (registers the amortized model with Ax)
from pfn_kernels import AmortizedSingleTaskGP
from pfn_kernels.ax import amortized_generation_strategy

SMOKE_TEST = os.environ.get("SMOKE_TEST")
OUTPUT_DIR = Path(os.environ.get("TUTORIAL_OUTPUT_DIR", Path(tempfile.gettempdir()) / "pfn_kernels_tutorials"))
OUTPUT_DIR.mkdir(parents=True, exist_ok=True)

NUM_SOBOL = 5
NUM_TRIALS = 8 if SMOKE_TEST else 30
NUM_TRIALS_AFTER_LOAD = 1 if SMOKE_TEST else 5

# %% [markdown]
# ### The problem
#
# We minimize the Branin function on $[-5, 10] \times [0, 15]$ (minimum 0.397887). The search
# space is not the unit cube: Ax normalizes each parameter to $[0, 1]$ from its bounds before the
# model sees it, which is exactly what the decoder expects.


# %%
def branin(x1, x2):
    return (
        (x2 - 5.1 / (4 * math.pi**2) * x1**2 + 5 / math.pi * x1 - 6) ** 2
        + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1)
        + 10
    )


def make_client(generation_strategy=None):
    client = Client()
    client.configure_experiment(
        name="branin_amortized",
        parameters=[
            RangeParameterConfig(name="x1", bounds=(-5.0, 10.0), parameter_type="float"),
            RangeParameterConfig(name="x2", bounds=(0.0, 15.0), parameter_type="float"),
        ],
    )
    client.configure_optimization(objective="-branin")  # maximize -branin
    if generation_strategy is not None:
        client.set_generation_strategy(generation_strategy)
    return client


def run_trials(client, num_trials):
    """Ask for one trial at a time, evaluate it, report it; returns the seconds per generation."""
    seconds = []
    for _ in range(num_trials):
        start = time.perf_counter()
        ((index, parameters),) = client.get_next_trials(max_trials=1).items()
        seconds.append(time.perf_counter() - start)
        client.complete_trial(index, raw_data={"branin": branin(parameters["x1"], parameters["x2"])})
    return seconds


# %% [markdown]
# ### The amortized generation strategy
#
# `amortized_generation_strategy(num_sobol=5)` has two nodes: five Sobol trials, then
# `"MBM"`, Ax's modular BoTorch generator with an `AmortizedSingleTaskGP` surrogate and
# `qLogNoisyExpectedImprovement`. Options: `refine=True` polishes each decoded kernel by a short
# regularized marginal-likelihood fit; `decoder="path/to/weights.safetensors"` uses a decoder you
# trained (see the tutorial on training); both are stored with the experiment.

# %%
strategy = amortized_generation_strategy(num_sobol=NUM_SOBOL, seed=0)
print(strategy.name, "->", list(strategy.nodes_by_name))

client = make_client(strategy)
amortized_seconds = run_trials(client, NUM_TRIALS)
summary = client.summarize()
print(summary[["trial_index", "generation_node", "x1", "x2", "branin"]].to_string(index=False))

# %% [markdown]
# ### The surrogate Ax built
#
# After a BoTorch step, the generator's surrogate is an `AmortizedSingleTaskGP` fitted on the
# normalized inputs. Its decoded spectral mixture has one row per parameter: frequencies in
# cycles per unit of the normalized range, and weights. (The path to the model goes through
# Ax's internal objects and may change between Ax versions.)

# %%
model = client._generation_strategy.adapter.generator.surrogate.model
assert isinstance(model, AmortizedSingleTaskGP)
params = model.covar_module.spectral_params
print("frequencies (cycles / unit):\n", params.means.detach().numpy().round(2))
print("weights:\n", params.weights.detach().numpy().round(2))
print(f"outputscale {params.outputscale.item():.3f}, noise {model.likelihood.noise.item():.2e} "
      "(standardized units)")

# %% [markdown]
# ### Saving and loading
#
# `Client.save_to_json_file` stores the experiment, its data and the generation strategy,
# including the amortized model configuration. Loading needs `pfn_kernels.ax` imported (done
# above), which registers the classes with Ax's decoders. The loaded client continues where the
# saved one stopped, in the `"MBM"` node.

# %%
path = OUTPUT_DIR / "02_branin_experiment.json"
client.save_to_json_file(str(path))
loaded = Client.load_from_json_file(str(path))
print(f"saved and loaded {path.name}: {len(loaded._experiment.trials)} trials, "
      f"current node {loaded._generation_strategy.current_node_name!r}")
amortized_seconds += run_trials(loaded, NUM_TRIALS_AFTER_LOAD)
best_parameters, prediction, index, name = loaded.get_best_parameterization()
print(f"best so far: trial {index}, {best_parameters}, predicted {prediction}")

# %% [markdown]
# ### Compared with Ax's default strategy
#
# A client without `set_generation_strategy` uses Ax's default: Sobol initialization, then a
# BoTorch model whose hyperparameters are fitted by marginal likelihood at every step. We run
# the same number of trials and compare the time each `get_next_trials` call takes (model fit
# plus acquisition optimization) and the best value found. Both strategies spend most of a BO
# step optimizing the acquisition function; the amortized fit removes the marginal-likelihood
# part.

# %%
default_client = make_client()
default_seconds = run_trials(default_client, NUM_TRIALS + NUM_TRIALS_AFTER_LOAD)


def best_so_far(client):
    values = client.summarize().sort_values("trial_index")["branin"].tolist()
    return [min(values[: i + 1]) for i in range(len(values))]


curves = {"amortized": best_so_far(loaded), "Ax default": best_so_far(default_client)}
times = {"amortized": amortized_seconds, "Ax default": default_seconds}
for name in curves:
    bo = times[name][NUM_SOBOL:]
    print(f"{name:>10}: best {curves[name][-1]:.4f} (optimum 0.3979), "
          f"median time per BO trial {sorted(bo)[len(bo) // 2]:.2f} s")

fig, (ax_best, ax_time) = plt.subplots(1, 2, figsize=(11, 4))
for name in curves:
    trials = range(1, len(curves[name]) + 1)
    ax_best.semilogy(trials, [v - 0.397887 for v in curves[name]], marker="o", label=name)
    ax_time.plot(trials, times[name], marker="o", label=name)
ax_best.set_xlabel("trial")
ax_best.set_ylabel("best value - optimum")
ax_time.set_xlabel("trial")
ax_time.set_ylabel("seconds in get_next_trials")
for ax in (ax_best, ax_time):
    ax.axvline(NUM_SOBOL + 0.5, color="k", lw=0.6, ls=":")
    ax.legend()
fig.tight_layout()
figure = OUTPUT_DIR / "02_ax_generation_strategy.png"
fig.savefig(figure, dpi=100)
plt.close(fig)
print(f"saved {figure}")
