"""netdsl eval: the task's metrics of trained weights on a dataset's test split.

Classification: accuracy and confusion matrix; segmentation: mean IoU, pixel accuracy and per-class IoU;
detection: mAP@0.5 and mAP@[.5:.95] of the decoded CenterNet heads.
"""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.table import Table

from netdsl.cli import arguments


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate trained weights", description=__doc__)
    arguments.add_network_arguments(p)
    p.add_argument("--weights", required=True, help="weights.safetensors or a state dict (loaded weights-only)")
    arguments.add_data_arguments(p, limit_train=False)
    p.add_argument("--split", choices=["test", "val"], default="test", help="default: test")
    arguments.add_device_argument(p)
    arguments.add_json_argument(p, "the metrics and the confusion matrix")
    p.set_defaults(run=run)


def run(args) -> int:
    from compiler.backend.lower import lower_to_torch
    from compiler.backend.weights import load_weights_file
    from gensynth.data import load_dataset
    from gensynth.tasks.objectives import check_network_fits, objective_for
    from gensynth.training.device import resolve_device
    from gensynth.training.evaluate import evaluate
    from netdsl.cli.training_view import metrics_text

    g = arguments.load_from_args(args)
    data = load_dataset(args.data, task=args.task, input_shape=arguments.input_shape(g))
    check_network_fits(g, data)
    model = lower_to_torch(g)
    load_weights_file(model, args.weights)
    device = resolve_device(args.device)
    model.to(device)
    x, y = (data.test_x, data.test_y) if args.split == "test" else (data.val_x, data.val_y)
    result = evaluate(model, x, y, device=device, objective=objective_for(data))
    confusion = result.confusion.tolist() if result.confusion is not None else None
    if args.json:
        arguments.print_json({"task": data.task, **result.metrics, "accuracy": result.accuracy,
                              "loss": result.loss, "count": result.count, "confusion": confusion,
                              "classes": list(data.class_names)})
        return 0
    console = Console(highlight=False)
    title = f"{g.graph['name']} on {data.name} ({args.split}): {metrics_text(result.metrics)}"
    if data.task == "detect":
        console.print(title)
        console.print(f"loss {result.loss:.4f} over {result.count} images")
        return 0
    if data.task == "segment":
        table = Table(title=title)
        table.add_column("class")
        table.add_column("IoU", justify="right")
        table.add_column("pixels", justify="right")
        for name, iou, n in zip(data.class_names, result.per_class_iou(), result.confusion.sum(1)):
            table.add_row(name, "-" if np.isnan(iou) else f"{iou:.2%}", str(int(n)))
        console.print(table)
        console.print(f"loss {result.loss:.4f} over {result.count} images")
        return 0
    table = Table(title=title)
    table.add_column("true \\ predicted")
    for name in data.class_names:
        table.add_column(name[:8], justify="right")
    for name, row in zip(data.class_names, result.confusion):
        table.add_row(name, *[str(int(v)) for v in row])
    console.print(table)
    console.print(f"loss {result.loss:.4f} over {result.count} images")
    return 0
