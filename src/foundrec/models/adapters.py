"""Parameter-efficient fine-tuning of the backbone: LoRA, bottleneck adapters, and freezing for probes.

Hand-written rather than `peft`: our projections are plain `nn.Linear`s, so LoRA is one small module,
while `peft` would bring `transformers` and `accelerate` along for it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from foundrec.models.transformer import SequenceTransformer

MODES = ("full", "lora", "adapter", "probe")


class LoRALinear(nn.Module):
    """y = W x + (alpha / r) B A x with W frozen; B starts at zero, so training starts from W exactly."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))  # as nn.Linear initialises its weight
        self.drop = nn.Dropout(dropout)
        base.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (self.drop(x) @ self.lora_a.T @ self.lora_b.T) * self.scale


class LoRAEmbedding(nn.Module):
    """E[i] + (alpha / r) A[i] B with E frozen; A starts at zero (as in `peft`), so E is exact at first.

    Full fine-tuning's edge on many labels comes largely from moving the item table (half the backbone);
    this gives LoRA a low-rank share of that. Exposes `num_embeddings` and `weight` like the table it wraps.
    """

    def __init__(self, base: nn.Embedding, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        self.lora_a = nn.Parameter(torch.zeros(base.num_embeddings, rank))
        self.lora_b = nn.Parameter(torch.empty(rank, base.embedding_dim))
        nn.init.normal_(self.lora_b, std=1.0 / rank)
        base.requires_grad_(False)

    @property
    def num_embeddings(self) -> int:
        return self.base.num_embeddings

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        return self.base(items) + (self.lora_a[items] @ self.lora_b) * self.scale


class BottleneckAdapter(nn.Module):
    """x + up(GELU(down(x))) (Houlsby et al. 2019); `up` starts at zero: the block is unchanged at first."""

    def __init__(self, dim: int, bottleneck: int) -> None:
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(nn.functional.gelu(self.down(x)))


class AdaptedBlock(nn.Module):
    """A frozen transformer block followed by a trainable bottleneck adapter."""

    def __init__(self, block: nn.Module, adapter: BottleneckAdapter) -> None:
        super().__init__()
        self.block, self.adapter = block, adapter

    def forward(self, x: torch.Tensor, last: torch.Tensor | None = None) -> torch.Tensor:
        return self.adapter(self.block(x, last))  # `last`: as the block's (SequenceTransformer.forward)


def add_lora(
    backbone: SequenceTransformer, rank: int, alpha: float, dropout: float = 0.0, items: bool = False
) -> None:
    """Wrap every linear layer inside the blocks (attention and feed-forward projections) with LoRA, and
    the item id table too when `items`."""
    if items:
        backbone.items.ids = LoRAEmbedding(backbone.items.ids, rank, alpha)
    for block in backbone.blocks:
        for parent in list(block.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, LoRALinear(child, rank, alpha, dropout))


def add_adapters(backbone: SequenceTransformer, bottleneck: int) -> None:
    """Insert a bottleneck adapter after each block."""
    dim = backbone.cfg.dim
    backbone.blocks = nn.ModuleList(
        AdaptedBlock(b, BottleneckAdapter(dim, bottleneck)) for b in backbone.blocks
    )


def prepare_backbone(
    backbone: SequenceTransformer,
    mode: str,
    rank: int = 4,
    alpha: float = 8.0,
    bottleneck: int = 8,
    lora_items: bool = False,
) -> None:
    """Set which backbone weights train: all (full), only LoRA or adapter weights, or none (probe)."""
    if mode not in MODES:
        raise ValueError(f"unknown fine-tuning mode {mode!r}; choose one of {', '.join(MODES)}")
    backbone.requires_grad_(mode == "full")
    if mode == "lora":
        add_lora(backbone, rank, alpha, items=lora_items)
    elif mode == "adapter":
        add_adapters(backbone, bottleneck)


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters."""
    params = list(module.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
