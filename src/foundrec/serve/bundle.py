"""A bundle: everything the service needs from a trained run, in one folder with checksums.

Layout: model/ (Recommender.save), vocab/{users,items}.txt, item_vectors.npy (float32, vocabulary
order), popularity.npy (interactions per item, for users with no history), histories.npz (each known
user's items in time order, CSR), items.json (optional item attributes for filters), config.json (the
run's settings) and manifest.json (version, model, sha256 of every file). Loading verifies every
checksum, so a half-copied or edited bundle is refused instead of served.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from foundrec.config import RunConfig
from foundrec.data.datasets import LoadedData, load_dataset
from foundrec.data.prepare import Vocab
from foundrec.errors import FoundrecError
from foundrec.models.base import DotProductRecommender, Recommender
from foundrec.models.sequential import SequentialRecommender

MANIFEST = "manifest.json"


@dataclass
class Bundle:
    """A loaded, verified bundle."""

    path: Path
    version: str
    model: DotProductRecommender
    items: Vocab
    users: Vocab
    item_vectors: np.ndarray  # float32 [n_items, d]
    popularity: np.ndarray  # int64 [n_items]
    history_offsets: np.ndarray  # int64 [n_users + 1]
    history_items: np.ndarray  # int64 [nnz]
    attributes: dict[str, list[Any]]  # column -> value per item (a scalar or a list of strings)

    @property
    def encodes_history(self) -> bool:
        """Sequence models encode any history; factor models (BPR) only know their training users."""
        return isinstance(self.model, SequentialRecommender)

    @property
    def max_len(self) -> int:
        return self.model.network_.cfg.max_len if self.encodes_history else 0

    def user_history(self, user: int) -> np.ndarray:
        return self.history_items[self.history_offsets[user] : self.history_offsets[user + 1]]


def export_bundle(run_dir: Path, out_dir: Path) -> Path:
    """Turn a run folder (config.json, vocab/, model/) into a bundle folder; returns out_dir.

    Reads the run's data once more for popularity, histories and item attributes. An existing bundle in
    out_dir is replaced whole; any other non-empty folder is refused.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    for needed in ("config.json", "model/model.json", "vocab/items.txt", "vocab/users.txt"):
        if not (run_dir / needed).is_file():
            raise FoundrecError(f"{run_dir} is not a run folder ({needed} missing)")
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file():
        raise FoundrecError(f"{out_dir} is not empty and holds no bundle; choose another --out")
    model = Recommender.load(run_dir / "model")
    if not isinstance(model, DotProductRecommender):
        raise FoundrecError(
            f"model {model.name} cannot be served: serving needs user and item vectors (sasrec, hstu, bpr)"
        )
    cfg = RunConfig.model_validate_json((run_dir / "config.json").read_text())
    data = load_dataset(cfg.data)
    items = Vocab.load(run_dir / "vocab" / "items.txt")
    if items.ids != data.interactions.items.ids:
        raise FoundrecError(f"the data behind {run_dir} changed since training (item vocabulary differs)")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        _write_files(staging, run_dir, model, data)
        manifest = _manifest(staging, model.name)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _write_files(out: Path, run_dir: Path, model: DotProductRecommender, data: LoadedData) -> None:
    shutil.copytree(run_dir / "model", out / "model")
    shutil.copytree(run_dir / "vocab", out / "vocab")
    shutil.copy(run_dir / "config.json", out / "config.json")
    np.save(out / "item_vectors.npy", model.item_vectors().numpy().astype(np.float32))
    seqs = data.interactions.sequences
    np.save(out / "popularity.npy", np.bincount(seqs.items, minlength=data.interactions.n_items))
    np.savez(out / "histories.npz", offsets=seqs.offsets, items=seqs.items)
    if data.items is not None:
        (out / "items.json").write_text(json.dumps(_attributes(data)))


def _attributes(data: LoadedData) -> dict[str, list[Any]]:
    """Side-table columns in vocabulary order; items missing from the table get null."""
    table = data.items
    key = table.columns[0]
    row_of = {str(raw): r for r, raw in enumerate(table[key].to_list())}
    rows = [row_of.get(raw) for raw in data.interactions.items.ids]
    out = {}
    for column in table.columns[1:]:
        values = table[column].to_list()
        out[column] = [None if r is None else values[r] for r in rows]
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest(folder: Path, model_name: str) -> dict[str, Any]:
    files = {p.relative_to(folder).as_posix(): _sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}
    content = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    created = datetime.now(UTC)
    return {
        "version": f"{created:%Y%m%dT%H%M%SZ}-{content[:12]}",
        "created": created.isoformat(),
        "model": model_name,
        "files": files,
    }


def load_bundle(path: Path) -> Bundle:
    """Verify every checksum in manifest.json, then load; a mismatch names the file."""
    path = Path(path)
    if not (path / MANIFEST).is_file():
        raise FoundrecError(
            f"{path} is not a bundle (manifest.json missing); create one with `foundrec bundle`"
        )
    manifest = json.loads((path / MANIFEST).read_text())
    for name, expected in manifest["files"].items():
        file = path / name
        if not file.is_file():
            raise FoundrecError(f"bundle {path} is incomplete: {name} is missing")
        if _sha256(file) != expected:
            raise FoundrecError(f"bundle {path} is damaged: checksum of {name} does not match its manifest")
    model = Recommender.load(path / "model")
    if not isinstance(model, DotProductRecommender):
        raise FoundrecError(f"bundle {path} holds model {model.name}, which has no user and item vectors")
    histories = np.load(path / "histories.npz", allow_pickle=False)
    attributes = json.loads((path / "items.json").read_text()) if (path / "items.json").is_file() else {}
    return Bundle(
        path=path,
        version=manifest["version"],
        model=model,
        items=Vocab.load(path / "vocab" / "items.txt"),
        users=Vocab.load(path / "vocab" / "users.txt"),
        item_vectors=np.load(path / "item_vectors.npy", allow_pickle=False),
        popularity=np.load(path / "popularity.npy", allow_pickle=False),
        history_offsets=histories["offsets"],
        history_items=histories["items"],
        attributes=attributes,
    )
