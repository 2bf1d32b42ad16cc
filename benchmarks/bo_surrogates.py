r"""The surrogates on BO designs: what the one pass and the default fit differ in, where BO differs.

Usage:
    python benchmarks/bo_surrogates.py --threads 1
    python benchmarks/bo_surrogates.py --problems levy4 --sizes 30 --design bo_full.json

For every problem of ``--problems`` and every seed of the default ``SingleTaskGP``'s runs in the
``--design`` files (``bo.py`` results), the first n points of its BO trajectory (n in
``--sizes``), mapped to the unit cube, are fitted by BoTorch's default ``SingleTaskGP``
(``fit_gpytorch_mll``) and by the one pass (``AmortizedSingleTaskGP``, ``InferenceConfig()``),
through :func:`pfn_kernels.experiments.fit_surrogate`. Reported per (problem, n, method), as
medians over the seeds, in the standardized units of the n targets:

- the noise variance, the outputscale (1 for the default, which has none), the geometric mean
  over dimensions of the effective lengthscale (:math:`1 / (2\pi\sqrt{\sum_q w_q(s_q^2 +
  \mu_q^2)})` for the spectral kernel), the constant mean;
- the per-point test NLL and RMSE of the noisy predictive on 500 uniform points (``global``) and
  on 300 points around the best observed point (Gaussian, std 0.05 per coordinate, clipped to
  the cube; ``near_best``);
- with ``--acquisition``, how rough the acquisition surface is for the BO benchmark's optimizer
  budget: qLogNoisyExpectedImprovement (as in ``bo.py``) maximized by ``optimize_acqf`` with the
  benchmark's budget (4 restarts, 128 raw samples) and with 8x that (32, 1024), same seed;
  ``acq_gap`` is the difference of the best log-acquisition values found (large: the small
  budget misses the surface's maximum).

The designs are the default's own, so both models see the same data: a difference in BO that is
not a difference in these scores lies in how the model guides the search away from the data
(scale, mean), not in fit quality. Written: ``benchmarks/results/bo_surrogates.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, uninstalled

import torch  # noqa: E402
from botorch.utils.transforms import normalize  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from benchmarks._common import RESULTS, add_run_arguments, machine_metadata, set_threads, write_json  # noqa: E402
from benchmarks.decoder_quality import predictive_scores  # noqa: E402
from pfn_kernels.experiments import fit_surrogate  # noqa: E402
from pfn_kernels.experiments.problems import make_problem  # noqa: E402

METHODS = ("default_stgp", "amortized")
FIELDS = ("noise", "outputscale", "lengthscale", "constant_mean",
          "nll_global", "rmse_global", "nll_near_best", "rmse_near_best")
#: optimize_acqf budgets (num_restarts, raw_samples): the BO benchmark's, and 8x.
BUDGETS = ((4, 128), (32, 1024))


def acquisition_gap(model: Any, X: torch.Tensor, seed: int) -> float:
    """Best log-qLogNEI found with the large budget minus with the benchmark's budget."""
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement
    from botorch.optim import optimize_acqf

    acqf = qLogNoisyExpectedImprovement(model, X_baseline=X, prune_baseline=True)
    bounds = torch.stack([torch.zeros(X.shape[1]), torch.ones(X.shape[1])]).to(X)
    values = []
    for restarts, raw in BUDGETS:
        torch.manual_seed(seed)
        _, value = optimize_acqf(acqf, bounds=bounds, q=1, num_restarts=restarts, raw_samples=raw)
        values.append(float(value))
    return values[1] - values[0]


def hyperparameters(model: Any, method: str) -> tuple[float, float, float, float]:
    """Noise, outputscale, geometric-mean effective lengthscale, constant mean (standardized)."""
    kernel = model.covar_module
    if method == "default_stgp":
        outputscale, ls = 1.0, kernel.lengthscale.detach().reshape(-1)
    else:
        p = kernel.spectral_params
        outputscale = float(p.outputscale)
        ls = (1 / (2 * math.pi * (p.weights * (p.scales**2 + p.means**2)).sum(-1).sqrt())).reshape(-1)
    return (model.likelihood.noise.mean().item(), outputscale, ls.log().mean().exp().item(),
            model.mean_module.constant.item())


def case_rows(run: dict[str, Any], n: int, acquisition: bool = False) -> dict[str, list[float]]:
    """Both methods' values of :data:`FIELDS` on the first n points of one default run."""
    problem = make_problem(run["problem"], int(run["seed"]))
    X = normalize(torch.tensor(run["X"], dtype=torch.float64), problem.bounds)[:n]
    Y = torch.tensor(run["Y"], dtype=torch.float64)[:n, None]
    g = torch.Generator().manual_seed(1)
    x_global = torch.rand(500, X.shape[1], generator=g, dtype=torch.float64)
    best = X[Y[:, 0].argmax()]
    x_near = (best + 0.05 * torch.randn(300, X.shape[1], generator=g, dtype=torch.float64)).clamp(0, 1)
    y_global, y_near = problem.evaluate_unit(x_global), problem.evaluate_unit(x_near)
    sd = Y.std().item()
    out = {}
    for method in METHODS:
        model, _ = fit_surrogate(method, X, Y)
        nll_g, mse_g, _ = predictive_scores(model, X, Y[:, 0], x_global, y_global)
        nll_n, mse_n, _ = predictive_scores(model, X, Y[:, 0], x_near, y_near)
        # standardized units: NLL - log(sd), RMSE / sd
        out[method] = [*hyperparameters(model, method), nll_g - math.log(sd), math.sqrt(mse_g) / sd,
                       nll_n - math.log(sd), math.sqrt(mse_n) / sd]
        if acquisition:
            out[method].append(acquisition_gap(model, X, int(run["seed"])))
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--problems", nargs="+", default=["cosine8", "levy4", "dixonprice4", "hartmann6"])
    p.add_argument("--sizes", type=int, nargs="+", default=[30, 50])
    p.add_argument("--design", nargs="+", default=["bo_full.json", "bo_full_extra.json"],
                   help="bo.py result files (under benchmarks/results/) holding default_stgp runs")
    p.add_argument("--acquisition", action="store_true",
                   help="also the acquisition gap between the benchmark's and an 8x optimizer budget")
    add_run_arguments(p, "bo_surrogates", threads=1, plot=False)
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    set_threads(args.threads)
    runs = [r for f in args.design for r in json.loads((RESULTS / f).read_text())["runs"]
            if r["method"] == "default_stgp" and r["problem"] in args.problems]
    values: dict[tuple[str, int, str], list[list[float]]] = {}
    jobs = [(r, n) for r in runs for n in args.sizes]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for run, n in tqdm(jobs, desc="designs", disable=args.no_progress):
            for method, row in case_rows(run, n, args.acquisition).items():
                values.setdefault((run["problem"], n, method), []).append(row)
    fields = FIELDS + (("acq_gap",) if args.acquisition else ())
    rows = []
    for (problem, n, method), vals in sorted(values.items()):
        medians = [statistics.median(v[i] for v in vals) for i in range(len(fields))]
        rows.append({"problem": problem, "n": n, "method": method, "seeds": len(vals),
                     **dict(zip(fields, medians)), "per_seed": vals})
    result = {"meta": {"machine": machine_metadata(args.threads), "args": vars(args) | {"out": str(args.out)},
                       "fields": list(fields)}, "rows": rows}
    write_json(result, args.out)
    print("| problem | n | method | " + " | ".join(fields) + " |")
    print("|---" * (len(fields) + 3) + "|")
    for r in rows:
        print(f"| {r['problem']} | {r['n']} | {r['method']} | " + " | ".join(f"{r[f]:.3g}" for f in fields) + " |")
    print(f"\nwrote {args.out}")
    return result


if __name__ == "__main__":
    main()
