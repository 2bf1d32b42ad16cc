"""Write ``catastrophic_tasks.safetensors``: prior tasks on which the one pass once missed badly.

The tasks are from ``benchmarks/one_pass.py`` (256 tasks per d of ``PriorConfig()``, generator
seed ``7373 + d``, n = 50 context and 100 target points): with the inference stages of the first
evidence check (RBF alternatives only, no noise prior) their test NLL was 0.56-1.7 nats per point
above BoTorch's default ``SingleTaskGP``'s, a *catastrophic miss*. The file stores the data
(so that a later change of the prior leaves the test's tasks as they are) and the default's test
NLL recorded by that benchmark (``benchmarks/results/one_pass.json``). Run once; rerun only to
add cases.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from pfn_kernels.prior import PriorConfig, sample_tasks

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
#: (d, task index) of the cases: two-scale and Matérn-like spectra read as peaks (d = 2), noise
#: calibrated to the floor (d = 4).
CASES = [(2, 77), (2, 187), (2, 253), (4, 69), (4, 144)]


def main() -> None:
    reference = json.loads((ROOT / "benchmarks" / "results" / "one_pass.json").read_text())
    tensors = {}
    for d in sorted({d for d, _ in CASES}):
        gen = torch.Generator().manual_seed(7373 + d)
        batch = sample_tasks(PriorConfig(), 256, gen, num_dims=d, num_context=50, num_targets=100,
                             dtype=torch.float64)
        for dd, i in CASES:
            if dd != d:
                continue
            key = f"d{d}_task{i}"
            for field in ("x_context", "y_context", "x_target", "y_target"):
                tensors[f"{key}.{field}"] = getattr(batch, field)[i].contiguous()
            nll = reference["per_task"][str(d)]["default_stgp"][i]
            tensors[f"{key}.default_nll"] = torch.tensor(nll, dtype=torch.float64)
    save_file(tensors, str(HERE / "catastrophic_tasks.safetensors"))
    print(f"wrote {HERE / 'catastrophic_tasks.safetensors'} ({len(CASES)} tasks)")


if __name__ == "__main__":
    main()
