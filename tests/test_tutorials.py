"""Every tutorial runs end to end in smoke mode (``SMOKE_TEST=1``), as BoTorch's tutorials do.

Each script in ``tutorials/`` runs in a fresh interpreter with a non-interactive matplotlib
backend and its figures written to a temporary directory. Tutorials that use the pretrained
decoder are skipped when the package has no shipped weights.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pfn_kernels.network.weights import weights_path

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))
#: Tutorials that load the shipped decoder (``SpectralDecoder.pretrained()``).
NEED_WEIGHTS = {
    "01_botorch_closed_loop.py",
    "02_ax_generation_strategy.py",
    "03_spectral_kernel_discovery.py",
}
#: Smoke runs take a few to twenty seconds; the limit only stops a hung script (raise it with
#: ``TUTORIAL_TIMEOUT_S`` on a heavily loaded machine).
TIMEOUT_S = float(os.environ.get("TUTORIAL_TIMEOUT_S", "600"))


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def test_tutorials_are_found():
    names = {p.name for p in TUTORIALS}
    assert {"01_botorch_closed_loop.py", "02_ax_generation_strategy.py",
            "03_spectral_kernel_discovery.py", "04_train_your_own_decoder.py"} <= names
    assert NEED_WEIGHTS <= names


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs_in_smoke_mode(path: Path, tmp_path: Path):
    if path.name in NEED_WEIGHTS and not weights_path("default").is_file():
        pytest.skip(f"{path.name} needs the pretrained decoder; no shipped weights at "
                    f"{weights_path('default')}")
    env = {
        **os.environ,
        "SMOKE_TEST": "1",
        "MPLBACKEND": "Agg",
        "TUTORIAL_OUTPUT_DIR": str(tmp_path / "figures"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    start = time.perf_counter()
    cpu_start = _children_cpu_seconds()
    proc = subprocess.run(
        [sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=TIMEOUT_S,
    )
    elapsed = time.perf_counter() - start
    print(f"{path.name}: {elapsed:.1f} s wall, {_children_cpu_seconds() - cpu_start:.1f} s CPU")
    assert proc.returncode == 0, (
        f"{path.name} failed after {elapsed:.1f} s\n--- stdout ---\n{proc.stdout[-4000:]}"
        f"\n--- stderr ---\n{proc.stderr[-4000:]}"
    )
    figures = list((tmp_path / "figures").glob("*.png"))
    assert figures, f"{path.name} saved no figure"
    # Nothing written next to the script or into the working directory besides the figures.
    assert {p.name for p in tmp_path.iterdir()} <= {"figures"}


def test_tutorials_are_jupytext_percent_scripts():
    jupytext = pytest.importorskip("jupytext")
    for path in TUTORIALS:
        notebook = jupytext.read(path)
        kinds = {cell.cell_type for cell in notebook.cells}
        assert kinds == {"markdown", "code"}, path.name
        assert notebook.cells[0].cell_type == "markdown", path.name
        assert notebook.cells[0].source.startswith("## "), path.name


def test_render_writes_one_notebook_per_tutorial(tmp_path: Path):
    pytest.importorskip("jupytext")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tutorials" / "render.py"), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert sorted(p.stem for p in tmp_path.glob("*.ipynb")) == [p.stem for p in TUTORIALS]
