"""Bayesian personalised ranking with matrix factorisation (Rendle et al. 2009)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from foundrec.models.base import DotProductRecommender, UserBatch
from foundrec.models.neural import PairwiseRecommender


class BPR(PairwiseRecommender, DotProductRecommender):
    """score(u, i) = <p_u, q_i>; loss -log sigmoid(score(u, pos) - score(u, neg))."""

    name = "bpr"

    def _build(self, n_users: int, n_items: int) -> nn.Module:
        net = nn.ModuleDict(
            {"user": nn.Embedding(n_users, self.dim), "item": nn.Embedding(n_items, self.dim)}
        )
        for emb in net.values():
            nn.init.normal_(emb.weight, std=0.01)
        return net

    def _loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        u = self.net_["user"](users)  # (B, d)
        pos_score = (u * self.net_["item"](pos)).sum(-1)  # (B,)
        neg_score = torch.einsum("bd,bnd->bn", u, self.net_["item"](neg))  # (B, n)
        return -F.logsigmoid(pos_score[:, None] - neg_score).mean()

    @torch.no_grad()
    def user_vectors(self, batch: UserBatch) -> torch.Tensor:
        """Zero for users outside the training users (`score` masks their rows)."""
        users, known = self._known_users(batch.users)
        return self.net_["user"](users) * known[:, None]

    @torch.no_grad()
    def score(self, batch: UserBatch) -> torch.Tensor:
        scores = self.user_vectors(batch) @ self.item_vectors().T
        scores[~self._known_users(batch.users)[1]] = -torch.inf
        return scores

    @torch.no_grad()
    def item_vectors(self) -> torch.Tensor:
        return self.net_["item"].weight
