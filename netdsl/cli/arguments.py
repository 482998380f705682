"""Arguments and loading shared by the subcommands that read a .net file."""

from __future__ import annotations

import argparse
import json
import sys

from compiler.diagnostics import NetError
from netdsl.loader import load_network


def add_network_arguments(p: argparse.ArgumentParser) -> None:
    """FILE, --network NAME, --param NAME=VALUE."""
    p.add_argument("file", help="a .net file")
    p.add_argument("--network", help="which network of the file (default: the last one)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="set a network parameter, e.g. --param width=0.5 (repeatable)")


def parse_param(text: str):
    """NAME=VALUE with VALUE an int, float, true/false or a string."""
    if "=" not in text:
        raise NetError(f"--param expects NAME=VALUE, got {text!r}")
    name, raw = text.split("=", 1)
    for cast in (int, float):
        try:
            return name.strip(), cast(raw)
        except ValueError:
            pass
    if raw in ("true", "false"):
        return name.strip(), raw == "true"
    return name.strip(), raw


def load_from_args(args: argparse.Namespace):
    """The validated IR named by FILE/--network/--param."""
    params = dict(parse_param(p) for p in args.param)
    return load_network(args.file, args.network, params or None)


def print_json(data) -> None:
    """Scripts read this: one JSON document on stdout."""
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
