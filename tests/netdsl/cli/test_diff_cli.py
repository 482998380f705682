"""`netdsl diff`: the table a person reads (80 columns, a log file), --json for scripts, bad input, no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from netdsl.cli.main import main
from tests.netdsl.cli.test_json_schemas import validate

ROOT = Path(__file__).resolve().parents[3]
FASHION = str(ROOT / "examples" / "fashion_cnn.net")
HALF = """
network Half(classes=10) {
    input image: [1, 28, 28]
    x = image -> conv(16, k=3, padding=1, bias=false) -> bn -> relu
    x = relu(add(x, x -> conv(16, k=3, padding=1, bias=false) -> bn))
    maxpool(2)
    x = conv(32, k=3, padding=1, bias=false) -> bn -> relu
    maxpool(2)
    conv(64, k=3, padding=1, bias=false) -> bn -> relu
    output logits = gap -> dropout(0.3) -> linear(classes)
}
"""


def test_diff_prints_changed_layers_and_blocks_and_json(tmp_path, capsys):
    half = tmp_path / "half.net"
    half.write_text(HALF)
    assert main(["diff", FASHION, str(half)]) == 0
    out = capsys.readouterr().out
    assert all(len(line) <= 80 for line in out.splitlines())
    assert "conv_2" in out and "64→32" in out and "removed" in out and "total" in out and "21.9M→" in out
    assert "\x1b[" not in out  # plain text in a log
    assert main(["diff", FASHION, str(half), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    validate("diff", data)
    status = {x["name"]: x["status"] for x in data["layers"]}
    assert status["conv_4"] == "removed" and status["conv"] == "changed" and status["linear"] == "changed"
    assert data["macs"][0] == sum(b["macs"][0] for b in data["blocks"])
    assert main(["diff", FASHION, str(tmp_path / "missing.net"), "--json"]) == 2
    validate("diff", json.loads(capsys.readouterr().out))


def test_diff_never_imports_torch(tmp_path):
    half = tmp_path / "half.net"
    half.write_text(HALF)
    code = (f"import sys\nfrom netdsl.cli.main import main\nassert main(['diff', {FASHION!r}, {str(half)!r}]) == 0\n"
            "print('TORCH' if 'torch' in sys.modules else 'CLEAN')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip().endswith("CLEAN")
