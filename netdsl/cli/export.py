"""netdsl export: write a network as ONNX, TorchScript or a standalone PyTorch source file."""

from __future__ import annotations

from netdsl.cli.arguments import add_json_argument, add_network_arguments, load_from_args, print_json
from netdsl.cli.console import console, escape


def register(sub) -> None:
    p = sub.add_parser("export", help="export a network to ONNX, TorchScript or PyTorch source", description=__doc__)
    add_network_arguments(p)
    p.add_argument("--to", required=True, metavar="TARGET", help="onnx, torchscript or pytorch")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="the file to write")
    p.add_argument("--weights", metavar="W",
                   help="trained weights: .safetensors or a torch state dict, never executed (default: freshly initialised "
                        "weights)")
    add_json_argument(p, "what was written: file, format, network, parameters, weights (docs/schemas/export.json)")
    p.set_defaults(run=run)


def run(args) -> int:
    from compiler.backend.export import check_target, export_network  # torch is imported only when exporting

    check_target(args.to)
    g = load_from_args(args)
    module = export_network(g, args.to, args.output, args.weights, origin=args.file)
    params = sum(p.numel() for p in module.parameters())
    weights = f"weights from {args.weights}" if args.weights else "freshly initialised weights"
    if args.to == "pytorch":
        weights = "no weights (load a state dict with load_state_dict)"
    if args.json:
        print_json({"ok": True, "file": args.file, "network": g.graph["name"], "format": args.to,
                    "output": args.output, "params": params,
                    "weights": args.weights if args.to != "pytorch" else None})
        return 0
    console().print(f"[green]wrote[/green] {escape(args.output)}: {g.graph['name']} as {args.to}, "
                    f"{params:,} parameters, {escape(weights)}")
    return 0
