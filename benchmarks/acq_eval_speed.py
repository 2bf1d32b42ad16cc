"""Time of one acquisition evaluation (value and gradient), amortized GP vs BoTorch's default.

Usage:
    python benchmarks/acq_eval_speed.py --threads 1 --out benchmarks/results/acq_eval_speed.json

For each (n, d): n Sobol points of Levy(d) (negated, inputs in the unit cube), both models fitted
(``fit_surrogate``: the one pass, and ``SingleTaskGP`` by ``fit_gpytorch_mll``), then
``qLogNoisyExpectedImprovement`` (``X_baseline`` = the training points, BoTorch's defaults) is
evaluated with its gradient at a batch of ``--restarts`` random candidate sets of q points, as
one L-BFGS-B step of ``optimize_acqf`` does: median over ``--repeats`` evaluations after a
warm-up. The ratio amortized / default is the acquisition-speed goal's figure (at most 1.2).
``--tiles-only`` turns off the broadcast path of small kernels, for a before/after comparison;
``--inference '{"sparsify": false}'`` sets the one pass's
:class:`~pfn_kernels.inference.InferenceConfig` options (e.g. dense spectra, as before the
sparse-spectrum stage). Each row records how many dimensions the one pass collapsed to an RBF
factor.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from benchmarks._common import add_run_arguments, machine_metadata, median_seconds, set_threads, write_json  # noqa: E402
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


def evaluation_seconds(model: Any, X: torch.Tensor, q: int, restarts: int, repeats: int, seed: int) -> float:
    """Median seconds of one qLogNEI value-and-gradient evaluation at `(restarts, q, d)`."""
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement

    acq = qLogNoisyExpectedImprovement(model, X_baseline=X)
    g = torch.Generator().manual_seed(seed)
    Z = torch.rand(restarts, q, X.shape[-1], generator=g, dtype=X.dtype).requires_grad_()

    def step() -> None:
        Z.grad = None
        acq(Z).sum().backward()

    return median_seconds(step, repeats, warmup=3)[0]


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
    p.add_argument("--inference", type=json.loads, default=None, metavar="JSON",
                   help="InferenceConfig options of the one pass, as JSON (default: the defaults)")
    add_run_arguments(p, "acq_eval_speed", threads=1, plot=False)
    args = p.parse_args(argv)
    set_threads(args.threads)
    if args.tiles_only:
        import pfn_kernels.kernels.covariance as covariance

        covariance.SMALL_ELEMENTS = 0
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
            for m, model in models.items():
                row[f"{m}_ms"] = 1000 * evaluation_seconds(model, X, q, args.restarts, args.repeats, args.seed)
            row["ratio"] = row["amortized_ms"] / row["default_stgp_ms"]
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
