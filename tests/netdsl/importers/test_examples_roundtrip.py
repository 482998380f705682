"""Every example exported (PyTorch source, ONNX) and imported back is the same network computing the same outputs."""

from __future__ import annotations

import functools

import pytest
import safetensors.torch

from compiler.backend.codegen import class_name
from compiler.backend.export import export_network
from compiler.backend.lower import lower_to_torch
from netdsl.importers.importer import ImportRequest, import_model
from netdsl.loader import load_network
from tests.compiler.backend.lowering_nets import EXAMPLES, randomise_state, resized
from tests.netdsl.importers.roundtrip import explicit_padding, onnx_view, same_cost, same_graph

# Inputs of 32x32 where the network allows, to keep the test fast (None: as written). MobileNetV1 pools 7x7 at the
# end; ONNX can express VGG's adaptive pooling to 7x7 only from a multiple of 7, so it needs the full 224x224.
SIDE = {"lenet5": None, "fashion_cnn": None, "unet_small": None, "detector_small": None, "mobilenet_v1": None}
ONNX_SIDE = {"vgg16": None}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(graph, folder with weights.safetensors and the exported file) per example and route."""

    @functools.cache
    def make(path, route):
        g = load_network(path)
        side = (ONNX_SIDE if route == "onnx" and path.stem in ONNX_SIDE else SIDE).get(path.stem, 32)
        g = resized(g, side) if side else g
        folder = tmp_path_factory.mktemp(f"{path.stem}-{route}")
        module = lower_to_torch(g).eval()
        randomise_state(module)
        safetensors.torch.save_file(module.state_dict(), str(folder / "weights.safetensors"))
        if route == "pytorch":
            export_network(g, "pytorch", folder / "net.py")
        else:
            export_network(g, "onnx", folder / "net.onnx", folder / "weights.safetensors")
        return g, folder

    return make


@pytest.mark.parametrize("route", ["pytorch", "onnx"])
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_export_then_import_gives_the_same_network(path, route, exported, tmp_path):
    g, folder = exported(path, route)
    shapes = tuple(tuple(g.nodes[i]["shape"]) for i in g.graph["inputs"])
    if route == "pytorch":
        request = ImportRequest(f"{folder / 'net.py'}:{class_name(g)}", tmp_path / "imported.net",
                                input_shapes=shapes, state_dict=folder / "weights.safetensors")
        expected = explicit_padding(g)  # the generated source spells padding="same" as the number it means
    else:
        request = ImportRequest(str(folder / "net.onnx"), tmp_path / "imported.net")
        expected = onnx_view(g)
    report = import_model(request)
    imported = load_network(tmp_path / "imported.net")
    assert same_graph(imported, expected)
    assert same_cost(imported, g)
    assert report.max_abs_diff <= 1e-5 * report.output_scale
    assert not report.flat
