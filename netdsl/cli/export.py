"""netdsl export: write a network as ONNX, TorchScript or a standalone PyTorch source file.

Exports are complete: the normalisation the weights were trained with is the model's first operation, so it takes
float pixels in [0, 1] (8-bit values / 255), NCHW, channels in the data's order (grey, or RGB); the file carries
the class names, normalisation, input size, task, MACs, params, netdsl version and source hash (ONNX
metadata_props, TorchScript extra file netdsl.json, constants and docstring of the source). --int8 writes a
statically quantized ONNX file (onnxruntime: QDQ, per-channel int8 weights, activations calibrated on training
images).
"""

from __future__ import annotations

import sys

from netdsl.cli import arguments
from netdsl.cli.console import console, escape
from netdsl.cli.paths import output_file


def register(sub) -> None:
    p = sub.add_parser("export", help="export a network to ONNX, TorchScript or PyTorch source", description=__doc__)
    arguments.add_network_arguments(p)
    p.add_argument("--to", required=True, metavar="TARGET", help="onnx, torchscript or pytorch")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="the file to write")
    p.add_argument("--weights", metavar="W",
                   help="trained weights: .safetensors or a torch state dict, never executed (default: freshly "
                        "initialised weights, asked about in a terminal and warned about otherwise)")
    p.add_argument("--random-weights", action="store_true",
                   help="export freshly initialised weights on purpose (no question, no warning)")
    p.add_argument("--no-preprocess", action="store_true",
                   help="leave the input normalisation out: the model then takes normalised inputs (the file's "
                        "metadata still says which mean and std)")
    p.add_argument("--data", default=None, metavar="SPEC",
                   help=f"dataset ({arguments.DATA_SPECS}): int8 calibration images, and the normalisation for "
                        "weights that do not carry theirs (default: none)")
    p.add_argument("--int8", action="store_true",
                   help="ONNX only: static int8 quantization calibrated on --data's training images")
    p.add_argument("--calibration", type=int, default=512, metavar="N",
                   help="training images that calibrate --int8 activation ranges (default: 512)")
    arguments.add_json_argument(p, "what was written and the metadata it carries (docs/schemas/export.json)")
    p.set_defaults(run=run)


def _random_weights_meant(args) -> bool:
    """Without --weights: ask in a terminal; elsewhere go on (the library warns)."""
    if args.weights or args.random_weights or not sys.stdin.isatty() or args.json:
        return True
    answer = input("no --weights given: export freshly initialised (random) weights? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def run(args) -> int:
    import warnings

    from compiler.diagnostics import NetError, NetWarning
    from gensynth.deploy.package import check_request, export_model  # torch is imported only when exporting

    check_request(args.to, args.int8, args.data, args.calibration)
    output_file(args.output, f"{args.to} file")  # before any work
    g = arguments.load_from_args(args)
    if not _random_weights_meant(args):
        raise NetError("export cancelled: no --weights", notes=["pass --weights W, or --random-weights"])
    with warnings.catch_warnings():
        if args.random_weights:
            warnings.filterwarnings("ignore", "no --weights", NetWarning)
        shipped = export_model(g, args.to, args.output, weights=args.weights, data=args.data,
                               preprocess=not args.no_preprocess, int8=args.int8, calibration=args.calibration,
                               origin=args.file)
    meta = shipped.metadata
    if args.json:
        arguments.print_json({
            "ok": True, "file": args.file, "network": g.graph["name"], "format": args.to, "output": args.output,
            "params": shipped.params, "weights": args.weights if args.to != "pytorch" else None,
            "preprocess": meta.normalized_inside, "input": meta.input_text(), "outputs": meta.outputs or None,
            "int8": args.int8, "float_ops": shipped.int8.float_ops if shipped.int8 else None,
            "metadata": meta.to_strings()})
        return 0
    out = console()
    what = f"{'int8 ' if args.int8 else ''}{args.to}"
    weights = f"weights from {args.weights}" if args.weights else "freshly initialised weights"
    if args.to == "pytorch":
        weights = "no weights (load a state dict with load_state_dict)"
    out.print(f"[green]wrote[/green] {escape(args.output)}: {g.graph['name']} as {what}, {shipped.params:,} "
              f"parameters, {escape(weights)}")
    out.print(f"input: {escape(meta.input_text())}")
    if meta.outputs:
        out.print(f"outputs: {escape(meta.outputs)}")
    if shipped.int8 is not None:
        out.print(f"calibrated on {shipped.int8.images} training images of {escape(args.data)}")
        for op, nodes in shipped.int8.float_ops.items():
            out.print(f"kept float (onnxruntime cannot quantize {op}): {escape(', '.join(nodes))}")
    return 0
