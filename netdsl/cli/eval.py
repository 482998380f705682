"""netdsl eval: the task's metrics of trained weights, or of an exported file, on a dataset's test split.

FILE is a .net file with --weights W, or an exported model: model.onnx (run by onnxruntime) or model.pt
(TorchScript), fed as its metadata says (the pixels as read when it normalises them itself). Data is always
normalised as the weights were trained. Classification: accuracy and confusion matrix; segmentation: mean IoU,
pixel accuracy and per-class IoU; detection: mAP@0.5 and mAP@[.5:.95] of the decoded CenterNet heads.
"""

from __future__ import annotations

import numpy as np

from netdsl.cli import arguments
from netdsl.cli.console import console as make_console
from netdsl.cli.layout import Column, emit, table, wrap_items


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate trained weights or an exported model", description=__doc__)
    arguments.add_network_arguments(p)
    p.add_argument("--weights", help="for a .net FILE: weights.safetensors or a state dict (loaded weights-only); "
                   "required there, refused for an exported file (default: none)")
    arguments.add_data_arguments(p, limit_train=False)
    p.add_argument("--split", choices=["test", "val"], default="test", help="which split to measure (default: test)")
    p.add_argument("--mean", type=float, nargs="+", metavar="M",
                   help="for an exported model netdsl did not make: the per-channel mean of [0, 1] pixels it was "
                        "trained with (one value for all channels, or one per channel; default: the file's metadata)")
    p.add_argument("--std", type=float, nargs="+", metavar="S",
                   help="... and the per-channel std (default: the file's metadata)")
    p.add_argument("--threads", type=int, default=None,
                   help="onnxruntime threads for an .onnx FILE (default: onnxruntime's own choice)")
    arguments.add_device_argument(p)
    arguments.add_json_argument(p, "what was measured (network, weights, data, split), the metrics and the confusion "
                                   "matrix (docs/schemas/eval.json)")
    p.set_defaults(run=run)


def run(args) -> int:
    from compiler.diagnostics import NetError
    from gensynth.deploy.exported import exported_kind

    if exported_kind(args.file) is not None:
        for flag in ("weights", "network"):
            if getattr(args, flag):
                raise NetError(f"--{flag} is for a .net FILE; {args.file} is an exported model")
        if args.param:
            raise NetError(f"--param is for a .net FILE; {args.file} is an exported model")
        return _run_exported(args)
    if args.weights is None:
        raise NetError(f"evaluating {args.file} needs its trained weights: --weights W",
                       notes=["or evaluate an exported model: netdsl eval model.onnx"])
    if args.mean or args.std:
        raise NetError("--mean and --std are for exported models netdsl did not make; weights carry their own "
                       "normalisation")
    return _run_network(args)


def _run_network(args) -> int:
    from compiler.backend.lower import lower_to_torch
    from compiler.backend.weights import load_weights_file
    from compiler.cost import check_memory
    from gensynth.tasks.objectives import check_network_fits, objective_for
    from gensynth.training.device import device_memory, resolve_device
    from gensynth.training.evaluate import evaluate
    from gensynth.training.preprocessing import data_for_weights

    g = arguments.load_from_args(args)
    device = resolve_device(args.device)
    available, where = device_memory(device)
    check_memory(g, "evaluating", batch=1, available=available, where=where)  # before reading weights or data
    data = data_for_weights(args.data, args.weights, g, task=args.task, input_shape=arguments.input_shape(g))
    check_network_fits(g, data)
    model = lower_to_torch(g)
    for note in load_weights_file(model, args.weights):
        make_console(stderr=True).print(f"note: {note}", markup=False)
    model.to(device)
    x, y = (data.test_x, data.test_y) if args.split == "test" else (data.val_x, data.val_y)
    result = evaluate(model, x, y, device=device, objective=objective_for(data))
    fed = f"normalised with the weights' mean {list(data.mean)}, std {list(data.std)}"
    return _render(args, g.graph["name"], args.weights, "torch", fed, data, result)


def _run_exported(args) -> int:
    from compiler.diagnostics import NetError
    from gensynth.deploy.exported import evaluate_exported

    if args.threads is not None and args.threads < 1:
        raise NetError(f"--threads must be at least 1, got {args.threads}")
    if (args.mean is None) != (args.std is None):
        raise NetError("--mean and --std go together")
    scored = evaluate_exported(args.file, args.data, split=args.split, task=args.task,
                               mean=tuple(args.mean) if args.mean else None,
                               std=tuple(args.std) if args.std else None, threads=args.threads)
    name = scored.model.metadata.network if scored.model.metadata else args.file
    if not args.json:
        make_console(stderr=True).print(f"{args.file} ({scored.model.kind}): fed {scored.fed}", markup=False)
    return _render(args, name, None, scored.model.kind, scored.fed, scored.data, scored.result)


def _render(args, name: str, weights: str | None, runtime: str, fed: str, data, result) -> int:
    """The metrics as JSON or as a table at the console's width."""
    from netdsl.cli.training_view import metrics_text

    confusion = result.confusion.tolist() if result.confusion is not None else None
    if args.json:
        arguments.print_json({"network": name, "file": args.file, "weights": weights, "runtime": runtime,
                              "fed": fed, "data": data.name, "split": args.split, "task": data.task,
                              "metrics": dict(result.metrics), "loss": result.loss, "count": result.count,
                              "classes": list(data.class_names), "confusion": confusion})
        return 0
    console = make_console()
    width = console.width
    title = wrap_items([f"{name} on {data.name} ({args.split})", metrics_text(result.metrics)], width,
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
