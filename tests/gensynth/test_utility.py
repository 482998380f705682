import math

import pytest

from gensynth.inquisitor import Budget, fine_tune_config
from gensynth.utility import UTILITIES, information_density, netscore


def test_netscore_and_density_follow_their_definitions():
    # 90% accuracy, 1 M params, 1 M MACs: 20 log10(90^2 / (1 * 1))
    assert netscore(0.9, 1e6, 1e6) == pytest.approx(20 * math.log10(8100))
    assert netscore(0.9, 4e6, 1e6) == pytest.approx(netscore(0.9, 1e6, 1e6) - 20 * math.log10(2))
    assert information_density(0.9, 2e6) == pytest.approx(45.0)


def test_accuracy_utility_ignores_cost_where_netscore_rewards_it():
    small = {"accuracy": 0.88, "params": 10e3, "macs": 1e6}
    large = {"accuracy": 0.90, "params": 40e3, "macs": 4e6}
    assert UTILITIES["netscore"](small) > UTILITIES["netscore"](large)
    assert UTILITIES["accuracy"](large) > UTILITIES["accuracy"](small)
    assert UTILITIES["accuracy"](large) == pytest.approx(90.0)


def test_fine_tune_follows_the_task_optimizer_unless_told():
    b = Budget(epochs=1, final_epochs=5)
    search = fine_tune_config(b, "classify", seed=3, final=False)
    assert (search.optimizer, search.lr, search.epochs, search.seed) == ("sgd", 0.02, 1, 3)
    final = fine_tune_config(b, "segment", seed=3, final=True)
    assert (final.optimizer, final.lr, final.epochs) == ("adamw", 1e-3, 5)
    told = fine_tune_config(Budget(lr=0.1, final_lr=0.2, optimizer="sgd"), "segment", 0, final=True)
    assert (told.optimizer, told.lr) == ("sgd", 0.2)


def test_fine_tune_batch_size_follows_the_whole_training_split_unless_told():
    """A search candidate trains on a subset, but its default batch is the training split's (so 3,000 candidate images
    out of 18,000 keep batch 128, as before), and a small split gets smaller batches."""
    assert fine_tune_config(Budget(), "classify", 0, final=False, n_train=18000).batch_size == 128
    assert fine_tune_config(Budget(), "classify", 0, final=True, n_train=3600).batch_size == 32
    assert fine_tune_config(Budget(batch_size=64), "classify", 0, final=False, n_train=3600).batch_size == 64
    assert fine_tune_config(Budget(augment=True), "classify", 0, final=True).augment
