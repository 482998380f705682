"""netdsl train: train a network on a dataset; the output directory keeps weights, source and metrics."""

from __future__ import annotations

from pathlib import Path

from netdsl.cli import arguments
from netdsl.cli.console import console as make_console
from netdsl.cli.layout import wrap_items


def add_training_arguments(p, epochs: int = 10) -> None:
    """--data and the training hyperparameters."""
    arguments.add_data_arguments(p)
    p.add_argument("--epochs", type=int, default=epochs, help=f"training epochs (default {epochs})")
    arguments.add_lr_argument(p, "the", "0.05 for sgd, 0.002 for adamw")
    arguments.add_recipe_arguments(p)
    p.add_argument("--schedule", choices=["cosine", "none"], default="cosine", help="default: cosine")
    arguments.add_seed_argument(p)
    arguments.add_device_argument(p)


def train_config(args):
    """A TrainConfig from the shared training arguments."""
    from gensynth.training.train import TrainConfig

    return TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, optimizer=args.optimizer,
                       schedule=args.schedule, seed=args.seed, device=args.device, augment=args.augment,
                       warmup_epochs=args.warmup_epochs)


def register(sub) -> None:
    p = sub.add_parser("train", help="train a network on a dataset", description=__doc__)
    arguments.add_network_arguments(p)
    add_training_arguments(p)
    p.add_argument("--out", default=None,
                   help="output directory (default: runs/<network>, or runs/<network>-2, -3, ... if that holds a run); "
                        "a directory that already holds a run is refused unless --force")
    p.add_argument("--force", action="store_true", help="train into an --out that already holds a run, replacing "
                                                        "its weights and metrics")
    p.add_argument("--weights", metavar="W", help="start from these weights (.safetensors or a state dict, e.g. "
                   "from netdsl import) instead of a fresh initialisation (default: a fresh initialisation)")
    arguments.add_json_argument(p, "the network, data, metrics and where the run was saved (docs/schemas/train.json)")
    p.set_defaults(run=run)


def run(args) -> int:
    from compiler.backend.lower import lower_to_torch
    from compiler.printer import print_network
    from gensynth.data import load_dataset
    from gensynth.runs import TRAIN_FILES, claim_folder, copy_into, free_folder, write_file
    from gensynth.tasks.objectives import check_network_fits
    from gensynth.training.train import train

    g = arguments.load_from_args(args)
    config = train_config(args)
    config.validate()
    options = {"limit_train": args.limit_train, "task": args.task, "input_shape": arguments.input_shape(g)}
    if args.weights:  # go on with the normalisation those weights were trained with
        from gensynth.training.preprocessing import data_for_weights

        data = data_for_weights(args.data, args.weights, g, **options)
    else:
        data = load_dataset(args.data, **options)
    check_network_fits(g, data)
    config.check_fits(g)
    if args.weights:  # readable, fitting weights, checked before the run folder is claimed
        from compiler.backend.weights import check_weights_file

        for note in check_weights_file(lower_to_torch(g, device="meta"), args.weights):
            make_console(stderr=True).print(f"note: {note}", markup=False)
    if args.out:
        out = claim_folder(Path(args.out), TRAIN_FILES, "training run", args.force,
                           hint="add --force to replace it, or choose another --out")
    else:
        out = claim_folder(free_folder(Path("runs") / g.graph["name"], TRAIN_FILES), TRAIN_FILES, "training run")
    copy_into(Path(args.file), out / "model.net", args.force)
    write_file(out / "canonical.net", print_network(g))
    import torch

    torch.manual_seed(config.seed)  # the initial weights follow --seed, not whatever ran before in the process
    model = lower_to_torch(g)
    if args.weights:
        from compiler.backend.weights import load_weights_file

        load_weights_file(model, args.weights)
    from netdsl.cli.training_view import metrics_text, training_progress

    with training_progress(config.epochs, enabled=not args.json) as (on_batch, on_epoch):
        result = train(model, data, config, out_dir=out, on_epoch=on_epoch, on_batch=on_batch)
    last = result.epochs[-1]
    summary = {
        "network": g.graph["name"], "data": data.name, "task": data.task, "epochs": len(result.epochs),
        "train_acc": last.train_acc, "val_acc": last.val_acc,
        "test_acc": result.test.accuracy if result.test else None,
        "val_metrics": last.val_metrics, "test_metrics": result.test.metrics if result.test else None,
        "wall_s": result.wall_s, "device": result.device, "out": str(out),
    }
    if args.json:
        arguments.print_json(summary)
    else:
        val = metrics_text(last.val_metrics) if last.val_metrics else "n/a"
        test = metrics_text(result.test.metrics) if result.test else "n/a"
        console = make_console()
        console.print(wrap_items([f"{g.graph['name']} on {data.name}: val {val}", f"test {test}",
                                  f"{result.wall_s:.1f} s on {result.device}", f"weights in {out}/weights.safetensors"],
                                 console.width, sep="; "), markup=False)
    return 0

