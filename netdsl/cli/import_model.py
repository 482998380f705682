"""netdsl import: a PyTorch model (FILE.py:Name or package.module:Name, with --state-dict) or an ONNX file as a
readable .net file, repeated module classes as blocks, with its trained weights (.safetensors, keys = layer names).

The written network is loaded back and run beside the original on a random input; the largest output
difference is reported."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rich.console import Console

from netdsl.cli.arguments import print_json


def register(sub) -> None:
    p = sub.add_parser("import", help="import a PyTorch or ONNX model with its weights", description=__doc__)
    p.add_argument("source", metavar="SRC", help="model.onnx, path/to/file.py:Name or package.module:Name (an "
                   "nn.Module class or a function returning one)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.net", help="the .net file to write")
    p.add_argument("--weights-out", metavar="W", help="where the weights go (default: OUT.safetensors)")
    p.add_argument("--input", action="append", metavar="CxHxW",
                   help="per-sample input shape, e.g. 3x224x224; repeat for several inputs (required for PyTorch "
                        "models; default for ONNX: the file's)")
    p.add_argument("--name", help="the network's name (default: the class or graph name)")
    p.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                   help="a constructor argument, as a Python literal: --arg num_classes=10 (repeatable; default: the "
                        "constructor's defaults)")
    p.add_argument("--state-dict", metavar="FILE", help="trained weights for a PyTorch model: a .pt/.pth state dict "
                   "(loaded with weights_only=True) or .safetensors (default: the model's own initial weights)")
    p.add_argument("--mean", type=float, nargs="+", metavar="M",
                   help="the per-channel mean of [0, 1] pixels the model was trained with (ImageNet: 0.485 0.456 "
                        "0.406), saved with the weights so that eval, export and synth normalise data the same way "
                        "(default: unknown; a netdsl ONNX export's own)")
    p.add_argument("--std", type=float, nargs="+", metavar="S", help="... and the per-channel std (ImageNet: 0.229 "
                   "0.224 0.225; default: unknown)")
    p.add_argument("--force", action="store_true", help="overwrite OUT.net and the weights if they exist")
    p.add_argument("--no-verify", action="store_true", help="skip running the original and the import side by side")
    p.add_argument("--json", action="store_true", help="print the report as JSON (docs/schemas/import.json)")
    p.set_defaults(run=run)


def run(args) -> int:
    from netdsl.importers.importer import ImportRequest, import_model, parse_shape

    request = ImportRequest(
        source=args.source, out=Path(args.output), weights_out=Path(args.weights_out) if args.weights_out else None,
        input_shapes=tuple(parse_shape(s) for s in args.input) if args.input else None, name=args.name,
        args=tuple(args.arg), state_dict=Path(args.state_dict) if args.state_dict else None, force=args.force,
        verify=not args.no_verify, mean=tuple(args.mean) if args.mean else None,
        std=tuple(args.std) if args.std else None)
    report = import_model(request)
    if args.json:
        print_json(dataclasses.asdict(report))
        return 0
    from netdsl.cli.cost import human

    console = Console(highlight=False)
    blocks = ", ".join(f"{name} x{n}" for name, n in report.blocks.items()) or "none"
    console.print(f"[green]wrote[/green] {report.out}: {report.network}, {report.layers} layers in {report.lines} "
                  f"lines; blocks: {blocks}")
    console.print(f"[green]wrote[/green] {report.weights}: {human(report.params, 'params')}, "
                  f"{human(report.macs, 'MACs')}")
    if report.max_abs_diff is not None:
        relative = report.max_abs_diff / max(report.output_scale, 1e-12)
        verdict = "[green]same outputs[/green]" if relative <= 1e-4 else "[red]outputs differ[/red]"
        console.print(f"{verdict} as {Path(report.source.rpartition(':')[0] or report.source).name}: max abs difference "
                      f"{report.max_abs_diff:.2g} (outputs up to {report.output_scale:.3g}) on a random input")
    for note in report.notes:
        console.print(f"  note: {note}")
    console.print(f"{report.seconds:.1f} s; next: netdsl show {report.out}, or netdsl synth {report.out} --weights "
                  f"{report.weights} --data ...")
    return 0
