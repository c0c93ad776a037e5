"""The `python -m personalization` command line: one subcommand per module in `personalization.commands`.

Each module there defines `COMMAND = Command(...)`; the parser is assembled by discovery,
so adding a subcommand never edits a shared list (no merge conflicts between features).
Heavy imports (torch, diffusers) belong inside each command's `run`, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from personalization import commands


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 2, no traceback."""


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def discover_commands() -> list[Command]:
    found: list[Command] = []
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda info: info.name):
        module = importlib.import_module(f"{commands.__name__}.{module_info.name}")
        command = getattr(module, "COMMAND", None)
        if not isinstance(command, Command):
            raise TypeError(f"{module.__name__} must define COMMAND = Command(...)")
        found.append(command)
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m personalization",
        description="Likeness diffusion core: build models, prepare photos, train, generate, edit.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in discover_commands():
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(_run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args._run(args))
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
