"""The `netdsl` command: parse arguments, call the library, render with rich. Errors exit 2, never a traceback."""

from __future__ import annotations

import argparse
import importlib
import sys

from rich.console import Console

from compiler.diagnostics import NetError
from netdsl import __version__

# subcommand -> module in netdsl.cli defining register(subparsers) and run(args) -> int
COMMANDS = {"show": "show", "check": "check", "cost": "cost", "export": "export", "import": "import_model",
            "train": "train", "eval": "eval", "synth": "synth", "generate": "generate"}


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are NetErrors (exit 2 with a clear message, like every other bad input)."""

    def error(self, message: str):
        raise NetError(f"{self.prog}: {message}", notes=[f"see `{self.prog} --help`"])


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="netdsl", description="Write neural-network architectures as .net files; show, cost, "
                     "train, export them, and synthesise efficient networks that meet your requirements.")
    parser.add_argument("--version", action="version", version=f"netdsl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module_name in COMMANDS.values():
        module = _command_module(module_name)
        if module is not None:
            module.register(sub)
    return parser


def _command_module(name: str):
    try:
        return importlib.import_module(f"netdsl.cli.{name}")
    except ModuleNotFoundError as err:
        if err.name == f"netdsl.cli.{name}":
            return None  # command not built yet
        raise


def main(argv: list[str] | None = None) -> int:
    err_console = Console(stderr=True, highlight=False)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help()
            return 2
        return int(args.run(args) or 0)
    except NetError as err:
        err_console.print(err.render(), markup=False)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
