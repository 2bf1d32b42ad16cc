"""The shipped weights decode exactly the pinned parameters of fixed tasks.

``tests/data/pinned_decoder.safetensors`` holds the tasks (raw model data included) and what the
library decoded from them when the file was written by ``tests/data/make_pinned.py``: a
refactoring must leave every value as it was. The pins are compared to float rounding, not bit for
bit, so that another CPU's float32 kernels do not fail the test (on the machine that wrote them
the values agree bit for bit): relative 1e-5 for the spectrum, :data:`PROFILED_RTOL` for what the
profile likelihood derives from it (outputscale, noise, constant mean). Those solve with
:math:`K + rI` at noise ratios down to :math:`10^{-6}`, which amplifies the network's float32
rounding (about 2e-6 relative between an Intel and an AMD CPU) up to a few 1e-3. A change meant to alter decoded values rewrites the
file (``python tests/data/make_pinned.py``) and says so.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

DATA = Path(__file__).parent / "data"
sys.path.insert(0, str(DATA))
import make_pinned  # noqa: E402

PINNED = load_file(str(DATA / "pinned_decoder.safetensors"))
#: Relative tolerance of the profiled fields (the spectrum's is 1e-5).
PROFILED_RTOL = 1e-2
PROFILED = ("outputscale", "noise", "mean")


@pytest.fixture(scope="module")
def decoded() -> dict[str, torch.Tensor]:
    inputs = {k.removeprefix("input."): v for k, v in PINNED.items() if k.startswith("input.")}
    assert set(inputs) == {f"{c}.{f}" for c in make_pinned.CASES for f in ("X", "y")} | {
        "model.X", "model.Y"}
    # One thread, as make_pinned.py writes them: float32 reductions split over threads round
    # differently, and a calibration choice on a near-tie can then flip.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return make_pinned.decode(inputs)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("case", [*make_pinned.CASES, "model"])
def test_decoded_parameters_are_pinned(decoded, case):
    fields = [k for k in decoded if k.startswith(f"{case}.")]
    assert len(fields) == (6 if case == "model" else 5)
    for key in fields:
        pinned = PINNED[f"output.{key}"]
        assert decoded[key].dtype == pinned.dtype and decoded[key].shape == pinned.shape, key
        rtol = PROFILED_RTOL if key.rsplit(".", 1)[-1] in PROFILED else 1e-5
        torch.testing.assert_close(decoded[key], pinned, rtol=rtol, atol=1e-7, msg=key)
