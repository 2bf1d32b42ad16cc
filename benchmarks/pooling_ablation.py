r"""Multi-query attention pooling vs mean pooling as the number of spectral peaks grows.

Usage:
    python benchmarks/pooling_ablation.py --mqa runs/mqa/decoder.safetensors \
        --mean runs/mean/decoder.safetensors

arXiv 2601.21731 pools the attention outputs with several learned queries rather than a mean,
and reports that the advantage grows with the number of spectral peaks. This script measures it
on our decoder: two decoders trained identically except for ``DecoderConfig.pooling``
(``"attention"`` vs ``"mean"``), scored on held-out spectral-mixture tasks bucketed by their number
of peaks (the most peaks of any input dimension).

Tasks: the default prior restricted to the spectral-mixture family, with no zero-frequency peaks,
no irrelevant dimensions and no input warping (the paper's setting), ``--context`` points and
``--targets`` held-out points, seed ``4242 + --seed``. Per bucket and decoder: the per-point test
NLL gap to the oracle GP (true kernel, noise and mean; mean +- standard error over tasks) and the
MSE ratio to the oracle. Writes a JSON and a plot of the gap against the number of peaks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, uninstalled

from benchmarks._common import (  # noqa: E402
    add_run_arguments, machine_metadata, mean_se, set_threads, write_json,
)
from benchmarks.decoder_quality import amortized_scores, resolve_weights  # noqa: E402
from pfn_kernels.prior import PriorConfig, sample_tasks  # noqa: E402

EVAL_SEED = 4242


def ablation_prior() -> PriorConfig:
    """Spectral-mixture tasks only, the paper's setting (no DC peaks, irrelevant dims, warping)."""
    return PriorConfig(
        family_probs={"spectral_mixture": 1.0}, zero_frequency_prob=0.0, irrelevant_prob=0.0, warp_prob=0.0
    )


def evaluate(decoders: dict[str, Any], d: int, args: argparse.Namespace) -> dict[str, Any]:
    """Gap and MSE ratio per number of peaks for every decoder, on the same tasks."""
    gen = torch.Generator().manual_seed(EVAL_SEED + args.seed + 1000 * d)
    prior = ablation_prior()
    gaps: dict[str, dict[int, list[torch.Tensor]]] = {name: {} for name in decoders}
    mse: dict[str, dict[int, list[torch.Tensor]]] = {name: {} for name in ["oracle", *decoders]}
    chunks = max(1, args.tasks // args.chunk)
    for _ in tqdm(range(chunks), desc=f"d={d}", disable=args.no_progress):
        batch = sample_tasks(prior, args.chunk, gen, num_dims=d, num_context=args.context,
                             num_targets=args.targets).to(torch.float64)
        peaks = batch.num_peaks.max(-1).values
        oracle = batch.oracle_scores()
        for k in peaks.unique().tolist():
            mse["oracle"].setdefault(k, []).append(oracle.target_mse[peaks == k])
        for name, decoder in decoders.items():
            scores, _, _ = amortized_scores(decoder, batch)
            gap = scores.target_nll - oracle.target_nll
            for k in peaks.unique().tolist():
                gaps[name].setdefault(k, []).append(gap[peaks == k])
                mse[name].setdefault(k, []).append(scores.target_mse[peaks == k])
    result: dict[str, Any] = {}
    for k in sorted(mse["oracle"]):
        oracle_mse = torch.cat(mse["oracle"][k]).mean()
        row: dict[str, Any] = {"tasks": int(torch.cat(mse["oracle"][k]).numel())}
        for name in decoders:
            m, se = mean_se(torch.cat(gaps[name][k]).tolist())
            row[name] = {"gap": m, "gap_se": se, "mse_ratio": float(torch.cat(mse[name][k]).mean() / oracle_mse)}
        result[str(k)] = row
    return result


def plot(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = list(result)
    fig, axes = plt.subplots(1, len(dims), figsize=(4.2 * len(dims), 3.4), squeeze=False)
    for ax, d in zip(axes[0], dims):
        rows = result[d]
        peaks = [int(k) for k in rows]
        for name, label in (("mqa", "multi-query attention pooling"), ("mean", "mean pooling")):
            ax.errorbar(peaks, [rows[str(k)][name]["gap"] for k in peaks],
                        yerr=[rows[str(k)][name]["gap_se"] for k in peaks], marker="o", capsize=3, label=label)
        ax.set_xticks(peaks)
        ax.set_xlabel("spectral peaks (most of any dimension)")
        ax.set_ylabel("test NLL gap to oracle (nats/pt)")
        ax.set_title(f"d = {d}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mqa", required=True, help="weights of the multi-query-pooling decoder")
    p.add_argument("--mean", required=True, help="weights of the mean-pooling decoder")
    p.add_argument("--dims", type=int, nargs="+", default=[1, 2], help="input dimensions (1 2)")
    p.add_argument("--tasks", type=int, default=1024, help="tasks per d, over all peak counts (1024)")
    p.add_argument("--chunk", type=int, default=128, help="tasks per decoder call (128)")
    p.add_argument("--context", type=int, default=50)
    p.add_argument("--targets", type=int, default=100)
    p.add_argument("--seed", type=int, default=0, help=f"evaluation seed offset (base {EVAL_SEED})")
    add_run_arguments(p, "pooling_ablation")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    set_threads(args.threads)
    decoders, meta = {}, {}
    for name, path in (("mqa", args.mqa), ("mean", args.mean)):
        decoder, target, card = resolve_weights(path)
        if decoder.config.pooling != ("attention" if name == "mqa" else "mean"):
            raise SystemExit(f"--{name} {path} has pooling={decoder.config.pooling!r}.")
        decoders[name] = decoder
        meta[name] = {"weights": str(target), "steps": (card or {}).get("steps"),
                      "parameters": sum(p.numel() for p in decoder.parameters())}
    result = {str(d): evaluate(decoders, d, args) for d in args.dims}
    out = {"meta": {**machine_metadata(args.threads), "decoders": meta, "settings": vars(args)},
           "results": result}
    write_json(out, args.out)
    plot(result, args.plot)
    print("| d | peaks | tasks | MQA gap | mean-pool gap | MQA MSE ratio | mean-pool MSE ratio |")
    print("|---|---|---|---|---|---|---|")
    for d, rows in result.items():
        for k, row in rows.items():
            a, b = row["mqa"], row["mean"]
            print(f"| {d} | {k} | {row['tasks']} | {a['gap']:.3f} ± {a['gap_se']:.3f} | "
                  f"{b['gap']:.3f} ± {b['gap_se']:.3f} | {a['mse_ratio']:.2f} | {b['mse_ratio']:.2f} |")
    return out


if __name__ == "__main__":
    main()
