import numpy as np
import pytest
import torch

from compiler.diagnostics import NetError
from gensynth.data import Dataset
from gensynth.tasks.objectives import Objective, check_fits, objective_for, select_output
from gensynth.training.evaluate import evaluate
from gensynth.training.train import TrainConfig, train


def dataset(task: str, classes: int, y: torch.Tensor, shape=(1, 8, 8)) -> Dataset:
    x = torch.zeros(len(y), *shape)
    return Dataset(name=f"toy-{task}", train_x=x, train_y=y, val_x=x, val_y=y, test_x=x[:0], test_y=y[:0],
                   num_classes=classes, input_shape=shape, class_names=tuple(map(str, range(classes))),
                   mean=(0.0,), std=(1.0,), task=task)


def test_check_fits_classification() -> None:
    ds = dataset("classify", 4, torch.zeros(4, dtype=torch.long))
    check_fits((1, 8, 8), {"logits": (4,)}, ds)
    check_fits((1, None, None), {"logits": (4,)}, ds)
    with pytest.raises(NetError) as err:
        check_fits((3, 32, 32), {"logits": (10,)}, ds)
    text = str(err.value)
    assert "(3, 32, 32)" in text and "(1, 8, 8)" in text and "10 output classes" in text and "has 4" in text
    with pytest.raises(NetError, match=r"input \(1, 8\)"):
        check_fits((1, 8), {"logits": (4,)}, ds)
    with pytest.raises(NetError, match="one output"):
        check_fits((1, 8, 8), {"a": (4,), "b": (4,)}, ds)


def test_check_fits_segmentation_needs_logits_per_pixel() -> None:
    ds = dataset("segment", 3, torch.zeros(2, 8, 8, dtype=torch.uint8))
    check_fits((1, 8, 8), {"logits": (3, 8, 8)}, ds)
    for bad in ({"logits": (4, 8, 8)}, {"logits": (3, 4, 4)}, {"logits": (3,)}):
        with pytest.raises(NetError, match=r"segmentation .* needs one output \[3, 8, 8\]"):
            check_fits((1, 8, 8), bad, ds)


def test_check_fits_detection_needs_two_heads_at_one_stride() -> None:
    ds = dataset("detect", 2, -torch.ones(2, 1, 5), shape=(1, 32, 32))
    check_fits((1, 32, 32), {"heatmap": (2, 8, 8), "boxes": (4, 8, 8)}, ds)
    for bad in ({"heatmap": (2, 8, 8)}, {"heatmap": (3, 8, 8), "boxes": (4, 8, 8)},
                {"heatmap": (2, 8, 8), "boxes": (4, 4, 4)}, {"heatmap": (2, 5, 5), "boxes": (4, 5, 5)}):
        with pytest.raises(NetError, match=r"heatmap \[2, h, w\] and boxes \[4, h, w\]"):
            check_fits((1, 32, 32), bad, ds)


def test_segmentation_scores_match_a_hand_computed_case() -> None:
    # truth [[0, 1], [1, ignore]], prediction [[0, 1], [0, 1]]: the ignored pixel counts nowhere.
    target = torch.tensor([[[0, 1], [1, 255]]], dtype=torch.uint8)
    pred = torch.tensor([[[0, 1], [0, 1]]])
    logits = torch.nn.functional.one_hot(pred, 3).permute(0, 3, 1, 2).float()
    objective = Objective("segment", 3, (2, 2))
    scorer = objective.scorer()
    scorer.add(logits, target)
    metrics, confusion = scorer.result()
    assert confusion.tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 0]]
    # class 0: TP 1, FP 1, FN 0 -> 1/2; class 1: TP 1, FN 1 -> 1/2; class 2 never occurs: left out of the mean
    assert metrics["miou"] == pytest.approx(0.5) and metrics["pixel_acc"] == pytest.approx(2 / 3)
    hits, counted = objective.hits(logits, target)
    assert (int(hits), int(counted)) == (2, 3)


def test_objective_checks_the_output_shape_of_each_task() -> None:
    with pytest.raises(NetError, match=r"segmenting 3 classes needs \(batch, 3, H, W\)"):
        Objective("segment", 3, (8, 8)).check(torch.zeros(2, 3))
    with pytest.raises(NetError, match="outputs named heatmap and boxes"):
        Objective("detect", 2, (32, 32)).check(torch.zeros(2, 2, 8, 8))
    with pytest.raises(NetError, match="returns 2 outputs"):
        select_output({"a": torch.zeros(1), "b": torch.zeros(1)})


def test_detection_evaluation_scores_perfect_heads_as_map_one() -> None:
    from gensynth.tasks.centernet import encode_targets

    gt = torch.tensor([[[0, 4, 4, 16, 12, ], [1, 18, 20, 30, 30]]], dtype=torch.float32)
    enc = encode_targets(gt, 2, (8, 8), 4)
    heat = torch.logit(enc.heatmap.clamp(1e-4, 1 - 1e-4))

    class Perfect(torch.nn.Module):
        def forward(self, x):
            return {"heatmap": heat.expand(len(x), -1, -1, -1), "boxes": enc.regression.expand(len(x), -1, -1, -1)}

    result = evaluate(Perfect(), torch.zeros(1, 1, 32, 32), gt, objective=Objective("detect", 2, (32, 32)))
    assert result.metrics["map50"] == pytest.approx(1.0) and result.metrics["map"] == pytest.approx(1.0)
    assert result.score == result.metrics["map50"] and result.accuracy is None and np.isfinite(result.loss)


def test_training_a_segmenter_lowers_the_loss_and_refuses_augmentation() -> None:
    torch.manual_seed(0)
    y = (torch.rand(64, 8, 8) > 0.5).to(torch.uint8)
    x = y[:, None].float() + 0.1 * torch.randn(64, 1, 8, 8)
    ds = dataset("segment", 2, y)
    ds = Dataset(**{**ds.__dict__, "train_x": x, "val_x": x})
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1))
    result = train(model, ds, TrainConfig(epochs=25, batch_size=16, lr=0.2, device="cpu"))
    assert result.epochs[-1].train_loss < result.epochs[0].train_loss
    assert result.epochs[-1].val_metrics["pixel_acc"] > 0.9 and result.epochs[-1].val_acc is None
    assert objective_for(ds).primary == "miou" and result.epochs[-1].val_score == result.epochs[-1].val_metrics["miou"]
    with pytest.raises(NetError, match="augment .* classification only"):
        train(model, ds, TrainConfig(epochs=1, augment=True, device="cpu"))


def test_a_fresh_segmentation_head_starts_at_the_class_prior_and_a_trained_one_is_kept() -> None:
    y = torch.zeros(10, 8, 8, dtype=torch.uint8)
    y[:, :2] = 1  # a quarter of the pixels
    y[:, 7] = 255  # ignored: not counted
    ds = dataset("segment", 3, y)
    obj = objective_for(ds)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 3, 1))
    with torch.no_grad():
        model[2].bias.zero_()
    weight = model[2].weight.detach().clone()
    obj.prepare(model.eval(), ds.train_x[:2], ds.train_y)
    counts = torch.tensor([10 * 5 * 8, 10 * 2 * 8, 0], dtype=torch.float)  # class 2 never occurs
    assert torch.allclose(model[2].bias, ((counts + 1) / (counts.sum() + 3)).log())
    assert torch.equal(model[2].weight, weight)
    trained = model[2].bias.detach().clone() + 0.5
    with torch.no_grad():
        model[2].bias.copy_(trained)
    obj.prepare(model, ds.train_x[:2], ds.train_y)
    assert torch.equal(model[2].bias, trained)
