"""Epoch loop with validation-driven early stopping for models that train by `partial_fit`.

Validation is a callback so this layer needs no evaluation code: the caller decides what "better" is
(NDCG@10 on the validation split by default), and the test split is never seen here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from foundrec.data.sequences import Sequences
from foundrec.models.base import Recommender


@dataclass
class EpochLog:
    epoch: int
    loss: float
    valid: float
    seconds: float  # training only
    valid_seconds: float = 0.0


@dataclass
class TrainResult:
    epochs: list[EpochLog] = field(default_factory=list)
    best_epoch: int = 0
    train_seconds: float = 0.0  # time in fit/partial_fit only, validation excluded
    work: dict[str, float] = field(default_factory=dict)  # FLOPs and padding per epoch, where known


@dataclass
class BestEpoch:
    """Validation bookkeeping shared by the epoch loops: best score, its epoch and weights, patience used."""

    patience: int
    score: float = float("-inf")
    epoch: int = 0
    state: dict | None = None
    waited: int = 0

    def update(self, score: float, epoch: int, model: Recommender) -> bool:
        """Record an epoch's validation score; True once `patience` epochs passed without a gain."""
        if score > self.score:
            self.score, self.epoch, self.state, self.waited = score, epoch, model.state_dict(), 0
            return False
        self.waited += 1
        return self.waited >= self.patience

    def restore(self, model: Recommender) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)


def fit(
    model: Recommender,
    train: Sequences,
    n_items: int,
    validate: Callable[[Recommender], float] | None = None,
    patience: int = 5,
    on_epoch: Callable[[EpochLog, int], None] | None = None,
) -> TrainResult:
    """Train `model`; iterative models keep the weights of their best validation epoch."""
    result = TrainResult()
    if not hasattr(model, "partial_fit"):
        start = time.perf_counter()
        model.fit(train, n_items)
        result.train_seconds = time.perf_counter() - start
        return result
    best = BestEpoch(patience)
    max_epochs = model.epochs
    for epoch in range(1, max_epochs + 1):
        start = time.perf_counter()
        loss = model.partial_fit(train, n_items)
        seconds = time.perf_counter() - start
        result.train_seconds += seconds
        valid_start = time.perf_counter()
        score = validate(model) if validate else float("nan")
        log = EpochLog(epoch, loss, score, seconds, time.perf_counter() - valid_start)
        result.epochs.append(log)
        if on_epoch:
            on_epoch(log, max_epochs)
        if validate is not None and best.update(score, epoch, model):
            break
    best.restore(model)
    result.best_epoch = best.epoch
    return result
