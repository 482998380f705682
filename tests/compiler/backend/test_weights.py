"""Weights files: values that are not float weights are refused, other float precisions are converted and said."""

from __future__ import annotations

import pytest
import safetensors.torch
import torch

from compiler.backend.lower import lower_to_torch
from compiler.backend.weights import check_weights_file, load_weights_file
from compiler.diagnostics import NetError
from netdsl.loader import load_network_text

NET = "network t {\n input x: [1, 8, 8]\n output y = x -> conv(4, k=3) -> bn -> gap -> linear(3)\n}"


def saved(tmp_path, change) -> tuple[torch.nn.Module, str]:
    model = lower_to_torch(load_network_text(NET))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    change(state)
    path = tmp_path / "w.safetensors"
    safetensors.torch.save_file(state, str(path))
    return model, str(path)


@pytest.mark.parametrize("dtype", [torch.bool, torch.int32, torch.int64, torch.uint8])
def test_integer_or_bool_weights_are_refused(tmp_path, dtype):
    model, path = saved(tmp_path, lambda s: s.update({"conv.weight": s["conv.weight"].to(dtype)}))
    with pytest.raises(NetError, match=f"hold {dtype} values where the model has floats"):
        load_weights_file(model, path)


def test_nan_or_infinite_weights_are_refused(tmp_path):
    def poison(state):
        state["linear.weight"][0, 0] = float("nan")
        state["bn.running_var"][1] = float("inf")

    model, path = saved(tmp_path, poison)
    with pytest.raises(NetError, match=r"hold NaN or infinite values \(2 tensor\(s\)\)") as info:
        load_weights_file(model, path)
    assert "linear.weight: 1 of 12 values" in info.value.notes


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64, torch.bfloat16])
def test_other_float_precisions_are_converted_and_said(tmp_path, dtype):
    model, path = saved(tmp_path, lambda s: s.update({k: v.to(dtype) for k, v in s.items() if v.is_floating_point()}))
    notes = load_weights_file(model, path)
    assert notes == [f"weights in {path}: 8 tensor(s) converted from {str(dtype)[6:]} to float32"]
    assert model.conv.weight.dtype == torch.float32
    meta = lower_to_torch(load_network_text(NET), device="meta")
    assert check_weights_file(meta, path) == notes  # checked without loading, on the meta device
