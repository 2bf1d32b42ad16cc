"""Command line interface: ``pfn-kernels <command>``.

Each command is a small ``add_<name>_command`` function that registers a subparser and sets
``func``, the callable that runs it; add a command by writing one more such function and listing
it in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from pfn_kernels import __version__


def _run_demo(args: argparse.Namespace) -> int:
    from pfn_kernels import demo  # imported lazily: BoTorch is slow to import

    demo.main(seed=args.seed, num_tasks=args.num_tasks)
    return 0


def add_demo_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="end-to-end example: AmortizedSpectralKernel in a BoTorch SingleTaskGP",
        description="Fixed (known) spectral-mixture hyperparameters in a SingleTaskGP, compared "
        "with a default SingleTaskGP fitted by marginal likelihood. A placeholder until the "
        "pretrained network is in.",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--num-tasks", type=int, default=8, help="number of sampled functions (default 8)"
    )
    parser.set_defaults(func=_run_demo)


def _run_train(args: argparse.Namespace) -> int:
    from pfn_kernels import train

    return train.main(args.train_args)


def add_train_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a spectral decoder on the task prior (python -m pfn_kernels.train --help)",
        description="Train a spectral decoder; all arguments go to `python -m pfn_kernels.train`.",
        add_help=False,
    )
    parser.add_argument("train_args", nargs=argparse.REMAINDER)
    parser.set_defaults(func=_run_train)


#: The registered commands, in the order ``--help`` lists them.
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_demo_command, add_train_command]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pfn-kernels",
        description="Amortized spectral-mixture kernels for BoTorch and Ax.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    for add_command in COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command, return its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:  # the training CLI has its own parser; pass everything through
        from pfn_kernels import train

        return train.main(argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
