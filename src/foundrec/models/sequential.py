"""Generative next-item recommenders (SASRec, HSTU) on the transformer backbone, behind fit/score/save/load.

The training loop (schedules, accumulation, DDP, checkpoints, early stopping) is train/pretrain.py; this
module owns what is specific to the model: its network, its objective at real positions and its scores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
import torch.nn.functional as F

from foundrec.data.batching import pad_right
from foundrec.data.sequences import Sequences
from foundrec.errors import FoundrecError
from foundrec.models.base import DotProductRecommender, UserBatch
from foundrec.models.losses import fused_cross_entropy
from foundrec.models.transformer import PRESETS, SequenceTransformer, preset

FULL_SOFTMAX_MAX_ITEMS = 100_000  # above this, `loss="auto"` switches to sampled softmax


class SequentialRecommender(DotProductRecommender):
    """Causal transformer trained on next-item prediction at every real position of every history."""

    name = "sasrec"
    block = "sasrec"

    def __init__(
        self,
        size: str = "base",
        n_layers: int | None = None,  # None: the preset's value
        n_heads: int | None = None,
        dim: int | None = None,
        max_len: int | None = None,
        dropout: float = 0.5,
        loss: str = "auto",  # "full" softmax, "sampled" (in-batch + uniform negatives, logQ), or "auto"
        negatives: int = 1024,  # uniform negatives per batch for the sampled softmax
        similarity: str = "cosine",  # or "dot"; cosine/0.05 doubled Beauty's validation NDCG@10 early on
        temperature: float = 0.05,  # for cosine only
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        warmup: float = 0.02,  # fraction of all optimizer steps spent warming up
        min_lr: float = 0.1,  # cosine decay ends at min_lr * lr
        batch_size: int = 256,  # windows per optimizer micro-step
        accumulate: int = 1,  # micro-steps per optimizer step
        grad_clip: float = 1.0,
        epochs: int = 200,  # upper bound; early stopping on validation ends sooner
        text: bool | str = False,  # fuse item text embeddings with the ids; a string names the text model
        text_init: str = "random",  # with text: "pca" starts the text projection on the text's principal axes
        text_freeze: bool = False,  # with text: keep the text projection at its initial value
        id_init: float = 0.02,  # with text: id embedding init std; 0 makes ids a residual on the text vector
        id_dropout: float = 0.0,  # with text: chance an item's id vector is dropped in training
        id_gate: float = 0.0,  # with text: > 0 gates id vectors by training count (0.5 at this count)
        new_text_only: bool = True,  # with text: items without training interactions are their text alone
        device: str = "auto",  # "auto": cuda when available, else cpu
        seed: int = 0,
    ) -> None:
        self.size = size
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.dim = dim
        self.max_len = max_len
        self.dropout = dropout
        self.loss = loss
        self.negatives = negatives
        self.similarity = similarity
        self.temperature = temperature
        self.lr = lr
        self.weight_decay = weight_decay
        self.warmup = warmup
        self.min_lr = min_lr
        self.batch_size = batch_size
        self.accumulate = accumulate
        self.grad_clip = grad_clip
        self.epochs = epochs
        self.text = text
        self.text_init = text_init
        self.text_freeze = text_freeze
        self.id_init = id_init
        self.id_dropout = id_dropout
        self.id_gate = id_gate
        self.new_text_only = new_text_only
        self.device = device
        self.seed = seed

    def config(self, text_dim: int = 0):
        if self.size not in PRESETS:
            raise FoundrecError(f"unknown model size {self.size!r}; choose one of {', '.join(PRESETS)}")
        given = {"n_layers": self.n_layers, "n_heads": self.n_heads, "dim": self.dim, "max_len": self.max_len}
        overrides = {k: v for k, v in given.items() if v is not None}
        fusion = {
            "text_init": self.text_init,
            "text_freeze": self.text_freeze,
            "id_init": self.id_init,
            "id_dropout": self.id_dropout,
            "id_gate": self.id_gate,
            "new_text_only": self.new_text_only,
        }
        return preset(
            self.size, block=self.block, dropout=self.dropout, text_dim=text_dim, **fusion, **overrides
        )

    def set_item_text(self, embeddings: np.ndarray) -> Self:
        """Fixed text vectors [n_items, d] in vocabulary order, fused into the item encoder at build time."""
        self.item_text_ = torch.as_tensor(np.asarray(embeddings), dtype=torch.float32)
        return self

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def build(self, n_items: int, item_counts: np.ndarray | None = None) -> None:
        """Create the network (once): seeded, on the chosen device."""
        if hasattr(self, "network_"):
            return
        text = getattr(self, "item_text_", None) if self.text else None
        if self.text and text is None:
            raise FoundrecError("text=true needs item text embeddings (set_item_text) for this dataset")
        torch.manual_seed(self.seed)
        self.n_items_ = n_items
        train_counts = None if item_counts is None else torch.as_tensor(item_counts, dtype=torch.float32)
        cfg = self.config(0 if text is None else text.shape[1])
        self.network_ = SequenceTransformer(n_items, cfg, text, train_counts)  # counts: id gate, new items
        self.network_.to(self.torch_device())
        counts = np.ones(n_items) if item_counts is None else item_counts + 1.0
        self.register_log_prior(counts)

    def register_log_prior(self, counts: np.ndarray) -> None:
        """log of each item's share of training targets: the logQ correction of the sampled softmax."""
        prior = torch.as_tensor(counts / counts.sum(), dtype=torch.float32)
        self.network_.register_buffer("log_prior", prior.log().to(self.torch_device()))

    def uses_full_softmax(self) -> bool:
        return self.loss == "full" or (self.loss == "auto" and self.n_items_ <= FULL_SOFTMAX_MAX_ITEMS)

    def fit(self, train: Sequences, n_items: int) -> Self:
        from foundrec.train.pretrain import pretrain  # the shared loop lives in train/

        pretrain(self, train, n_items)
        return self

    def _queries(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.normalize(hidden, dim=-1) / self.temperature if self.similarity == "cosine" else hidden

    def _keys(self, items: torch.Tensor) -> torch.Tensor:
        return F.normalize(items, dim=-1) if self.similarity == "cosine" else items

    def loss_sum(self, network: torch.nn.Module, tokens: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Summed next-item cross-entropy over real positions of right-padded windows, and their count."""
        targets = tokens[:, 1:]
        hidden = network(tokens[:, :-1])  # (B, T, dim); `network` may be the DDP wrapper
        real = targets != self.n_items_
        h, y = hidden[real], targets[real]  # (N, dim), (N,): padding never reaches the output layer
        h, table = self._queries(h), self._keys(self.network_.items.table())
        if self.uses_full_softmax():
            return fused_cross_entropy(h, table, y), len(y)
        uniform = torch.randint(self.n_items_, (self.negatives,), device=y.device)
        candidates = torch.cat([y, uniform])  # in-batch targets are each other's negatives
        # Expected count of each candidate in the sample: corrects the in-batch popularity bias (logQ).
        log_q = torch.log(len(y) * self.network_.log_prior[candidates].exp() + self.negatives / self.n_items_)
        logits = h @ table[candidates].T - log_q
        accidental = candidates[None, :] == y[:, None]
        accidental[torch.arange(len(y)), torch.arange(len(y))] = False
        logits = logits.masked_fill(accidental, float("-inf"))
        return F.cross_entropy(logits, torch.arange(len(y), device=y.device), reduction="sum"), len(y)

    @torch.no_grad()  # not inference_mode: callers modify the scores in place
    def user_vectors(self, batch: UserBatch) -> torch.Tensor:
        return self._queries(self.encode(batch)).float().cpu()

    @torch.no_grad()
    def item_vectors(self) -> torch.Tensor:
        return self._keys(self.network_.items.table()).float().cpu()

    def encode(self, batch: UserBatch, group: int = 256) -> torch.Tensor:
        """The hidden state after each user's last item, (B, dim).

        Users are run in groups of similar history length, so padding stays near zero: one long history
        no longer pads a whole block to max_len (5x less work on Beauty, mean length 9 of 50).
        """
        device = self.torch_device()
        lengths = batch.lengths.clamp(max=self.network_.cfg.max_len)
        order = torch.argsort(lengths, stable=True)
        out = torch.empty(len(batch), self.network_.cfg.dim, device=device)
        for rows in order.split(group):
            tokens, size = pad_right(
                batch.items, batch.offsets, rows, self.network_.cfg.max_len, self.n_items_
            )
            last = (size - 1).clamp(min=0).to(device)
            out[rows.to(device)] = self.network_(tokens.to(device), last=last).float()
        return out

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.network_.parameters())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.network_.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.network_.load_state_dict(state)

    def _meta(self) -> dict[str, Any]:
        text = self.network_.items.text
        return {"n_items": self.n_items_, "text_dim": 0 if text is None else text.shape[1]}

    def _save_state(self, path: Path) -> None:
        torch.save({k: v.cpu() for k, v in self.network_.state_dict().items()}, path / "tensors.pt")

    def _load_state(self, path: Path, meta: dict[str, Any]) -> None:
        state = torch.load(path / "tensors.pt", weights_only=True, map_location="cpu")
        if meta["text_dim"]:
            self.item_text_ = state["items.text"][:-1]
            self.new_text_only = saved_with_new_text_only(state)
        self.build(meta["n_items"])
        self.network_.load_state_dict(state)
        self.network_.eval()


class HSTURecommender(SequentialRecommender):
    """The same recommender with HSTU blocks (pointwise SiLU attention, relative position bias)."""

    name = "hstu"
    block = "hstu"


def saved_with_new_text_only(state: dict[str, torch.Tensor]) -> bool:
    """Whether saved tensors come from a text model with `new_text_only`: they hold its new-item mask.
    Models saved before the option existed lack it and must load with the option off."""
    return "items.known" in state
