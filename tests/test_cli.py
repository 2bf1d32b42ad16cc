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
    from pfn_kernels import demo

    calls = []
    monkeypatch.setattr(demo, "main", lambda **kwargs: calls.append(kwargs))
    assert cli.main(["demo", "--seed", "5", "--num-tasks", "2"]) == 0
    assert calls == [{"seed": 5, "num_tasks": 2}]
