"""The ``pfn-kernels`` command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pfn_kernels import cli

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_help_via_subprocess():
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-m", "pfn_kernels.cli", "--help"],
        check=False,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: pfn-kernels" in result.stdout
    assert "demo" in result.stdout


def test_missing_command_is_an_error(capsys):
    with pytest.raises(SystemExit) as excinfo:
        cli.main([])
    assert excinfo.value.code == 2
    assert "required" in capsys.readouterr().err


def test_demo_command_dispatches(monkeypatch):
    from pfn_kernels.experiments import demo

    calls = []
    monkeypatch.setattr(demo, "main", lambda **kwargs: calls.append(kwargs))
    argv = ["demo", "--problem", "branin", "--seeds", "2", "--n-init", "5", "--n-iter", "3",
            "--out", "somewhere", "--seed", "7", "--weights", "w.safetensors", "--no-progress",
            "--workers", "1", "--threads", "2"]
    assert cli.main(argv) == 0
    assert calls == [{
        "problem": "branin", "seeds": 2, "n_init": 5, "n_iter": 3, "out": "somewhere",
        "seed": 7, "weights": "w.safetensors", "progress": False, "workers": 1, "threads": 2,
    }]


def test_demo_command_defaults(monkeypatch):
    from pfn_kernels.experiments import demo

    calls = []
    monkeypatch.setattr(demo, "main", lambda **kwargs: calls.append(kwargs))
    assert cli.main(["demo"]) == 0
    assert calls == [{
        "problem": "hartmann6", "seeds": 12, "n_init": 10, "n_iter": 30, "out": "demo_output",
        "seed": 0, "weights": None, "progress": True, "workers": None, "threads": 1,
    }]


@pytest.mark.parametrize("argv", [
    ["demo", "--problem", "nope"],
    ["demo", "--seeds", "0"],
    ["demo", "--n-init", "1"],
])
def test_demo_command_rejects_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as excinfo:
        cli.main(argv)
    assert excinfo.value.code == 2


def test_demo_command_reports_missing_weights(tmp_path, capsys):
    missing = tmp_path / "missing.safetensors"
    code = cli.main(["demo", "--problem", "branin", "--seeds", "1", "--n-init", "4",
                     "--n-iter", "1", "--out", str(tmp_path), "--weights", str(missing),
                     "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err
    assert "No decoder weights" in err and "--weights PATH" in err


def test_demo_command_without_matplotlib_says_how_to_install_it(tmp_path, monkeypatch,
                                                                capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    code = cli.main(["demo", "--problem", "branin", "--seeds", "1", "--n-init", "4",
                     "--n-iter", "1", "--out", str(tmp_path), "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err
    assert "matplotlib" in err
    assert 'pip install -e ".[demo]"' in err and 'pip install "pfn_kernels[demo]"' in err


def test_help_texts_are_plain_text(capsys):
    """No reST markup (double backquotes, roles, a closing ``::``) in the help screens."""
    for argv in (["--help"], ["demo", "--help"], ["train", "--help"]):
        with pytest.raises(SystemExit):
            cli.main(argv)
        out = capsys.readouterr().out
        assert "usage: pfn-kernels" in out
        assert "``" not in out and ":class:`" not in out and "::\n" not in out, out
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    assert "resumes from <out>/checkpoint.pt" in capsys.readouterr().out


def test_plain_text_of_roles_and_literals():
    text = "See :class:`~a.b.Kernel`, :func:`a.fit`, :mod:`the prior <a.prior>` and ``x``::"
    assert cli.plain_text(text) == "See Kernel, a.fit, the prior and x:"
