"""Write ``pinned_decoder.safetensors``: fixed tasks and what the shipped weights decode from them.

``tests/test_pinned.py`` checks that the library still decodes exactly these parameters. Rerun
this script (``python tests/data/make_pinned.py``) only for a change meant to alter the decoded
values, and say so in the commit message.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from pfn_kernels.prior import PriorConfig, sample_tasks

OUT = Path(__file__).with_name("pinned_decoder.safetensors")

#: name -> (d, n, batch, realizations, dtype)
CASES = {
    "d1_n30": (1, 30, 4, None, torch.float32),
    "d2_n30": (2, 30, 4, None, torch.float64),
    "d4_n50": (4, 50, 3, None, torch.float32),
    "d8_n40": (8, 40, 2, None, torch.float64),
    "d3_n300": (3, 300, 1, None, torch.float64),  # beyond the context: the seeded subsample
    "d2_n40_m3": (2, 40, 2, 3, torch.float32),  # three realizations sharing one kernel
    "d10_n30": (10, 30, 1, None, torch.float64),  # beyond the trained dimensions
}


def tasks() -> dict[str, torch.Tensor]:
    """The inputs: X (B, n, d) and standardized y (B, n[, M]) of every case, from the prior."""
    out = {}
    for i, (name, (d, n, b, m, dtype)) in enumerate(CASES.items()):
        cfg = PriorConfig(max_dims=max(8, d), max_context=max(256, n))
        batch = sample_tasks(cfg, b, torch.Generator().manual_seed(100 + i), num_dims=d,
                             num_context=n, num_targets=1, num_realizations=m, dtype=dtype)
        out[f"{name}.X"], out[f"{name}.y"] = batch.x_context, batch.y_context
    # A BoTorch model on raw (unnormalized, unstandardized) data: the fit_amortized path.
    g = torch.Generator().manual_seed(7)
    X = 10 * torch.rand(25, 3, generator=g, dtype=torch.float64) - 5
    Y = torch.stack([torch.sin(X[:, 0]) + 0.1 * X[:, 1] ** 2, X[:, 2].cos() * X[:, 0]], -1)
    out["model.X"], out["model.Y"] = X, 3.0 + 20 * Y
    return out


def decode(data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What the library decodes from ``data`` today (keys ``<case>.<field>``)."""
    import warnings

    from pfn_kernels import AmortizedSingleTaskGP, decode_spectral_params, fit_amortized

    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in CASES:
            with torch.no_grad():
                p = decode_spectral_params(data[f"{name}.X"], data[f"{name}.y"])
            for field in ("weights", "means", "scales", "outputscale", "noise"):
                out[f"{name}.{field}"] = getattr(p, field)
        model = fit_amortized(AmortizedSingleTaskGP(data["model.X"], data["model.Y"]))
        p = model.covar_module.spectral_params
        for field in ("weights", "means", "scales", "outputscale"):
            out[f"model.{field}"] = getattr(p, field).detach()
        out["model.noise"] = model.likelihood.noise.detach()
        out["model.mean"] = model.mean_module.constant.detach()
    return out


if __name__ == "__main__":
    torch.set_num_threads(1)
    data = tasks()
    save_file({**{f"input.{k}": v.contiguous() for k, v in data.items()},
               **{f"output.{k}": v.contiguous() for k, v in decode(data).items()}}, str(OUT))
    print(f"wrote {OUT}")
