"""The BO demo: both surrogates run, the table and plots come out, regrets behave."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch

from pfn_kernels.experiments import demo, make_problem
from pfn_kernels.network import WeightsError


@pytest.fixture(scope="module")
def demo_run(tiny_decoder, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = demo.main(problem="branin", seeds=2, n_init=4, n_iter=2, out=out,
                       decoder=tiny_decoder, progress=False, num_restarts=2, raw_samples=32,
                       workers=1)
    return result, out


def test_demo_prints_a_table_with_both_methods(demo_run, capsys):
    result, _ = demo_run
    assert [row["method"] for row in result["table"]] == ["amortized", "default_stgp"]
    table = demo.format_table(result["table"])
    assert "AmortizedSingleTaskGP" in table and "SingleTaskGP (fit_gpytorch_mll)" in table
    for row in result["table"]:
        assert math.isfinite(row["final_regret_mean"]) and row["final_regret_mean"] >= 0
        assert row["fit_time_total_s"] > 0 and row["acq_time_total_s"] > 0


def test_demo_writes_plots_and_json(demo_run):
    result, out = demo_run
    for name in ("regret.png", "spectral_density.png", "structure.png", "results.json"):
        path = out / name
        assert path.is_file() and path.stat().st_size > 1000, name
    saved = json.loads((out / "results.json").read_text())
    assert saved["problem"] == "branin"
    assert set(saved["runs"]) == {"amortized", "default_stgp"}


def test_demo_regrets_are_finite_and_non_increasing(demo_run):
    result, _ = demo_run
    for method, runs in result["runs"].items():
        assert [r["seed"] for r in runs] == [0, 1]
        for run in runs:
            regret = run["regret"]
            assert len(regret) == 4 + 2
            assert all(math.isfinite(r) for r in regret), method
            assert all(b <= a for a, b in zip(regret, regret[1:])), method
            assert run["failures"] == [], method


def test_demo_final_model_has_a_decoded_kernel(demo_run):
    result, _ = demo_run
    kernel = result["final_model"].covar_module
    assert kernel.spectral_params.weights.shape == (2, 4)
    lines = demo.describe_kernel(result["final_model"])
    assert len(lines) == 2 and lines[0].strip().startswith("x1:")


def test_demo_missing_weights_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsError, match="No decoder weights"):
        demo.main(problem="branin", seeds=1, n_init=4, n_iter=1, out=tmp_path,
                  weights=tmp_path / "missing.safetensors", progress=False)


def test_demo_rejects_unknown_problem(tiny_decoder, tmp_path):
    with pytest.raises(ValueError, match="Unknown problem"):
        demo.main(problem="nope", decoder=tiny_decoder, out=tmp_path, progress=False)


def test_demo_without_matplotlib_says_how_to_install_it(tiny_decoder, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(demo.MissingDemoExtra, match=r'pip install -e "\.\[demo\]"'):
        demo.main(problem="branin", seeds=1, n_init=4, n_iter=1, out=tmp_path,
                  decoder=tiny_decoder, progress=False)
    assert not (tmp_path / "results.json").exists()


def points_inside(ax) -> int:
    """How many plotted points (line vertices, segment ends, markers) lie strictly inside the
    axes' view limits: data on an edge, like a spike on the axis, does not count."""
    import numpy as np

    pts = [np.column_stack([line.get_xdata(), line.get_ydata()]) for line in ax.get_lines()]
    for coll in ax.collections:
        if hasattr(coll, "get_segments"):
            pts += [np.asarray(seg) for seg in coll.get_segments() if len(seg)]
        pts.append(np.asarray(coll.get_offsets()).reshape(-1, 2))
    if not pts:
        return 0
    xy = np.concatenate(pts).astype(float)
    (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
    eps_x, eps_y = 1e-3 * (x1 - x0), 1e-3 * (y1 - y0)
    inside = ((xy[:, 0] > x0 + eps_x) & (xy[:, 0] < x1 - eps_x)
              & (xy[:, 1] > y0 + eps_y) & (xy[:, 1] < y1 - eps_y))
    return int(inside.sum())


def test_every_panel_of_the_demo_figures_shows_data(demo_run):
    pytest.importorskip("matplotlib")
    result, _ = demo_run
    params = result["final_model"].covar_module.spectral_params.detach()
    figures = [demo.spectra_figure(params, "tiny"),
               demo.regret_figure(result["runs"], make_problem("branin"), 4),
               demo.structure_figure(result["structure_result"])]
    for fig in figures:
        axes = [ax for ax in fig.axes if ax.get_visible()]
        assert axes
        for ax in axes:
            assert points_inside(ax) > 0, ax.get_title()


def test_zero_frequency_and_narrow_components_are_visible():
    """The case that drew empty panels: one narrow peak at frequency 0 with most of the weight."""
    pytest.importorskip("matplotlib")
    from pfn_kernels import SpectralParams

    one = torch.ones((), dtype=torch.float64)
    params = SpectralParams(
        weights=torch.tensor([[0.95, 0.05, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]], dtype=torch.float64),
        means=torch.tensor([[1e-6, 4.0, 0.0, 0.0], [1e-6, 0.0, 0.0, 0.0]], dtype=torch.float64),
        scales=torch.tensor([[1e-3, 0.5, 1.0, 1.0], [1e-6, 1.0, 1.0, 1.0]], dtype=torch.float64),
        outputscale=one, noise=0.01 * one,
    )
    fig = demo.spectra_figure(params)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 4  # spectrum and kernel factor per dimension
    for ax in axes:
        assert points_inside(ax) > 0, ax.get_title()
    batched = SpectralParams(weights=params.weights[None], means=params.means[None],
                             scales=params.scales[None], outputscale=one[None], noise=one[None])
    with pytest.raises(ValueError, match="unbatched"):
        demo.spectra_figure(batched)


def test_the_paired_comparison_and_its_verdict():
    from types import SimpleNamespace as R

    def runs(regrets):
        return [R(seed=i, final_regret=r) for i, r in enumerate(regrets)]

    better = demo.compare({"amortized": runs([0.01, 0.02, 0.01, 0.03]),
                           "default_stgp": runs([0.1, 0.3, 0.2, 0.2])})
    assert better["verdict"] == "the one pass is better" and better["amortized_lower"] == 4
    assert better["log10_regret_diff_mean"] < -0.9
    level = demo.compare({"amortized": runs([0.1, 0.01, 0.1]), "default_stgp": runs([0.01, 0.1, 0.1])})
    assert level["verdict"].startswith("level") and level["log10_regret_diff_mean"] == pytest.approx(0)
    worse = demo.compare({"amortized": runs([1.0, 2.0, 1.5]), "default_stgp": runs([0.1, 0.1, 0.2])})
    assert worse["verdict"] == "the default is better"


def test_the_table_has_no_times_and_the_times_table_has_them(demo_run):
    result, _ = demo_run
    table = demo.format_table(result["table"], result["comparison"])
    assert " s" not in table.replace(" seeds", "") and "paired" in table
    times = demo.format_times(result["table"])
    assert "ms" in times and "fit per step" in times


def test_runs_in_worker_processes_repeat_the_inline_runs(tiny_decoder, tmp_path):
    """Same seeds and one thread per run: a worker process computes the same trajectory."""
    kw = dict(problem="branin", seeds=1, n_init=4, n_iter=1, decoder=tiny_decoder, progress=False,
              num_restarts=2, raw_samples=16, structure=False)
    before = torch.get_num_threads()
    inline = demo.main(out=tmp_path / "a", workers=1, threads=1, **kw)
    assert torch.get_num_threads() == before  # the caller's thread count is restored
    pooled = demo.main(out=tmp_path / "b", workers=2, **kw)
    for method in demo.DEMO_METHODS:
        assert inline["runs"][method][0]["Y"] == pooled["runs"][method][0]["Y"]
    assert demo.format_table(inline["table"], inline["comparison"]) == demo.format_table(
        pooled["table"], pooled["comparison"])


def test_structure_discovery_with_the_shipped_decoder_finds_both_peaks():
    """The case the demo prints: the one pass recovers the two true frequencies (3 and 11
    cycles per unit) and extrapolates better than the default."""
    found = demo.structure_discovery()
    p = found["params"]
    strong = [m for w, m in zip(p.weights[0].tolist(), p.means[0].tolist()) if w > 0.2]
    for true in demo.STRUCTURE_TRUTH["means"]:
        assert any(abs(m - true) < 0.1 * true for m in strong), (true, strong)
    assert found["nll"]["amortized"] < found["nll"]["default_stgp"] - 0.2, found["nll"]
