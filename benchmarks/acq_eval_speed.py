"""Time of one acquisition evaluation (value and gradient), amortized GP vs BoTorch's default.

Usage:
    python benchmarks/acq_eval_speed.py --threads 1 --out benchmarks/results/acq_eval_speed.json

For each (n, d): n Sobol points of Levy(d) (negated, inputs in the unit cube), both models fitted
(``fit_surrogate``: the one pass, and ``SingleTaskGP`` by ``fit_gpytorch_mll``), then
``qLogNoisyExpectedImprovement`` (``X_baseline`` = the training points, BoTorch's defaults) is
evaluated with its gradient with respect to the candidates (``torch.autograd.grad``, as
``optimize_acqf`` takes it: no hyperparameter gradients) at a batch of ``--restarts`` random
candidate sets of q points, as one L-BFGS-B step of ``optimize_acqf`` does: median over
``--repeats`` evaluations after a warm-up, the two models timed in alternation (one evaluation
of each per round). The ratio amortized / default (the median of the per-round ratios) is the
acquisition-speed goal's figure (at most 1.2).
``--tiles-only`` turns off the broadcast path of small kernels and ``--small-elements N`` sets its
size limit, for before/after comparisons;
``--inference '{"sparsify": false}'`` sets the one pass's
:class:`~pfn_kernels.inference.InferenceConfig` options (e.g. dense spectra, as before the
sparse-spectrum stage). Each row records how many dimensions the one pass collapsed to an RBF
factor.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from benchmarks._common import (  # noqa: E402
    add_run_arguments,
    interleaved_seconds,
    machine_metadata,
    set_threads,
    write_json,
)
from pfn_kernels.experiments import fit_surrogate  # noqa: E402
from pfn_kernels.inference import InferenceConfig  # noqa: E402
from pfn_kernels.inference.sparsity import is_collapsed  # noqa: E402

METHODS = ("amortized", "default_stgp")


def training_data(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n scrambled Sobol points of the unit cube and y = -Levy(d) at them."""
    from botorch.test_functions import Levy

    levy = Levy(dim=d, negate=True).to(torch.float64)
    X = torch.quasirandom.SobolEngine(d, scramble=True, seed=seed).draw(n).to(torch.float64)
    lo, hi = levy.bounds
    return X, levy(lo + (hi - lo) * X).unsqueeze(-1)


def evaluation_step(model: Any, X: torch.Tensor, q: int, restarts: int, seed: int) -> Callable[[], Any]:
    """One qLogNEI value-and-gradient evaluation at `(restarts, q, d)` random candidates."""
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement

    acq = qLogNoisyExpectedImprovement(model, X_baseline=X)
    g = torch.Generator().manual_seed(seed)
    Z = torch.rand(restarts, q, X.shape[-1], generator=g, dtype=X.dtype).requires_grad_()

    def step() -> None:  # the candidates' gradient alone, as optimize_acqf asks for it
        torch.autograd.grad(acq(Z).sum(), Z)

    return step


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200, 300], help="n")
    p.add_argument("--dims", type=int, nargs="+", default=[2, 4, 6, 8], help="d")
    p.add_argument("--q", type=int, nargs="+", default=[1, 4], help="candidates per set")
    p.add_argument("--restarts", type=int, default=4, help="candidate sets per evaluation (4)")
    p.add_argument("--repeats", type=int, default=100, help="timed evaluations per case (100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiles-only", action="store_true",
                   help="no broadcast path for small kernels (the evaluation before it), for comparison")
    p.add_argument("--small-elements", type=int, default=None, metavar="N",
                   help="size limit of the broadcast path (covariance.SMALL_ELEMENTS), for comparisons")
    p.add_argument("--inference", type=json.loads, default=None, metavar="JSON",
                   help="InferenceConfig options of the one pass, as JSON (default: the defaults)")
    add_run_arguments(p, "acq_eval_speed", threads=1, plot=False)
    args = p.parse_args(argv)
    set_threads(args.threads)
    if args.tiles_only:
        import pfn_kernels.kernels.covariance as covariance

        covariance.SMALL_ELEMENTS = 0
    elif args.small_elements is not None:
        import pfn_kernels.kernels.covariance as covariance

        covariance.SMALL_ELEMENTS = args.small_elements
    inference = None if args.inference is None else InferenceConfig.from_dict(args.inference)
    rows = []
    cases = [(n, d) for n in args.sizes for d in args.dims]
    for n, d in tqdm(cases, desc="(n, d)", disable=args.no_progress):
        X, Y = training_data(n, d, args.seed)
        models = {m: fit_surrogate(m, X, Y, seed=args.seed, inference=inference)[0] for m in METHODS}
        params = models["amortized"].covar_module.spectral_params
        rbf_dims = int(is_collapsed(params.weights, params.means).sum())
        for q in args.q:
            row: dict[str, Any] = {"n": n, "d": d, "q": q, "restarts": args.restarts, "rbf_dims": rbf_dims}
            steps = {m: evaluation_step(model, X, q, args.restarts, args.seed) for m, model in models.items()}
            times = interleaved_seconds(steps, args.repeats, warmup=3)  # both models alike
            for m, ts in times.items():
                row[f"{m}_ms"] = 1e3 * statistics.median(ts)
            # the median of the per-round ratios: the figure least sensitive to drift
            row["ratio"] = statistics.median(a / b for a, b in zip(times["amortized"], times["default_stgp"]))
            rows.append(row)
    result = {"meta": machine_metadata(args.threads), "settings": vars(args) | {"out": str(args.out)},
              "inference": (inference or InferenceConfig()).to_dict(),
              "rows": rows}
    write_json(result, args.out)
    print("| n | d | q | RBF dims | amortized (ms) | default (ms) | ratio |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']} | {r['d']} | {r['q']} | {r['rbf_dims']} | {r['amortized_ms']:.2f} | "
              f"{r['default_stgp_ms']:.2f} | {r['ratio']:.2f} |")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
