"""How the item encoder fuses ids with text: PCA init, frozen projection, id residual, dropout and gate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from foundrec.data.split import Split
from foundrec.models import Recommender, UserBatch
from foundrec.models.sequential import SequentialRecommender
from foundrec.models.transformer import ItemEncoder, SequenceTransformer, preset

FUSION = {
    "text_init": "pca",
    "text_freeze": True,
    "id_init": 0.0,
    "id_dropout": 0.5,
    "id_gate": 3.0,
    "new_text_only": True,
}


def unit_text(n: int, d: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.nn.functional.normalize(
        torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1
    )


def test_ids_only_ignores_the_fusion_options() -> None:
    torch.manual_seed(0)
    plain = SequenceTransformer(40, preset("tiny"))
    torch.manual_seed(0)
    configured = SequenceTransformer(40, preset("tiny", **FUSION), counts=torch.arange(40.0))
    a, b = plain.state_dict(), configured.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    items = torch.randint(40, (3, 7))
    configured.items.train()
    assert torch.equal(configured.items(items), plain.items(items))  # no id dropout without text


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"text_init": "pca"},
        {"text_freeze": True},
        {"id_init": 0.0},
        {"id_dropout": 0.3},
        {"id_gate": 5.0},
        {"new_text_only": True},
    ],
)
def test_shapes_with_each_option(options: dict) -> None:
    net = SequenceTransformer(30, preset("tiny", text_dim=8, **options), unit_text(30), torch.arange(30.0))
    assert net.items.table().shape == (30, 16)
    assert net(torch.randint(30, (2, 5))).shape == (2, 5, 16)


def test_pca_projection_with_zero_ids_is_the_centred_text_on_its_principal_axes() -> None:
    # Rank-2 text: the first two output axes must hold all of it.
    basis = torch.tensor([[1.0, 0, 0, 0, 0, 0, 0, 0], [0, 0.5, 0.5, 0, 0, 0, 0, 0]])
    text = torch.randn(50, 2, generator=torch.Generator().manual_seed(1)) @ basis + 0.3
    enc = ItemEncoder(50, preset("tiny", text_dim=8, text_init="pca", id_init=0.0), text)
    table = enc.table().detach()  # (50, 16)
    assert torch.allclose(enc.text[:-1].mean(0), torch.zeros(8), atol=1e-6)  # centred
    assert table[:, 2:].abs().max() < 1e-5
    assert table.pow(2).mean().sqrt() == pytest.approx(0.02, rel=1e-4)
    assert torch.equal(enc.ids.weight, torch.zeros_like(enc.ids.weight))
    with pytest.raises(ValueError, match="text_init"):
        ItemEncoder(5, preset("tiny", text_dim=8, text_init="svd"), unit_text(5))


def test_frozen_projection_does_not_move() -> None:
    net = SequenceTransformer(
        30, preset("tiny", text_dim=8, text_init="pca", text_freeze=True), unit_text(30)
    )
    before = net.items.text_proj.weight.clone()
    opt = net.configure_optimizer(1e-2, 0.1, (0.9, 0.98))
    net(torch.randint(30, (4, 6))).pow(2).sum().backward()
    opt.step()
    assert torch.equal(net.items.text_proj.weight, before)
    assert net.items.text_proj.weight.grad is None


def test_id_dropout_drops_whole_id_vectors_in_training_only() -> None:
    torch.manual_seed(0)
    enc = ItemEncoder(30, preset("tiny", text_dim=8, id_dropout=0.5), unit_text(30))
    text_only = enc.text_proj(enc.text[:-1])
    dropped = torch.isclose(enc.train().table(), text_only).all(dim=1)
    assert 5 < int(dropped.sum()) < 25
    full = enc.eval().table()
    assert torch.equal(full, enc.table())
    assert not torch.isclose(full, text_only).all(dim=1).any()


def test_id_gate_follows_training_counts() -> None:
    counts = torch.tensor([0.0, 3.0, 1000.0])
    enc = ItemEncoder(3, preset("tiny", text_dim=8, id_gate=3.0), unit_text(3), counts)
    with torch.no_grad():
        enc.text_proj.weight.zero_()
    ids_norm = enc.ids.weight[:3].norm(dim=1)
    gate = (enc.table().norm(dim=1) / ids_norm).detach()
    assert gate[1] == pytest.approx(0.5, rel=1e-5)
    assert gate[0] < 0.3 and gate[2] > 0.95
    assert enc.gate.requires_grad


def test_new_items_are_their_text_alone() -> None:
    counts = torch.tensor([0.0, 3.0, 0.0, 1.0])
    enc = ItemEncoder(4, preset("tiny", text_dim=8, new_text_only=True), unit_text(4), counts)
    table = enc.table().detach()
    text_only = enc.text_proj(enc.text[:-1]).detach()
    assert torch.equal(table[[0, 2]], text_only[[0, 2]])  # never trained: no id vector
    assert not torch.isclose(table[[1, 3]], text_only[[1, 3]]).all(dim=1).any()
    enc(torch.tensor([0, 2])).sum().backward()
    assert enc.ids.weight.grad[[0, 2]].abs().sum() == 0  # and nothing trains one


def test_without_counts_every_id_counts_until_a_saved_mask_loads() -> None:
    cfg = preset("tiny", text_dim=8, new_text_only=True)
    trained = ItemEncoder(4, cfg, unit_text(4), torch.tensor([0.0, 3.0, 0.0, 1.0]))
    fresh = ItemEncoder(4, cfg, unit_text(4))  # e.g. a from-scratch backbone for fine-tuning
    assert fresh.known[:-1].all()
    fresh.load_state_dict(trained.state_dict())
    assert fresh.known[:-1].tolist() == [False, True, False, True]
    assert torch.equal(fresh.table(), trained.table())


def test_save_load_round_trip_with_every_fusion_option(tmp_path, small_split: Split) -> None:
    text = np.random.default_rng(0).normal(size=(small_split.n_items, 8)).astype(np.float32)
    options = {**FUSION, "text_freeze": False}
    model = SequentialRecommender(size="tiny", dim=32, epochs=1, text=True, **options).set_item_text(text)
    model.fit(small_split.train, small_split.n_items)
    model.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert {k: getattr(loaded, k) for k in options} == options
    batch = UserBatch.from_sequences(small_split.test.history, 0, 30)
    assert torch.equal(model.score(batch), loaded.score(batch))
    counts = np.bincount(small_split.train.items, minlength=small_split.n_items)
    assert torch.equal(
        loaded.network_.items.log_counts[:-1], torch.as_tensor(counts, dtype=torch.float32).log1p()
    )
