"""netdsl eval: accuracy and confusion matrix of trained weights on a dataset's test split."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from netdsl.commands.common import add_network_arguments, load_from_args, print_json


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate trained weights", description=__doc__)
    add_network_arguments(p)
    p.add_argument("--weights", required=True, help="weights.safetensors or a state dict (loaded weights-only)")
    p.add_argument("--data", default="fashion-mnist", help="dataset spec (see netdsl train --help)")
    p.add_argument("--split", choices=["test", "val"], default="test")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run)


def run(args) -> int:
    from compiler.lower import lower_to_torch
    from gensynth.checkpoint import load_weights
    from gensynth.data import check_fits, load_dataset
    from gensynth.train import evaluate, resolve_device
    from netdsl.commands.train import check_network_fits

    g = load_from_args(args)
    data = load_dataset(args.data)
    check_network_fits(g, data, check_fits)
    model = lower_to_torch(g)
    load_weights(model, args.weights)
    device = resolve_device(args.device)
    model.to(device)
    x, y = (data.test_x, data.test_y) if args.split == "test" else (data.val_x, data.val_y)
    result = evaluate(model, x, y, device=device)
    if args.json:
        print_json({"accuracy": result.accuracy, "loss": result.loss, "count": result.count,
                    "confusion": result.confusion.tolist(), "classes": list(data.class_names)})
        return 0
    console = Console(highlight=False)
    table = Table(title=f"{g.graph['name']} on {data.name} ({args.split}): accuracy {result.accuracy:.2%}")
    table.add_column("true \\ predicted")
    for name in data.class_names:
        table.add_column(name[:8], justify="right")
    for name, row in zip(data.class_names, result.confusion):
        table.add_row(name, *[str(int(v)) for v in row])
    console.print(table)
    console.print(f"loss {result.loss:.4f} over {result.count} images")
    return 0
