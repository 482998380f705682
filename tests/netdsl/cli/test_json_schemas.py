"""Every command's --json output has the documented, stable shape: each is validated against its schema in
docs/schemas (and a failure against error.json), from real runs of the commands on tiny inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from netdsl.cli.main import COMMANDS, main
from tests.gensynth.synth_fixtures import TINY_NET, write_npz

ROOT = Path(__file__).resolve().parents[3]
SCHEMAS = ROOT / "docs" / "schemas"
EXAMPLES = ROOT / "examples"


def registry() -> Registry:
    resources = []
    for path in SCHEMAS.glob("*.json"):
        schema = json.loads(path.read_text())
        Draft202012Validator.check_schema(schema)
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


REGISTRY = registry()


def validate(command: str, document) -> None:
    schema = json.loads((SCHEMAS / f"{command}.json").read_text())
    errors = sorted(Draft202012Validator(schema, registry=REGISTRY).iter_errors(document), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])


def run_json(capsys, *argv) -> tuple[int, dict]:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_every_command_has_a_schema_and_the_readme_lists_it():
    readme = (SCHEMAS / "README.md").read_text()
    for command in COMMANDS:
        assert (SCHEMAS / f"{command}.json").exists(), command
        assert f"[{command}.json]({command}.json)" in readme


@pytest.mark.parametrize("example", ["lenet5", "unet_small", "detector_small", "mobilenet_v3_small"])
def test_show_check_and_cost(capsys, example):
    path = str(EXAMPLES / f"{example}.net")
    code, data = run_json(capsys, "show", path)
    assert code == 0
    validate("show", data)
    assert data["totals"]["params"] == sum(n["params"] for n in data["nodes"])
    code, verdict = run_json(capsys, "check", path)
    assert code == 0 and verdict["ok"]
    validate("check", verdict)
    assert verdict["layers"] == data["totals"]["layers"]  # check and show count the same layers
    code, cost = run_json(capsys, "cost", path, "--depth", "1")
    assert code == 0
    validate("cost", cost)
    assert cost["totals"]["params"] == data["totals"]["params"]


def test_failures_print_the_error_document(capsys, tmp_path):
    bad = tmp_path / "bad.net"
    bad.write_text("network N {\n    input x: [1, 4, 4]\n    output y = x -> cnov(4, 3)\n}\n")
    for command in ("check", "show", "cost", "export"):
        extra = ["--to", "onnx", "-o", str(tmp_path / "m.onnx")] if command == "export" else []
        code, doc = run_json(capsys, command, str(bad), *extra)
        assert code == 2
        validate("error", doc)
        if command == "check":
            validate("check", doc)
        assert doc["command"] == command and doc["error"]["location"]["line"] == 3
        assert doc["error"]["notes"] == ["did you mean 'conv' or 'dwconv'?"]
    code, doc = run_json(capsys, "show", str(tmp_path / "missing.net"))
    assert code == 2 and doc["error"]["location"] is None
    code, doc = run_json(capsys, "synth", str(EXAMPLES / "lenet5.net"), "--req", "acc")  # --req acc>=0.9 unquoted
    assert code == 2 and "quote it" in doc["error"]["notes"][0]
    code, doc = run_json(capsys, "cost", str(bad), "--no-such-flag")
    assert code == 2 and doc["error"]["notes"] == ["see `netdsl cost --help`"]
    validate("error", doc)


def test_export(capsys, tmp_path):
    out = tmp_path / "lenet.py"
    code, doc = run_json(capsys, "export", str(EXAMPLES / "lenet5.net"), "--to", "pytorch", "-o", str(out))
    assert code == 0 and out.exists()
    validate("export", doc)
    assert doc["params"] == 61706 and doc["weights"] is None


def test_train_eval_synth_generate(capsys, tmp_path):
    data = write_npz(tmp_path / "d.npz", n=160)
    net = tmp_path / "tiny.net"
    net.write_text(TINY_NET)
    code, trained = run_json(capsys, "train", str(net), "--data", data, "--epochs", "1", "--device", "cpu",
                             "--out", str(tmp_path / "train"))
    assert code == 0
    validate("train", trained)
    weights = str(tmp_path / "train" / "weights.safetensors")
    code, measured = run_json(capsys, "eval", str(net), "--weights", weights, "--data", data, "--device", "cpu")
    assert code == 0
    validate("eval", measured)
    assert measured["weights"] == weights and measured["split"] == "test" and measured["network"] == "Tiny"
    assert set(measured["metrics"]) == {"acc"} and "accuracy" not in measured
    assert abs(measured["metrics"]["acc"] - trained["test_acc"]) < 1e-9
    run = tmp_path / "run"
    code, synth = run_json(capsys, "synth", str(net), "--data", data, "--req", "macs<=60K", "--cycles", "1",
                           "--per-cycle", "2", "--images", "32", "--prototype-epochs", "1", "--final-epochs", "1",
                           "--finalists", "1", "--device", "cpu", "--out", str(run))
    assert code == 0
    validate("synth", synth)
    # a finished (or interrupted) run resumes from its directory alone: the journal keeps the prototype
    code, again = run_json(capsys, "synth", "--resume", str(run), "--device", "cpu")
    assert code == 0 and again["fermi_nets"] == synth["fermi_nets"] and again["candidates"] == synth["candidates"]
    code, doc = run_json(capsys, "synth", "--resume", str(run), "--param", "classes=3")
    assert code == 2 and "a resumed run keeps its prototype" in doc["error"]["message"]
    code, generated = run_json(capsys, "generate", synth["generator"], "--count", "2", "-o", str(tmp_path / "gen"))
    assert code == 0
    validate("generate", generated)
    assert len(generated["networks"]) == 2


def test_import(capsys, tmp_path):
    code, doc = run_json(capsys, "import", "tests.netdsl.importers.user_models:FunctionalNet", "--input", "1x28x28",
                         "-o", str(tmp_path / "digits.net"))
    assert code == 0
    validate("import", doc)
    assert doc["kind"] == "pytorch" and Path(doc["out"]).exists()
