"""Render the tutorial scripts to Jupyter notebooks with jupytext.

    python tutorials/render.py                     # -> tutorials/notebooks/*.ipynb
    python tutorials/render.py --out /tmp/nb       # elsewhere
    python tutorials/render.py --execute           # also run them (needs nbclient and ipykernel)

The same for one file, with jupytext's command line:
``jupytext --to notebook tutorials/01_botorch_closed_loop.py``. The notebooks are build
outputs; the ``.py`` scripts (jupytext percent format) are the sources.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "notebooks", help="output folder")
    parser.add_argument("--execute", action="store_true",
                        help="execute the notebooks while rendering (jupytext --execute)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    for script in sorted(HERE.glob("[0-9][0-9]_*.py")):
        target = args.out / f"{script.stem}.ipynb"
        command = [sys.executable, "-m", "jupytext", "--to", "notebook", "--output", str(target)]
        if args.execute:
            command.append("--execute")
        subprocess.run([*command, str(script)], check=True)
        written.append(target)
    return written


if __name__ == "__main__":
    main()
