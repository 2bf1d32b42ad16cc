r"""How fast the amortized kernel evaluates, alone and inside an acquisition optimization.

Usage:
    python benchmarks/kernel_speed.py                 # d = 6, n up to 200, 2 threads
    python benchmarks/kernel_speed.py --quick         # a smoke run

Once the decoder has run, a BO step's time is the acquisition optimization, and that is kernel
evaluations: :math:`O(n m d Q)` exponentials and cosines for the spectral mixture against one
distance matrix and one exponential for an RBF. Three implementations are timed:

- ``plain``: the formula written with broadcasting tensor operations and autograd (the library's
  evaluation before :mod:`pfn_kernels.kernels.tiled_kernel`);
- ``tiled``: cache-sized tiles with closed-form gradients, every batch member's rows evaluated
  (the library's evaluation before shared rows);
- ``library``: today's evaluation, where rows every batch member shares (the pruned baseline of
  each restart) are evaluated once;
- ``rbf``: BoTorch's default ``SingleTaskGP`` kernel (an ARD RBF), for reference.

Part 1 times the kernel alone (median of ``--repeats``) at the shapes an acquisition optimization
produces, with d = 6 and Q = 4 (one zero-frequency component per dimension, as decoded spectra
have). Part 2 times ``botorch.optim.optimize_acqf`` with ``qLogNoisyExpectedImprovement`` (pruned
baseline) and Ax's default budget (20 restarts, 1024 raw samples) on Hartmann6 data like a long
BO run's: half Sobol points, half clustered around a local optimum (which keeps many baseline
points after pruning). Results go to ``--out`` (JSON) and ``--plot`` (PNG).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence
from unittest import mock

import torch
from torch import Tensor
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, uninstalled

from benchmarks._common import (  # noqa: E402
    add_run_arguments, apply_preset, machine_metadata, median_seconds, set_threads, write_json,
)

D = 6
#: Raw samples scored in one batch (BoTorch evaluates its raw samples in batches).
RAW_BATCH = 256
#: A local optimum of Hartmann6 (value about -3.20) where long BO runs gather points, and the
#: spread of the points gathered there (pruning then keeps a few dozen baseline points, as in
#: the soak benchmark's late trials).
LOCAL_OPTIMUM = (0.40, 0.88, 0.80, 0.57, 0.12, 0.04)
CLUSTER_SD = 0.01
PRESETS = {
    "full": {"sizes": [50, 100, 150, 200], "repeats": 5, "kernel_sizes": [80, 150, 300]},
    "quick": {"sizes": [30], "repeats": 1, "kernel_sizes": [40]},
}


def plain_covariance(x1, x2, weights, means, scales, outputscale=None, diag=False, **_: Any):  # noqa: ANN001, ANN201
    """The product spectral mixture with broadcasting tensor operations (autograd backward)."""
    w, mu, s = (t.to(x1) for t in (weights, means, scales))
    out = None
    for j in range(x1.shape[-1]):
        if diag:
            tau = (x1[..., :, j] - x2[..., :, j]).unsqueeze(-1)
            wj, mj, sj = w[..., None, j, :], mu[..., None, j, :], s[..., None, j, :]
        else:
            tau = (x1[..., :, None, j] - x2[..., None, :, j]).unsqueeze(-1)
            wj, mj, sj = (t[..., None, None, j, :] for t in (w, mu, s))
        f = (wj * torch.exp(-2 * math.pi**2 * (tau * sj) ** 2) * torch.cos(2 * math.pi * mj * tau)).sum(-1)
        out = f if out is None else out * f
    if outputscale is not None:
        os = outputscale.to(x1)
        out = out * (os[..., None] if diag else os[..., None, None])
    return out


def spectral_kernel():
    """An :class:`~pfn_kernels.AmortizedSpectralKernel` with a decoded-looking spectrum."""
    from pfn_kernels import AmortizedSpectralKernel, SpectralParams

    g = torch.Generator().manual_seed(0)
    weights = torch.tensor([0.9, 0.07, 0.02, 0.01], dtype=torch.float64).expand(D, 4)
    means = torch.cat([torch.zeros(D, 1, dtype=torch.float64),
                       0.2 + 2.5 * torch.rand(D, 3, generator=g, dtype=torch.float64)], dim=-1)
    scales = 0.05 + 0.5 * torch.rand(D, 4, generator=g, dtype=torch.float64)
    kernel = AmortizedSpectralKernel().double()
    kernel.set_spectral_params(SpectralParams(weights, means, scales, torch.tensor(1.0, dtype=torch.float64),
                                              torch.tensor(1e-3, dtype=torch.float64)))
    return kernel


def rbf_kernel():
    from botorch.models import SingleTaskGP

    X = torch.rand(4, D, dtype=torch.float64)
    return SingleTaskGP(X, X[:, :1]).covar_module


def rows_per_member() -> contextlib.AbstractContextManager:
    """No shared-rows shortcut inside the block: every batch member's rows evaluated."""
    import pfn_kernels.kernels.covariance as module

    return mock.patch.object(module, "_shared_heads", lambda *args: None)


def plain_evaluation() -> contextlib.AbstractContextManager:
    """The kernel module evaluates with :func:`plain_covariance` inside the block."""
    import pfn_kernels.kernels.amortized_spectral_kernel as module

    return mock.patch.object(module, "spectral_mixture_covariance", plain_covariance)


def kernel_timings(sizes: Sequence[int], repeats: int) -> list[dict[str, Any]]:
    """Kernel-only timings (milliseconds) at acquisition-like shapes, and the largest difference
    between the plain and the tiled evaluation's outputs (values, or gradients)."""
    spectral, rbf = spectral_kernel(), rbf_kernel()
    rows = []
    for n in sizes:
        nb = max(1, n // 3)  # pruned baseline points
        g = torch.Generator().manual_seed(n)
        train = torch.rand(n, D, generator=g, dtype=torch.float64)
        raw = torch.rand(RAW_BATCH, nb + 1, D, generator=g, dtype=torch.float64)
        restarts = torch.rand(20, nb + 1, D, generator=g, dtype=torch.float64)

        # as qLogNEI asks: the same nb baseline rows in every restart, then one candidate
        shared = torch.cat([restarts[:1, :nb].expand(20, nb, D), restarts[:, nb:]], dim=-2)

        def with_grad(k: Any, x: Tensor = restarts, train: Tensor = train) -> Tensor:
            x = x.clone().requires_grad_()
            value = k(x, train.expand(20, -1, -1)).to_dense().sum()
            return torch.autograd.grad(value, x)[0]

        cases: list[tuple[str, Callable[[Any], Tensor]]] = [
            (f"K(train, train), n = {n}", lambda k, train=train: k(train).to_dense()),
            (f"raw samples: {RAW_BATCH} x ({nb + 1}) x {n}, no gradient",
             lambda k, raw=raw, train=train: k(raw, train).to_dense()),
            (f"20 restarts: 20 x ({nb + 1}) x {n}, value and gradient", with_grad),
            (f"20 restarts, shared baseline: 20 x ({nb} + 1) x {n}, value and gradient",
             lambda k, x=shared, train=train: with_grad(k, x, train)),
        ]
        for label, fn in cases:
            row: dict[str, Any] = {"case": label, "n": n}
            with torch.no_grad() if "gradient" not in label or "no gradient" in label else contextlib.nullcontext():
                with plain_evaluation():
                    row["plain_ms"] = 1000 * median_seconds(lambda: fn(spectral), repeats)[0]
                    plain = fn(spectral)
                with rows_per_member():
                    row["tiled_ms"] = 1000 * median_seconds(lambda: fn(spectral), repeats)[0]
                row["library_ms"] = 1000 * median_seconds(lambda: fn(spectral), repeats)[0]
                row["max_abs_difference"] = float((fn(spectral) - plain).abs().max())
                row["rbf_ms"] = 1000 * median_seconds(lambda: fn(rbf), repeats)[0]
            rows.append(row)
    return rows


def clustered_hartmann(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """Half Sobol points, half clustered (:data:`CLUSTER_SD`) around :data:`LOCAL_OPTIMUM`;
    y = -Hartmann6."""
    from botorch.test_functions import Hartmann

    sobol = torch.quasirandom.SobolEngine(D, scramble=True, seed=seed).draw(n - n // 2).double()
    g = torch.Generator().manual_seed(seed)
    centre = torch.tensor(LOCAL_OPTIMUM, dtype=torch.float64)
    cluster = (centre + CLUSTER_SD * torch.randn(n // 2, D, generator=g, dtype=torch.float64)).clamp(0, 1)
    X = torch.cat([sobol, cluster])
    return X, Hartmann(dim=D, negate=True)(X).unsqueeze(-1)


def acquisition_timings(sizes: Sequence[int], seed: int, progress: bool) -> list[dict[str, Any]]:
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement
    from botorch.optim import optimize_acqf

    from pfn_kernels.experiments import fit_surrogate

    bounds = torch.stack([torch.zeros(D), torch.ones(D)]).double()
    rows = []
    runs = [("amortized, plain", "amortized", "plain"), ("amortized, tiled", "amortized", "tiled"),
            ("amortized", "amortized", "library"), ("default STGP", "default_stgp", "library")]
    for n in tqdm(sizes, desc="n", disable=not progress):
        X, Y = clustered_hartmann(n, seed)
        row: dict[str, Any] = {"n": n}
        for label, method, evaluation_name in runs:
            model, _ = fit_surrogate(method, X, Y)
            acq = qLogNoisyExpectedImprovement(model, X_baseline=X, prune_baseline=True)
            calls = [0]
            forward = acq.forward

            def counted(X: Tensor, forward: Callable = forward) -> Tensor:
                calls[0] += 1
                return forward(X)

            acq.forward = counted  # count the acquisition evaluations (L-BFGS-B paths differ)
            torch.manual_seed(seed)
            start = time.perf_counter()
            evaluation = {"plain": plain_evaluation, "tiled": rows_per_member}.get(
                evaluation_name, contextlib.nullcontext)
            with evaluation():
                optimize_acqf(acq, bounds, q=1, num_restarts=20, raw_samples=1024)
            seconds = time.perf_counter() - start
            row[label] = {"seconds": seconds, "evaluations": calls[0],
                          "ms_per_evaluation": 1000 * seconds / max(calls[0], 1),
                          "baseline": int(acq.X_baseline.shape[0])}
        rows.append(row)
    return rows


def plot(kernel_rows: list[dict[str, Any]], acq_rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    grad_rows = [r for r in kernel_rows if "shared baseline" in r["case"]]
    ns = [r["n"] for r in grad_rows]
    for key, label in (("plain_ms", "amortized, plain"), ("tiled_ms", "amortized, tiled"),
                       ("library_ms", "amortized (shared rows once)"), ("rbf_ms", "RBF")):
        ax1.plot(ns, [r[key] for r in grad_rows], "o-", label=label)
    ax1.set(xlabel="training points n (shared baseline n/3 + 1 candidate per restart)", ylabel="ms",
            title="kernel value + gradient, 20 restarts (d = 6)", yscale="log")
    ax1.legend()
    for label in ("amortized, plain", "amortized, tiled", "amortized", "default STGP"):
        ax2.plot([r["n"] for r in acq_rows], [r[label]["seconds"] for r in acq_rows], "o-", label=label)
    ax2.set(xlabel="observations n (Hartmann6, half clustered)", ylabel="seconds",
            title="optimize_acqf, qLogNEI, 20 restarts, 1024 raw samples", yscale="log")
    ax2.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a smoke run")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="n of the acquisition runs")
    p.add_argument("--kernel-sizes", type=int, nargs="+", default=None, help="n of the kernel timings")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per kernel case")
    p.add_argument("--seed", type=int, default=0)
    add_run_arguments(p, "kernel_speed")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    apply_preset(args, PRESETS)
    set_threads(args.threads)
    kernel_rows = kernel_timings(args.kernel_sizes, args.repeats)
    acq_rows = acquisition_timings(args.sizes, args.seed, not args.no_progress)
    out = {"meta": {**machine_metadata(args.threads), "settings": vars(args)},
           "kernel": kernel_rows, "acquisition": acq_rows}
    write_json(out, args.out)
    if not args.no_plot:
        plot(kernel_rows, acq_rows, args.plot)
    print("| case | plain (ms) | tiled (ms) | library (ms) | RBF (ms) |\n|---|---|---|---|---|")
    for r in kernel_rows:
        print(f"| {r['case']} | {r['plain_ms']:.2f} | {r['tiled_ms']:.2f} | {r['library_ms']:.2f} "
              f"| {r['rbf_ms']:.2f} |")
    labels = ("amortized, plain", "amortized, tiled", "amortized", "default STGP")
    print("\n| n | baseline kept (amortized / default) | " + " | ".join(labels) + " |\n|---|---|---|---|---|---|")
    for r in acq_rows:
        cells = " | ".join(f"{r[k]['seconds']:.2f} s ({r[k]['evaluations']} evals, "
                           f"{r[k]['ms_per_evaluation']:.1f} ms each)" for k in labels)
        print(f"| {r['n']} | {r['amortized']['baseline']} / {r['default STGP']['baseline']} | {cells} |")
    return out


if __name__ == "__main__":
    main()
