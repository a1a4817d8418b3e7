"""CTR and rating heads on the sequence backbone: history (+ like/dislike) -> user state, with the candidate.

The user state is the backbone's hidden state after the last history event; the candidate is embedded by
the backbone's own item encoder (shared with pretraining), so a pretrained model starts with a learned
notion of which items follow a history. Side features (demographics, genres, year) are embedded per field.

With `prior=True` (for few labels) three signals the backbone gives for free enter the logit through
three weights: the pretrained next-item log-probability of the candidate after the history, the like
share of the history, and the candidate's log popularity in the pretraining data. A few labelled rows
can fit three weights, not the ~4k of the MLP; the MLP's output layer then starts at zero, so it only
adds what the labels can support.

Each item's bias starts at its training like rate (`init_biases`), or at a logistic regression's item part
(`set_item_bias`): within a user, how liked an item is carries most of the order GAUC scores.
`rank_weight` adds a within-user pairwise term to the BCE; `user_rate` gives the head the like rate of the
history it reads, a smooth user level, so the transformer's state need not carry it. All three together
are protocol (a)'s GAUC operating point, bought with AUC (docs/benchmarks.md).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from foundrec.data.labeled import PAD_FEEDBACK, LabeledBatch, SideFeatures
from foundrec.errors import FoundrecError
from foundrec.models.adapters import count_parameters, prepare_backbone
from foundrec.models.transformer import SequenceTransformer, TransformerConfig

TASKS = ("ctr", "rating")


def task_loss(task: str, out: torch.Tensor, batch: LabeledBatch) -> torch.Tensor:
    """BCE on the like label for ctr (out: logits), MSE on the rating for rating."""
    if task == "ctr":
        return F.binary_cross_entropy_with_logits(out, batch.labels)
    return F.mse_loss(out, batch.ratings)


def within_user_rank_loss(logits: torch.Tensor, batch: LabeledBatch) -> torch.Tensor:
    """Mean -log sigmoid(s_like - s_dislike) over (liked, disliked) pairs of rows read from one window.

    A window is one user's run of events, so this asks for the order within a user, which is what GAUC
    scores; BCE alone mostly learns who likes more. One row per window (protocol b): zero.
    """
    pairs = (batch.row[:, None] == batch.row[None, :]) & (batch.labels[:, None] > batch.labels[None, :])
    if not pairs.any():
        return logits.new_zeros(())
    return F.softplus(logits[None, :] - logits[:, None])[pairs].mean()


def task_prediction(task: str, out: torch.Tensor) -> torch.Tensor:
    """P(like) for ctr, the rating clipped to 1..5 for rating."""
    return torch.sigmoid(out) if task == "ctr" else out.clamp(1.0, 5.0)


class SideEncoder(nn.Module):
    """One embedding per categorical field (age group, gender, occupation, year group) + a genre projection.

    The side tables are buffers, so a saved head carries them and needs no data files to predict.
    """

    def __init__(self, side: SideFeatures, dim: int) -> None:
        super().__init__()
        self.register_buffer("user_table", torch.as_tensor(side.user))
        self.register_buffer("item_year", torch.as_tensor(side.item_year))
        self.register_buffer("item_genres", torch.as_tensor(side.item_genres))
        self.user_fields = nn.ModuleList(nn.Embedding(c, dim) for c in side.user_cards)
        self.year = nn.Embedding(side.year_card, dim)
        self.genres = nn.Linear(side.item_genres.shape[1], dim, bias=False)
        self.out_dim = (len(side.user_cards) + 2) * dim

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        # users -1 (served histories of users the head never saw): every field at 0, "unknown"
        fields = self.user_table[users.clamp(min=0)] * (users >= 0)[:, None]  # (N, 3)
        parts = [emb(fields[:, i]) for i, emb in enumerate(self.user_fields)]
        parts += [self.year(self.item_year[items]), self.genres(self.item_genres[items])]
        return torch.cat(parts, dim=-1)  # (N, out_dim)


@dataclass(frozen=True)
class HeadConfig:
    task: str = "ctr"  # "ctr": BCE on like (rating > 3); "rating": MSE on the rating
    mode: str = "full"  # full | lora | adapter | probe (models/adapters.py)
    hidden: int = 16  # 64 was no better on protocol (a)'s validation AUC (docs/benchmarks.md)
    side_dim: int = 8
    dropout: float = 0.1
    feedback: bool = True  # add a like/dislike embedding to each history event
    lora_rank: int = 4
    lora_alpha: float = 8.0
    bottleneck: int = 8
    lora_items: bool = False  # lora also adapts the item id table (models/adapters.py)
    prior: bool = False  # the 3-weight path on pretrained signals (module docstring)
    prior_init: float = 0.5  # starting weight of each standardised signal: all assumed to raise P(like)
    bias_from_data: bool = True  # fine-tuning starts the biases with `init_biases` (else at zero)
    bias_shrinkage: float = 5.0  # pseudo-rows at the mean target when `init_biases` starts an item's bias
    rank_weight: float = 0.0  # ctr: weight of `within_user_rank_loss` added to the BCE
    user_bias: bool = False  # a per-user bias (zero-started): no gain on validation (docs/benchmarks.md)
    user_rate: bool = False  # the history's shrunk like rate (+ its length) as input and a linear term
    bias_logreg: bool = False  # item biases start at a logistic regression's item part (task_run.py)


N_PRIOR = 3  # next-item log-probability, history like share, log popularity
RATE_SHRINKAGE = 5.0  # pseudo-events at the base rate in `user_rate`'s like rate


def history_likes(batch: LabeledBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(likes, events) in the history each pair reads, (N,) each: the feedback up to its position."""
    real = (batch.feedback != PAD_FEEDBACK).float().cumsum(1)
    likes = (batch.feedback == 1).float().cumsum(1)
    return likes[batch.row, batch.position], real[batch.row, batch.position]


class TaskNetwork(nn.Module):
    def __init__(
        self,
        backbone: SequenceTransformer,
        side: SideFeatures,
        cfg: HeadConfig,
        offset: float,
        temperature: float,
        log_prior: torch.Tensor | None,
    ) -> None:
        super().__init__()
        dim = backbone.cfg.dim
        self.backbone = backbone
        self.feedback = nn.Embedding(PAD_FEEDBACK + 1, dim) if cfg.feedback else None
        if self.feedback is not None:
            nn.init.zeros_(self.feedback.weight)  # the pretrained input is unchanged at the start
        self.side = SideEncoder(side, cfg.side_dim)
        n_users, n_items = side.user.shape[0], backbone.items.ids.num_embeddings - 1
        # Per-user and per-item biases: what a rating's sign depends on most (logistic regression's ids).
        # The item bias is what ranks items within a user (GAUC); `init_biases` starts it from the data.
        self.user_bias = nn.Embedding(n_users, 1) if cfg.user_bias else None
        self.item_bias = nn.Embedding(n_items, 1)
        for table in (self.user_bias, self.item_bias):
            if table is not None:
                nn.init.zeros_(table.weight)
        self.rate_weight: nn.Parameter | None = None
        if cfg.user_rate:  # zero-started: the head begins as without it
            self.rate_weight = nn.Parameter(torch.zeros(2))
        width = 3 * dim + self.side.out_dim + (2 if cfg.user_rate else 0)
        self.mlp = nn.Sequential(
            nn.LayerNorm(width),
            nn.Linear(width, cfg.hidden),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, 1),
        )
        self.register_buffer("offset", torch.tensor(float(offset)))  # mean rating or base-rate logit
        self.temperature = temperature  # the pretraining softmax's (cosine / temperature)
        self.prior_weight: nn.Parameter | None = None
        if cfg.prior:
            # No pretraining data (scratch): every item equally popular, so the signal is constant.
            self.register_buffer("log_prior", torch.zeros(n_items) if log_prior is None else log_prior)
            self.register_buffer("prior_shift", torch.zeros(N_PRIOR))  # set by `standardise_prior`
            self.register_buffer("prior_scale", torch.ones(N_PRIOR))
            self.prior_weight = nn.Parameter(torch.full((N_PRIOR,), cfg.prior_init))
            nn.init.zeros_(self.mlp[-1].weight)
            nn.init.zeros_(self.mlp[-1].bias)

    def prior_signals(self, batch: LabeledBatch, hidden: torch.Tensor) -> torch.Tensor:
        """(N, 3) raw signals: next-item log-probability, like share so far, log popularity."""
        h = F.normalize(hidden[batch.row, batch.position], dim=-1)
        logits = h @ F.normalize(self.backbone.items.table(), dim=-1).T / self.temperature
        next_item = logits.log_softmax(-1).gather(1, batch.items[:, None]).squeeze(1)
        likes, real = history_likes(batch)
        share = likes / real.clamp(min=1)
        return torch.stack([next_item, share, self.log_prior[batch.items]], dim=1)

    def user_rate(self, batch: LabeledBatch) -> torch.Tensor:
        """(N, 2): the history's like rate (shrunk to the base rate) as log-odds minus the offset, and
        log(1 + events). A like rate over many events moves little from row to row, unlike the state."""
        likes, events = history_likes(batch)
        base = torch.sigmoid(self.offset)
        rate = ((likes + RATE_SHRINKAGE * base) / (events + RATE_SHRINKAGE)).clamp(1e-3, 1 - 1e-3)
        return torch.stack([torch.log(rate / (1 - rate)) - self.offset, torch.log1p(events)], dim=1)

    def forward(self, batch: LabeledBatch) -> torch.Tensor:
        """Logits (ctr) or ratings, (N,)."""
        extra = None if self.feedback is None else self.feedback(batch.feedback)  # (B, T, dim)
        hidden = self.backbone(batch.tokens, extra)  # (B, T, dim)
        h = F.normalize(hidden[batch.row, batch.position], dim=-1)  # (N, dim)
        e = F.normalize(self.backbone.items(batch.items), dim=-1)  # (N, dim); cosine, as in pretraining
        parts = [h, e, h * e, self.side(batch.users, batch.items)]
        rate = None
        if self.rate_weight is not None:
            rate = self.user_rate(batch)
            parts.append(rate)
        out = self.mlp(torch.cat(parts, dim=-1)).squeeze(-1) + self.item_bias(batch.items).squeeze(-1)
        out = out + self.offset
        if rate is not None:
            out = out + rate @ self.rate_weight
        if self.user_bias is not None:
            out = out + self.user_bias(batch.users.clamp(min=0)).squeeze(-1) * (batch.users >= 0)
        if self.prior_weight is not None:
            z = (self.prior_signals(batch, hidden) - self.prior_shift) / self.prior_scale
            out = out + z @ self.prior_weight
        return out


class SequenceTaskModel:
    """A CTR or rating model on a (pretrained or fresh) backbone; trained by train/finetune.py.

    `build` takes the backbone and marks which of its weights are pretrained: those get the smaller
    learning rate in `param_groups`, everything new (head, LoRA, adapters, feedback) the head's.
    """

    name = "sequence-head"

    def __init__(self, config: HeadConfig | None = None) -> None:
        self.config = config or HeadConfig()

    def build(
        self,
        backbone: SequenceTransformer,
        side: SideFeatures,
        train_target_mean: float,
        pretrained: bool,
        temperature: float = 0.05,
        log_prior: torch.Tensor | None = None,
    ) -> SequenceTaskModel:
        """`temperature` and `log_prior` (log item shares in the pretraining data) feed `prior`."""
        cfg = self.config
        if cfg.task not in TASKS:
            raise FoundrecError(f"unknown task {cfg.task!r}; choose ctr or rating")
        if cfg.task != "ctr" and (cfg.user_rate or cfg.bias_logreg or cfg.rank_weight):
            raise FoundrecError("user_rate, bias_logreg and rank_weight are for the ctr task")
        old = {id(p) for p in backbone.parameters()} if pretrained else set()
        prepare_backbone(backbone, cfg.mode, cfg.lora_rank, cfg.lora_alpha, cfg.bottleneck, cfg.lora_items)
        if cfg.task == "ctr":
            p = min(max(train_target_mean, 1e-3), 1 - 1e-3)
            offset = float(np.log(p / (1 - p)))
        else:
            offset = train_target_mean
        self.network_ = TaskNetwork(backbone, side, cfg, offset, temperature, log_prior)
        self.pretrained_ids_ = old
        return self

    @torch.no_grad()
    def init_biases(self, items: np.ndarray, targets: np.ndarray) -> None:
        """Start each item's bias at its training rows' mean target (log-odds for ctr), shrunk to the base
        rate by `bias_shrinkage` pseudo-rows, minus the offset.

        A zero-started bias moves about lr per step and stays far from the items' like rates within the
        few epochs validation allows, yet it is what ranks items within a user (GAUC). The optional user
        bias stays at zero: started the same way it cost 2.5 validation AUC points (docs/benchmarks.md).
        """
        net, k = self.network_, self.config.bias_shrinkage
        targets = np.asarray(targets, dtype=np.float64)
        n, mean = net.item_bias.num_embeddings, targets.mean()
        sums = np.bincount(items, weights=targets, minlength=n)[:n]
        counts = np.bincount(items, minlength=n)[:n]
        shrunk = np.where(counts + k > 0, (sums + k * mean) / np.maximum(counts + k, 1e-9), mean)
        if self.config.task == "ctr":
            p = np.clip(shrunk, 1e-3, 1 - 1e-3)
            shrunk = np.log(p / (1 - p))
        bias = torch.as_tensor(shrunk - float(net.offset), dtype=torch.float32)
        net.item_bias.weight.copy_(bias[:, None])

    @torch.no_grad()
    def set_item_bias(self, logits: np.ndarray, items: np.ndarray) -> None:
        """Start the item biases at per-item log-odds (e.g. a logistic regression's item part), centred
        on the training rows' items `items` so that the offset stays the base rate."""
        logits = np.asarray(logits, dtype=np.float64)
        bias = torch.as_tensor(logits - logits[items].mean(), dtype=torch.float32)
        self.network_.item_bias.weight.copy_(bias[:, None])

    @torch.no_grad()
    def standardise_prior(self, batch: LabeledBatch) -> None:
        """Centre and scale the prior signals on training rows' inputs (no labels), so `prior_init` is
        a weight per standard deviation whatever a signal's units; a constant signal gets weight 0."""
        net = self.network_
        if net.prior_weight is None:
            return
        net.eval()
        extra = None if net.feedback is None else net.feedback(batch.feedback)
        signals = net.prior_signals(batch, net.backbone(batch.tokens, extra))
        std = signals.std(0)
        net.prior_shift.copy_(signals.mean(0))
        net.prior_scale.copy_(torch.where(std > 1e-6, std, torch.full_like(std, float("inf"))))

    def param_groups(self, lr: float, backbone_lr: float, weight_decay: float) -> list[dict[str, Any]]:
        trainable = [p for p in self.network_.parameters() if p.requires_grad]
        pretrained = [p for p in trainable if id(p) in self.pretrained_ids_]
        new = [p for p in trainable if id(p) not in self.pretrained_ids_]
        return [
            {"params": pretrained, "lr": backbone_lr, "weight_decay": weight_decay},
            {"params": new, "lr": lr, "weight_decay": weight_decay},
        ]

    def loss(self, batch: LabeledBatch) -> torch.Tensor:
        out = self.network_(batch)
        loss = task_loss(self.config.task, out, batch)
        if self.config.rank_weight:  # ctr only (`build`)
            loss = loss + self.config.rank_weight * within_user_rank_loss(out, batch)
        return loss

    @torch.no_grad()
    def predict(self, batch: LabeledBatch) -> torch.Tensor:
        """P(like) for ctr, the rating (clipped to 1..5) for rating; (N,)."""
        self.network_.eval()
        return task_prediction(self.config.task, self.network_(batch))

    def predict_proba(self, batch: LabeledBatch) -> torch.Tensor:
        if self.config.task != "ctr":
            raise FoundrecError("predict_proba needs a ctr head; use predict for ratings")
        return self.predict(batch)

    def train(self, mode: bool = True) -> None:
        self.network_.train(mode)

    def parameters_count(self) -> tuple[int, int]:
        return count_parameters(self.network_)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.network_.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.network_.load_state_dict(state)

    def save(self, path: Path) -> None:
        """model.json (head config, backbone config, shapes) + tensors.pt; no pickled code."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        backbone = self.network_.backbone
        side = self.network_.side
        meta = {
            "n_items": backbone.items.ids.num_embeddings - 1,
            "backbone": asdict(backbone.cfg),
            "user_cards": [e.num_embeddings for e in side.user_fields],
            "n_users": side.user_table.shape[0],
            "n_genres": side.item_genres.shape[1],
            "temperature": self.network_.temperature,
        }
        spec = {"model": self.name, "head": asdict(self.config), "meta": meta}
        (path / "model.json").write_text(json.dumps(spec, indent=2))
        torch.save(self.state_dict(), path / "tensors.pt")

    @classmethod
    def load(cls, path: Path) -> SequenceTaskModel:
        path = Path(path)
        if not (path / "model.json").is_file():
            raise FoundrecError(f"no saved head in {path} (model.json missing)")
        spec = json.loads((path / "model.json").read_text())
        meta = spec["meta"]
        state = torch.load(path / "tensors.pt", weights_only=True, map_location="cpu")
        text = state.get("backbone.items.text")
        cfg = TransformerConfig(**meta["backbone"])
        backbone = SequenceTransformer(meta["n_items"], cfg, None if text is None else text[:-1])
        n_items = meta["n_items"]
        side = SideFeatures(
            np.zeros((meta["n_users"], 3), dtype=np.int64),
            tuple(meta["user_cards"]),
            np.zeros(n_items, dtype=np.int64),
            np.zeros((n_items, meta["n_genres"]), dtype=np.float32),
        )
        temperature = meta.get("temperature", 0.05)  # absent in heads saved before `prior` existed
        head = {"user_bias": True, **spec["head"]}  # heads saved before `user_bias` existed had one
        model = cls(HeadConfig(**head)).build(backbone, side, 0.5, pretrained=False, temperature=temperature)
        model.load_state_dict(state)  # side tables and offset are buffers: restored here
        model.network_.eval()
        return model
