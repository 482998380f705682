"""Exports of detectors and segmenters document their outputs; a detector's standalone source decodes its heads
exactly as netdsl does."""

from __future__ import annotations

import torch

from compiler.backend.export import export_network, read_onnx_metadata
from compiler.backend.lower import lower_to_torch
from compiler.backend.metadata import ModelMetadata, source_hash
from compiler.backend.weights import save_weights
from gensynth.deploy.package import export_model
from gensynth.tasks.centernet import decode
from netdsl.loader import load_network
from tests.compiler.backend.lowering_nets import EXAMPLES


def test_a_detector_export_documents_its_heads_and_its_source_decodes_them(tmp_path):
    g = load_network(next(p for p in EXAMPLES if p.stem == "detector_small"))
    torch.manual_seed(1)
    module = lower_to_torch(g).eval()
    meta = ModelMetadata(network=g.graph["name"], input_shape=(1, 64, 64), mean=(0.2,), std=(0.3,), task="detect",
                         class_names=tuple(f"c{i}" for i in range(10)), source_hash=source_hash(g))
    save_weights(module, tmp_path / "w.safetensors", meta)
    shipped = export_model(g, "pytorch", tmp_path / "det.py", weights=tmp_path / "w.safetensors")
    assert "CenterNet heads at stride 4" in shipped.metadata.outputs and "`boxes` [N, 4, 16, 16]" in shipped.metadata.outputs
    namespace: dict = {"__name__": "det"}
    exec(compile((tmp_path / "det.py").read_text(), "det.py", "exec"), namespace)  # noqa: S102
    standalone = namespace["DetectorSmall"]()
    standalone.load_state_dict(module.state_dict())
    standalone.eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        outputs = standalone(x)
        expected = decode(*(module((x - 0.2) / 0.3)[k] for k in ("heatmap", "boxes")), stride=4)
    got = namespace["decode"](outputs, min_score=0.0)
    for g_rows, e_rows in zip(got, expected):
        torch.testing.assert_close(g_rows, e_rows)
    onnx_path = tmp_path / "det.onnx"
    export_network(g, "onnx", onnx_path, tmp_path / "w.safetensors", metadata=shipped.metadata)
    assert read_onnx_metadata(onnx_path).outputs == shipped.metadata.outputs


def test_a_segmenter_export_says_how_to_read_its_logits(tmp_path):
    g = load_network(next(p for p in EXAMPLES if p.stem == "unet_small"))
    meta = ModelMetadata(network=g.graph["name"], input_shape=(1, 64, 64), mean=(0.2,), std=(0.3,), task="segment",
                         class_names=tuple(f"c{i}" for i in range(11)))
    save_weights(lower_to_torch(g), tmp_path / "w.safetensors", meta)
    shipped = export_model(g, "pytorch", tmp_path / "seg.py", weights=tmp_path / "w.safetensors")
    assert "`logits` [N, 11, 64, 64]: per-pixel class logits" in shipped.metadata.outputs
    assert "def decode(logits):" in (tmp_path / "seg.py").read_text()
