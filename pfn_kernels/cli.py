"""Command line interface: ``pfn-kernels <command>``.

Each command is a small ``add_<name>_command`` function that registers a subparser and sets
``func``, the callable that runs it; add a command by writing one more such function and listing
it in :data:`COMMANDS`.

Parsing imports neither torch nor BoTorch (``pfn-kernels --help`` answers at once): a command
imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence

from pfn_kernels._version import __version__

_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`(?:([^`<]*?)\s*<[^`>]*>|(~?)([^`]*))`")


def plain_text(text: str) -> str:
    """reST markup of a docstring as plain terminal text, for ``--help``.

    ``code`` loses its backquotes, :role:`~a.b.Name` becomes ``Name`` (``a.b.c`` without the
    tilde), :role:`text <target>` becomes ``text``, and a paragraph's closing ``::`` becomes ``:``.

    Example:
        >>> plain_text("Run ``demo``; see :class:`~pfn_kernels.AmortizedSingleTaskGP`::")
        'Run demo; see AmortizedSingleTaskGP:'
    """
    def role(match: re.Match[str]) -> str:
        label, tilde, target = match.groups()
        if label is not None:
            return label
        return target.rsplit(".", 1)[-1] if tilde else target

    text = _ROLE.sub(role, text)
    text = re.sub(r"``([^`]*)``", r"\1", text)
    return re.sub(r"::$", ":", text, flags=re.MULTILINE)


def _run_demo(args: argparse.Namespace) -> int:
    from pfn_kernels.experiments import demo  # imported lazily: BoTorch is slow to import
    from pfn_kernels.network import WeightsError

    try:
        demo.main(
            problem=args.problem,
            seeds=args.seeds,
            n_init=args.n_init,
            n_iter=args.n_iter,
            out=args.out,
            seed=args.seed,
            weights=args.weights,
            progress=not args.no_progress,
            workers=args.workers,
            threads=args.threads,
        )
    except WeightsError as err:
        print(f"pfn-kernels demo: {err}\nPass decoder weights with --weights PATH.",
              file=sys.stderr)
        return 1
    except demo.MissingDemoExtra as err:
        print(f"pfn-kernels demo: {err}", file=sys.stderr)
        return 1
    return 0


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return parse


def add_demo_command(subparsers: argparse._SubParsersAction) -> None:
    # light: the demo imports BoTorch when it runs, and matplotlib only for its plots
    from pfn_kernels.experiments.demo import DEMO_PROBLEMS

    parser = subparsers.add_parser(
        "demo",
        help="Bayesian optimization: amortized surrogate vs BoTorch's default SingleTaskGP",
        description="Maximize a test function with qLogNoisyExpectedImprovement, once with "
        "AmortizedSingleTaskGP (the fit is one pass of the pretrained decoder) and once with "
        "BoTorch's default SingleTaskGP (fit_gpytorch_mll), on the same seeds; then extrapolate "
        "a periodic 1-D function with both (structure discovery). Prints best value, final "
        "regret and the paired comparison (the same on every rerun on one machine: fixed seeds "
        "and threads), the fit and acquisition times, and writes regret.png, "
        "spectral_density.png, structure.png and results.json into --out.",
    )
    parser.add_argument("--problem", choices=DEMO_PROBLEMS, default="hartmann6",
                        help="test function (default hartmann6)")
    parser.add_argument("--seeds", type=_int_at_least(1), default=12,
                        help="number of seeds (default 12)")
    parser.add_argument("--n-init", type=_int_at_least(2), default=10,
                        help="Sobol points per run (default 10)")
    parser.add_argument("--n-iter", type=_int_at_least(0), default=30,
                        help="BO steps per run (default 30)")
    parser.add_argument("--out", default="demo_output",
                        help="output directory (default demo_output/)")
    parser.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--weights", default=None, metavar="PATH",
                        help="decoder weights (.safetensors); default: the shipped pretrained ones")
    parser.add_argument("--workers", type=_int_at_least(1), default=None,
                        help="processes for the BO runs (default: up to 2, one per core)")
    parser.add_argument("--threads", type=_int_at_least(1), default=1,
                        help="torch threads per run (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run_demo)


def add_train_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a spectral decoder on the task prior (python -m pfn_kernels.train --help)",
        description="Train a spectral decoder; all arguments go to `python -m pfn_kernels.train`.",
        add_help=False,
    )
    parser.add_argument("train_args", nargs=argparse.REMAINDER)  # main() passes them through


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
