"""The README's cost figure: what one BO step costs, fit and acquisition, per method.

Usage:
    python benchmarks/step_cost_figure.py --runs benchmarks/results/bo_speed.json \
        --out benchmarks/results/step_cost.png

Reads a ``benchmarks/bo.py`` results file holding several methods run side by side (no new
runs) and draws, per method:

- left: the median over runs of the seconds per BO step, fit and acquisition separately,
  against the number of observations the step's model was fitted on;
- right: the total seconds over all runs, fit and acquisition stacked, with the ratio of each
  total to the default's (``--reference``, BoTorch's ``SingleTaskGP``).

Also printed: the totals and ratios, the figures of the acquisition-speed goal.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from benchmarks._common import RESULTS  # noqa: E402

LABELS = {"amortized": "AmortizedSingleTaskGP (one pass)", "amortized_refine": "one pass + refine",
          "default_stgp": "SingleTaskGP (fit_gpytorch_mll)"}


def step_costs(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per method: the observations of each step, the per-step median fit and acquisition
    seconds over runs, and the totals over all runs."""
    out: dict[str, dict[str, Any]] = {}
    for method in sorted({r["method"] for r in runs}):
        mine = [r for r in runs if r["method"] == method]
        steps = min(len(r["fit_times"]) for r in mine)
        n_init = mine[0]["n_init"]
        out[method] = {
            "observations": [n_init + s for s in range(steps)],
            "fit_median_s": [statistics.median(r["fit_times"][s] for r in mine) for s in range(steps)],
            "acq_median_s": [statistics.median(r["acq_times"][s] for r in mine) for s in range(steps)],
            "fit_total_s": sum(sum(r["fit_times"]) for r in mine),
            "acq_total_s": sum(sum(r["acq_times"]) for r in mine),
            "runs": len(mine),
        }
    return out


def plot(costs: dict[str, dict[str, Any]], reference: str, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
    colors = {m: f"C{i}" for i, m in enumerate(costs)}
    for method, c in costs.items():
        label = LABELS.get(method, method)
        ax.plot(c["observations"], [1e3 * t for t in c["fit_median_s"]], "--", color=colors[method],
                label=f"{label}: fit")
        ax.plot(c["observations"], [1e3 * t for t in c["acq_median_s"]], "-", color=colors[method],
                label=f"{label}: acquisition")
    ax.set_yscale("log")
    ax.set_xlabel("observations")
    ax.set_ylabel("ms per BO step (median over runs)")
    ax.legend(fontsize=7)
    ax.set_title("per step")
    ref = costs.get(reference)
    names = list(costs)
    fit = [costs[m]["fit_total_s"] for m in names]
    acq = [costs[m]["acq_total_s"] for m in names]
    bx.bar(names, fit, color=[colors[m] for m in names], alpha=0.45, label="fit")
    bx.bar(names, acq, bottom=fit, color=[colors[m] for m in names], label="acquisition")
    for i, m in enumerate(names):
        total = fit[i] + acq[i]
        text = f"{total:.0f} s"
        if ref is not None and m != reference:
            text += f"\n{total / (ref['fit_total_s'] + ref['acq_total_s']):.2f}x"
        bx.text(i, total, text, ha="center", va="bottom", fontsize=8)
    bx.set_xticks(range(len(names)), [LABELS.get(m, m).split(" (")[0] for m in names], fontsize=8)
    bx.set_ylabel("seconds, all runs (light: fit)")
    bx.set_title("whole runs")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, default=RESULTS / "bo_speed.json", help="a bo.py results file")
    p.add_argument("--reference", default="default_stgp")
    p.add_argument("--out", type=Path, default=RESULTS / "step_cost.png")
    args = p.parse_args(argv)
    data = json.loads(args.runs.read_text())
    costs = step_costs(data["runs"])
    problems = sorted({r["problem"] for r in data["runs"]})
    seeds = max(c["runs"] for c in costs.values()) // max(1, len(problems))
    plot(costs, args.reference, args.out,
         f"{', '.join(problems)}; {seeds} seeds each ({args.runs.name})")
    ref = costs.get(args.reference)
    print("| method | fit (s) | acquisition (s) | total (s) | total ratio | acquisition ratio |")
    print("|---|---|---|---|---|---|")
    for m, c in costs.items():
        total = c["fit_total_s"] + c["acq_total_s"]
        ratio = acq_ratio = "—"
        if ref is not None:
            ratio = f"{total / (ref['fit_total_s'] + ref['acq_total_s']):.2f}"
            acq_ratio = f"{c['acq_total_s'] / ref['acq_total_s']:.2f}"
        print(f"| {m} | {c['fit_total_s']:.1f} | {c['acq_total_s']:.1f} | {total:.1f} | {ratio} | {acq_ratio} |")
    print(f"wrote {args.out}")
    return costs


if __name__ == "__main__":
    main()
