"""The issue's test: fashion_cnn trained one short epoch on a slice of the real Fashion-MNIST, exported to ONNX,
TorchScript and PyTorch source, and every exported file run on raw test pixels scores what `netdsl eval` says;
the int8 export stays within a point; the metadata round-trips."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import safetensors.torch
import torch

from compiler.backend.metadata import ModelMetadata, source_hash
from compiler.backend.weights import read_metadata
from compiler.cost import network_cost
from gensynth.data import FASHION_CLASSES
from netdsl.cli.main import main
from netdsl.loader import load_network
from tests.gensynth.deploy.deploy_fixtures import FASHION_CNN, raw_test_pixels, write_fashion_slice
from tests.netdsl.cli.test_json_schemas import validate

ort = pytest.importorskip("onnxruntime")
WIDTH = ["--param", "width=0.5"]


def run_json(capsys, *argv) -> dict:
    assert main(list(argv)) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data spec, npz path, run dir, exports dir): fashion_cnn at half width, one epoch on 1,080 images."""
    root = tmp_path_factory.mktemp("deploy")
    npz = root / "fashion-slice.npz"
    spec = write_fashion_slice(npz)
    assert main(["train", FASHION_CNN, *WIDTH, "--data", spec, "--epochs", "1", "--batch-size", "32",
                 "--out", str(root / "run"), "--json"]) == 0
    out = root / "exports"
    out.mkdir()
    weights = str(root / "run" / "weights.safetensors")
    for target, name in (("onnx", "m.onnx"), ("torchscript", "m.pt"), ("pytorch", "m.py")):
        assert main(["export", FASHION_CNN, *WIDTH, "--to", target, "-o", str(out / name), "--weights", weights,
                     "--json"]) == 0
    assert main(["export", FASHION_CNN, *WIDTH, "--to", "onnx", "--int8", "--data", spec, "--calibration", "256",
                 "-o", str(out / "m8.onnx"), "--weights", weights, "--json"]) == 0
    return spec, npz, root / "run", out


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(1) == y).mean())


def test_every_exported_file_scores_what_eval_says(trained, capsys):
    spec, npz, run, out = trained
    capsys.readouterr()
    reference = run_json(capsys, "eval", FASHION_CNN, *WIDTH, "--weights", str(run / "weights.safetensors"),
                         "--data", spec, "--json")
    assert reference["count"] == 1000 and reference["metrics"]["acc"] > 0.3  # it learnt something in one epoch
    validate("eval", reference)
    for name in ("m.onnx", "m.pt"):
        scored = run_json(capsys, "eval", str(out / name), "--data", spec, "--json")
        validate("eval", scored)
        assert scored["weights"] is None and scored["runtime"] == ("onnx" if name == "m.onnx" else "torchscript")
        assert abs(scored["metrics"]["acc"] - reference["metrics"]["acc"]) <= 0.001, name
        assert scored["confusion"] == reference["confusion"] or abs(scored["metrics"]["acc"] - reference["metrics"]["acc"]) > 0
    # as a deployer runs them: raw [0, 1] pixels, no netdsl in the loop
    x, y = raw_test_pixels(npz)
    session = ort.InferenceSession(str(out / "m.onnx"), providers=["CPUExecutionProvider"])
    assert abs(accuracy(session.run(None, {"image": x})[0], y) - reference["metrics"]["acc"]) <= 0.001
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript; deployers use it
        scripted = torch.jit.load(str(out / "m.pt"))
    with torch.no_grad():
        assert abs(accuracy(scripted(torch.from_numpy(x)).numpy(), y) - reference["metrics"]["acc"]) <= 0.001
    namespace: dict = {"__name__": "fashion_export"}
    exec(compile((out / "m.py").read_text(), "m.py", "exec"), namespace)  # noqa: S102
    model = namespace["FashionCNN"]()
    model.load_state_dict(safetensors.torch.load_file(str(run / "weights.safetensors")))
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(x))
    assert abs(accuracy(logits.numpy(), y) - reference["metrics"]["acc"]) <= 0.001
    decoded = namespace["decode"](logits[:3])
    assert [d[1] for d in decoded] == [FASHION_CLASSES[int(i)] for i in logits[:3].argmax(1)]


def test_int8_export_is_quantized_and_within_a_point(trained, capsys):
    spec, npz, run, out = trained
    import onnx

    ops = {n.op_type for n in onnx.load(str(out / "m8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    weights = [t for t in onnx.load(str(out / "m8.onnx")).graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert weights  # the conv weights are stored in int8
    capsys.readouterr()
    float_acc = run_json(capsys, "eval", str(out / "m.onnx"), "--data", spec, "--json")["metrics"]["acc"]
    int8_acc = run_json(capsys, "eval", str(out / "m8.onnx"), "--data", spec, "--json")["metrics"]["acc"]
    assert abs(int8_acc - float_acc) <= 0.01
    meta = ModelMetadata.from_strings(ort.InferenceSession(str(out / "m8.onnx")).get_modelmeta().custom_metadata_map,
                                      "m8.onnx")
    assert "256 training images" in meta.quantization and "Sub" in meta.quantization


def test_metadata_round_trips_through_weights_and_every_format(trained):
    spec, npz, run, out = trained
    g = load_network(FASHION_CNN, params={"width": 0.5})
    stored = read_metadata(run / "weights.safetensors")
    assert stored.task == "classify" and stored.class_names == FASHION_CLASSES and stored.data == spec
    assert stored.input_shape == (1, 28, 28) and stored.source_hash == source_hash(g)
    with np.load(npz) as z:  # the training split's statistics (90% of the slice; the rest is validation)
        pixels = z["x"].astype(np.float64) / 255
    assert 0.8 * pixels.std() < stored.std[0] < 1.2 * pixels.std() and abs(stored.mean[0] - pixels.mean()) < 0.02
    onnx_meta = ModelMetadata.from_strings(
        ort.InferenceSession(str(out / "m.onnx")).get_modelmeta().custom_metadata_map, "m.onnx")
    _, ts_meta = __import__("compiler.backend.export", fromlist=["x"]).read_torchscript_metadata(out / "m.pt")
    cost = network_cost(g)
    for meta in (onnx_meta, ts_meta):
        assert (meta.mean, meta.std, meta.class_names, meta.input_shape, meta.source_hash, meta.version) == (
            stored.mean, stored.std, stored.class_names, stored.input_shape, stored.source_hash, stored.version)
        assert meta.normalized_inside and (meta.macs, meta.params) == (cost.macs, cost.params)
        assert "one logit per class" in meta.outputs
    source = (out / "m.py").read_text()
    assert f"MEAN = ({stored.mean[0]!r},)" in source and "T-shirt/top" in source


def test_no_preprocess_export_takes_normalised_inputs_and_eval_feeds_them(trained, capsys, tmp_path):
    spec, npz, run, out = trained
    path = tmp_path / "plain.onnx"
    assert main(["export", FASHION_CNN, *WIDTH, "--to", "onnx", "-o", str(path), "--no-preprocess",
                 "--weights", str(run / "weights.safetensors")]) == 0
    import onnx

    def first_op(file) -> str:
        return next(n.op_type for n in onnx.load(str(file)).graph.node if n.op_type != "Constant")

    assert first_op(path) == "Conv" and first_op(out / "m.onnx") == "Sub"
    capsys.readouterr()
    plain = run_json(capsys, "eval", str(path), "--data", spec, "--json")
    full = run_json(capsys, "eval", str(out / "m.onnx"), "--data", spec, "--json")
    assert abs(plain["metrics"]["acc"] - full["metrics"]["acc"]) <= 0.001 and "normalised with its mean" in plain["fed"]
