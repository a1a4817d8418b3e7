"""The seed's DNN: user and item embeddings into an MLP with a sigmoid output, trained with BCE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from foundrec.models.base import UserBatch
from foundrec.models.neural import PairwiseRecommender


class MLPNet(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        self.first_user = nn.Linear(dim, hidden[0])  # first layer on concat(u, i), split in two halves
        self.first_item = nn.Linear(dim, hidden[0], bias=False)
        sizes = [*hidden, 1]
        self.rest = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))

    def logits(self, u_hidden: torch.Tensor, i_hidden: torch.Tensor) -> torch.Tensor:
        x = F.relu(u_hidden + i_hidden)
        for layer in self.rest[:-1]:
            x = F.relu(layer(x))
        return self.rest[-1](x).squeeze(-1)


class MLPRecommender(PairwiseRecommender):
    """P(interaction | u, i) = sigmoid(MLP([p_u; q_i])); positives against `negatives` uniform samples.

    The first layer is applied to the user and item halves separately, so scoring a catalogue costs one
    projection per item instead of one per (user, item) pair.
    """

    name = "mlp"

    def __init__(
        self,
        dim: int = 32,
        hidden: tuple[int, ...] = (32, 16),
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 1024,
        epochs: int = 20,
        negatives: int = 4,
        seed: int = 0,
    ) -> None:
        super().__init__(dim, lr, weight_decay, batch_size, epochs, negatives, seed)
        self.hidden = tuple(hidden)

    def _build(self, n_users: int, n_items: int) -> nn.Module:
        return MLPNet(n_users, n_items, self.dim, self.hidden)

    def _loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        net = self.net_
        u = net.first_user(net.user(users))  # (B, h)
        items = torch.cat([pos[:, None], neg], dim=1)  # (B, 1 + n)
        logits = net.logits(u[:, None, :], net.first_item(net.item(items)))  # (B, 1 + n)
        labels = torch.zeros_like(logits)
        labels[:, 0] = 1.0
        return F.binary_cross_entropy_with_logits(logits, labels)

    @torch.no_grad()
    def score(self, batch: UserBatch) -> torch.Tensor:
        net = self.net_
        users, known = self._known_users(batch.users)
        u = net.first_user(net.user(users))  # (B, h)
        i = net.first_item(net.item.weight)  # (N, h)
        step = max(1, (1 << 21) // i.numel())  # users per chunk: ~8 MB of activations
        scores = torch.cat([net.logits(u[s : s + step, None, :], i[None]) for s in range(0, len(u), step)])
        scores[~known] = -torch.inf
        return scores
