r"""The one pass on held-out prior tasks: mean test NLL and catastrophic misses against the default.

Usage:
    python benchmarks/one_pass.py                      # 256 tasks per d in {1, 2, 4, 8}, n = 50
    python benchmarks/one_pass.py --quick              # 32 tasks per d

For each d, ``--tasks`` held-out tasks of the task prior (``PriorConfig()``, seed
``ONE_PASS_SEED + --seed + d``, unrelated to training and validation) with ``--context`` context
and ``--targets`` target points. Methods:

- ``default_stgp``: BoTorch's default ``SingleTaskGP`` fitted by ``fit_gpytorch_mll``, one task
  at a time (its scores are cached in the JSON and reused by later runs with the same settings);
- one amortized variant per entry of :data:`VARIANTS`: the shipped decoder and the inference
  stages with that :class:`~pfn_kernels.inference.InferenceConfig`, all tasks of a d in one
  batched pass, scored by the exact GP with the decoded kernel, noise and constant mean.

Reported per d and method: the mean per-point test NLL (standardized units, with observation
noise) with its standard error, and for the amortized variants the fraction of tasks whose NLL is
more than ``MISS_MARGIN`` nats per point above the default's (a *catastrophic miss*), with the
worst tasks' indices. Written: ``benchmarks/results/one_pass.json`` and ``one_pass.png`` (per-task
NLL differences to the default).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, uninstalled

import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from benchmarks._common import (  # noqa: E402
    add_run_arguments, apply_preset, machine_metadata, mean_se, set_threads, write_json,
)
from benchmarks.decoder_quality import amortized_scores, fit_default_stgp, predictive_scores  # noqa: E402
from pfn_kernels.inference import InferenceConfig  # noqa: E402
from pfn_kernels.network import default_decoder, load_decoder  # noqa: E402
from pfn_kernels.prior import PriorConfig, sample_tasks  # noqa: E402

ONE_PASS_SEED = 7373
#: A task is a catastrophic miss when its NLL exceeds the default's by more than this (nats/pt).
MISS_MARGIN = 0.5
#: The amortized variants compared (name -> InferenceConfig options).
_PREVIOUS = {"calibration_steps": (0.7, 1.4), "calibration_prior_std": None,
             "evidence_check": False, "evidence_folded": False, "mean_mode": "sample",
             "calibration_noise_prior_std": None}
VARIANTS: dict[str, dict[str, Any]] = {
    # the inference stages before the evidence check, the GLS mean and the wide MAP calibration
    "previous": _PREVIOUS,
    "gls": {**_PREVIOUS, "mean_mode": "gls"},
    "evidence": {**_PREVIOUS, "evidence_check": True},
    "evidence_gls": {**_PREVIOUS, "evidence_check": True, "mean_mode": "gls"},
    "wide_prior1": {**_PREVIOUS, "calibration_steps": (0.1, 0.3, 0.6, 1.6, 3.0, 10.0),
                    "calibration_prior_std": 1.0},
    "wide_ml": {**_PREVIOUS, "calibration_steps": (0.1, 0.3, 0.6, 1.6, 3.0, 10.0)},
    # the stages of the first evidence-check version (RBF alternatives only, no noise prior)
    "evidence_rbf_only": {"evidence_folded": False, "calibration_noise_prior_std": None},
    "noise_prior2": {"evidence_folded": False, "calibration_noise_prior_std": 2.0},
    "folded_noise_prior2": {"evidence_folded": True, "calibration_noise_prior_std": 2.0},
    "no_periodogram": {"evidence_periodogram": False},
    "periodogram": {"evidence_periodogram": True},
    "dense": {"sparsify": False},  # the stages before the sparse-spectrum stage
    "sparse": {"sparsify": True},
    "sparse_0.003": {"sparsify": True, "sparsity_margin": 0.003},
    "sparse_0.03": {"sparsify": True, "sparsity_margin": 0.03},
    "default": {},  # today's InferenceConfig()
}
PRESETS = {"quick": {"tasks": 32}, "full": {"tasks": 256}}


def amortized_nll(batch: Any, config: InferenceConfig, decoder: Any = None) -> torch.Tensor:
    """Per-task test NLL `(B,)` of the one pass with ``config`` (one batched pass) and
    ``decoder`` (default: the shipped one)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores, _, _ = amortized_scores(decoder or default_decoder(), batch, config)
    return scores.target_nll


def default_nll(batch: Any, progress: bool) -> list[float]:
    out = []
    for i in tqdm(range(batch.x_context.shape[0]), desc="default fits", leave=False, disable=not progress):
        xc, yc, xt, yt = (t[i] for t in (batch.x_context, batch.y_context, batch.x_target, batch.y_target))
        model, _ = fit_default_stgp(xc, yc)
        out.append(predictive_scores(model, xc, yc, xt, yt)[0])
    return out


def summarize(nll: list[float], reference: list[float] | None) -> dict[str, Any]:
    mean, se = mean_se(nll)
    row: dict[str, Any] = {"nll": mean, "nll_se": se}
    if reference is not None:
        diff = [a - b for a, b in zip(nll, reference)]
        dm, dse = mean_se(diff)
        misses = [i for i, v in enumerate(diff) if v > MISS_MARGIN]
        worst = sorted(range(len(diff)), key=lambda i: -diff[i])[:5]
        row.update({"diff_to_default": dm, "diff_to_default_se": dse,
                    "miss_fraction": len(misses) / len(diff), "misses": misses,
                    "worst": [{"task": i, "diff": diff[i]} for i in worst]})
    return row


def plot(result: dict[str, Any], path: Path) -> Path:
    from matplotlib.figure import Figure

    dims = list(result["per_task"])
    fig = Figure(figsize=(3.2 * len(dims), 3.2), layout="constrained")
    axes = fig.subplots(1, len(dims), squeeze=False)[0]
    for ax, d in zip(axes, dims):
        ref = result["per_task"][d]["default_stgp"]
        names = [v for v in result["variants"] if v in result["per_task"][d]]
        data = [[a - b for a, b in zip(result["per_task"][d][v], ref)] for v in names]
        ax.boxplot(data, whis=(1, 99), showfliers=True, flierprops={"markersize": 2})
        ax.set_xticks(range(1, len(names) + 1), names, rotation=45, ha="right", fontsize=7)
        ax.axhline(0.0, color="0.5", lw=0.8)
        ax.axhline(MISS_MARGIN, color="tab:red", lw=0.8, ls="--")
        ax.set_title(f"d = {d}")
        ax.set_ylabel("test NLL - default's (nats/pt)")
    fig.savefig(path, dpi=130)
    return path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="32 tasks per d")
    p.add_argument("--dims", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--tasks", type=int, default=None, help="tasks per d (256; --quick 32)")
    p.add_argument("--context", type=int, default=50)
    p.add_argument("--targets", type=int, default=100)
    p.add_argument("--seed", type=int, default=0, help=f"evaluation seed offset (base {ONE_PASS_SEED})")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--weights", default=None, help="decoder .safetensors (default: the packaged weights)")
    add_run_arguments(p, "one_pass", by_preset=True)
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    apply_preset(args, PRESETS)
    name = "one_pass_quick" if args.quick else "one_pass"
    out_path = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"{name}.json"
    plot_path = Path(args.plot) if getattr(args, "plot", None) else out_path.with_suffix(".png")
    set_threads(args.threads)
    decoder = default_decoder() if args.weights is None else load_decoder(args.weights)
    settings = {k: getattr(args, k) for k in ("tasks", "context", "targets", "seed")}
    cached: dict[str, list[float]] = {}
    if out_path.is_file():
        import json

        old = json.loads(out_path.read_text())
        if old.get("settings") == settings:
            cached = {d: v["default_stgp"] for d, v in old.get("per_task", {}).items()}
    per_task: dict[str, dict[str, list[float]]] = {}
    summary: dict[str, dict[str, Any]] = {}
    for d in tqdm(args.dims, desc="dims", disable=args.no_progress):
        gen = torch.Generator().manual_seed(ONE_PASS_SEED + args.seed + d)
        batch = sample_tasks(PriorConfig(), args.tasks, gen, num_dims=d, num_context=args.context,
                             num_targets=args.targets, dtype=torch.float64)
        ref = cached.get(str(d)) or default_nll(batch, not args.no_progress)
        rows = {"default_stgp": ref}
        for v in args.variants:
            rows[v] = amortized_nll(batch, InferenceConfig(**VARIANTS[v]), decoder).tolist()
        per_task[str(d)] = rows
        summary[str(d)] = {m: summarize(r, None if m == "default_stgp" else ref) for m, r in rows.items()}
        result = {"meta": machine_metadata(args.threads), "settings": settings,
                  "variants": {v: VARIANTS[v] for v in args.variants},
                  "weights": args.weights or "packaged", "default_config": InferenceConfig().to_dict(),
                  "summary": summary, "per_task": per_task}
        write_json(result, out_path)  # after every d: a stopped run keeps what it finished
    if not args.no_plot:
        plot(result, plot_path)
    print(f"| d | method | test NLL | vs default | misses > {MISS_MARGIN} |")
    print("|---|---|---|---|---|")
    for d, rows in summary.items():
        for m, r in rows.items():
            vs = "" if m == "default_stgp" else f"{r['diff_to_default']:+.3f} ± {r['diff_to_default_se']:.3f}"
            miss = "" if m == "default_stgp" else f"{100 * r['miss_fraction']:.1f}%"
            print(f"| {d} | {m} | {r['nll']:.3f} ± {r['nll_se']:.3f} | {vs} | {miss} |")
    return result


if __name__ == "__main__":
    main()
