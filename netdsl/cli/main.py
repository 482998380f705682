"""The `netdsl` command: parse arguments, call the library, render with rich. Errors exit 2, never a traceback.

With --json, a command that fails prints an error document on stdout (docs/schemas/error.json) as well as the
located message on stderr, so a script reads one JSON document either way.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import warnings

from compiler.diagnostics import NetError, NetWarning
from netdsl import __version__
from netdsl.cli.console import print_error

# subcommand -> module in netdsl.cli defining register(subparsers) and run(args) -> int
COMMANDS = {"show": "show", "check": "check", "cost": "cost", "diff": "diff", "export": "export",
            "import": "import_model", "train": "train", "eval": "eval", "synth": "synth", "generate": "generate",
            "profile": "profile"}


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help, with every option's default said (unless its help already says it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (default not in (None, False, [], argparse.SUPPRESS) and "default" not in text
                and action.option_strings):
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are NetErrors (exit 2 with a clear message, like every other bad input) that
    point at the help of the command they are about."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

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
    parser.commands = sub.choices  # name -> its parser, for usage errors found after the subcommand parsed
    return parser


def _command_module(name: str):
    try:
        return importlib.import_module(f"netdsl.cli.{name}")
    except ModuleNotFoundError as err:
        if err.name == f"netdsl.cli.{name}":
            return None  # command not built yet
        raise


def error_document(err: NetError, command: str | None) -> dict:
    """The JSON a --json run prints when it fails (docs/schemas/error.json)."""
    span = err.span
    where = None
    if span is not None:
        where = {"file": span.file, "line": span.line, "column": span.column, "end_line": span.end_line,
                 "end_column": span.end_column}
    return {"ok": False, "command": command, "error": {"message": err.message, "location": where,
                                                      "notes": list(err.notes), "text": err.render()}}


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning):
    """NetWarnings as `warning: ...` on stderr (no file and line of our code); other warnings as Python shows them."""
    if issubclass(category, NetWarning):
        sys.stderr.write(f"warning: {message}\n")
    else:
        _default(message, category, filename, lineno, file, line)


def main(argv: list[str] | None = None) -> int:
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        warnings.simplefilter("always", NetWarning)
        return _run(argv)


def _run(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if not getattr(args, "command", None):
            parser.print_help()
            return 2
        if extra:
            parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
        return int(args.run(args) or 0)
    except NetError as err:
        print_error(err)
        if "--json" in argv:
            sys.stdout.write(json.dumps(error_document(err, command), indent=2) + "\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
