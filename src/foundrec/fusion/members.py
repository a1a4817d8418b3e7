"""Fusion members: trained models with where they were saved and what they were trained on.

A member loaded from a run folder (config.json, vocab/, model/) carries a digest of its item vocabulary
and of its data and split settings, so fusing models of different catalogues or splits fails loudly
instead of adding scores of unrelated items.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from foundrec.errors import FoundrecError
from foundrec.models.base import Recommender, UserBatch, model_folder


@dataclass(frozen=True)
class Member:
    name: str
    model: Recommender
    path: Path | None = None  # saved model folder; a fusion saves members without one inside itself
    catalogue: str | None = None  # digest of the run's vocab/items.txt
    data: str | None = None  # digest of the run's data and split settings


def load_model(path: Path) -> Recommender:
    """Any saved model folder, a fusion's included (Recommender.load knows only the base models)."""
    from foundrec.fusion import FUSIONS

    spec_file = Path(path) / "model.json"
    if not spec_file.is_file():
        raise FoundrecError(f"no saved model in {path} (model.json missing)")
    kind = json.loads(spec_file.read_text()).get("model")
    if kind in FUSIONS:
        return FUSIONS[kind].load(path)
    return Recommender.load(path)


def load_member(path: Path, name: str | None = None) -> Member:
    """A member from a run folder or a bare model folder; named after its folder unless `name` is given."""
    path = Path(path)
    model_dir = model_folder(path)
    run_dir = model_dir.parent if (model_dir.parent / "config.json").is_file() else None
    catalogue = data = None
    if run_dir is not None:
        vocab = run_dir / "vocab" / "items.txt"
        catalogue = hashlib.sha256(vocab.read_bytes()).hexdigest() if vocab.is_file() else None
        config = json.loads((run_dir / "config.json").read_text())
        data = _digest({"data": config.get("data"), "split": config.get("split")})
    return Member(
        name=name or (run_dir or model_dir).name,
        model=load_model(model_dir),
        path=model_dir.resolve(),
        catalogue=catalogue,
        data=data,
    )


def catalogue_size(model: Recommender) -> int:
    """Number of items a model scores, read from one probe row (a user with item 0 in their history)."""
    probe = UserBatch(users=torch.tensor([0]), items=torch.tensor([0]), offsets=torch.tensor([0, 1]))
    return int(model.score(probe).shape[1])


def check_members(members: list[Member], n_items: int) -> None:
    """Members must score the same catalogue and come from the same data and split (where known)."""
    if not members:
        raise FoundrecError("a fusion needs at least one member")
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise FoundrecError(f"fusion member names must be unique, got {names}")
    for member in members:
        size = catalogue_size(member.model)
        if size != n_items:
            raise FoundrecError(
                f"member {member.name!r} scores {size} items but the data has {n_items}; "
                "fuse only models trained on the same catalogue"
            )
    for field, what in (("catalogue", "item vocabularies"), ("data", "data or split settings")):
        known = {m.name: getattr(m, field) for m in members if getattr(m, field) is not None}
        if len(set(known.values())) > 1:
            raise FoundrecError(
                f"fusion members were trained with different {what}: {', '.join(known)}; "
                "fuse only runs made on the same data and split"
            )


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
