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
# ## Training a decoder on your own prior
#
# The pretrained decoder has learned to read kernels from data drawn from one particular task
# prior: products of spectral-mixture, RBF, Matérn and periodic factors in up to 8 dimensions,
# on a range of input designs and noise levels (`pfn_kernels.prior.PriorConfig()`). If your
# problems look different, say always smooth, low-dimensional and noisy, you can train a decoder
# on a prior that says so, and use it wherever the pretrained one goes.
#
# The pieces:
#
# - `PriorConfig`: everything the task prior draws from (kernel families and their ranges, input
#   designs, noise, dimensions, context sizes);
# - `TrainConfig` and `Trainer` (`pfn_kernels.training`): the training loop, with checkpoints,
#   validation against the true kernels, and a weights file with a JSON model card;
# - `AmortizedSingleTaskGP(..., decoder=...)`: a BoTorch model that uses the new decoder.
#
# This tutorial trains a deliberately tiny decoder for a short while (a few dozen steps in smoke
# mode, a few thousand otherwise), which is enough to see every step of the workflow, not to
# reach the quality of the pretrained weights (20k steps of a larger network).

# %%
import json
import math
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are written to files
import matplotlib.pyplot as plt
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from gpytorch.mlls import ExactMarginalLogLikelihood

from pfn_kernels import AmortizedSingleTaskGP, SpectralDecoder
from pfn_kernels.exact_gp import exact_gp_scores
from pfn_kernels.prior import FAMILIES, PriorConfig, sample_tasks
from pfn_kernels.training import Trainer, TrainConfig

SMOKE_TEST = os.environ.get("SMOKE_TEST")
OUTPUT_DIR = Path(os.environ.get("TUTORIAL_OUTPUT_DIR", Path(tempfile.gettempdir()) / "pfn_kernels_tutorials"))
OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)

# %% [markdown]
# ### A custom prior
#
# Our prior: smooth functions (RBF and Matérn-5/2 kernels, some Matérn-3/2) of 1 to 3 inputs,
# lengthscales between 0.1 and 1, noise from 0.1% to 20% of the signal variance, inputs drawn
# uniformly or from a Sobol sequence, at most 64 context points. Every field not set keeps its
# default; `PriorConfig` validates the whole configuration when it is built.

# %%
prior_fields = {
    "max_dims": 3,
    "max_context": 64,
    "family_probs": {"rbf": 0.4, "matern52": 0.4, "matern32": 0.2},
    "lengthscale_range": (0.1, 1.0),
    "noise_ratio_range": (1e-3, 0.2),
    "design_probs": {"uniform": 0.5, "sobol": 0.5},
    "warp_prob": 0.0,
}
prior = PriorConfig(**prior_fields)
print(prior)

# %% [markdown]
# A look at a few one-dimensional tasks drawn from it (the targets come standardized, as the
# decoder sees them):

# %%
generator = torch.Generator().manual_seed(1)
tasks = sample_tasks(prior, 4, generator, num_dims=1, num_context=40, num_targets=0)
fig, axes = plt.subplots(1, 4, figsize=(13, 2.8), sharey=True)
for i, ax in enumerate(axes):
    order = tasks.x_context[i, :, 0].argsort()
    ax.plot(tasks.x_context[i, order, 0], tasks.y_context[i, order], ".-", lw=0.8)
    ax.set_title(f"{FAMILIES[int(tasks.family[i])]}, noise {tasks.noise[i]:.3f}", fontsize=9)
    ax.set_xlabel("x")
fig.tight_layout()
path = OUTPUT_DIR / "04_prior_samples.png"
fig.savefig(path, dpi=100)
plt.close(fig)
print(f"saved {path}")

# %% [markdown]
# ### Training configuration
#
# `TrainConfig` holds the loop's settings, the decoder's architecture (`decoder`, fields of
# `DecoderConfig`) and the prior (`prior`, fields of `PriorConfig`). The decoder here is tiny:
# width 32, two attention blocks. Batches are sized by a token budget (tasks x points x
# dimensions), so small problems get many tasks per step. The same settings, written as JSON,
# run from the command line:
#
# ```bash
# python -m pfn_kernels.train --config my_prior.json --out runs/my_prior
# ```

# %%
STEPS = 40 if SMOKE_TEST else 3000
cfg = TrainConfig(
    seed=0,
    steps=STEPS,
    lr=1e-3,
    warmup_steps=5 if SMOKE_TEST else 200,
    token_budget=2048,
    max_batch=32,
    min_context=4,
    max_context=prior.max_context,
    num_targets=32,
    val_every=20 if SMOKE_TEST else 250,
    ckpt_every=STEPS,
    val_tasks=8 if SMOKE_TEST else 32,
    val_dims=(1, 2, 3),
    val_context=32,
    val_targets=50,
    decoder={"width": 32, "num_heads": 2, "num_layers": 2, "num_components": 4},
    prior=prior_fields,
)
run_dir = Path(tempfile.mkdtemp(prefix="04_run_", dir=OUTPUT_DIR))  # a fresh run (no resume)
(run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
print(f"run directory: {run_dir}")

# %% [markdown]
# ### Training
#
# `Trainer.fit` runs until `cfg.steps` (or a wall-time limit) and resumes from the run
# directory's checkpoint when there is one. Validation compares, on fixed held-out tasks, the
# predictive NLL of the decoded GP with the oracle GP (the true kernel and noise): the *gap* is
# what the decoder still has to learn.

# %%
trainer = Trainer(cfg, run_dir, progress=not SMOKE_TEST)
print(f"decoder parameters: {sum(p.numel() for p in trainer.decoder.parameters()):,}")
start = time.perf_counter()
validation = trainer.fit()
print(f"{trainer.step} steps in {time.perf_counter() - start:.1f} s")
print("last validation:", {k: round(v, 3) for k, v in validation.items()})

records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
val_records = [r for r in records if "validation" in r]
fig, ax = plt.subplots(figsize=(6, 3.5))
for d in cfg.val_dims:
    ax.plot([r["step"] for r in val_records], [r["validation"][f"gap_d{d}"] for r in val_records],
            marker="o", label=f"d={d}")
ax.set_xlabel("training step")
ax.set_ylabel("NLL gap to the oracle (nats / point)")
ax.legend()
fig.tight_layout()
path = OUTPUT_DIR / "04_validation_gap.png"
fig.savefig(path, dpi=100)
plt.close(fig)
print(f"saved {path}")

# %% [markdown]
# ### The weights and their model card
#
# The run directory holds `decoder.safetensors` (tensors and the architecture; loading never
# executes code) and `decoder.json`, the model card: architecture, prior, training settings,
# steps, hardware, wall time and the last validation.

# %%
weights = run_dir / "decoder.safetensors"
card = json.loads(weights.with_suffix(".json").read_text())
print({k: card[k] for k in ("parameters", "steps", "hardware", "wall_time_s")})
decoder = SpectralDecoder.pretrained(path=weights)

# %% [markdown]
# ### Using the decoder in BoTorch
#
# Pass it as `decoder=` to `AmortizedSingleTaskGP`; `fit_gpytorch_mll` then runs this decoder
# instead of the pretrained one. We compare it on fresh tasks from our prior with a default
# `SingleTaskGP` and with the oracle, by the predictive NLL of held-out points (in the tasks'
# standardized units, with observation noise). A decoder this small and this briefly trained may
# well lose to the default model; the point is the workflow, and the numbers improve with steps.

# %%
NUM_TASKS = 4 if SMOKE_TEST else 24


def predictive_nll(model, X, Y):
    with torch.no_grad():
        post = model.posterior(X, observation_noise=True)
    mean, var = post.mean.squeeze(-1), post.variance.squeeze(-1)
    return (0.5 * (math.log(2 * math.pi) + var.log() + (Y - mean) ** 2 / var)).mean().item()


test = sample_tasks(prior, NUM_TASKS, torch.Generator().manual_seed(2026), num_dims=2,
                    num_context=40, num_targets=100, dtype=torch.float64)
oracle = exact_gp_scores(
    test.covariance(test.x_context, test.x_context),
    test.covariance(test.x_target, test.x_context),
    test.covariance(test.x_target, test.x_target, diag=True),
    test.noise, test.y_context, test.y_target,
).target_nll
scores = {"amortized (this decoder)": [], "default SingleTaskGP": [], "oracle": oracle.tolist()}
for i in range(NUM_TASKS):
    X, Y = test.x_context[i], test.y_context[i].unsqueeze(-1)
    for name, model in [
        ("amortized (this decoder)", AmortizedSingleTaskGP(X, Y, decoder=decoder)),
        ("default SingleTaskGP", SingleTaskGP(X, Y)),
    ]:
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        scores[name].append(predictive_nll(model, test.x_target[i], test.y_target[i]))
for name, values in scores.items():
    print(f"{name:>26}: mean test NLL {sum(values) / len(values):.3f} over {NUM_TASKS} tasks")
