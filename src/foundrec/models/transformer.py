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
    # How ids and text are fused; read only when text_dim > 0, so ids-only models never change.
    text_init: str = "random"  # or "pca": the projection starts on the text's principal axes
    text_freeze: bool = False  # keep the text projection at its initial value
    id_init: float = 0.02  # std of the id embeddings at init; 0: ids start as a zero residual on text
    id_dropout: float = 0.0  # training: chance that an item's id vector is dropped, so text must carry it
    id_gate: float = 0.0  # > 0: scale id vectors by a learned gate of the training count, 0.5 at this count
    new_text_only: bool = False  # items with no training interaction are their text vector alone


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

    def forward(self, x: torch.Tensor, last: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, C) -> (B, T, C); with `last` (B,), only the query at each row's last real position.

        The keys and values still cover every position; the output is then (B, 1, C).
        """
        B, T, C = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:  # (B, T', C) -> (B, nh, T', hs)
            return t.view(B, -1, self.n_heads, C // self.n_heads).transpose(1, 2)

        dropout = self.dropout if self.training else 0.0
        if last is None:
            q, k, v = (heads(t) for t in self.qkv(x).split(C, 2))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)  # (B, nh, T, hs)
            return self.proj(y.transpose(1, 2).reshape(B, T, C))
        w, b = self.qkv.weight, self.qkv.bias
        q = heads(F.linear(x[torch.arange(B), last][:, None], w[:C], b[:C]))  # (B, nh, 1, hs)
        k, v = (heads(t) for t in F.linear(x, w[C:], b[C:]).split(C, 2))
        sees = (torch.arange(T, device=x.device) <= last[:, None])[:, None, None, :]  # causal, (B, 1, 1, T)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=sees, dropout_p=dropout)
        return self.proj(y.transpose(1, 2).reshape(B, 1, C))


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

    def forward(self, x: torch.Tensor, last: torch.Tensor | None = None) -> torch.Tensor:
        """With `last`, only each row's last real position is computed (B, 1, C): what scoring reads."""
        residual = x if last is None else x[torch.arange(len(x)), last][:, None]
        x = residual + self.drop(self.attn(self.ln_1(x), last))
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

    def forward(self, x: torch.Tensor, last: torch.Tensor | None = None) -> torch.Tensor:
        """With `last`, each row's last real position only (B, 1, C), computed in full and then picked."""
        if last is not None:
            return self.forward(x)[torch.arange(len(x)), last][:, None]
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
    """Item vectors: a learned id embedding, plus a projection of fixed text embeddings when given.

    With text, an item is proj(text) + gate(count) * id: rare items, whose ids see few updates, can lean
    on the text path. The gate, id dropout and PCA init are the config's id_* and text_* options.
    """

    def __init__(
        self,
        n_items: int,
        cfg: TransformerConfig,
        text: torch.Tensor | None = None,
        counts: torch.Tensor | None = None,  # training interactions per item: id gate, new_text_only
    ) -> None:
        super().__init__()
        self.ids = nn.Embedding(n_items + 1, cfg.dim, padding_idx=n_items)
        self.gate, self.id_dropout = None, cfg.id_dropout if text is not None else 0.0
        if text is None:
            nn.init.normal_(self.ids.weight, std=0.02)
            self.text, self.text_proj = None, None
            return
        if cfg.id_init > 0:
            nn.init.normal_(self.ids.weight, std=cfg.id_init)
        else:
            nn.init.zeros_(self.ids.weight)
        text = text.float()
        if cfg.text_init == "pca":
            text = text - text.mean(0)  # a shared offset would make every item look alike under cosine
        padded = torch.cat([text, torch.zeros(1, text.shape[1])])
        self.register_buffer("text", padded)  # saved with the weights: scoring needs no text model
        self.text_proj = nn.Linear(text.shape[1], cfg.dim, bias=False)
        if cfg.text_init == "pca":
            with torch.no_grad():
                self.text_proj.weight.copy_(principal_axes(text, cfg.dim))
        elif cfg.text_init != "random":
            raise ValueError(f"unknown text_init {cfg.text_init!r}; choose random or pca")
        self.text_proj.weight.requires_grad_(not cfg.text_freeze)
        if cfg.new_text_only:
            # A new item's id vector was only ever trained as a negative: noise, so it is left out.
            # Without counts (a fresh backbone, or one about to load its saved mask) every id counts.
            known = torch.ones(n_items, dtype=torch.bool) if counts is None else torch.as_tensor(counts) > 0
            self.register_buffer("known", torch.cat([known, torch.zeros(1, dtype=torch.bool)]))
        else:
            self.known = None
        if cfg.id_gate > 0:
            counts = torch.zeros(n_items) if counts is None else torch.as_tensor(counts, dtype=torch.float32)
            self.register_buffer("log_counts", torch.cat([counts, torch.zeros(1)]).log1p())
            # sigmoid(slope * log1p(count) + offset), 0.5 at id_gate interactions
            self.gate = nn.Parameter(torch.tensor([1.0, -math.log1p(cfg.id_gate)]))

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        e = self.ids(items)  # (..., dim)
        if self.text is None:
            return e
        if self.known is not None:
            e = e * self.known[items][..., None]
        if self.gate is not None:
            e = e * torch.sigmoid(self.gate[0] * self.log_counts[items] + self.gate[1])[..., None]
        if self.training and self.id_dropout > 0:
            # No rescaling: a dropped item looks like one never seen, a kept one exactly as at inference.
            e = e * (torch.rand(items.shape, device=items.device) >= self.id_dropout)[..., None]
        return self.text_proj(self.text[items]) + e

    def table(self) -> torch.Tensor:
        """[n_items, dim] vectors of the real items, the output layer (weights tied with the input)."""
        return self.forward(torch.arange(self.ids.num_embeddings - 1, device=self.ids.weight.device))


def principal_axes(text: torch.Tensor, dim: int, rms: float = 0.02) -> torch.Tensor:
    """(dim, text_dim) projection onto the top principal axes of centred `text`, scaled so the projected
    coordinates have the id embeddings' init scale; rows past the text's rank stay zero."""
    _, _, vh = torch.linalg.svd(text, full_matrices=False)  # (r, text_dim), largest variance first
    w = torch.zeros(dim, text.shape[1])
    w[: min(dim, len(vh))] = vh[:dim]
    scale = (text @ w.T).pow(2).mean().sqrt().clamp(min=1e-12)
    return w * (rms / scale)


class SequenceTransformer(nn.Module):
    def __init__(
        self,
        n_items: int,
        cfg: TransformerConfig,
        text: torch.Tensor | None = None,
        counts: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if cfg.dim % cfg.n_heads:
            raise ValueError(f"dim {cfg.dim} is not divisible by n_heads {cfg.n_heads}")
        self.cfg = cfg
        self.items = ItemEncoder(n_items, cfg, text, counts)
        self.pos = nn.Embedding(cfg.max_len, cfg.dim)
        nn.init.normal_(self.pos.weight, std=0.02)
        self.drop = nn.Dropout(cfg.dropout)
        block = {"sasrec": SASRecBlock, "hstu": HSTUBlock}[cfg.block]
        self.blocks = nn.ModuleList(block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.dim)

    def forward(
        self, tokens: torch.Tensor, extra: torch.Tensor | None = None, last: torch.Tensor | None = None
    ) -> torch.Tensor:
        """tokens (B, T), right-padded -> hidden states (B, T, dim).

        `extra` (B, T, dim) is added to the input embeddings: fine-tuning feeds per-event signals
        (a like/dislike embedding) through the pretrained blocks this way. `last` (B,): return only the
        state at each row's last real position, (B, dim); the final block then computes nothing else
        (scoring reads only that state: on Beauty about 40% of the encoder's work is saved).
        """
        x = self.items(tokens) * math.sqrt(self.cfg.dim) + self.pos(
            torch.arange(tokens.shape[1], device=tokens.device)
        )
        if extra is not None:
            x = x + extra
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, last if i == len(self.blocks) - 1 else None)
        return self.ln_f(x) if last is None else self.ln_f(x[:, 0])

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
