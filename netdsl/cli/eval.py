"""netdsl eval: the task's metrics of trained weights on a dataset's test split.

Classification: accuracy and confusion matrix; segmentation: mean IoU, pixel accuracy and per-class IoU;
detection: mAP@0.5 and mAP@[.5:.95] of the decoded CenterNet heads.
"""

from __future__ import annotations

import numpy as np

from netdsl.cli import arguments
from netdsl.cli.console import console as make_console
from netdsl.cli.layout import Column, emit, table, wrap_items


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate trained weights", description=__doc__)
    arguments.add_network_arguments(p)
    p.add_argument("--weights", required=True, help="weights.safetensors or a state dict (loaded weights-only)")
    arguments.add_data_arguments(p, limit_train=False)
    p.add_argument("--split", choices=["test", "val"], default="test", help="which split to measure (default: test)")
    arguments.add_device_argument(p)
    arguments.add_json_argument(p, "what was measured (network, weights, data, split), the metrics and the confusion "
                                   "matrix (docs/schemas/eval.json)")
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
        arguments.print_json({"network": g.graph["name"], "file": args.file, "weights": args.weights,
                              "data": data.name, "split": args.split, "task": data.task,
                              "metrics": dict(result.metrics), "loss": result.loss, "count": result.count,
                              "classes": list(data.class_names), "confusion": confusion})
        return 0
    console = make_console()
    width = console.width
    title = wrap_items([f"{g.graph['name']} on {data.name} ({args.split})", metrics_text(result.metrics)], width,
                       sep=": ")
    loss = f"loss {result.loss:.4f} over {result.count} images"
    if data.task == "detect":
        console.print(title, markup=False)
        console.print(loss, markup=False)
        return 0
    if data.task == "segment":
        rows = [[name, "-" if np.isnan(iou) else f"{iou:.2%}", str(int(n))]
                for name, iou, n in zip(data.class_names, result.per_class_iou(), result.confusion.sum(1))]
        emit(console, table([Column("class"), Column("IoU", right=True), Column("pixels", right=True)], rows, width,
                            title=title))
        console.print(loss, markup=False)
        return 0
    emit(console, confusion_table(list(data.class_names), result.confusion, width, title))
    console.print(loss, markup=False)
    return 0


def confusion_table(classes: list[str], confusion, width: int, title: str):
    """Rows by true class (full names), columns by predicted class: full names where they fit the width,
    else the classes' numbers, which the rows list."""
    counts = [[str(int(v)) for v in row] for row in confusion]
    name_width = max(len(c) for c in classes)
    digits = max(len(v) for row in counts for v in row)
    by_name = name_width + 2 + len(classes) * (2 + max(digits, max(len(c) for c in classes)))
    named = by_name <= width
    headers = classes if named else [str(i) for i in range(len(classes))]
    rows = [[name if named else f"{i} {name}", *row] for i, (name, row) in enumerate(zip(classes, counts))]
    columns = [Column("true \\ predicted")] + [Column(h, right=True) for h in headers]
    return table(columns, rows, width, title=title)
