"""The one scoring interface every recommender offers, and the batch it scores."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import torch

from foundrec.data.sequences import Sequences
from foundrec.errors import FoundrecError


@dataclass(frozen=True)
class UserBatch:
    """Users and their histories (CSR), the input of `score`."""

    users: torch.Tensor  # int64 [B]; -1: a user the model never trained on (an anonymous history)
    items: torch.Tensor  # int64 [nnz], each history in time order
    offsets: torch.Tensor  # int64 [B + 1]

    def __len__(self) -> int:
        return len(self.users)

    @classmethod
    def from_sequences(cls, seqs: Sequences, start: int = 0, stop: int | None = None) -> UserBatch:
        stop = len(seqs) if stop is None else min(stop, len(seqs))
        lo, hi = seqs.offsets[start], seqs.offsets[stop]
        return cls(
            users=torch.from_numpy(seqs.rows[start:stop]),
            items=torch.from_numpy(seqs.items[lo:hi]),
            offsets=torch.from_numpy(seqs.offsets[start : stop + 1] - lo),
        )

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def row_ids(self) -> torch.Tensor:
        """Batch row of every history item, [nnz]."""
        return torch.repeat_interleave(torch.arange(len(self)), self.lengths)


def model_folder(path: Path) -> Path:
    """The saved model folder of a run folder (its model/), or `path` itself when it is one."""
    path = Path(path)
    return path / "model" if (path / "model" / "model.json").is_file() else path


class Recommender(ABC):
    """fit / score / save / load, in the spirit of scikit-learn estimators.

    Hyperparameters are `__init__` arguments stored as-is; learned state ends with an underscore.
    """

    name: ClassVar[str]
    # Scores come from the training user's id, not the history (BPR, MLP): a user outside the training
    # users (-1) gets a row of -inf, "no opinion", which a fusion reads as an empty list.
    needs_user_id: ClassVar[bool] = False

    @abstractmethod
    def fit(self, train: Sequences, n_items: int) -> Self:
        """Learn from training sequences (row r belongs to user train.rows[r])."""

    @abstractmethod
    def score(self, batch: UserBatch) -> torch.Tensor:
        """Scores over the whole catalogue, [B, n_items], a new tensor the caller may modify."""

    def get_params(self) -> dict[str, Any]:
        import inspect

        if type(self).__init__ is object.__init__:
            return {}
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    def n_parameters(self) -> int:
        return sum(t.numel() for t in self._state().values())

    def _state(self) -> dict[str, torch.Tensor]:
        """Learned tensors (attributes ending in `_`); models with other state override the hooks below."""
        return {k: v for k, v in vars(self).items() if k.endswith("_") and isinstance(v, torch.Tensor)}

    def _meta(self) -> dict[str, Any]:
        """JSON-safe facts needed to rebuild the learned state (catalogue size, ...)."""
        return {}

    def _save_state(self, path: Path) -> None:
        torch.save(self._state(), path / "tensors.pt")

    def _load_state(self, path: Path, meta: dict[str, Any]) -> None:
        for key, value in torch.load(path / "tensors.pt", weights_only=True).items():
            setattr(self, key, value)

    def save(self, path: Path) -> None:
        """A folder with model.json (name, params, metadata) and weights; no pickled code."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        spec = {"model": self.name, "params": self.get_params(), "meta": self._meta()}
        (path / "model.json").write_text(json.dumps(spec, indent=2))
        self._save_state(path)

    @staticmethod
    def load(path: Path) -> Recommender:
        from foundrec.models import MODELS

        path = Path(path)
        if not (path / "model.json").is_file():
            raise FoundrecError(f"no saved model in {path} (model.json missing)")
        spec = json.loads((path / "model.json").read_text())
        if spec["model"] not in MODELS:
            hint = " (a fusion: load it with foundrec.fusion.load_model)" if "members" in spec else ""
            raise FoundrecError(f"{path} holds an unknown model {spec['model']!r}{hint}")
        model = MODELS[spec["model"]](**spec["params"])
        model._load_state(path, spec["meta"])
        return model


class DotProductRecommender(Recommender):
    """A model whose score is <user vector, item vector>: `score` follows from the two sides.

    Serving indexes `item_vectors` for approximate nearest-neighbour search and encodes only the user;
    evaluation may rank with the factors directly.
    """

    @abstractmethod
    def user_vectors(self, batch: UserBatch) -> torch.Tensor:
        """[B, d] float32, one query vector per user or history in the batch."""

    @abstractmethod
    def item_vectors(self) -> torch.Tensor:
        """[n_items, d] float32 in vocabulary order."""

    @torch.no_grad()
    def score(self, batch: UserBatch) -> torch.Tensor:
        return self.user_vectors(batch) @ self.item_vectors().T
