"""``rnnkit`` entry point: parse arguments, dispatch to a subcommand, turn user errors into one line."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence

import rnnkit
from rnnkit import settings
from rnnkit.cli import compare, config, datasets, evaluate, export, generate, predict, quickstart, serve, train, tune
from rnnkit.errors import RnnkitError

SUBCOMMANDS = [quickstart, train, evaluate, predict, generate, serve, export, config, datasets, compare, tune]

# Subcommands whose options may stand before, between or after their inputs (`rnnkit predict RUN --format table
# "a fine film"`): argparse's intermixed parsing, which a parser with subcommands cannot run itself.
INTERMIXED = ("predict", "generate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnnkit",
        description="Recurrent sequence models on PyTorch: train on real data with one command.",
        epilog="examples:\n  rnnkit quickstart                 # train a sentiment classifier on real data\n"
        '  rnnkit train sentiment --set train.epochs=3\n  rnnkit predict runs/quickstart "a fine film"\n'
        "  rnnkit config list                # recipes and tasks",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rnnkit {rnnkit.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(subparsers)
    parser.subcommand_parsers = subparsers.choices  # for parse_arguments
    return parser


def parse_arguments(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser.parse_args(argv)``, except that an :data:`INTERMIXED` subcommand parses its own arguments
    intermixed, so its options may follow or precede its positional inputs."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in INTERMIXED:
        args = parser.subcommand_parsers[argv[0]].parse_intermixed_args(argv[1:])
        args.command = argv[0]
        return args
    return parser.parse_args(argv)


@contextlib.contextmanager
def cli_logging(quiet: bool) -> Iterator[None]:
    """INFO to stderr (through rich, so it prints above progress bars), WARNING only when quiet.

    Undone on exit, so calling :func:`main` in-process (tests, notebooks) leaves logging as it was.
    """
    from rich.console import Console
    from rich.logging import RichHandler

    logger = logging.getLogger("rnnkit")
    handler = RichHandler(console=Console(stderr=True), show_path=False, show_time=False)
    handler.setLevel(logging.WARNING if quiet else logging.INFO)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parse_arguments(parser, argv)
    except SystemExit as e:  # --help, --version (0) and usage errors (2): return instead of exiting
        return e.code if isinstance(e.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        try:
            settings.check()  # RNNKIT_NATIVE and the like: refused now, not after the data has loaded
        except ValueError as e:
            raise RnnkitError(str(e), where="environment") from None
        with cli_logging(getattr(args, "quiet", False)):
            return args.run(args)
    except RnnkitError as e:
        print(f"rnnkit: error: {e}", file=sys.stderr)
        return e.exit_code
    except RecursionError:  # a JSON/YAML input nested thousands deep, where a reader does not catch it itself
        print("rnnkit: error: an input file is nested too deeply to read (JSON or YAML)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rnnkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
