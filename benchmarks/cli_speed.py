"""Start-up time of the command line and of the library's imports, each in a fresh interpreter.

Usage:
    python benchmarks/cli_speed.py --out benchmarks/results/cli_speed.json

Each command runs ``--repeats`` times in a new process (after one untimed run, which warms the
file cache); the JSON holds the median, min and max wall time per command. ``pfn-kernels --help``
and its subcommands' help import neither torch nor BoTorch; ``import pfn_kernels.models`` is the
core library (torch, GPyTorch, BoTorch) for comparison.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from tqdm import tqdm  # noqa: E402

from benchmarks._common import RESULTS, machine_metadata, write_json  # noqa: E402


def commands() -> dict[str, list[str]]:
    """The timed commands by name; the console script if installed, else ``python -m``."""
    cli = [shutil.which("pfn-kernels")] if shutil.which("pfn-kernels") else [sys.executable, "-m", "pfn_kernels.cli"]
    return {
        "pfn-kernels --help": [*cli, "--help"],
        "pfn-kernels demo --help": [*cli, "demo", "--help"],
        "pfn-kernels train --help": [*cli, "train", "--help"],
        "python -c 'import pfn_kernels'": [sys.executable, "-c", "import pfn_kernels"],
        "python -c 'import pfn_kernels.models'": [sys.executable, "-c", "import pfn_kernels.models"],
    }


def time_command(argv: list[str], repeats: int) -> dict[str, float]:
    subprocess.run(argv, capture_output=True, check=True)  # warm the file cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=10, help="timed runs per command (10)")
    p.add_argument("--out", type=Path, default=RESULTS / "cli_speed.json", help="results JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    rows = {}
    for name, cmd in tqdm(commands().items(), desc="commands", disable=args.no_progress):
        rows[name] = time_command(cmd, args.repeats)
    write_json({"meta": {**machine_metadata(1), "repeats": args.repeats}, "commands": rows}, args.out)
    print("| command | median (s) | min (s) | max (s) |\n|---|---|---|---|")
    for name, r in rows.items():
        print(f"| `{name}` | {r['median_s']:.2f} | {r['min_s']:.2f} | {r['max_s']:.2f} |")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
