"""Train a spectral decoder: ``python -m pfn_kernels.train --config cfg.json --out runs/x``.

Runs on CPU or CUDA, resumes from ``<out>/checkpoint.pt`` when present, and under ``torchrun``
trains data-parallel (gloo on CPU, nccl on GPU)::

    python -m pfn_kernels.train --config pfn_kernels/configs/default.json --out runs/default --seed 0
    torchrun --nproc_per_node 2 -m pfn_kernels.train --steps 20 --out runs/ddp
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pfn_kernels.cli import plain_text

if TYPE_CHECKING:
    from pfn_kernels.training.trainer import TrainConfig

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pfn-kernels train", description=plain_text(__doc__),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="JSON file of TrainConfig fields (default: built-in defaults)")
    p.add_argument("--out", type=Path, required=True, help="run directory (checkpoints, weights, logs)")
    p.add_argument("--seed", type=int, help="override the config's seed")
    p.add_argument("--steps", type=int, help="override the number of steps")
    p.add_argument("--max-seconds", type=float, help="stop (with a checkpoint) after this wall time")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--device", help="'cpu', 'cuda' or 'auto'")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="override a config field, e.g. --set lr=1e-3 --set decoder='{\"width\": 32}'")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = _config(parser, args)
    from pfn_kernels.training.trainer import Trainer  # after parsing: --help needs no torch

    try:
        trainer = Trainer(cfg, args.out, progress=not args.no_progress)
    except (TypeError, ValueError) as err:  # e.g. a decoder or prior field that does not exist
        parser.error(f"invalid training config: {err}")
    result = trainer.fit(max_seconds=args.max_seconds)
    if trainer.rank == 0:
        print(json.dumps({"step": trainer.step, "validation": result}, indent=2))
    return 0


def _config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> TrainConfig:
    """The run's config from the file and overrides; a usage error (exit status 2) if invalid."""
    try:
        data = json.loads(args.config.read_text()) if args.config else {}
    except OSError as err:
        parser.error(f"cannot read --config {args.config}: {err.strerror or err}")
    except json.JSONDecodeError as err:
        parser.error(f"--config {args.config} is not valid JSON: {err}")
    if not isinstance(data, dict):
        parser.error(f"--config {args.config} must hold a JSON object of TrainConfig fields.")
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--set expects KEY=JSON, got {item!r}.")
        try:
            data[key] = json.loads(value)
        except json.JSONDecodeError:
            parser.error(f"--set {key}: {value!r} is not JSON (quote strings: {key}='\"text\"').")
    for key, value in (("seed", args.seed), ("steps", args.steps), ("num_threads", args.threads), ("device", args.device)):
        if value is not None:
            data[key] = value
    from pfn_kernels.training.trainer import TrainConfig

    try:
        return TrainConfig.from_dict(data)
    except (TypeError, ValueError) as err:
        parser.error(f"invalid training config: {err}")


if __name__ == "__main__":
    sys.exit(main())
