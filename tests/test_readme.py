"""The README: every path it names exists, and its Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def named_paths() -> list[str]:
    """Repository paths the README names: in backticks, in the architecture diagram, and the
    file names each Layout bullet lists after its folder."""
    paths = set(re.findall(r"`((?:pfn_kernels|tests|benchmarks|tutorials)/[\w./-]*)`", README))
    diagram = README.split("## Architecture", 1)[1].split("```", 2)[1]
    paths |= set(re.findall(r"((?:pfn_kernels)/[\w./-]+)", diagram))
    layout = README.split("## Layout", 1)[1].split("\n## ", 1)[0]
    for bullet in re.split(r"\n- ", layout):
        folders = re.findall(r"`(pfn_kernels/[\w/]+/)`", bullet)
        for name in re.findall(r"`([\w]+\.py)`", bullet):
            if folders:
                paths.add(folders[0] + name)
    return sorted(paths)


@pytest.mark.parametrize("path", named_paths())
def test_every_named_path_exists(path):
    assert (ROOT / path).exists(), f"README.md names {path}, which does not exist"


def python_blocks() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    return [b for b in blocks if "my_function" not in b]  # the Ax loop needs the user's function


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_python_examples_run(index):
    exec(compile(python_blocks()[index], f"README.md python block {index}", "exec"), {})
