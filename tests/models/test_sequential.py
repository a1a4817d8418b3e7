"""The transformer recommenders: causality, padding, learning, save/load, both objectives."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from foundrec.data.split import Split
from foundrec.eval.ranking import FullRankingEvaluator
from foundrec.models import Popularity, Recommender, UserBatch
from foundrec.models.sequential import HSTURecommender, SequentialRecommender
from foundrec.models.transformer import SequenceTransformer, preset
from foundrec.train.pretrain import pretrain

TINY = {"size": "tiny", "dim": 32, "dropout": 0.1, "lr": 3e-3, "batch_size": 64}


@pytest.mark.parametrize("block", ["sasrec", "hstu"])
def test_position_t_never_sees_later_items(block: str) -> None:
    torch.manual_seed(0)
    net = SequenceTransformer(50, preset("tiny", block=block, dropout=0.0)).eval()
    tokens = torch.randint(0, 50, (3, 12))
    changed = tokens.clone()
    changed[:, 7:] = torch.randint(0, 50, (3, 5))
    a, b = net(tokens), net(changed)
    assert torch.allclose(a[:, :7], b[:, :7], atol=1e-5)
    assert not torch.allclose(a[:, 7:], b[:, 7:])


@pytest.mark.parametrize("block", ["sasrec", "hstu"])
def test_last_position_path_equals_full_forward(block: str) -> None:
    """Scoring computes only each row's last real position in the final block: same states as in full."""
    torch.manual_seed(0)
    net = SequenceTransformer(50, preset("tiny", block=block, dropout=0.0, n_layers=2)).eval()
    tokens = torch.randint(0, 50, (6, 12))
    last = torch.tensor([0, 3, 11, 7, 5, 1])
    tokens[torch.arange(12) > last[:, None]] = 50  # right padding after each row's last item
    with torch.no_grad():
        full = net(tokens)[torch.arange(6), last]
        assert torch.allclose(net(tokens, last=last), full, atol=1e-5)


@pytest.mark.parametrize("cls", [SequentialRecommender, HSTURecommender])
def test_scores_do_not_depend_on_batch_padding(cls: type[SequentialRecommender], small_split: Split) -> None:
    model = cls(**TINY, epochs=1).fit(small_split.train, small_split.n_items)
    batch = UserBatch.from_sequences(small_split.test.history, 0, 40)
    together = model.score(batch)
    one = torch.cat(
        [model.score(UserBatch.from_sequences(small_split.test.history, i, i + 1)) for i in range(40)]
    )
    assert torch.allclose(together, one, atol=1e-4)


def valid_ndcg(model: Recommender, split: Split) -> float:
    evaluator = FullRankingEvaluator(split.item_counts(), ks=(10,))
    return evaluator.evaluate(model, split.valid)["ndcg@10"]


@pytest.mark.parametrize("cls", [SequentialRecommender, HSTURecommender])
def test_learns_the_sequential_structure(cls: type[SequentialRecommender], small_split: Split) -> None:
    """The synthetic logs follow item -> successor chains: a sequence model must beat popularity."""
    model = cls(**TINY, epochs=8)
    result = pretrain(model, small_split.train, small_split.n_items)
    losses = [e.loss for e in result.epochs]
    assert losses[-1] < losses[0] - 0.3
    pop = Popularity().fit(small_split.train, small_split.n_items)
    assert valid_ndcg(model, small_split) > 2 * valid_ndcg(pop, small_split)


def test_sampled_softmax_with_logq_trains(small_split: Split) -> None:
    model = SequentialRecommender(**TINY, epochs=6, loss="sampled", negatives=64, similarity="dot")
    result = pretrain(model, small_split.train, small_split.n_items)
    assert not model.uses_full_softmax()
    assert result.epochs[-1].loss < result.epochs[0].loss
    pop = Popularity().fit(small_split.train, small_split.n_items)
    assert valid_ndcg(model, small_split) > valid_ndcg(pop, small_split)


def test_save_load_round_trip_with_text(tmp_path, small_split: Split) -> None:
    text = np.random.default_rng(0).normal(size=(small_split.n_items, 8)).astype(np.float32)
    model = SequentialRecommender(**TINY, epochs=1, text=True, similarity="cosine").set_item_text(text)
    model.fit(small_split.train, small_split.n_items)
    model.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    batch = UserBatch.from_sequences(small_split.test.history, 0, 30)
    assert torch.equal(model.score(batch), loaded.score(batch))
    assert loaded.n_parameters() == model.n_parameters() > 0


def test_a_text_model_saved_before_new_text_only_still_loads(tmp_path, small_split: Split) -> None:
    text = np.random.default_rng(0).normal(size=(small_split.n_items, 8)).astype(np.float32)
    model = SequentialRecommender(**TINY, epochs=1, text=True, new_text_only=False).set_item_text(text)
    model.fit(small_split.train, small_split.n_items)
    model.save(tmp_path / "m")
    spec = json.loads((tmp_path / "m" / "model.json").read_text())
    del spec["params"]["new_text_only"]  # as written before the option existed (it now defaults to on)
    (tmp_path / "m" / "model.json").write_text(json.dumps(spec))
    loaded = Recommender.load(tmp_path / "m")
    assert loaded.new_text_only is False
    batch = UserBatch.from_sequences(small_split.test.history, 0, 30)
    assert torch.equal(model.score(batch), loaded.score(batch))


def test_sizes_and_parameter_counts() -> None:
    counts = {size: SequenceTransformer(1000, preset(size)) for size in ("tiny", "base")}
    n = {size: sum(p.numel() for p in net.parameters()) for size, net in counts.items()}
    assert n["tiny"] < n["base"]
    with pytest.raises(ValueError, match="divisible"):
        SequenceTransformer(10, preset("tiny", dim=10, n_heads=3))
