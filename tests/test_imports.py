"""What importing the package pulls in: the core imports neither Ax nor matplotlib.

Ax comes in only through :mod:`pfn_kernels.ax`; matplotlib (the ``demo`` extra) only when the demo
or a benchmark draws a plot. Each check runs in a fresh interpreter, so that modules imported by
other tests do not hide an import.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_after(code: str, watch: tuple[str, ...] = ("ax", "matplotlib")) -> set[str]:
    """The top-level modules among ``watch`` loaded after running ``code``."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    probe = (
        f"{code}\n"
        "import sys\n"
        f"print('loaded:', *sorted(m for m in {watch!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    last = result.stdout.splitlines()[-1].split()  # after anything ``code`` printed (--help)
    assert last[0] == "loaded:", result.stdout
    return set(last[1:])


def test_core_imports_neither_ax_nor_matplotlib():
    code = (
        "import pfn_kernels\n"
        f"assert pfn_kernels.__file__.startswith({str(ROOT)!r}), pfn_kernels.__file__\n"
        "import pfn_kernels.fit, pfn_kernels.models\n"
        "from pfn_kernels import AmortizedSingleTaskGP, fit_amortized\n"
    )
    assert imported_after(code) == set()


CLI_HELP = "from pfn_kernels import cli\ntry:\n    cli.main({argv!r})\nexcept SystemExit:\n    pass"


@pytest.mark.parametrize("code", [
    "import pfn_kernels.experiments",
    "import pfn_kernels.experiments.demo",
    CLI_HELP.format(argv=["--help"]),
    CLI_HELP.format(argv=["demo", "--help"]),
], ids=["experiments", "demo-module", "cli-help", "cli-demo-help"])
def test_harness_and_cli_help_do_not_import_matplotlib(code):
    assert "matplotlib" not in imported_after(code)


HEAVY = ("torch", "gpytorch", "botorch", "ax", "matplotlib")


@pytest.mark.parametrize("code", [
    "import pfn_kernels",
    CLI_HELP.format(argv=["--help"]),
    CLI_HELP.format(argv=["--version"]),
    CLI_HELP.format(argv=["demo", "--help"]),
    CLI_HELP.format(argv=["train", "--help"]),
], ids=["package", "cli-help", "cli-version", "cli-demo-help", "cli-train-help"])
def test_the_package_and_cli_help_import_nothing_heavy(code):
    """``pfn-kernels --help`` answers at once: the package's names load on first use."""
    assert imported_after(code, HEAVY) == set()


def test_the_first_name_used_loads_the_core_and_registers_pathwise_sampling():
    code = (
        "import pfn_kernels\n"
        "from pfn_kernels import SpectralParams\n"
        "from botorch.sampling.pathwise.features.generators import GenKernelFeatures\n"
        "assert (pfn_kernels.AmortizedSpectralKernel,) in GenKernelFeatures.funcs\n"
        "assert 'fit_amortized' in dir(pfn_kernels) and 'AmortizedSingleTaskGP' in pfn_kernels.__dict__\n"
    )
    assert imported_after(code, ("botorch", "gpytorch")) == {"botorch", "gpytorch"}


def test_subpackages_are_attributes_loaded_on_use():
    code = (
        "import pfn_kernels\n"
        "assert 'sampling' in dir(pfn_kernels) and '__file__' in dir(pfn_kernels)\n"
        "assert callable(pfn_kernels.sampling.sample_spectral_frequencies)\n"
        "import pfn_kernels.experiments as e\n"
        "assert e.demo.DEMO_PROBLEMS[0] == 'hartmann6'\n"
    )
    assert imported_after(code, ("botorch",)) == {"botorch"}


def test_unknown_names_are_attribute_errors():
    import pfn_kernels
    import pfn_kernels.experiments

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        pfn_kernels.nope  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        pfn_kernels.experiments.nope  # noqa: B018


def test_ax_comes_in_through_pfn_kernels_ax():
    assert "ax" in imported_after("import pfn_kernels.ax")
