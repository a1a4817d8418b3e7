"""Most-popular items for everyone: the floor every model must clear."""

from __future__ import annotations

from typing import Self

import numpy as np
import torch

from foundrec.data.sequences import Sequences
from foundrec.models.base import Recommender, UserBatch


class Popularity(Recommender):
    name = "pop"

    def fit(self, train: Sequences, n_items: int) -> Self:
        self.counts_ = torch.from_numpy(np.bincount(train.items, minlength=n_items).astype(np.float32))
        return self

    def score(self, batch: UserBatch) -> torch.Tensor:
        return self.counts_.repeat(len(batch), 1)
