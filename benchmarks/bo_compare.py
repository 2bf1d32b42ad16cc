r"""Paired comparison of BO runs against BoTorch's default, across result files of ``bo.py``.

Usage:
    python benchmarks/bo_compare.py benchmarks/results/bo_full.json \
        benchmarks/results/bo_full_extra.json \
        --variant staged=benchmarks/results/bo_full_staged.json:amortized

Each positional file contributes its runs (method names as they are); ``--variant NAME=FILE:METHOD``
adds the runs of METHOD in FILE under NAME (e.g. the same method run with other inference
options). For every problem and method, the final :math:`\log_{10}` simple regret (floored at
``REGRET_FLOOR``) is paired with ``--reference``'s on the same seeds: mean paired difference
(negative: lower regret than the reference) with its standard error, and how many of the problems
a method is better on (lower mean) and no worse on (mean at most the reference's). Runs must share
``n_init`` and ``n_iter``. Written: a JSON (``--out``) and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, uninstalled

from benchmarks._common import mean_se, write_json  # noqa: E402
from pfn_kernels.experiments import REGRET_FLOOR  # noqa: E402


def load_runs(files: Sequence[str], variants: Sequence[str]) -> dict[tuple[str, str], dict[int, float]]:
    """(problem, method) -> seed -> final log10 regret; checks that all runs share one length."""
    out: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    lengths = set()
    sources = [(f, None, None) for f in files]
    for spec in variants:
        name, rest = spec.split("=", 1)
        path, method = rest.rsplit(":", 1)
        sources.append((path, method, name))
    for path, method, name in sources:
        for run in json.loads(Path(path).read_text())["runs"]:
            if method is not None and run["method"] != method:
                continue
            lengths.add((run["n_init"], run["n_iter"]))
            final = math.log10(max(run["regret"][-1], REGRET_FLOOR))
            out[(run["problem"], name or run["method"])][run["seed"]] = final
    if len(lengths) > 1:
        raise SystemExit(f"runs of different lengths (n_init, n_iter): {sorted(lengths)}")
    return out


def compare(runs: dict[tuple[str, str], dict[int, float]], reference: str) -> dict[str, Any]:
    problems = sorted({p for p, _ in runs})
    methods = sorted({m for _, m in runs if m != reference})
    table: dict[str, dict[str, Any]] = {}
    counts = {m: {"problems": 0, "better": 0, "no_worse": 0} for m in methods}
    for p in problems:
        ref = runs.get((p, reference), {})
        row = {reference: {"mean": mean_se(list(ref.values()))[0], "seeds": len(ref)}}
        for m in methods:
            mine = runs.get((p, m), {})
            seeds = sorted(set(mine) & set(ref))
            if not seeds:
                continue
            diff, diff_se = mean_se([mine[s] - ref[s] for s in seeds])
            mean = mean_se([mine[s] for s in seeds])[0]
            ref_mean = mean_se([ref[s] for s in seeds])[0]
            row[m] = {"mean": mean, "reference_mean": ref_mean, "paired_diff": diff,
                      "paired_diff_se": diff_se, "seeds": len(seeds)}
            counts[m]["problems"] += 1
            counts[m]["better"] += int(mean < ref_mean)
            counts[m]["no_worse"] += int(mean <= ref_mean)
        table[p] = row
    return {"reference": reference, "problems": table, "counts": counts}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", help="bo.py result files")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=FILE:METHOD")
    p.add_argument("--reference", default="default_stgp")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bo_compare.json")
    args = p.parse_args(argv)
    result = compare(load_runs(args.files, args.variant), args.reference)
    write_json(result, args.out)
    methods = sorted(result["counts"])
    print(f"final log10 regret, paired difference to {args.reference} (mean ± s.e. over seeds)\n")
    print("| problem | " + " | ".join(methods) + " |")
    print("|---|" + "---|" * len(methods))
    for prob, row in result["problems"].items():
        cells = []
        for m in methods:
            r = row.get(m)
            cells.append("" if r is None else f"{r['paired_diff']:+.2f} ± {r['paired_diff_se']:.2f} (n={r['seeds']})")
        print(f"| {prob} | " + " | ".join(cells) + " |")
    print("\n| method | problems | better | no worse |\n|---|---|---|---|")
    for m, c in result["counts"].items():
        print(f"| {m} | {c['problems']} | {c['better']} | {c['no_worse']} |")
    return result


if __name__ == "__main__":
    main()
