"""The training loop for sequence models: AdamW, warmup + cosine decay, clipping, accumulation, bf16 on GPU,
early stopping on validation, checkpoints with exact resume, and PyTorch DDP under `torchrun`.

Randomness is re-seeded from (seed, epoch) at every epoch, so a resumed run repeats exactly the epochs an
uninterrupted run would have made, and every DDP rank builds the same global batches.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from foundrec.data.batching import Windows, length_grouped_batches, next_item_windows, pad_right
from foundrec.data.sequences import Sequences
from foundrec.models.sequential import SequentialRecommender
from foundrec.train.early_stopping import BestEpoch, EpochLog, TrainResult

CHECKPOINT = "checkpoint.pt"


def distributed() -> tuple[int, int]:
    """(rank, world size); joins the process group when started by torchrun (gloo on CPU, nccl on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def warmup_cosine(warmup_steps: int, total_steps: int, floor: float) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def pretrain(
    model: SequentialRecommender,
    train: Sequences,
    n_items: int,
    validate: Callable[[SequentialRecommender], float] | None = None,
    patience: int = 5,
    on_epoch: Callable[[EpochLog, int], None] | None = None,
    checkpoint_dir: Path | None = None,
) -> TrainResult:
    """Train `model` on next-item prediction; keep the weights of the best validation epoch."""
    rank, world = distributed()
    model.build(n_items, np.bincount(train.items, minlength=n_items).astype(np.float64))
    device = model.torch_device()
    network = model.network_
    wrapped = DistributedDataParallel(network) if world > 1 else network
    windows = next_item_windows(train, network.cfg.max_len)
    items, offsets = torch.from_numpy(windows.items), torch.from_numpy(windows.offsets)
    n_batches = math.ceil(len(windows) / model.batch_size)
    steps_per_epoch = math.ceil(n_batches / model.accumulate)
    total_steps = steps_per_epoch * model.epochs
    optimizer = network.configure_optimizer(model.lr, model.weight_decay, (0.9, 0.98))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(max(1, int(model.warmup * total_steps)), total_steps, model.min_lr)
    )
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    result, best, first = TrainResult(), BestEpoch(patience), 1
    path = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir else None
    if path is not None and path.is_file():
        # Our own file (not weights only): it holds the epoch logs and the early-stopping state.
        saved = torch.load(path, weights_only=False, map_location=device)
        network.load_state_dict(saved["network"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        best = BestEpoch(patience, **saved["best"])
        result = TrainResult([EpochLog(**e) for e in saved["epochs"]], train_seconds=saved["train_seconds"])
        first = model.epochs + 1 if saved["stopped"] else len(result.epochs) + 1
    result.work = epoch_work(model, windows)
    for epoch in range(first, model.epochs + 1):
        start = time.perf_counter()
        torch.manual_seed(model.seed * 100_003 + epoch)  # dropout and negatives
        batches = length_grouped_batches(
            windows.lengths, model.batch_size, np.random.default_rng([model.seed, epoch])
        )
        network.train()
        total, count = 0.0, 0
        for i, index in enumerate(batches):
            n_global = int(windows.lengths[index].sum()) - len(index)  # targets in the global batch
            share = torch.from_numpy(index[rank::world])  # this rank's part of the global batch
            tokens, _ = pad_right(items, offsets, share, network.cfg.max_len + 1, model.n_items_)
            step_now = (i + 1) % model.accumulate == 0 or i + 1 == len(batches)
            with autocast:
                loss, n = model.loss_sum(wrapped, tokens.to(device))
            # DDP averages gradients over ranks, so world * (local sum) / (global count) gives the
            # gradient of the global batch's mean loss, exactly as one process would compute it.
            (loss * world / n_global / model.accumulate).backward()
            total, count = total + loss.item(), count + n
            if step_now:
                if model.grad_clip:
                    torch.nn.utils.clip_grad_norm_(network.parameters(), model.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                schedule.step()
        network.eval()
        seconds = time.perf_counter() - start
        result.train_seconds += seconds
        mean_loss = _all_mean(total, count, world, device)
        score, valid_start = float("nan"), time.perf_counter()
        if validate is not None:
            score = _broadcast(validate(model) if rank == 0 else 0.0, world, device)
        log = EpochLog(epoch, mean_loss, score, seconds, time.perf_counter() - valid_start)
        result.epochs.append(log)
        stop = validate is not None and best.update(score, epoch, model)
        if rank == 0 and on_epoch:
            on_epoch(log, model.epochs)
        if rank == 0 and path is not None:
            _save(path, network, optimizer, schedule, best, result, stop)
        if stop:
            break
    best.restore(model)
    result.best_epoch = best.epoch
    return result


def epoch_work(model: SequentialRecommender, windows: Windows) -> dict[str, float]:
    """Arithmetic of one epoch: real vs processed positions, and FLOPs (forward + backward = 3x forward).

    Per position and layer: the block's matrix products (SASRec 4d^2 + 2*ffn*d^2, HSTU 5d^2 multiply-adds)
    and attention over the batch's width; per target: the output layer (d x catalogue, or d x sampled
    candidates). Embedding look-ups, norms and activations are left out: they are not matrix work.
    """
    cfg = model.network_.cfg
    targets = windows.lengths - 1
    batches = length_grouped_batches(
        windows.lengths, model.batch_size, np.random.default_rng([model.seed, 1])
    )
    widths = np.array([targets[b].max() for b in batches])
    sizes = np.array([len(b) for b in batches])
    processed = int((widths * sizes).sum())
    real = int(targets.sum())
    d = cfg.dim
    per_position = (4 + 2 * cfg.ffn_mult) * d * d if cfg.block == "sasrec" else 5 * d * d
    attention = int((sizes * widths * widths).sum()) * d  # QK^T and AV over causal halves: 2 * T^2/2 * d
    if model.uses_full_softmax():
        output = real * d * model.n_items_
    else:
        output = real * d * (int(np.mean(sizes * widths)) + model.negatives)
    flops = 6 * (cfg.n_layers * (processed * per_position + attention) + output)
    return {
        "real_positions": real,
        "processed_positions": processed,
        "padding_fraction": 1 - real / max(1, processed),
        "padding_fraction_if_padded_to_max_len": 1 - real / max(1, len(windows) * cfg.max_len),
        "flops_per_epoch": float(flops),
        "output_layer_share": 6 * output / max(1, flops),
    }


def _all_mean(total: float, count: int, world: int, device: torch.device) -> float:
    if world == 1:
        return total / max(1, count)
    both = torch.tensor([total, float(count)], dtype=torch.float64, device=device)
    dist.all_reduce(both)
    return float(both[0] / both[1].clamp(min=1))


def _broadcast(value: float, world: int, device: torch.device) -> float:
    if world == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return float(tensor[0])


def _save(path, network, optimizer, schedule, best: BestEpoch, result: TrainResult, stopped: bool) -> None:
    """Atomic: a crash while writing leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "network": network.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "best": {k: v for k, v in vars(best).items() if k != "patience"},  # no copy of the weights
        "epochs": [asdict(e) for e in result.epochs],
        "train_seconds": result.train_seconds,
        "stopped": stopped,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
