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
    best, best_state, waited = float("-inf"), None, 0
    max_epochs = model.epochs
    for epoch in range(1, max_epochs + 1):
        start = time.perf_counter()
        loss = model.partial_fit(train, n_items)
        seconds = time.perf_counter() - start
        result.train_seconds += seconds
        score = validate(model) if validate else float("nan")
        log = EpochLog(epoch, loss, score, seconds)
        result.epochs.append(log)
        if on_epoch:
            on_epoch(log, max_epochs)
        if validate is None:
            continue
        if score > best:
            best, best_state, waited, result.best_epoch = score, model.state_dict(), 0, epoch
        else:
            waited += 1
            if waited >= patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return result
