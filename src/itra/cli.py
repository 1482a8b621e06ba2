"""The `itra` command line.

    itra --version
    itra --help
"""
from __future__ import annotations

import argparse
from typing import Sequence

from itra import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="itra",
        description="In-Training Representation Alignment: train classifiers with a class-conditional "
        "MMD matching loss between two mini-batches, and reproduce the paper's studies.",
    )
    parser.add_argument("--version", action="version", version=f"itra {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
