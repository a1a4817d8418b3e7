"""Shared training of small embedding models on (user, positive, sampled negative) triples."""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from torch import nn

from foundrec.data.sequences import Sequences
from foundrec.models.base import Recommender


class PairwiseRecommender(Recommender):
    """One epoch = every training interaction once as a positive, with `negatives` uniform negatives each.

    Subclasses give the network (`_build`) and the loss on a batch (`_loss`); `partial_fit` runs one
    epoch so the training layer can validate and stop early between epochs.
    """

    needs_user_id = True

    def __init__(
        self,
        dim: int = 64,
        lr: float = 2e-3,  # chosen on Beauty validation NDCG@10 (docs/benchmarks.md)
        weight_decay: float = 0.0,
        batch_size: int = 512,
        epochs: int = 50,  # upper bound; early stopping on validation ends sooner
        negatives: int = 1,
        seed: int = 0,
    ) -> None:
        self.dim = dim
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.negatives = negatives
        self.seed = seed

    def _known_users(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids safe to embed, [B] bool: a training user); unknown users embed as user 0, then get masked."""
        known = (users >= 0) & (users < self.n_users_)
        return torch.where(known, users, 0), known

    @abstractmethod
    def _build(self, n_users: int, n_items: int) -> nn.Module: ...

    @abstractmethod
    def _loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """users, pos: [B]; neg: [B, negatives]."""

    def fit(self, train: Sequences, n_items: int) -> Self:
        for _ in range(self.epochs):
            self.partial_fit(train, n_items)
        return self

    def partial_fit(self, train: Sequences, n_items: int) -> float:
        """One epoch; returns the mean training loss."""
        if not hasattr(self, "net_"):
            torch.manual_seed(self.seed)
            self.n_users_, self.n_items_ = int(train.rows.max()) + 1, n_items
            self.net_ = self._build(self.n_users_, n_items)
            self.optimizer_ = torch.optim.Adam(
                self.net_.parameters(), lr=self.lr, weight_decay=self.weight_decay
            )
            self.rng_ = np.random.default_rng(self.seed)
        users = torch.from_numpy(train.rows[train.row_ids()])
        items = torch.from_numpy(train.items)
        order = torch.from_numpy(self.rng_.permutation(len(items)))
        negatives = torch.from_numpy(self.rng_.integers(0, n_items, (len(items), self.negatives)))
        self.net_.train()
        total = 0.0
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            loss = self._loss(users[idx], items[idx], negatives[start : start + self.batch_size])
            self.optimizer_.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer_.step()
            total += loss.item() * len(idx)
        self.net_.eval()
        return total / max(1, len(order))

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.net_.parameters())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.net_.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.net_.load_state_dict(state)

    def _meta(self) -> dict[str, Any]:
        return {"n_users": self.n_users_, "n_items": self.n_items_}

    def _save_state(self, path: Path) -> None:
        torch.save(self.net_.state_dict(), path / "tensors.pt")

    def _load_state(self, path: Path, meta: dict[str, Any]) -> None:
        self.n_users_, self.n_items_ = meta["n_users"], meta["n_items"]
        self.net_ = self._build(self.n_users_, self.n_items_)
        self.net_.load_state_dict(torch.load(path / "tensors.pt", weights_only=True))
        self.net_.eval()
