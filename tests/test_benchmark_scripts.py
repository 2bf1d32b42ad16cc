"""Smoke tests of benchmarks/bo.py and benchmarks/fit_speed.py at tiny sizes."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import types
from pathlib import Path

import pytest
import torch

from pfn_kernels.network import DecoderConfig, SpectralDecoder, save_decoder

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str) -> types.ModuleType:
    path = ROOT / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmarks.{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    decoder = SpectralDecoder(DecoderConfig(width=16, num_heads=2, num_layers=1, num_bins=8))
    return save_decoder(decoder, tmp_path_factory.mktemp("w") / "tiny.safetensors")


def bo_args(weights: Path, out: Path, *extra: str) -> list[str]:
    return ["--weights", str(weights), "--problems", "branin", "--methods", "amortized",
            "default_stgp", "--seeds", "1", "--n-init", "3", "--n-iter", "1",
            "--num-restarts", "2", "--raw-samples", "16", "--out", str(out / "bo.json"),
            "--plot", str(out / "bo.png"), "--no-progress", *extra]


def test_bo_script_writes_json_plot_and_summary(weights, tmp_path, capsys):
    bo = load_script("bo")
    result = bo.main(bo_args(weights, tmp_path))
    saved = json.loads((tmp_path / "bo.json").read_text())
    assert (tmp_path / "bo.png").stat().st_size > 1000
    assert {(r["method"], r["seed"]) for r in saved["runs"]} == {
        ("amortized", 0), ("default_stgp", 0)}
    for run in saved["runs"]:
        assert len(run["regret"]) == 4 and all(math.isfinite(x) for x in run["regret"])
    final = saved["summary"]["final_regret"]["branin"]
    assert set(final) == {"amortized", "default_stgp"}
    assert saved["meta"]["weights"]["sha256"] and saved["meta"]["settings"]["n_iter"] == 1
    assert "| branin |" in capsys.readouterr().out
    assert result["summary"]["timing"]["amortized"]["runs"] == 1

    # --resume keeps finished runs and runs nothing new.
    again = bo.main(bo_args(weights, tmp_path, "--resume", "--no-plot"))
    assert [r["wall_time"] for r in again["runs"]] == [r["wall_time"] for r in result["runs"]]


def test_bo_script_resume_adds_a_method_on_fewer_seeds(weights, tmp_path, capsys):
    """--resume keeps every finished run; methods with other seeds are compared on shared ones."""
    bo = load_script("bo")
    first = bo.main(bo_args(weights, tmp_path, "--methods", "default_stgp", "--seeds", "2",
                            "--no-plot"))
    assert {r["seed"] for r in first["runs"]} == {0, 1}
    result = bo.main(bo_args(weights, tmp_path, "--methods", "amortized", "--resume"))
    assert sorted((r["method"], r["seed"]) for r in result["runs"]) == [
        ("amortized", 0), ("default_stgp", 0), ("default_stgp", 1)]
    final = result["summary"]["final_regret"]["branin"]
    assert final["amortized"]["runs"] == 1 and final["default_stgp"]["runs"] == 2
    common = result["summary"]["common_seeds"]["branin"]
    assert common["seeds"] == [0]
    seed0 = next(r for r in result["runs"] if r["method"] == "default_stgp" and r["seed"] == 0)
    assert common["default_stgp"]["final_regret_mean"] == pytest.approx(seed0["regret"][-1])
    out = capsys.readouterr().out
    assert "(n = 1)" in out and "seeds all methods of a problem share" in out
    assert (tmp_path / "bo.png").stat().st_size > 1000
    assert [i["runs_added"] for i in result["meta"]["invocations"]] == [2, 1]
    assert result["meta"]["invocations"][1]["args"]["methods"] == ["amortized"]
    assert set(result["meta"]["methods"]) == {"amortized", "default_stgp"}

    # Other settings in the same file are refused instead of being overwritten.
    with pytest.raises(SystemExit, match="other settings"):
        bo.main(bo_args(weights, tmp_path, "--n-iter", "2", "--resume"))


def test_bo_script_ray_path(weights, tmp_path, monkeypatch):
    """--ray submits every run as a remote task (a stand-in module replaces Ray here)."""
    bo = load_script("bo")
    submitted = []
    fake = types.ModuleType("ray")
    fake.init = lambda **kwargs: None

    def remote(**options):
        def wrap(fn):
            return types.SimpleNamespace(remote=lambda job: submitted.append(job) or fn(job))
        return wrap

    fake.remote = remote
    fake.wait = lambda refs, num_returns=1: (refs[:1], refs[1:])
    fake.get = lambda ref: ref
    monkeypatch.setitem(sys.modules, "ray", fake)
    result = bo.main(bo_args(weights, tmp_path, "--ray", "--no-plot"))
    assert len(submitted) == 2 and len(result["runs"]) == 2


def test_bo_script_ray_missing_is_a_clear_error(weights, tmp_path, monkeypatch):
    bo = load_script("bo")
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(SystemExit, match="--ray needs Ray"):
        bo.main(bo_args(weights, tmp_path, "--ray"))


def test_fit_speed_script(weights, tmp_path, capsys):
    fit_speed = load_script("fit_speed")
    result = fit_speed.main([
        "--weights", str(weights), "--sizes", "10", "20", "--dims", "1", "--methods", "amortized",
        "default_stgp", "--repeats", "1", "--no-ax", "--out", str(tmp_path / "fs.json"),
        "--plot", str(tmp_path / "fs.png"), "--no-progress",
    ])
    saved = json.loads((tmp_path / "fs.json").read_text())
    assert (tmp_path / "fs.png").stat().st_size > 1000
    assert [(r["n"], r["d"]) for r in saved["fit"]] == [(10, 1), (20, 1)]
    row = saved["fit"][0]
    assert row["methods"]["amortized"]["median_s"] > 0
    assert row["ratio_to_amortized"]["default_stgp"] > 0
    assert saved["ax"] == {"skipped": "--no-ax"}
    assert "skipped" in capsys.readouterr().out
    assert result["fit"][1]["n"] == 20


def test_pooling_ablation_script(weights, tmp_path, capsys):
    torch.manual_seed(1)
    mean = SpectralDecoder(DecoderConfig(width=16, num_heads=2, num_layers=1, num_bins=8, pooling="mean"))
    mean_path = save_decoder(mean, tmp_path / "mean.safetensors")
    ablation = load_script("pooling_ablation")
    out = ablation.main(["--mqa", str(weights), "--mean", str(mean_path), "--dims", "1", "--tasks", "16",
                         "--chunk", "16", "--context", "10", "--targets", "10", "--threads", "1",
                         "--out", str(tmp_path / "a.json"), "--plot", str(tmp_path / "a.png"), "--no-progress"])
    saved = json.loads((tmp_path / "a.json").read_text())
    rows = saved["results"]["1"]
    assert sum(r["tasks"] for r in rows.values()) == 16 and set(rows) <= {"1", "2", "3", "4"}
    for row in rows.values():
        assert math.isfinite(row["mqa"]["gap"]) and math.isfinite(row["mean"]["gap"])
    assert (tmp_path / "a.png").stat().st_size > 1000
    assert out["meta"]["decoders"]["mean"]["parameters"] < out["meta"]["decoders"]["mqa"]["parameters"]
    # the two arguments must be the two poolings
    with pytest.raises(SystemExit):
        ablation.main(["--mqa", str(mean_path), "--mean", str(mean_path), "--dims", "1", "--tasks", "4",
                       "--out", str(tmp_path / "b.json"), "--plot", str(tmp_path / "b.png"), "--no-progress"])
    assert "| 1 |" in capsys.readouterr().out


def test_calibration_script(weights, tmp_path, capsys):
    calibration = load_script("calibration")
    out = calibration.main(["--weights", str(weights), "--dims", "1", "2", "--tasks", "4", "--context", "10",
                            "--targets", "5", "--sizes", "12", "--repeats", "1", "--threads", "1",
                            "--out", str(tmp_path / "c.json"), "--no-progress"])
    saved = json.loads((tmp_path / "c.json").read_text())
    for row in saved["quality"].values():
        assert math.isfinite(row["raw"]["gap"]) and math.isfinite(row["calibrated"]["gap"])
    assert saved["timing"][0]["n"] == 12 and saved["timing"][0]["calibrated_ms"] > 0
    assert out["quality"]["1"]["tasks"] == 4
    assert "| 2 | 4 |" in capsys.readouterr().out


def test_regression_script_runs(weights, tmp_path):
    regression = load_script("regression")
    out = regression.main(["--weights", str(weights), "--quick", "--datasets", "prior", "--dims", "1",
                           "--tasks", "2", "--methods", "amortized", "default_stgp", "--threads", "1",
                           "--out", str(tmp_path / "r.json"), "--no-progress"])
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved and out
    assert (tmp_path / "r.png").is_file()  # the figure goes next to --out, not over the repo's


def test_kernel_speed_script(tmp_path, capsys):
    kernel_speed = load_script("kernel_speed")
    out = kernel_speed.main(["--quick", "--sizes", "16", "--kernel-sizes", "12", "--threads", "1",
                             "--out", str(tmp_path / "k.json"), "--plot", str(tmp_path / "k.png"),
                             "--no-progress"])
    saved = json.loads((tmp_path / "k.json").read_text())
    assert len(saved["kernel"]) == 4 and (tmp_path / "k.png").is_file()
    for row in saved["kernel"]:  # the library's evaluation agrees with the plain formula
        assert row["max_abs_difference"] < 1e-8 and row["tiled_ms"] > 0 and row["library_ms"] > 0
    assert out["acquisition"][0]["default STGP"]["seconds"] > 0
    assert out["acquisition"][0]["amortized"]["evaluations"] > 0
    assert "| 16 |" in capsys.readouterr().out


def test_large_context_script(weights, tmp_path, capsys):
    """Beyond DEFAULT_MAX_CONTEXT the network reads a subsample; each cell runs in its own
    process and reports time, memory and the quality against the oracle."""
    large_context = load_script("large_context")
    out = large_context.main(["--weights", str(weights), "--sizes", "30", "530", "--dims", "2",
                              "--tasks", "2", "--repeats", "1", "--quality-max-n", "530",
                              "--out", str(tmp_path / "l.json"), "--plot", str(tmp_path / "l.png"),
                              "--no-progress"])
    saved = json.loads((tmp_path / "l.json").read_text())
    assert [r["network_reads"] for r in saved["summary"]] == [30, 512]
    for row in out["summary"]:
        assert row["seconds"] > 0 and row["peak_rss_increase_mib"] >= 0
        assert math.isfinite(row["one_pass_gap"]) and math.isfinite(row["subsample_256_gap"])
    assert (tmp_path / "l.png").is_file() and "| 530 | 2 |" in capsys.readouterr().out


def test_attention_chunks_script(tmp_path, capsys, monkeypatch):
    """Both chunk settings are timed (with the default restored after every call), in chunks
    here: one dimension's scores exceed the chunk size set for the test."""
    from pfn_kernels.network import attention

    monkeypatch.setattr(attention, "SCORE_CHUNK_BYTES", 1)
    chunks = load_script("attention_chunks")
    out = chunks.main(["--cells", "30", "3", "--train-cells", "2", "20", "2", "--repeats", "1", "--threads", "1",
                       "--out", str(tmp_path / "a.json"), "--no-progress"])
    saved = json.loads((tmp_path / "a.json").read_text())
    assert saved["meta"]["score_chunk_bytes"] == 1 and attention.SCORE_CHUNK_BYTES == 1
    for what in ("network", "pass"):
        row = out["rows"][0][what]
        assert row["whole_ms"] > 0 and row["chunks_ms"] > 0 and row["ratio"] > 0
    assert out["training"][0]["train"]["ratio"] > 0
    printed = capsys.readouterr().out
    assert "| 30 | 3 |" in printed and "| 2 | 20 | 2 |" in printed


def test_one_pass_script_with_other_weights(weights, tmp_path, capsys):
    one_pass = load_script("one_pass")
    out = one_pass.main(["--weights", str(weights), "--dims", "1", "--tasks", "2", "--context", "12",
                         "--targets", "5", "--variants", "default", "periodogram", "--threads", "1",
                         "--out", str(tmp_path / "o.json"), "--no-plot", "--no-progress"])
    saved = json.loads((tmp_path / "o.json").read_text())
    assert saved["weights"] == str(weights)
    assert len(out["per_task"]["1"]["default"]) == 2 and len(out["per_task"]["1"]["default_stgp"]) == 2
    assert "| 1 | periodogram |" in capsys.readouterr().out


def test_cli_speed_script(tmp_path, capsys):
    cli_speed = load_script("cli_speed")
    assert cli_speed.main(["--repeats", "1", "--out", str(tmp_path / "c.json"), "--no-progress"]) == 0
    saved = json.loads((tmp_path / "c.json").read_text())
    assert set(saved["commands"]) == set(cli_speed.commands())
    assert all(r["min_s"] > 0 for r in saved["commands"].values())
    assert "| `pfn-kernels --help` |" in capsys.readouterr().out


def test_summary_figure_script_reads_the_recorded_results(tmp_path):
    pytest.importorskip("matplotlib")
    summary_figure = load_script("summary_figure")
    out = summary_figure.main(["--out", str(tmp_path / "w.png")])
    assert out.is_file() and out.stat().st_size > 10_000
    rows = summary_figure.bo_rows(ROOT / "benchmarks/results/bo_compare.json", "one_pass_new",
                                  [ROOT / "benchmarks/results/bo_levy12.json"])
    assert {"hartmann6", "levy12"} <= {name for name, *_ in rows}
    levy12 = next(r for r in rows if r[0] == "levy12")  # recomputed from bo_levy12.json's runs
    assert levy12[1] == pytest.approx(0.22, abs=0.005) and levy12[2] == pytest.approx(0.11, abs=0.005)


def test_acq_eval_speed_script(tmp_path, capsys):
    acq_eval_speed = load_script("acq_eval_speed")
    out = acq_eval_speed.main(["--sizes", "12", "--dims", "2", "--q", "1", "2", "--repeats", "2",
                               "--out", str(tmp_path / "a.json"), "--no-progress",
                               "--inference", '{"sparsify": true, "sparsity_margin": 10.0}'])
    assert [(r["n"], r["d"], r["q"]) for r in out["rows"]] == [(12, 2, 1), (12, 2, 2)]
    assert out["inference"]["sparsify"] and all(r["rbf_dims"] == 2 for r in out["rows"])  # all collapsed
    assert all(r["amortized_ms"] > 0 and r["default_stgp_ms"] > 0 for r in out["rows"])
    assert json.loads((tmp_path / "a.json").read_text())["rows"][0]["ratio"] > 0
    assert "| 12 | 2 | 2 |" in capsys.readouterr().out


def test_step_cost_figure_script_totals_and_medians(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    step_cost_figure = load_script("step_cost_figure")
    run = lambda method, seed, fit, acq: {"method": method, "problem": "branin", "seed": seed,  # noqa: E731
                                          "n_init": 5, "fit_times": fit, "acq_times": acq}
    runs = [run("amortized", 0, [0.1, 0.1], [1.0, 3.0]), run("amortized", 1, [0.3, 0.2], [2.0, 1.0]),
            run("amortized", 2, [0.2, 0.3], [3.0, 2.0]),
            run("default_stgp", 0, [1.0, 1.0], [1.0, 1.0]), run("default_stgp", 1, [1.0, 1.0], [1.0, 1.0])]
    path = tmp_path / "bo.json"
    path.write_text(json.dumps({"runs": runs}))
    costs = step_cost_figure.main(["--runs", str(path), "--out", str(tmp_path / "s.png")])
    assert costs["amortized"]["observations"] == [5, 6]
    assert costs["amortized"]["fit_median_s"] == pytest.approx([0.2, 0.2])
    assert costs["amortized"]["acq_median_s"] == pytest.approx([2.0, 2.0])
    assert costs["amortized"]["acq_total_s"] == pytest.approx(12.0)
    assert costs["default_stgp"]["fit_total_s"] == pytest.approx(4.0)
    # totals 13.2 s against 8 s: ratios 1.65 (total) and 3.00 (acquisition)
    assert "| amortized | 1.2 | 12.0 | 13.2 | 1.65 | 3.00 |" in capsys.readouterr().out
    assert (tmp_path / "s.png").stat().st_size > 10_000
