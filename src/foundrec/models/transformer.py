"""The causal transformer backbone over item histories: SASRec-style or HSTU-style blocks.

Sequences are right-padded, so with causal attention a real position never sees a pad; outputs at pad
positions are computed but never read. Item ids 0..n_items-1 are real, n_items is the pad token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class TransformerConfig:
    block: str = "sasrec"  # "sasrec" (softmax attention + FFN) or "hstu" (pointwise SiLU attention)
    n_layers: int = 2
    n_heads: int = 2
    dim: int = 64
    max_len: int = 50  # the last max_len items of a history are read
    dropout: float = 0.5  # sparse logs (Amazon) overfit within a few epochs without it
    ffn_mult: int = 4  # SASRec feed-forward width = ffn_mult * dim
    text_dim: int = 0  # width of precomputed item text embeddings; 0: ids only


PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"n_layers": 1, "n_heads": 1, "dim": 16, "max_len": 20},
    "base": {"n_layers": 2, "n_heads": 2, "dim": 64, "max_len": 50},
    "large": {"n_layers": 4, "n_heads": 4, "dim": 256, "max_len": 200},
    "xl": {"n_layers": 16, "n_heads": 16, "dim": 1024, "max_len": 512},
}


def preset(size: str, **overrides: object) -> TransformerConfig:
    return replace(TransformerConfig(**PRESETS[size]), **overrides)


class CausalSelfAttention(nn.Module):
    """Multi-head softmax attention through scaled_dot_product_attention (flash/memory-efficient kernels)."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.n_heads, self.dropout = cfg.n_heads, cfg.dropout
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.proj = nn.Linear(cfg.dim, cfg.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = (
            t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in self.qkv(x).split(C, 2)
        )
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )  # (B, nh, T, hs)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class SASRecBlock(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + ffn(ln(x))."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.dim)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.dim)
        self.ffn = nn.Sequential(
            nn.Linear(cfg.dim, cfg.ffn_mult * cfg.dim),
            nn.GELU(),
            nn.Linear(cfg.ffn_mult * cfg.dim, cfg.dim),
            nn.Dropout(cfg.dropout),
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln_1(x)))
        return x + self.ffn(self.ln_2(x))


class HSTUBlock(nn.Module):
    """Hierarchical Sequential Transduction Unit (Zhai et al. 2024), with a learned relative position bias.

    U, V, Q, K = SiLU(W x); A = SiLU(Q K^T + bias) / max_len (causal; no softmax, so intensity is kept);
    y = W_o(LayerNorm(A V) * U). The pointwise attention cannot use scaled_dot_product_attention.
    """

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.n_heads, self.max_len = cfg.n_heads, cfg.max_len
        self.ln_in = nn.LayerNorm(cfg.dim)
        self.uvqk = nn.Linear(cfg.dim, 4 * cfg.dim)
        self.rel_bias = nn.Parameter(torch.zeros(cfg.n_heads, 2 * cfg.max_len - 1))
        self.ln_attn = nn.LayerNorm(cfg.dim)
        self.out = nn.Linear(cfg.dim, cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        nh, hs = self.n_heads, C // self.n_heads
        u, v, q, k = F.silu(self.uvqk(self.ln_in(x))).split(C, 2)
        q, k, v = (t.view(B, T, nh, hs).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        pos = torch.arange(T, device=x.device)
        bias = self.rel_bias[:, pos[:, None] - pos[None, :] + self.rel_bias.shape[1] // 2]  # (nh, T, T)
        att = F.silu(q @ k.transpose(-2, -1) / math.sqrt(hs) + bias) / self.max_len  # not T: padding-free
        att = att.masked_fill(pos[None, :] > pos[:, None], 0.0)  # causal
        y = (self.drop(att) @ v).transpose(1, 2).reshape(B, T, C)
        return x + self.drop(self.out(self.ln_attn(y) * u))


class ItemEncoder(nn.Module):
    """Item vectors: a learned id embedding, plus a projection of fixed text embeddings when given."""

    def __init__(self, n_items: int, cfg: TransformerConfig, text: torch.Tensor | None = None) -> None:
        super().__init__()
        self.ids = nn.Embedding(n_items + 1, cfg.dim, padding_idx=n_items)
        nn.init.normal_(self.ids.weight, std=0.02)
        if text is not None:
            padded = torch.cat([text.float(), torch.zeros(1, text.shape[1])])
            self.register_buffer("text", padded)  # saved with the weights: scoring needs no text model
            self.text_proj = nn.Linear(text.shape[1], cfg.dim, bias=False)
        else:
            self.text, self.text_proj = None, None

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        e = self.ids(items)
        return e if self.text is None else e + self.text_proj(self.text[items])

    def table(self) -> torch.Tensor:
        """[n_items, dim] vectors of the real items, the output layer (weights tied with the input)."""
        return self.forward(torch.arange(self.ids.num_embeddings - 1, device=self.ids.weight.device))


class SequenceTransformer(nn.Module):
    def __init__(self, n_items: int, cfg: TransformerConfig, text: torch.Tensor | None = None) -> None:
        super().__init__()
        if cfg.dim % cfg.n_heads:
            raise ValueError(f"dim {cfg.dim} is not divisible by n_heads {cfg.n_heads}")
        self.cfg = cfg
        self.items = ItemEncoder(n_items, cfg, text)
        self.pos = nn.Embedding(cfg.max_len, cfg.dim)
        nn.init.normal_(self.pos.weight, std=0.02)
        self.drop = nn.Dropout(cfg.dropout)
        block = {"sasrec": SASRecBlock, "hstu": HSTUBlock}[cfg.block]
        self.blocks = nn.ModuleList(block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.dim)

    def forward(self, tokens: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, T), right-padded -> hidden states (B, T, dim).

        `extra` (B, T, dim) is added to the input embeddings: fine-tuning feeds per-event signals
        (a like/dislike embedding) through the pretrained blocks this way.
        """
        x = self.items(tokens) * math.sqrt(self.cfg.dim) + self.pos(
            torch.arange(tokens.shape[1], device=tokens.device)
        )
        if extra is not None:
            x = x + extra
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def configure_optimizer(
        self, lr: float, weight_decay: float, betas: tuple[float, float]
    ) -> torch.optim.AdamW:
        """AdamW; decay only matrices of linear layers, never embeddings, biases or norms."""
        decay = [
            p
            for n, p in self.named_parameters()
            if p.dim() == 2 and ".ids." not in n and not n.startswith("pos.")
        ]
        rest = [p for p in self.parameters() if all(p is not d for d in decay)]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=lr, betas=betas)
