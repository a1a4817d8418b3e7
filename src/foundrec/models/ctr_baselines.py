"""CTR and rating baselines on the same labelled rows: logistic regression, the seed's MLP, DeepFM, biased MF.

They read only (user, item, side features) of a row, never its history; the torch ones train in the
fine-tuning loop (train/finetune.py) through the same `param_groups` / `loss` / `predict` surface.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from foundrec.data.labeled import LabeledBatch, SideFeatures
from foundrec.models.heads import SideEncoder, task_loss, task_prediction
from foundrec.models.mlp import MLPNet


class TorchRowModel:
    """Shared surface of the torch baselines: one learning rate, BCE (ctr) or MSE (rating)."""

    name = "torch-row-model"
    task = "ctr"

    def param_groups(self, lr: float, backbone_lr: float, weight_decay: float) -> list[dict[str, Any]]:
        return [{"params": list(self.network_.parameters()), "lr": lr, "weight_decay": weight_decay}]

    def forward(self, batch: LabeledBatch) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, batch: LabeledBatch) -> torch.Tensor:
        return task_loss(self.task, self.forward(batch), batch)

    @torch.no_grad()
    def predict(self, batch: LabeledBatch) -> torch.Tensor:
        self.network_.eval()
        return task_prediction(self.task, self.forward(batch))

    def train(self, mode: bool = True) -> None:
        self.network_.train(mode)

    def parameters_count(self) -> tuple[int, int]:
        n = sum(p.numel() for p in self.network_.parameters())
        return n, n

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.network_.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.network_.load_state_dict(state)


class MLPCTR(TorchRowModel):
    """The seed's MLP (user and item embeddings, MLP, sigmoid) trained with BCE on the row labels."""

    name = "mlp"

    def __init__(self, n_users: int, n_items: int, dim: int = 32, hidden: tuple[int, ...] = (32, 16)) -> None:
        torch.manual_seed(0)
        self.network_ = MLPNet(n_users, n_items, dim, hidden)

    def forward(self, batch: LabeledBatch) -> torch.Tensor:
        net = self.network_
        return net.logits(net.first_user(net.user(batch.users)), net.first_item(net.item(batch.items)))


class DeepFMNet(nn.Module):
    """DeepFM (Guo et al. 2017): first-order weights + pairwise FM interactions + an MLP, one logit."""

    def __init__(self, n_users: int, n_items: int, side: SideFeatures, dim: int, hidden: int) -> None:
        super().__init__()
        self.user, self.item = nn.Embedding(n_users, dim), nn.Embedding(n_items, dim)
        self.side = SideEncoder(side, dim)  # 5 more fields of width dim (genres: sum of genre vectors)
        self.user_w, self.item_w = nn.Embedding(n_users, 1), nn.Embedding(n_items, 1)
        self.side_w = SideEncoder(side, 1)
        for emb in (self.user, self.item):
            nn.init.normal_(emb.weight, std=0.01)
        for emb in (self.user_w, self.item_w):
            nn.init.zeros_(emb.weight)
        n_fields = 2 + self.side.out_dim // dim
        self.deep = nn.Sequential(
            nn.Linear(n_fields * dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )
        self.bias = nn.Parameter(torch.zeros(()))
        self.dim = dim

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        fields = torch.cat(
            [
                self.user(users)[:, None],
                self.item(items)[:, None],
                self.side(users, items).view(len(users), -1, self.dim),
            ],
            dim=1,
        )  # (N, F, dim)
        first = (
            self.user_w(users).squeeze(-1)
            + self.item_w(items).squeeze(-1)
            + self.side_w(users, items).sum(-1)
        )
        fm = 0.5 * (fields.sum(1).pow(2) - fields.pow(2).sum(1)).sum(-1)
        return self.bias + first + fm + self.deep(fields.flatten(1)).squeeze(-1)


class DeepFM(TorchRowModel):
    name = "deepfm"

    def __init__(
        self, n_users: int, n_items: int, side: SideFeatures, dim: int = 16, hidden: int = 64
    ) -> None:
        torch.manual_seed(0)
        self.network_ = DeepFMNet(n_users, n_items, side, dim, hidden)

    def forward(self, batch: LabeledBatch) -> torch.Tensor:
        return self.network_(batch.users, batch.items)


class BiasedMFNet(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int, mean: float) -> None:
        super().__init__()
        self.p, self.q = nn.Embedding(n_users, dim), nn.Embedding(n_items, dim)
        self.bu, self.bi = nn.Embedding(n_users, 1), nn.Embedding(n_items, 1)
        for emb in (self.p, self.q):
            nn.init.normal_(emb.weight, std=0.01)
        for emb in (self.bu, self.bi):
            nn.init.zeros_(emb.weight)
        self.register_buffer("mean", torch.tensor(float(mean)))

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        dot = (self.p(users) * self.q(items)).sum(-1)
        return self.mean + self.bu(users).squeeze(-1) + self.bi(items).squeeze(-1) + dot


class BiasedMF(TorchRowModel):
    """Rating = mean + user bias + item bias + <p_u, q_i> (Koren et al. 2009), trained with MSE."""

    name = "biased-mf"
    task = "rating"

    def __init__(self, n_users: int, n_items: int, mean: float, dim: int = 32) -> None:
        torch.manual_seed(0)
        self.network_ = BiasedMFNet(n_users, n_items, dim, mean)

    def forward(self, batch: LabeledBatch) -> torch.Tensor:
        return self.network_(batch.users, batch.items)


def field_starts(side: SideFeatures, n_users: int, n_items: int) -> np.ndarray:
    """First column of each one-hot field (user, item, 3 user fields, year group), then the genres'."""
    return np.cumsum([0, n_users, n_items, *side.user_cards, side.year_card])


def one_hot_rows(
    users: np.ndarray, items: np.ndarray, side: SideFeatures, n_users: int, n_items: int
) -> sp.csr_matrix:
    """Sparse design matrix: one-hot user id, item id, age group, gender, occupation, year group; genres."""
    fields = [users, items, *side.user[users].T, side.item_year[items]]
    starts = field_starts(side, n_users, n_items)
    cols = np.stack([f + s for f, s in zip(fields, starts[:-1], strict=True)], axis=1)
    n = len(users)
    onehot = sp.csr_matrix(
        (np.ones(cols.size), cols.ravel(), np.arange(0, cols.size + 1, cols.shape[1])), shape=(n, starts[-1])
    )
    return sp.hstack([onehot, sp.csr_matrix(side.item_genres[items])], format="csr")


class LogisticCTR:
    """Logistic regression (L2, lbfgs) on one-hot ids and side features."""

    name = "logreg"

    def __init__(self, side: SideFeatures, n_users: int, n_items: int, c: float = 1.0) -> None:
        self.side, self.n_users, self.n_items, self.c = side, n_users, n_items, c

    def _x(self, batch: LabeledBatch) -> sp.csr_matrix:
        return one_hot_rows(batch.users.numpy(), batch.items.numpy(), self.side, self.n_users, self.n_items)

    def fit(self, batch: LabeledBatch) -> LogisticCTR:
        self.model_ = LogisticRegression(C=self.c, max_iter=2000).fit(self._x(batch), batch.labels.numpy())
        return self

    def predict(self, batch: LabeledBatch) -> torch.Tensor:
        return torch.from_numpy(self.model_.predict_proba(self._x(batch))[:, 1])

    def parameters_count(self) -> tuple[int, int]:
        n = self.model_.coef_.size + 1
        return n, n

    def item_logits(self) -> np.ndarray:
        """Each item's part of the logit (item id + year group + genres), [n_items]: its like-ability
        with every user's own offset (user id) fitted beside it."""
        coef = self.model_.coef_[0]
        starts = field_starts(self.side, self.n_users, self.n_items)
        items = np.arange(self.n_items)
        year = coef[starts[-2] + self.side.item_year]
        return coef[starts[1] + items] + year + self.side.item_genres @ coef[starts[-1] :]
