"""The fine-tuning loop for labelled rows: AdamW with a smaller learning rate for pretrained weights,
linear warmup then cosine decay, clipping, and early stopping on a validation callback (AUC for CTR,
-RMSE for ratings) that keeps the best epoch's weights. The same loop trains the torch CTR baselines.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from foundrec.train.early_stopping import BestEpoch, EpochLog, TrainResult
from foundrec.train.pretrain import warmup_cosine


class TrainableModel(Protocol):
    def param_groups(self, lr: float, backbone_lr: float, weight_decay: float) -> list[dict[str, Any]]: ...
    def loss(self, batch: Any) -> torch.Tensor: ...
    def train(self, mode: bool = True) -> None: ...
    def state_dict(self) -> dict[str, torch.Tensor]: ...
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None: ...


@dataclass(frozen=True)
class FinetuneConfig:
    lr: float = 1e-3  # new weights: head, LoRA, adapters, feedback embedding
    backbone_lr: float = 1e-4  # pretrained weights (full mode); set equal to lr for a scratch backbone
    weight_decay: float = 0.0
    warmup: float = 0.05  # fraction of all steps
    min_lr: float = 0.1  # cosine ends at min_lr * lr
    epochs: int = 30  # upper bound; early stopping on validation ends sooner
    patience: int = 3
    batch_size: int = 256
    min_epochs: int = 0  # no early stop before this epoch (few-shot: one step per epoch, noisy early)
    grad_clip: float = 1.0
    seed: int = 0


def finetune(
    model: TrainableModel,
    epoch_batches: Callable[[np.random.Generator], Iterable[Any]],
    n_steps_per_epoch: int,
    validate: Callable[[TrainableModel], float],
    cfg: FinetuneConfig,
    on_epoch: Callable[[EpochLog, int], None] | None = None,
) -> TrainResult:
    """Train until validation stops improving for `patience` epochs; restore the best epoch's weights.

    `epoch_batches(rng)` yields one epoch of batches (shuffled with rng); `validate` returns a score where
    higher is better and never sees test rows.
    """
    torch.manual_seed(cfg.seed)
    groups = [g for g in model.param_groups(cfg.lr, cfg.backbone_lr, cfg.weight_decay) if g["params"]]
    optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.98))
    params = [p for g in groups for p in g["params"]]
    total = max(1, n_steps_per_epoch * cfg.epochs)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(max(1, math.ceil(cfg.warmup * total)), total, cfg.min_lr)
    )
    best, result = BestEpoch(cfg.patience), TrainResult()
    model.train(False)
    best.update(validate(model), 0, model)  # epoch 0: the starting weights (a probe may not improve)
    for epoch in range(1, cfg.epochs + 1):
        start = time.perf_counter()
        rng = np.random.default_rng([cfg.seed, epoch])
        torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout
        model.train(True)
        loss_sum, steps = 0.0, 0
        for batch in epoch_batches(rng):
            loss = model.loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            schedule.step()
            loss_sum, steps = loss_sum + loss.item(), steps + 1
        model.train(False)
        seconds = time.perf_counter() - start
        result.train_seconds += seconds
        valid_start = time.perf_counter()
        score = validate(model)
        log = EpochLog(epoch, loss_sum / max(1, steps), score, seconds, time.perf_counter() - valid_start)
        result.epochs.append(log)
        if on_epoch:
            on_epoch(log, cfg.epochs)
        if best.update(score, epoch, model) and epoch >= cfg.min_epochs:
            break
    best.restore(model)
    result.best_epoch = best.epoch
    return result
