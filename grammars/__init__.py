"""The lark grammars of the .net language (netdsl.lark) and of synthesis requirements (requirements.lark)."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def grammar_text(name: str) -> str:
    """The text of a grammar shipped in this package ("netdsl.lark", "requirements.lark")."""
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
