"""Every baseline honours the one interface: fit, score over the catalogue, save/load round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from foundrec.data.split import Split
from foundrec.eval.ranking import FullRankingEvaluator
from foundrec.models import MODELS, Recommender, UserBatch
from foundrec.train.early_stopping import fit

FAST = {
    "pop": {},
    "itemknn": {"neighbours": 50},
    "bpr": {"epochs": 8, "lr": 0.01},
    "mlp": {"epochs": 4, "lr": 0.01},
}


@pytest.fixture(scope="module")
def fitted(small_split: Split) -> dict[str, Recommender]:
    models = {}
    for name, params in FAST.items():
        model = MODELS[name](**params)
        fit(model, small_split.train, small_split.n_items)
        models[name] = model
    return models


@pytest.mark.parametrize("name", list(FAST))
def test_score_shape_and_round_trip(name: str, fitted, small_split: Split, tmp_path) -> None:
    model = fitted[name]
    batch = UserBatch.from_sequences(small_split.test.history, 0, 17)
    scores = model.score(batch)
    assert scores.shape == (17, small_split.n_items)
    assert torch.isfinite(scores).all()
    model.save(tmp_path / name)
    again = Recommender.load(tmp_path / name)
    assert torch.equal(again.score(batch), scores)
    assert again.n_parameters() == model.n_parameters()


def test_itemknn_learns_the_successor_structure(fitted, small_split: Split) -> None:
    evaluator = FullRankingEvaluator(small_split.item_counts(), ks=(10,))
    pop = evaluator.evaluate(fitted["pop"], small_split.test)["ndcg@10"]
    assert evaluator.evaluate(fitted["itemknn"], small_split.test)["ndcg@10"] > 1.5 * pop


@pytest.mark.parametrize("name", ["bpr", "mlp"])
def test_training_beats_the_untrained_model(name: str, fitted, small_split: Split) -> None:
    evaluator = FullRankingEvaluator(small_split.item_counts(), ks=(10,))
    untrained = MODELS[name](**{**FAST[name], "epochs": 1, "lr": 0.0})  # same init, no learning
    fit(untrained, small_split.train, small_split.n_items)
    before = evaluator.evaluate(untrained, small_split.test)["ndcg@10"]
    assert evaluator.evaluate(fitted[name], small_split.test)["ndcg@10"] > 2 * before


def test_popularity_scores_are_training_counts(fitted, small_split: Split) -> None:
    counts = np.bincount(small_split.train.items, minlength=small_split.n_items)
    batch = UserBatch.from_sequences(small_split.test.history, 0, 2)
    assert np.array_equal(fitted["pop"].score(batch)[1].numpy(), counts.astype(np.float32))


def test_itemknn_similarity_is_shrunk_cosine() -> None:
    from foundrec.data.sequences import Sequences
    from foundrec.models.itemknn import ItemKNN

    # users: {0,1}, {0,1}, {0,2}; |U0|=3, |U1|=2, co(0,1)=2 -> 2 / (sqrt(6) + shrink)
    seqs = Sequences(np.array([0, 2, 4, 6]), np.array([0, 1, 0, 1, 0, 2]), np.arange(3))
    model = ItemKNN(neighbours=10, shrink=1.0).fit(seqs, 3)
    assert model.sim_[0, 1] == pytest.approx(2 / (np.sqrt(6) + 1.0), rel=1e-6)
    assert model.sim_[0, 0] == 0.0


def test_early_stopping_keeps_best_epoch(small_split: Split) -> None:
    model = MODELS["bpr"](epochs=6, lr=0.01)
    values = iter([0.1, 0.3, 0.2, 0.1, 0.05, 0.0])
    snapshots = []

    def validate(m):
        snapshots.append({k: v.clone() for k, v in m.state_dict().items()})
        return next(values)

    result = fit(model, small_split.train, small_split.n_items, validate=validate, patience=3)
    assert result.best_epoch == 2 and len(result.epochs) == 5
    assert all(torch.equal(model.state_dict()[k], snapshots[1][k]) for k in snapshots[1])
