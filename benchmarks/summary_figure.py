"""The README's figure: where the one pass helps and where it does not, from recorded results.

Usage:
    python benchmarks/summary_figure.py --out benchmarks/results/where_it_helps.png

Reads results already in ``benchmarks/results`` (no new runs):

- left: Bayesian optimization, the paired difference of the final log10 simple regret to
  BoTorch's default ``SingleTaskGP`` per problem (mean ± s.e. over seeds), from
  ``bo_compare.json`` (variant ``--bo-variant``) and the extra files given with ``--bo-extra``
  (each compared by :mod:`benchmarks.bo_compare`);
- right: regression on held-out prior tasks, the one pass's test NLL minus the default's per d
  (mean ± s.e.), from a ``benchmarks/one_pass.py`` results file.

Negative is better for the one pass in both panels.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from benchmarks._common import RESULTS  # noqa: E402
from benchmarks.bo_compare import compare, load_runs  # noqa: E402


def bo_rows(compare_file: Path, variant: str, extra: list[Path]) -> list[tuple[str, float, float]]:
    """(problem, paired diff, s.e.) of ``variant`` in ``compare_file`` and of the amortized
    method of every ``extra`` bo.py result file."""
    rows = {}
    for problem, row in json.loads(compare_file.read_text())["problems"].items():
        if variant in row:
            rows[problem] = (row[variant]["paired_diff"], row[variant]["paired_diff_se"])
    for path in extra:
        for problem, row in compare(load_runs([str(path)], []), "default_stgp")["problems"].items():
            if "amortized" in row:
                rows[problem] = (row["amortized"]["paired_diff"], row["amortized"]["paired_diff_se"])
    return sorted(((p, *v) for p, v in rows.items()), key=lambda r: r[1])


def regression_rows(path: Path, variant: str) -> tuple[list[tuple[int, float, float, float]], Any]:
    """(d, mean diff, s.e., miss fraction) per d of ``variant`` in a one_pass.py results file."""
    data = json.loads(path.read_text())
    rows = [(int(d), s[variant]["diff_to_default"], s[variant]["diff_to_default_se"],
             s[variant]["miss_fraction"]) for d, s in data["summary"].items()]
    return sorted(rows), data["settings"]


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bo-compare", type=Path, default=RESULTS / "bo_compare.json")
    p.add_argument("--bo-variant", default="one_pass_new", help="variant of --bo-compare to show")
    p.add_argument("--bo-extra", type=Path, nargs="*", default=[RESULTS / "bo_levy12.json"])
    p.add_argument("--regression", type=Path, default=RESULTS / "one_pass_goal2_n50_shipped.json")
    p.add_argument("--regression-variant", default="default")
    p.add_argument("--out", type=Path, default=RESULTS / "where_it_helps.png")
    args = p.parse_args(argv)

    from matplotlib.figure import Figure

    bo = bo_rows(args.bo_compare, args.bo_variant, args.bo_extra)
    reg, settings = regression_rows(args.regression, args.regression_variant)
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[1.3, 1])
    y = range(len(bo))
    colors = ["C0" if m + 2 * se < 0 else "C3" if m - 2 * se > 0 else "0.6" for _, m, se in bo]
    left.barh(list(y), [m for _, m, _ in bo], xerr=[se for *_, se in bo], color=colors, capsize=2)
    left.set_yticks(list(y), [name for name, *_ in bo])
    left.axvline(0, color="k", linewidth=0.8)
    left.invert_yaxis()
    left.set_xlabel("final log10 regret, one pass − default (paired)")
    left.set_title("Bayesian optimization: blue better, red worse (2 s.e.)")
    ds = [str(d) for d, *_ in reg]
    right.bar(ds, [m for _, m, _, _ in reg], yerr=[se for _, _, se, _ in reg], color="C0", capsize=3)
    for i, (_, m, se, miss) in enumerate(reg):
        right.annotate(f"{100 * miss:.1f}%", (i, m - se), textcoords="offset points", xytext=(0, -11),
                       ha="center", fontsize=7)
    right.set_ylim(min(0.0, min(m - se for _, m, se, _ in reg)) - 0.06, max(0.02, max(m + se for _, m, se, _ in reg) + 0.02))
    right.axhline(0, color="k", linewidth=0.8)
    right.set_xlabel("input dimension d")
    right.set_ylabel("test NLL per point, one pass − default")
    right.set_title(f"regression on prior tasks, n = {settings.get('context', '?')}\n"
                    "(labels: tasks > 0.5 nats/pt worse)", fontsize=10)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
