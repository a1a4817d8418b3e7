"""Heads and fine-tuning modes: LoRA keeps base weights, trainable counts, adapters start as identity."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from foundrec.data.labeled import TaskData, make_batch, row_windows
from foundrec.errors import FoundrecError
from foundrec.models.adapters import LoRAEmbedding, LoRALinear, count_parameters
from foundrec.models.heads import HeadConfig, SequenceTaskModel, within_user_rank_loss
from foundrec.models.transformer import SequenceTransformer, preset

CFG = preset("tiny", dim=16, dropout=0.0)


def model_for(data: TaskData, mode: str, seed: int = 0, **head: object) -> SequenceTaskModel:
    torch.manual_seed(seed)
    backbone = SequenceTransformer(data.events.n_items, CFG)
    return SequenceTaskModel(HeadConfig(mode=mode, dropout=0.0, **head)).build(
        backbone, data.side, 0.55, pretrained=True
    )


def batch_of(task: TaskData, n: int = 64):
    return make_batch(task.events, row_windows(task.events, task.train[:n], 20), np.arange(n))


def backbone_state(model: SequenceTaskModel) -> dict[str, torch.Tensor]:
    return {
        k: v.clone()
        for k, v in model.network_.backbone.state_dict().items()
        if "lora_" not in k and ".adapter." not in k
    }


def train_steps(model: SequenceTaskModel, batch, steps: int = 5) -> None:
    groups = [g for g in model.param_groups(1e-2, 1e-2, 0.0) if g["params"]]
    opt = torch.optim.AdamW(groups)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        model.loss(batch).backward()
        opt.step()


@pytest.mark.parametrize("mode", ["lora", "adapter", "probe"])
def test_frozen_modes_leave_the_pretrained_weights_unchanged(rated_task: TaskData, mode: str) -> None:
    model, batch = model_for(rated_task, mode), batch_of(rated_task)
    before = backbone_state(model)
    head_before = model.network_.mlp[1].weight.clone()
    train_steps(model, batch)
    after = backbone_state(model)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(head_before, model.network_.mlp[1].weight)  # the head did train


def test_full_mode_changes_the_backbone(rated_task: TaskData) -> None:
    model, batch = model_for(rated_task, "full"), batch_of(rated_task)
    before = backbone_state(model)
    train_steps(model, batch)
    assert not torch.equal(
        before["blocks.0.attn.qkv.weight"], model.network_.backbone.blocks[0].attn.qkv.weight
    )


@pytest.mark.parametrize("mode", ["lora", "adapter"])
def test_added_modules_start_as_the_identity(rated_task: TaskData, mode: str) -> None:
    plain, adapted = model_for(rated_task, "probe"), model_for(rated_task, mode)
    state = adapted.network_.state_dict()
    shared = {k: v for k, v in plain.network_.state_dict().items() if k in state}
    assert len(shared) < len(state)  # the added modules are not in the plain network
    adapted.network_.load_state_dict(shared, strict=False)  # same head and (seeded) backbone
    batch = batch_of(rated_task)
    assert torch.allclose(plain.predict(batch), adapted.predict(batch), atol=1e-6)


def test_trainable_parameter_counts(rated_task: TaskData) -> None:
    probe, lora, full = (model_for(rated_task, m) for m in ("probe", "lora", "full"))
    head = count_parameters(probe.network_)[0]
    backbone_total = count_parameters(full.network_.backbone)[1]
    assert count_parameters(full.network_)[0] == head + backbone_total
    assert count_parameters(probe.network_.backbone)[0] == 0
    # tiny: 1 block with qkv (16->48), proj (16->16), ffn (16->64, 64->16); rank 4
    lora_params = 4 * ((16 + 48) + (16 + 16) + (16 + 64) + (64 + 16))
    assert count_parameters(lora.network_)[0] == head + lora_params
    linears = [m for m in lora.network_.backbone.modules() if isinstance(m, LoRALinear)]
    assert len(linears) == 4


def test_lora_on_the_item_table_starts_exact_and_trains_only_its_low_rank_part(
    rated_task: TaskData,
) -> None:
    plain, adapted = model_for(rated_task, "probe"), model_for(rated_task, "lora", lora_items=True)
    table = adapted.network_.backbone.items.ids
    assert isinstance(table, LoRAEmbedding)
    items = torch.arange(table.num_embeddings)
    assert torch.equal(table(items), plain.network_.backbone.items.ids(items))
    blocks_only = model_for(rated_task, "lora").network_
    extra = count_parameters(adapted.network_)[0] - count_parameters(blocks_only)[0]
    assert extra == table.num_embeddings * 4 + 4 * 16  # A: one rank-4 row per item, B: rank x dim
    frozen = table.base.weight.clone()
    train_steps(adapted, batch_of(rated_task))
    assert torch.equal(frozen, table.base.weight)
    assert not torch.allclose(table(items), plain.network_.backbone.items.ids(items))


def test_pretrained_weights_get_the_smaller_learning_rate(rated_task: TaskData) -> None:
    groups = model_for(rated_task, "full").param_groups(1e-3, 1e-4, 0.0)
    backbone = {id(p) for p in groups[0]["params"]}
    assert groups[0]["lr"] == 1e-4 and groups[1]["lr"] == 1e-3
    assert {id(p) for p in model_for(rated_task, "full").network_.backbone.parameters()}.isdisjoint(
        {id(p) for p in groups[1]["params"]}
    )
    assert len(backbone) == len(list(model_for(rated_task, "full").network_.backbone.parameters()))


def test_save_load_round_trip(rated_task: TaskData, tmp_path) -> None:
    model, batch = model_for(rated_task, "lora", task="ctr"), batch_of(rated_task)
    train_steps(model, batch, 2)
    model.save(tmp_path / "head")
    loaded = SequenceTaskModel.load(tmp_path / "head")
    probs = loaded.predict_proba(batch)
    assert torch.allclose(model.predict_proba(batch), probs, atol=1e-6)
    assert ((probs > 0) & (probs < 1)).all()


def test_rating_head_predicts_ratings(rated_task: TaskData) -> None:
    model = model_for(rated_task, "full", task="rating")
    model.network_.offset.fill_(3.5)
    batch = batch_of(rated_task)
    pred = model.predict(batch)
    assert pred.shape == (64,) and ((pred >= 1) & (pred <= 5)).all()
    train_steps(model, batch, 20)
    assert model.loss(batch) < torch.nn.functional.mse_loss(torch.full((64,), 3.5), batch.ratings)


def test_prior_signals_are_the_backbone_log_probability_like_share_and_popularity(
    rated_task: TaskData,
) -> None:
    pop = torch.linspace(-3.0, 0.0, rated_task.events.n_items)
    model = model_for(rated_task, "full", prior=True)
    model.network_.log_prior.copy_(pop)
    batch, net = batch_of(rated_task), model.network_
    net.eval()
    with torch.no_grad():
        hidden = net.backbone(batch.tokens, net.feedback(batch.feedback))
        signals = net.prior_signals(batch, hidden)
    h = torch.nn.functional.normalize(hidden[batch.row, batch.position], dim=-1)
    table = torch.nn.functional.normalize(net.backbone.items.table(), dim=-1)
    log_p = (h @ table.T / 0.05).log_softmax(-1)[torch.arange(64), batch.items]
    assert torch.allclose(signals[:, 0], log_p, atol=1e-5)
    for n in range(64):  # like share of the events up to the read position, padding excluded
        seen = batch.feedback[batch.row[n], : batch.position[n] + 1]
        assert signals[n, 1] == pytest.approx((seen == 1).float().mean().item())
    assert torch.equal(signals[:, 2], pop[batch.items])


def test_prior_path_alone_decides_the_first_prediction_and_constant_signals_drop(
    rated_task: TaskData,
) -> None:
    model, batch = model_for(rated_task, "full", prior=True), batch_of(rated_task)
    net = model.network_
    model.standardise_prior(batch)  # log_prior is all zeros (no pretraining data): constant
    assert torch.isinf(net.prior_scale[2]) and torch.isfinite(net.prior_scale[:2]).all()
    with torch.no_grad():
        hidden = net.backbone(batch.tokens, net.feedback(batch.feedback))
        z = (net.prior_signals(batch, hidden) - net.prior_shift) / net.prior_scale
    assert torch.allclose(z[:, :2].mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(z[:, :2].std(0), torch.ones(2), atol=1e-4)
    assert torch.equal(z[:, 2], torch.zeros(64))
    expected = torch.sigmoid(net.offset + z @ torch.full((3,), 0.5))  # MLP output starts at zero
    assert torch.allclose(model.predict_proba(batch), expected, atol=1e-6)
    train_steps(model, batch, 3)
    assert not torch.equal(net.prior_weight, torch.full((3,), 0.5))
    assert net.mlp[-1].weight.abs().sum() > 0  # the MLP joins once trained


def test_prior_head_save_load_round_trip(rated_task: TaskData, tmp_path) -> None:
    model, batch = model_for(rated_task, "probe", prior=True), batch_of(rated_task)
    model.standardise_prior(batch)
    train_steps(model, batch, 2)
    model.save(tmp_path / "head")
    loaded = SequenceTaskModel.load(tmp_path / "head")
    assert torch.allclose(model.predict_proba(batch), loaded.predict_proba(batch), atol=1e-6)


def test_item_biases_start_at_each_items_shrunk_training_log_odds(rated_task: TaskData) -> None:
    model = model_for(rated_task, "probe", bias_shrinkage=2.0)
    items, targets = np.array([0, 0, 0, 1, 2, 2]), np.array([1.0, 1.0, 0.0, 0.0, 1.0, 1.0])
    model.init_biases(items, targets)
    mean = targets.mean()
    rates = np.array([(2 + 2 * mean) / 5, (0 + 2 * mean) / 3, (2 + 2 * mean) / 4, mean])  # item 3 unseen
    net = model.network_
    started = (net.item_bias.weight[:4, 0] + net.offset).detach().numpy()
    assert np.allclose(started, np.log(rates / (1 - rates)), atol=1e-5)
    assert net.user_bias is None  # off by default: user offsets leave within-user ranking unchanged


def test_item_bias_recovers_a_known_per_item_effect_and_ranks_a_users_candidates(
    rated_task: TaskData,
) -> None:
    rng = np.random.default_rng(1)
    n_items = rated_task.events.n_items
    effect = rng.normal(0.0, 1.5, n_items)
    items = rng.integers(0, n_items, 40_000)
    labels = (rng.random(len(items)) < 1 / (1 + np.exp(-effect[items]))).astype(np.float64)
    model = model_for(rated_task, "full")
    model.init_biases(items, labels)
    learned = model.network_.item_bias.weight[:, 0].detach().numpy()
    assert np.corrcoef(learned, effect)[0, 1] > 0.95
    # One history, every item as the candidate: the untrained head ranks them by their effect.
    one = batch_of(rated_task, 1)
    every = replace(
        one,
        row=one.row.repeat(n_items),
        position=one.position.repeat(n_items),
        users=one.users.repeat(n_items),
        items=torch.arange(n_items),
        labels=torch.zeros(n_items),
        ratings=torch.zeros(n_items),
    )
    probs = model.predict_proba(every).numpy()
    assert np.corrcoef(np.argsort(np.argsort(probs)), np.argsort(np.argsort(effect)))[0, 1] > 0.9


def test_rating_head_starts_items_at_their_shrunk_mean_rating(rated_task: TaskData) -> None:
    model = model_for(rated_task, "probe", task="rating", bias_shrinkage=0.0)
    model.init_biases(np.array([0, 0, 1]), np.array([5.0, 4.0, 1.0]))
    net = model.network_
    assert torch.allclose(net.item_bias.weight[:2, 0] + net.offset, torch.tensor([4.5, 1.0]))


def test_within_user_rank_loss_pairs_liked_and_disliked_rows_of_one_window(rated_task: TaskData) -> None:
    batch = replace(
        batch_of(rated_task, 4),
        row=torch.tensor([0, 0, 0, 1]),
        labels=torch.tensor([1.0, 0.0, 0.0, 0.0]),
    )
    logits = torch.tensor([2.0, 1.0, -1.0, 5.0])  # window 1's row has no pair
    expected = (F.softplus(torch.tensor(-1.0)) + F.softplus(torch.tensor(-3.0))) / 2
    assert torch.allclose(within_user_rank_loss(logits, batch), expected)
    alone = replace(batch, row=torch.arange(4))
    assert within_user_rank_loss(logits, alone) == 0


def test_a_head_saved_before_user_bias_was_optional_still_loads(rated_task: TaskData, tmp_path) -> None:
    model, batch = model_for(rated_task, "probe", user_bias=True), batch_of(rated_task)
    model.save(tmp_path / "head")
    spec = json.loads((tmp_path / "head" / "model.json").read_text())
    for key in ("user_bias", "bias_from_data", "bias_shrinkage", "rank_weight"):
        del spec["head"][key]  # as written before these options existed
    (tmp_path / "head" / "model.json").write_text(json.dumps(spec))
    loaded = SequenceTaskModel.load(tmp_path / "head")
    assert loaded.network_.user_bias is not None
    assert torch.allclose(model.predict_proba(batch), loaded.predict_proba(batch), atol=1e-6)


def test_user_rate_reads_the_like_rate_of_the_history_each_row_sees(rated_task: TaskData) -> None:
    model, batch = model_for(rated_task, "full", user_rate=True), batch_of(rated_task, 8)
    net = model.network_
    rate = net.user_rate(batch)
    likes = [(batch.feedback[r, : p + 1] == 1).sum() for r, p in zip(batch.row, batch.position, strict=True)]
    seen = [(batch.feedback[r, : p + 1] != 2).sum() for r, p in zip(batch.row, batch.position, strict=True)]
    base = torch.sigmoid(net.offset)
    for i, (k, n) in enumerate(zip(likes, seen, strict=True)):
        shrunk = (k + 5.0 * base) / (n + 5.0)
        assert torch.isclose(rate[i, 0], torch.log(shrunk / (1 - shrunk)) - net.offset, atol=1e-5)
        assert torch.isclose(rate[i, 1], torch.log1p(n.float()))
    # Zero-started weights: the head starts out predicting as without it; training moves them.
    assert torch.equal(net.rate_weight, torch.zeros(2))
    train_steps(model, batch)
    assert net.rate_weight.abs().sum() > 0


def test_item_biases_can_start_from_a_logistic_regressions_item_part(rated_task: TaskData) -> None:
    from foundrec.task_run import logreg_on

    lr = logreg_on(rated_task, rated_task.train)
    part = lr.item_logits()
    # The item part is what the regression adds for an item, whoever the user: check on one user.
    ev, n = rated_task.events, rated_task.events.n_items
    one = batch_of(rated_task, 1)
    every = replace(one, users=one.users.repeat(n), items=torch.arange(n))
    logit = torch.logit(lr.predict(every)).numpy()
    assert np.allclose(logit - logit[0], part - part[0], atol=1e-6)
    model = model_for(rated_task, "full", bias_logreg=True)
    model.set_item_bias(part, ev.items[rated_task.train])
    bias = model.network_.item_bias.weight[:, 0].detach().numpy()
    assert np.allclose(bias - bias[0], part - part[0], atol=1e-5)
    assert abs(bias[ev.items[rated_task.train]].mean()) < 1e-5  # the offset stays the base rate


def test_a_logistic_regression_on_one_label_is_refused_with_what_to_do(rated_task: TaskData) -> None:
    from foundrec.task_run import logreg_on

    liked = rated_task.train[rated_task.events.labels[rated_task.train] == 1][:16]
    with pytest.raises(FoundrecError, match="liked and disliked.*--shots"):
        logreg_on(rated_task, liked)


def test_gauc_options_are_refused_for_the_rating_task(rated_task: TaskData) -> None:
    with pytest.raises(FoundrecError, match="ctr task"):
        model_for(rated_task, "full", task="rating", user_rate=True)


def test_a_head_with_user_rate_saves_and_loads(rated_task: TaskData, tmp_path) -> None:
    model, batch = model_for(rated_task, "full", user_rate=True, rank_weight=1.0), batch_of(rated_task)
    train_steps(model, batch, 2)
    model.save(tmp_path / "head")
    loaded = SequenceTaskModel.load(tmp_path / "head")
    assert torch.allclose(model.predict_proba(batch), loaded.predict_proba(batch), atol=1e-6)
