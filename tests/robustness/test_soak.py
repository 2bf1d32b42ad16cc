"""A short version of ``benchmarks/soak.py``: an Ax loop on Hartmann6 without a failed trial."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from pfn_kernels.network import DecoderConfig, SpectralDecoder, save_decoder

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def soak():
    """``benchmarks/soak.py`` as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("soak", ROOT / "benchmarks" / "soak.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ax_strategy_available() -> bool:
    try:
        from pfn_kernels.ax import amortized_generation_strategy  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _ax_strategy_available(),
                    reason="pfn_kernels.ax.amortized_generation_strategy is not available")
def test_twenty_trial_soak_has_no_failures(soak, tmp_path):
    torch.manual_seed(0)
    path = save_decoder(SpectralDecoder(DecoderConfig(width=16, num_heads=2, num_layers=1)),
                        tmp_path / "tiny.safetensors")
    results = soak.run_soak(trials=20, num_sobol=5, decoder=str(path), checkpoints=(10, 20),
                            progress=False, optimizer_kwargs={"num_restarts": 2, "raw_samples": 32})
    assert results["failed_trials"] == 0, results["failures"]
    assert results["seconds_per_trial"]["MBM"]["count"] == 15
    assert [m["trial"] for m in results["memory"]] == [10, 20]
    assert all(m["ru_maxrss_mib"] > 0 for m in results["memory"])
    assert results["best_value"] < 0  # Hartmann6 is negative near its optima


@pytest.mark.slow
def test_soak_runs_axs_default_strategy_side_by_side(soak):
    results = soak.run_soak(trials=7, num_sobol=5, checkpoints=(7,), progress=False,
                            optimizer_kwargs={"num_restarts": 2, "raw_samples": 32}, strategy="default")
    assert results["failed_trials"] == 0, results["failures"]
    assert results["strategy"] == "default" and results["decoder"] is None
    assert results["seconds_per_trial"]["MBM"]["count"] == 2
    with pytest.raises(ValueError, match="strategy"):
        soak.make_client(5, None, 0, strategy="nonsense")


@pytest.mark.slow
def test_soak_on_another_problem_is_maximized(soak):
    """``--problem levy4``: the problem of pfn_kernels.experiments, maximized (optimum 0)."""
    results = soak.run_soak(trials=7, num_sobol=5, checkpoints=(7,), progress=False,
                            optimizer_kwargs={"num_restarts": 2, "raw_samples": 32}, problem="levy4")
    assert results["failed_trials"] == 0, results["failures"]
    assert results["problem"].startswith("levy4 (maximize)") and results["known_maximum"] == 0.0
    best = results["best_value"]
    assert best < 0 and results["simple_regret"] == pytest.approx(-best)  # Levy >= 0, negated
    assert max(results["best_by_trial"].values(), default=best) <= best
