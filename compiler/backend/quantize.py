"""int8 ONNX: static post-training quantization with onnxruntime's tools (QDQ format, int8 weights per output channel,
uint8 activations whose ranges come from calibration images), so the file runs in int8 on CPU and NPU runtimes.

Ops onnxruntime cannot quantize keep float; `Quantized.float_ops` names them (the input normalisation's Sub and
Div among them: they run on the float pixels before the first quantized op).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compiler.diagnostics import NetError

CALIBRATION_BATCH = 32
# Ops that carry no arithmetic of their own: never worth naming as "kept float".
PLUMBING = {"Constant", "Identity", "Shape", "QuantizeLinear", "DequantizeLinear", "Cast"}


@dataclass(frozen=True)
class Quantized:
    """An int8 file: where it is, how many images calibrated it, and the ops kept float (op type -> nodes)."""

    path: Path
    images: int
    float_ops: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> str:
        """How it was quantized, in one line (stored in the file's metadata)."""
        kept = ", ".join(f"{op} ({len(nodes)})" for op, nodes in self.float_ops.items()) or "none"
        return (f"int8 static post-training quantization by onnxruntime: QDQ, int8 weights per output channel, "
                f"uint8 activations calibrated (min-max) on {self.images} training images; kept float: {kept}")


class _Batches:
    """onnxruntime's CalibrationDataReader protocol: get_next() -> {input: batch} until None."""

    def __init__(self, name: str, images: np.ndarray):
        self.name = name
        self.batches: Iterator[np.ndarray] = iter(np.array_split(images, max(1, len(images) // CALIBRATION_BATCH)))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {self.name: np.ascontiguousarray(batch, dtype=np.float32)}


def quantizable_op_types() -> set[str]:
    """The op types onnxruntime's static quantizer handles (its QDQ and QLinear registries)."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return set(QDQRegistry) | set(QLinearOpsRegistry)


def float_ops(path: str | Path) -> dict[str, list[str]]:
    """The nodes of an ONNX file that onnxruntime's quantizer leaves float, by op type (named by node, or by output
    where the optimiser inlined a function: `_inlfunc_HardSwish_...`)."""
    import onnx

    known = quantizable_op_types() | PLUMBING
    kept: dict[str, list[str]] = {}
    for node in onnx.load(str(path)).graph.node:
        if node.op_type not in known:
            kept.setdefault(node.op_type, []).append(node.name or node.output[0])
    return kept


def quantize_onnx(float_path: str | Path, out: str | Path, calibration: np.ndarray) -> Quantized:
    """Quantize a float ONNX file (one input) into `out`, calibrating on `calibration` images (N, C, H, W, float32,
    exactly as the model takes them)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

    if len(calibration) == 0:
        raise NetError("int8 quantization needs at least one calibration image")
    model = onnx.load(str(float_path))
    inputs = [i.name for i in model.graph.input]
    if len(inputs) != 1:
        raise NetError(f"int8 export is for networks with one input; this one has {len(inputs)} ({', '.join(inputs)})")
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime's advice to pre-process (we do) and per-op notes
    try:
        with tempfile.TemporaryDirectory() as tmp:
            prepared = Path(tmp) / "prepared.onnx"
            # shape inference and onnxruntime's graph optimisations (batch norm folded into the conv before it)
            quant_pre_process(str(float_path), str(prepared))
            kept = float_ops(prepared)
            quantize_static(str(prepared), str(out), _Batches(inputs[0], calibration),
                            quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    except OSError as err:
        raise NetError(f"cannot write {out}: {err.strerror or err}") from None
    finally:
        logging.getLogger().setLevel(quiet)
    return Quantized(Path(out), len(calibration), kept)
