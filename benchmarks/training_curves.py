r"""Validation curves of the training runs behind the shipped and the ablation weights.

Usage:
    python benchmarks/training_curves.py

Reads the validation records of training logs (``log.jsonl`` lines with a ``validation`` field,
copied to ``benchmarks/results/training/``): the mean per-point NLL gap to the oracle on the
training run's own 32 held-out tasks per d (``TrainConfig.val_tasks``), every 1000 steps. Plots
the gap per d against the step: the 2-core CPU run that made the first shipped weights, its
continuation on a GPU (8x larger batches; the shipped weights), and three runs trained from
scratch on the GPU (multi-query pooling, mean pooling, a wider network).

The CPU run's records before step 7000 used a zero-mean oracle (see the model card's history)
and are left out: they are not comparable.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

RESULTS = Path("benchmarks/results/training")
#: (file stem, label, step offset, first comparable step)
RUNS = (
    ("cpu_default", "CPU, 16k steps (first shipped weights)", 0, 7000),
    ("gpu_continued", "continued on GPU, 8x batch (shipped)", 16000, 0),
    ("gpu_mqa", "GPU from scratch, multi-query pooling", 0, 0),
    ("gpu_mean_pooling", "GPU from scratch, mean pooling", 0, 0),
    ("gpu_wide", "GPU from scratch, width 96, 4 layers", 0, 0),
)


def read(path: Path, offset: int, first: int) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if "validation" in rec and rec["step"] >= first and rec["validation"]:
            rows.append({"step": rec["step"] + offset, **rec["validation"]})
    return rows


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, default=RESULTS)
    p.add_argument("--plot", type=Path, default=Path("benchmarks/results/training_curves.png"))
    args = p.parse_args(argv)
    curves = {stem: (label, read(args.dir / f"{stem}.jsonl", off, first))
              for stem, label, off, first in RUNS if (args.dir / f"{stem}.jsonl").is_file()}

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = (1, 2, 4, 8)
    fig, axes = plt.subplots(1, len(dims), figsize=(4 * len(dims), 3.4), sharey=True)
    for ax, d in zip(axes, dims):
        for stem, (label, rows) in curves.items():
            pts = [(r["step"], r[f"gap_d{d}"]) for r in rows if f"gap_d{d}" in r]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, label=label)
        ax.set_title(f"d = {d}")
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation NLL gap to oracle (nats/pt)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=120)
    plt.close(fig)
    print(f"wrote {args.plot}")
    return {stem: rows for stem, (_, rows) in curves.items()}


if __name__ == "__main__":
    main()
