"""A bundle: everything the service needs from a trained run, in one folder with checksums.

Layout: model/ (Recommender.save, or a fusion with its members copied into model/members/NAME),
vocab/{users,items}.txt, item_vectors.npy (float32, vocabulary order, of the model or of the fusion
member that retrieves; absent when no member has item vectors), popularity.npy (interactions per item,
for users with no history), histories.npz (each known user's items in time order, CSR, and with a ranker
their like (1) / dislike (0) feedback), ranker/ (an optional fine-tuned CTR head), items.json (optional
item attributes for filters), config.json (the run's settings) and manifest.json (version, model,
retriever, ranker, sha256 of every file). Loading verifies every checksum, so a half-copied or edited
bundle is refused instead of served.
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
from foundrec.data.labeled import LIKE_THRESHOLD
from foundrec.data.prepare import Vocab
from foundrec.errors import FoundrecError
from foundrec.fusion import Fusion, load_model
from foundrec.models.base import DotProductRecommender, Recommender, model_folder
from foundrec.models.heads import SequenceTaskModel
from foundrec.models.sequential import SequentialRecommender

MANIFEST = "manifest.json"


@dataclass
class Bundle:
    """A loaded, verified bundle."""

    path: Path
    version: str
    model: Recommender  # a DotProductRecommender or a Fusion
    items: Vocab
    users: Vocab
    item_vectors: np.ndarray | None  # float32 [n_items, d], of `retriever`
    popularity: np.ndarray  # int64 [n_items]
    history_offsets: np.ndarray  # int64 [n_users + 1]
    history_items: np.ndarray  # int64 [nnz]
    attributes: dict[str, list[Any]]  # column -> value per item (a scalar or a list of strings)
    ranker: SequenceTaskModel | None = None  # re-orders the retrieved candidates by P(like)
    history_feedback: np.ndarray | None = None  # int64 [nnz] 1 like / 0 dislike, with a ranker

    @property
    def fusion(self) -> Fusion | None:
        return self.model if isinstance(self.model, Fusion) else None

    @property
    def retriever(self) -> DotProductRecommender | None:
        return retriever_of(self.model)

    @property
    def max_len(self) -> int:
        """History items the encoder reads (0: all; a fusion's members may read all of it)."""
        model = self.model
        return model.network_.cfg.max_len if isinstance(model, SequentialRecommender) else 0

    def user_history(self, user: int) -> np.ndarray:
        return self.history_items[self.history_offsets[user] : self.history_offsets[user + 1]]

    def user_feedback(self, user: int) -> np.ndarray:
        assert self.history_feedback is not None
        return self.history_feedback[self.history_offsets[user] : self.history_offsets[user + 1]]


def retriever_of(model: Recommender) -> DotProductRecommender | None:
    """The model whose item vectors are indexed: the model itself, or a fusion's first member with item
    vectors that encodes histories (SASRec, HSTU), else its first with any."""
    if isinstance(model, DotProductRecommender):
        return model
    if not isinstance(model, Fusion):
        return None
    vectors = [m for m in model.models() if isinstance(m, DotProductRecommender)]
    by_history = [m for m in vectors if not m.needs_user_id]
    return (by_history or vectors or [None])[0]


def export_bundle(
    source: Path, out_dir: Path, ranker: Path | None = None, data: LoadedData | None = None
) -> Path:
    """A run folder (config.json, vocab/, model/) or a saved fusion as a bundle folder; returns out_dir.

    A fusion's members are copied into the bundle, so it is self-contained; its settings and
    vocabularies come from the first member saved in a run folder. `ranker`: a fine-tuned CTR head (a
    `foundrec finetune` run folder or its model/ folder) to re-order the retrieved candidates. `data`:
    the run's loaded data when the caller holds it (the pipeline); otherwise it is read again for
    popularity, histories and item attributes. An existing bundle in out_dir is replaced whole; any other
    non-empty folder is refused.
    """
    source, out_dir = Path(source), Path(out_dir)
    model_dir, run_dir = _locate(source)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file():
        raise FoundrecError(f"{out_dir} is not empty and holds no bundle; choose another --out")
    model = load_model(model_dir)
    if not isinstance(model, DotProductRecommender | Fusion):
        raise FoundrecError(
            f"model {model.name} cannot be served: serving needs user and item vectors (sasrec, hstu, "
            "bpr) or a fusion"
        )
    cfg = RunConfig.model_validate_json((run_dir / "config.json").read_text())
    data = load_dataset(cfg.data) if data is None else data
    items = Vocab.load(run_dir / "vocab" / "items.txt")
    if items.ids != data.interactions.items.ids:
        raise FoundrecError(f"the data behind {run_dir} changed since training (item vocabulary differs)")
    head_dir = None if ranker is None else _ranker_folder(Path(ranker), data, run_dir)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        _copy_model(model_dir, staging / "model")
        _write_files(staging, run_dir, model, data, head_dir)
        retriever = retriever_of(model)
        manifest = _manifest(staging, model.name)
        manifest |= {
            "retriever": None if retriever is None else retriever.name,
            "ranker": None if head_dir is None else SequenceTaskModel.name,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _locate(source: Path) -> tuple[Path, Path]:
    """(model folder, run folder with config.json and vocab/) of a run folder or a saved fusion."""
    spec = source / "model.json"
    if spec.is_file() and "members" in json.loads(spec.read_text()):
        run_dir = _member_run(source)
        if run_dir is None:
            raise FoundrecError(
                f"no member of the fusion in {source} was saved in a run folder (config.json, vocab/), "
                "so its data and vocabularies are unknown"
            )
        return source, run_dir
    for needed in ("config.json", "model/model.json", "vocab/items.txt", "vocab/users.txt"):
        if not (source / needed).is_file():
            raise FoundrecError(f"{source} is not a run folder or a saved fusion ({needed} missing)")
    return source / "model", source


def _member_run(fusion_dir: Path) -> Path | None:
    for ref in json.loads((fusion_dir / "model.json").read_text())["members"]:
        folder = model_folder(fusion_dir / ref["path"])  # refs name a model or its run folder
        run = folder.parent
        if (run / "config.json").is_file() and (run / "vocab" / "users.txt").is_file():
            return run
        if "members" in json.loads((folder / "model.json").read_text()):
            found = _member_run(folder)
            if found is not None:
                return found
    return None


def _copy_model(src: Path, dst: Path) -> None:
    """A saved model folder; a fusion's members go into dst/members/NAME and its refs point there."""
    spec = json.loads((src / "model.json").read_text())
    if "members" not in spec:
        shutil.copytree(src, dst)
        return
    dst.mkdir(parents=True)
    for file in src.iterdir():
        if file.is_file() and file.name != "model.json":
            shutil.copy(file, dst / file.name)
    for ref in spec["members"]:
        _copy_model(model_folder(src / ref["path"]), dst / "members" / ref["name"])
        ref["path"] = f"members/{ref['name']}"
    (dst / "model.json").write_text(json.dumps(spec, indent=2))


def _ranker_folder(path: Path, data: LoadedData, run_dir: Path) -> Path:
    """The CTR head's model folder, after checking it scores this catalogue and these users."""
    folder = model_folder(path)
    head = SequenceTaskModel.load(folder)
    if head.config.task != "ctr":
        raise FoundrecError(f"{path} holds a {head.config.task} head; a ranker needs a ctr head")
    net = head.network_
    n_items, n_users = net.backbone.items.ids.num_embeddings - 1, net.side.user_table.shape[0]
    users = Vocab.load(run_dir / "vocab" / "users.txt")
    if (n_items, n_users) != (data.interactions.n_items, data.interactions.n_users) or (
        users.ids != data.interactions.users.ids
    ):
        raise FoundrecError(
            f"the head in {path} was fine-tuned on other data ({n_users} users, {n_items} items; the "
            f"bundle has {len(users)} users, {data.interactions.n_items} items)"
        )
    return folder


def _write_files(out: Path, run_dir: Path, model: Recommender, data: LoadedData, ranker: Path | None) -> None:
    shutil.copytree(run_dir / "vocab", out / "vocab")
    shutil.copy(run_dir / "config.json", out / "config.json")
    retriever = retriever_of(model)
    if retriever is not None:
        np.save(out / "item_vectors.npy", retriever.item_vectors().detach().numpy().astype(np.float32))
    seqs = data.interactions.sequences
    np.save(out / "popularity.npy", np.bincount(seqs.items, minlength=data.interactions.n_items))
    histories = {"offsets": seqs.offsets, "items": seqs.items}
    if ranker is not None:
        shutil.copytree(ranker, out / "ranker")
        ratings = data.interactions.ratings  # without ratings every event counts as a like
        histories["feedback"] = (
            np.ones(len(seqs.items), dtype=np.int64)
            if ratings is None
            else (ratings > LIKE_THRESHOLD).astype(np.int64)
        )
    np.savez(out / "histories.npz", **histories)
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
    model = load_model(path / "model")
    if not isinstance(model, DotProductRecommender | Fusion):
        raise FoundrecError(f"bundle {path} holds model {model.name}, which has no user and item vectors")
    histories = np.load(path / "histories.npz", allow_pickle=False)
    attributes = json.loads((path / "items.json").read_text()) if (path / "items.json").is_file() else {}
    vectors = path / "item_vectors.npy"
    ranker = SequenceTaskModel.load(path / "ranker") if (path / "ranker").is_dir() else None
    return Bundle(
        path=path,
        version=manifest["version"],
        model=model,
        items=Vocab.load(path / "vocab" / "items.txt"),
        users=Vocab.load(path / "vocab" / "users.txt"),
        item_vectors=np.load(vectors, allow_pickle=False) if vectors.is_file() else None,
        popularity=np.load(path / "popularity.npy", allow_pickle=False),
        history_offsets=histories["offsets"],
        history_items=histories["items"],
        attributes=attributes,
        ranker=ranker,
        history_feedback=histories.get("feedback"),
    )
