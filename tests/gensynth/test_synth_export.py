"""synth --export onnx-int8: the FermiNets as float and int8 ONNX, scored from the files and timed in report.md,
with each FermiNet's diff against the prototype; weights the run writes carry their preprocessing."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from compiler.backend.export import read_onnx_metadata
from compiler.backend.weights import read_metadata
from gensynth.data import load_dataset
from gensynth.loop import synthesize
from netdsl.cli.main import main
from tests.gensynth.synth_fixtures import write_npz
from tests.gensynth.test_loop import config, tiny

pytest.importorskip("onnxruntime")


def test_synth_exports_float_and_int8_finalists_into_the_report(tmp_path, capsys):
    data = write_npz(tmp_path / "stripes.npz")
    cfg = config(data, export="onnx-int8", cycles=1)
    cfg.budget = dataclasses.replace(cfg.budget, latency_threads=2)
    result = synthesize(tiny(), cfg, tmp_path / "run")
    assert [e.name for e in result.exported] == ["fermi-1"] and result.exported[0].int8_score is not None
    exported = result.exported[0]  # timed by the one measurement, at the run's thread count
    assert exported.float_latency.threads == exported.int8_latency.threads == 2
    assert exported.float_latency.runtime == "onnxruntime" and exported.int8_latency.runs >= 12
    schema = json.loads((Path(__file__).parents[2] / "docs" / "schemas" / "synth.json").read_text())
    Draft202012Validator(schema["properties"]["exported"]).validate([e.to_json() for e in result.exported])
    out = result.out
    final = result.finals[0]
    for name in ("fermi-1.onnx", "fermi-1.int8.onnx"):
        meta = read_onnx_metadata(out / name)
        assert meta.normalized_inside and meta.task == "classify" and meta.network == "Fermi1"
    weights = read_metadata(out / "fermi-1.safetensors")
    assert weights.mean == load_dataset(data).mean and weights.data == data
    assert read_metadata(out / "prototype.safetensors").source_hash
    report = (out / "report.md").read_text()
    assert "## Exported FermiNets" in report and "`fermi-1.int8.onnx`" in report and "speed-up" in report
    assert "### fermi-1 against the prototype" in report and "| total |" in report
    row = next(line for line in report.splitlines() if line.startswith("| fermi-1 | `fermi-1.onnx`"))
    assert f"{final.test['acc']:.2%}" in row  # the float file scores what the trained network scored
    capsys.readouterr()
    assert main(["eval", str(out / "fermi-1.net"), "--weights", str(out / "fermi-1.safetensors"), "--data", data,
                 "--json"]) == 0
    assert "warning" not in capsys.readouterr().err  # the FermiNet's source hash matches its weights
    from gensynth.generate import generate_networks

    generate_networks(out / "generator.json", [7], tmp_path / "gen", train_data=data, epochs=1)
    generated = read_metadata(tmp_path / "gen" / "seed-7.safetensors")  # generate --train writes it too
    assert generated.mean == weights.mean and generated.task == "classify"


def test_synth_from_given_weights_keeps_their_normalisation(tmp_path, capsys):
    data = write_npz(tmp_path / "stripes.npz")
    other = write_npz(tmp_path / "other.npz", seed=9)
    net = tmp_path / "tiny.net"
    from tests.gensynth.synth_fixtures import TINY_NET

    net.write_text(TINY_NET)
    assert main(["train", str(net), "--data", other, "--epochs", "1", "--out", str(tmp_path / "w"), "--json"]) == 0
    capsys.readouterr()
    trained = read_metadata(tmp_path / "w" / "weights.safetensors")
    cfg = config(data, cycles=1, prototype_weights=str(tmp_path / "w" / "weights.safetensors"))
    result = synthesize(tiny(), cfg, tmp_path / "run")
    assert read_metadata(result.out / "prototype.safetensors").mean == trained.mean
    assert read_metadata(result.out / "fermi-1.safetensors").mean == trained.mean
    assert load_dataset(data).mean != trained.mean  # not the run's data's own statistics


def test_synth_export_option_reaches_the_config_and_old_journals_export_nothing(tmp_path, capsys):
    from gensynth.loop import SynthConfig
    from netdsl.cli.main import build_parser
    from netdsl.cli.synth import config_from_args
    from tests.gensynth.synth_fixtures import TINY_NET

    net = tmp_path / "tiny.net"
    net.write_text(TINY_NET)
    args = build_parser().parse_args(["synth", str(net), "--export", "onnx-int8"])
    assert config_from_args(args).export == "onnx-int8"
    assert main(["synth", str(net), "--export", "tflite"]) == 2
    assert "invalid choice: 'tflite'" in capsys.readouterr().err
    saved = SynthConfig(data="x.npz", requirements=[]).to_json()
    del saved["export"]
    assert SynthConfig.from_json(saved).export is None
