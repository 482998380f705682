"""Bad input of export and eval (exit 2, a clear message), and what old or foreign files get (a warning, --mean/--std)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import safetensors.torch

from compiler.backend.weights import read_metadata
from gensynth.data import load_dataset
from gensynth.training.preprocessing import data_for_weights
from netdsl.cli.main import main
from netdsl.loader import load_network_text
from tests.gensynth.synth_fixtures import TINY_NET, train_tiny, write_npz
from tests.netdsl.cli.test_json_schemas import validate

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(tiny.net, its data spec, trained weights): the synthesis tests' 12x12 stripes, one epoch."""
    return train_tiny(tmp_path_factory.mktemp("tiny"))


def fails(capsys, *argv) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return " ".join(captured.err.split())  # as one line, however the terminal wrapped it


def test_int8_needs_calibration_data_and_onnx(tiny, capsys, tmp_path):
    net, spec, weights = tiny
    err = fails(capsys, "export", net, "--to", "onnx", "--int8", "-o", str(tmp_path / "m.onnx"), "--weights", weights)
    assert "--int8 needs calibration data" in err and "--data SPEC" in err
    err = fails(capsys, "export", net, "--to", "torchscript", "--int8", "--data", spec, "-o", str(tmp_path / "m.pt"))
    assert "--int8 is for ONNX" in err
    assert not list(tmp_path.iterdir())


def test_random_weight_export_is_allowed_with_a_warning(tiny, capsys, tmp_path):
    net, spec, _ = tiny
    capsys.readouterr()
    assert main(["export", net, "--to", "onnx", "-o", str(tmp_path / "r.onnx")]) == 0
    assert "warning: no --weights: exporting freshly initialised (random) weights" in capsys.readouterr().err
    assert main(["export", net, "--to", "onnx", "-o", str(tmp_path / "r.onnx"), "--random-weights"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_eval_refuses_a_file_whose_input_does_not_fit_the_data(tiny, capsys, tmp_path):
    net, spec, weights = tiny
    path = tmp_path / "m.onnx"
    assert main(["export", net, "--to", "onnx", "-o", str(path), "--weights", weights]) == 0
    other = write_npz(tmp_path / "wide.npz")
    with np.load(tmp_path / "wide.npz") as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(tmp_path / "wide.npz", **{k: np.pad(v, ((0, 0), (0, 0), (2, 2), (2, 2))) if v.ndim == 4 else v
                                       for k, v in arrays.items()})
    err = fails(capsys, "eval", str(path), "--data", other)
    assert "takes inputs of shape [1, 12, 12]" in err and "images of shape [1, 16, 16]" in err


def test_a_foreign_onnx_file_needs_mean_and_std(tiny, capsys, tmp_path):
    net, spec, weights = tiny
    import onnx

    path = tmp_path / "foreign.onnx"
    assert main(["export", net, "--to", "onnx", "-o", str(path), "--weights", weights, "--no-preprocess"]) == 0
    meta = read_metadata(weights)
    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.save(model, str(path))
    err = fails(capsys, "eval", str(path), "--data", spec)
    assert "does not say how its inputs are normalised" in err and "--mean and --std" in err
    assert main(["eval", str(path), "--data", spec, "--mean", str(meta.mean[0]), "--std", str(meta.std[0]),
                 "--json"]) == 0
    foreign = json.loads(capsys.readouterr().out)["metrics"]["acc"]
    assert main(["eval", net, "--weights", weights, "--data", spec, "--json"]) == 0
    assert abs(json.loads(capsys.readouterr().out)["metrics"]["acc"] - foreign) <= 0.001


def test_a_netdsl_file_cannot_be_fed_another_normalisation(tiny, capsys, tmp_path):
    net, spec, weights = tiny
    path = tmp_path / "m.onnx"
    assert main(["export", net, "--to", "onnx", "-o", str(path), "--weights", weights]) == 0
    err = fails(capsys, "eval", str(path), "--data", spec, "--mean", "0.5", "--std", "0.2")
    assert "carries the normalisation it was trained with" in err
    assert "needs its trained weights: --weights W" in fails(capsys, "eval", net, "--data", spec)
    assert "--weights is for a .net FILE" in fails(capsys, "eval", str(path), "--weights", weights, "--data", spec)


def test_old_weights_load_with_a_warning_and_the_data_statistics(tiny, capsys, tmp_path):
    net, spec, weights = tiny
    old = tmp_path / "old.safetensors"
    safetensors.torch.save_file(safetensors.torch.load_file(weights), str(old))  # no metadata
    assert read_metadata(old) is None
    capsys.readouterr()
    assert main(["eval", net, "--weights", str(old), "--data", spec, "--json"]) == 0
    captured = capsys.readouterr()
    assert "warning:" in captured.err and "does not say how its inputs were normalised" in captured.err
    assert main(["eval", net, "--weights", weights, "--data", spec, "--json"]) == 0
    # the tiny run trained on the same data, so its own statistics are the data's: the same score
    assert json.loads(captured.out)["metrics"]["acc"] == json.loads(capsys.readouterr().out)["metrics"]["acc"]


def test_data_is_normalised_as_the_weights_were_trained(tiny, tmp_path):
    net, spec, weights = tiny
    other = write_npz(tmp_path / "other.npz", seed=5)  # other images: other statistics
    g = load_network_text(TINY_NET, "tiny.net")
    data = data_for_weights(other, weights, g)
    meta = read_metadata(weights)
    assert data.mean == meta.mean and data.std == meta.std
    assert load_dataset(other).mean != meta.mean
    renamed = load_network_text(TINY_NET.replace("maxpool(2)", "avgpool(2)"), "tiny2.net")
    with pytest.warns(UserWarning, match="different source"):
        data_for_weights(spec, weights, renamed)


def test_int8_names_the_ops_onnxruntime_cannot_quantize(tmp_path, capsys):
    net = tmp_path / "hs.net"
    net.write_text(TINY_NET.replace("-> bn -> relu\n    output", "-> bn -> hardswish\n    output"))
    spec = write_npz(tmp_path / "stripes.npz")
    capsys.readouterr()
    assert main(["export", str(net), "--to", "onnx", "--int8", "--data", spec, "--calibration", "64", "-o",
                 str(tmp_path / "hs.onnx"), "--random-weights", "--json"]) == 0
    shipped = json.loads(capsys.readouterr().out)
    validate("export", shipped)
    assert shipped["int8"] and shipped["preprocess"] and "HardSigmoid" in shipped["float_ops"]
    assert shipped["metadata"]["netdsl.quantization"].startswith("int8 static")
    assert main(["export", str(net), "--to", "onnx", "--int8", "--data", spec, "--calibration", "64", "-o",
                 str(tmp_path / "hs.onnx"), "--random-weights"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    # onnxruntime's optimiser inlines HardSwish as HardSigmoid * x; it quantizes the Mul, not the HardSigmoid
    assert "kept float (onnxruntime cannot quantize HardSigmoid): _inlfunc_HardSwish" in out
    import onnx

    graph = onnx.load(str(tmp_path / "hs.onnx")).graph
    producers = {o: n.op_type for n in graph.node for o in n.output}
    sigmoid = next(n for n in graph.node if n.op_type == "HardSigmoid")
    assert producers[sigmoid.input[0]] == "DequantizeLinear"  # runs in float, fed by the int8 conv


def test_exporting_old_weights_takes_the_data_statistics_with_a_warning(tiny, capsys, tmp_path):
    net, spec, weights = tiny
    old = tmp_path / "old.safetensors"
    safetensors.torch.save_file(safetensors.torch.load_file(weights), str(old))
    capsys.readouterr()
    assert main(["export", net, "--to", "onnx", "-o", str(tmp_path / "o.onnx"), "--weights", str(old)]) == 0
    assert "no --data was given: the export takes normalised inputs" in " ".join(capsys.readouterr().err.split())
    assert main(["export", net, "--to", "onnx", "-o", str(tmp_path / "o.onnx"), "--weights", str(old),
                 "--data", spec]) == 0
    assert "using the training statistics of" in capsys.readouterr().err
    from compiler.backend.export import read_onnx_metadata

    meta = read_onnx_metadata(tmp_path / "o.onnx")
    assert meta.normalized_inside and meta.mean == load_dataset(spec).mean
