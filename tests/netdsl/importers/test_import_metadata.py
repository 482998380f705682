"""netdsl import writes weights that carry their preprocessing: --mean/--std, or a netdsl export's own metadata; an
export that normalises its input itself is refused with the way out."""

from __future__ import annotations

import json

import pytest

from compiler.backend.weights import read_metadata
from netdsl.cli.main import main
from tests.gensynth.synth_fixtures import train_tiny

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("imp")
    return (root, *train_tiny(root))


def test_a_netdsl_export_imports_with_its_normalisation_and_scores_the_same(trained, capsys):
    root, net, spec, weights = trained
    plain = root / "plain.onnx"
    assert main(["export", net, "--to", "onnx", "-o", str(plain), "--weights", weights, "--no-preprocess"]) == 0
    assert main(["import", str(plain), "-o", str(root / "back.net"), "--json"]) == 0
    back = read_metadata(root / "back.safetensors")
    trained_with = read_metadata(weights)
    assert (back.mean, back.std, back.task, back.class_names) == (
        trained_with.mean, trained_with.std, trained_with.task, trained_with.class_names)
    capsys.readouterr()
    scores = []
    for file, w in ((net, weights), (str(root / "back.net"), str(root / "back.safetensors"))):
        assert main(["eval", file, "--weights", w, "--data", spec, "--json"]) == 0
        captured = capsys.readouterr()
        assert "warning" not in captured.err
        scores.append(json.loads(captured.out)["metrics"]["acc"])
    assert scores[0] == scores[1]


def test_import_takes_mean_and_std_and_refuses_a_self_normalising_export(trained, capsys):
    root, net, spec, weights = trained
    full = root / "full.onnx"
    assert main(["export", net, "--to", "onnx", "-o", str(full), "--weights", weights]) == 0
    capsys.readouterr()
    assert main(["import", str(full), "-o", str(root / "x.net")]) == 2
    assert "import a file exported with --no-preprocess" in " ".join(capsys.readouterr().err.split())
    plain = root / "plain2.onnx"
    assert main(["export", net, "--to", "onnx", "-o", str(plain), "--weights", weights, "--no-preprocess"]) == 0
    import onnx

    model = onnx.load(str(plain))
    del model.metadata_props[:]  # as if another tool had written it
    onnx.save(model, str(plain))
    assert main(["import", str(plain), "-o", str(root / "y.net"), "--mean", "0.5", "--std", "0.25", "--json"]) == 0
    meta = read_metadata(root / "y.safetensors")
    assert (meta.mean, meta.std, meta.input_shape) == ((0.5,), (0.25,), (1, 12, 12))
    assert main(["import", str(plain), "-o", str(root / "z.net"), "--mean", "0.5"]) == 2
