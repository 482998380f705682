"""The README's first example is a real network."""

import re
from pathlib import Path

from netdsl.loader import load_network_text


def test_readme_example_builds():
    text = Path("README.md").read_text()
    example = re.search(r"```\n(# 28x28.*?)```", text, re.S).group(1)
    g = load_network_text(example, "README.md")
    assert g.nodes[g.graph["outputs"]["logits"]]["shape"] == (10,)
    assert g.graph["scopes"]["dwsep"] == "dwsep"
