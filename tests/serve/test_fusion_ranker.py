"""Bundles of a fusion and of a CTR head: self-contained export, the fusion's own ranking over HTTP,
freshness, and re-ordering of the retrieved candidates by the head's P(like)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from serve_helpers import ids, recommend

from foundrec.config import RunConfig
from foundrec.data.labeled import PAD_FEEDBACK, LabeledBatch, SideFeatures
from foundrec.errors import FoundrecError
from foundrec.fusion import ReciprocalRankFusion, load_member
from foundrec.models.base import Recommender, UserBatch
from foundrec.models.heads import HeadConfig, SequenceTaskModel
from foundrec.models.transformer import SequenceTransformer
from foundrec.serve.app import create_app
from foundrec.serve.bundle import export_bundle, load_bundle
from foundrec.serve.scoring import FusionRetriever, Query, event_feedback
from foundrec.serve.service import RANK_POOL

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def fusion_dir(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RRF over the session's SASRec, a BPR (needs user ids) and popularity, saved like the pipeline does."""
    from foundrec.experiment import prepare, train_run

    base = RunConfig.model_validate_json((run_dir / "config.json").read_text())
    runs = tmp_path_factory.mktemp("members")
    for name, params in (("bpr", {"epochs": 2}), ("pop", {})):
        cfg = base.model_copy(update={"model": name, "params": params})
        train_run(cfg, runs / name)
    split = prepare(base).split
    members = [load_member(run_dir, "sasrec"), load_member(runs / "bpr"), load_member(runs / "pop")]
    fusion = ReciprocalRankFusion(members, top_n=20).fit(split.train, split.n_items)
    out = tmp_path_factory.mktemp("fusion") / "rrf"
    fusion.save(out)
    return out


@pytest.fixture(scope="module")
def fusion_bundle(fusion_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_bundle(fusion_dir, tmp_path_factory.mktemp("bundles") / "fusion")


@pytest.fixture
def client(fusion_bundle: Path, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(fusion_bundle, f"sqlite:{tmp_path / 'events.db'}", token=TOKEN)) as c:
        yield c


def fusion_ranking(
    model: Recommender, user: int, history: list[int], k: int
) -> tuple[list[int], list[float]]:
    """The model's own top k unseen items for one user/history, as evaluation ranks them."""
    batch = UserBatch(torch.tensor([user]), torch.tensor(history), torch.tensor([0, len(history)]))
    scores = model.score(batch)[0]
    scores[history] = -torch.inf
    order = torch.argsort(scores, descending=True, stable=True)[:k]
    order = order[scores[order] > -torch.inf]
    return order.tolist(), scores[order].tolist()


def test_fusion_bundle_is_self_contained_and_checksummed(fusion_bundle: Path) -> None:
    manifest = json.loads((fusion_bundle / "manifest.json").read_text())
    assert manifest["model"] == "fusion-rrf" and manifest["retriever"] == "sasrec"
    for member in ("sasrec", "bpr", "pop"):
        assert f"model/members/{member}/model.json" in manifest["files"]
    spec = json.loads((fusion_bundle / "model" / "model.json").read_text())
    assert [ref["path"] for ref in spec["members"]] == ["members/sasrec", "members/bpr", "members/pop"]
    bundle = load_bundle(fusion_bundle)
    assert bundle.fusion is not None and bundle.item_vectors is not None
    assert all(Path(m.path).is_relative_to(fusion_bundle.resolve()) for m in bundle.fusion.members)

    copy = Path(shutil.copytree(fusion_bundle, fusion_bundle.parent / "damaged"))
    (copy / "model" / "members" / "bpr" / "tensors.pt").write_bytes(b"x")
    with pytest.raises(FoundrecError, match="model/members/bpr/tensors.pt"):
        load_bundle(copy)


def test_recommend_returns_the_fusions_own_ranking(client: TestClient, fusion_bundle: Path) -> None:
    bundle = load_bundle(fusion_bundle)
    history = [3, 17, 42]
    result = recommend(client, history=[bundle.items.ids[i] for i in history], k=10)
    assert result["ranked_by"] == "fusion" and result["source"] == "model"
    items, scores = fusion_ranking(bundle.model, -1, history, 10)  # -1: BPR has no opinion
    assert ids(result) == [bundle.items.ids[i] for i in items]
    assert [i["score"] for i in result["items"]] == pytest.approx(scores)

    known = recommend(client, user_id=bundle.users.ids[5], k=10)  # BPR takes part for a training user
    items, scores = fusion_ranking(bundle.model, 5, bundle.user_history(5).tolist(), 10)
    assert ids(known) == [bundle.items.ids[i] for i in items]
    assert [i["score"] for i in known["items"]] == pytest.approx(scores)


def test_fusion_freshness_filters_similar_and_fallbacks(client: TestClient, fusion_bundle: Path) -> None:
    items = load_bundle(fusion_bundle).items.ids
    before = recommend(client, user_id="new-user", k=10)
    assert before["source"] == "popular" and before["ranked_by"] == "popular"
    clicked = ids(before)[0]
    event = {"user_id": "new-user", "item_id": clicked, "type": "click"}
    assert client.post("/v1/events", json=event, headers=AUTH).status_code == 202
    after = recommend(client, user_id="new-user", k=10)
    assert after["ranked_by"] == "fusion" and after["history_size"] == 1 and clicked not in ids(after)
    assert after["items"] == recommend(client, history=[clicked], k=10)["items"]

    allowed = [i for i in items if i != clicked][-3:]  # rare items, likely outside every member's list
    filtered = recommend(client, user_id="new-user", k=5, filters={"allow_items": allowed})
    assert sorted(ids(filtered)) == sorted(allowed)
    similar = client.get(f"/v1/items/{items[0]}/similar?k=5").json()
    assert len(similar["items"]) == 5 and items[0] not in ids(similar)
    response = client.post("/v1/admin/reload", json={}, headers=AUTH)
    assert response.status_code == 200, response.text


def test_ann_member_lists_match_the_dense_candidate_path(fusion_bundle: Path) -> None:
    """Above EXACT_MAX_ITEMS members with item vectors search FAISS; forced here on a small catalogue."""
    bundle = load_bundle(fusion_bundle)
    assert bundle.fusion is not None
    dense, ann = FusionRetriever(bundle.fusion), FusionRetriever(bundle.fusion, exact_max_items=0)
    assert len(ann.indexes) == 2  # sasrec and bpr
    queries = [Query(-1, np.array([3, 17, 42]), 10), Query(5, bundle.user_history(5), 10)]
    for (s1, i1), (s2, i2) in zip(dense(queries), ann(queries), strict=True):
        assert i1.tolist() == i2.tolist() and np.allclose(s1, s2)


def make_head(run_dir: Path, extra_users: int = 0) -> SequenceTaskModel:
    """An untrained CTR head on the run's backbone; a random like/dislike embedding makes feedback count."""
    pretrained = Recommender.load(run_dir / "model").network_
    n_items = pretrained.items.ids.num_embeddings - 1
    backbone = SequenceTransformer(n_items, pretrained.cfg)  # as task_run does: without the log prior
    backbone.load_state_dict({k: v for k, v in pretrained.state_dict().items() if k != "log_prior"})
    n_users = len((run_dir / "vocab" / "users.txt").read_text().split("\n")) - 1 + extra_users
    side = SideFeatures(
        np.zeros((n_users, 3), dtype=np.int64),
        (1, 1, 1),
        np.zeros(n_items, dtype=np.int64),
        np.zeros((n_items, 1), dtype=np.float32),
    )
    torch.manual_seed(0)
    head = SequenceTaskModel(HeadConfig(task="ctr")).build(backbone, side, 0.5, pretrained=True)
    with torch.no_grad():
        head.network_.feedback.weight.normal_(std=1.0)
    return head


@pytest.fixture(scope="module")
def head_dir(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("head")
    make_head(run_dir).save(out / "model")
    return out


@pytest.fixture(scope="module")
def ranker_bundle(run_dir: Path, head_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_bundle(run_dir, tmp_path_factory.mktemp("bundles") / "ranked", ranker=head_dir)


def head_probs(head: SequenceTaskModel, user: int, history: list[int], feedback: list[int], items: list[str]):
    n = len(items)
    batch = LabeledBatch(
        tokens=torch.tensor([history]),
        feedback=torch.tensor([feedback]),
        row=torch.zeros(n, dtype=torch.int64),
        position=torch.full((n,), len(history) - 1),
        users=torch.full((n,), user),
        items=torch.tensor(items),
        labels=torch.zeros(n),
        ratings=torch.zeros(n),
    )
    return head.predict_proba(batch).numpy()


def test_ctr_head_reorders_the_retrieved_candidates(
    ranker_bundle: Path, bundle_dir: Path, head_dir: Path, tmp_path: Path
) -> None:
    manifest = json.loads((ranker_bundle / "manifest.json").read_text())
    assert manifest["ranker"] == "sequence-head"
    assert {"ranker/model.json", "ranker/tensors.pt", "histories.npz"} <= set(manifest["files"])
    head = SequenceTaskModel.load(head_dir / "model")
    bundle = load_bundle(ranker_bundle)
    history = [bundle.items.ids[i] for i in (3, 17, 42)]
    with TestClient(create_app(bundle_dir, f"sqlite:{tmp_path / 'a.db'}", token=TOKEN)) as plain:
        pool = ids(recommend(plain, history=history, k=RANK_POOL))  # what retrieval hands the head
    with TestClient(create_app(ranker_bundle, f"sqlite:{tmp_path / 'b.db'}", token=TOKEN)) as ranked:
        result = recommend(ranked, history=history, k=10)
        assert result["ranked_by"] == "ctr"
        probs = head_probs(head, -1, [3, 17, 42], [1, 1, 1], [bundle.items.index(i) for i in pool])
        order = np.argsort(-probs, kind="stable")[:10]
        assert ids(result) == [pool[i] for i in order]
        assert [i["score"] for i in result["items"]] == pytest.approx(probs[order].tolist(), abs=1e-6)

        # a rating of 2 is a dislike: the head reads the event's feedback
        event = {"user_id": "rater", "item_id": history[0], "type": "rating", "value": 2}
        assert ranked.post("/v1/events", json=event, headers=AUTH).status_code == 202
        rated = recommend(ranked, user_id="rater", k=5)
        top = [bundle.items.index(i) for i in ids(rated)]
        disliked = head_probs(head, -1, [3], [0], top)
        assert [i["score"] for i in rated["items"]] == pytest.approx(disliked.tolist(), abs=1e-6)
        liked = recommend(ranked, history=history[:1], k=5)
        assert [i["score"] for i in liked["items"]] != [i["score"] for i in rated["items"]]

    (Path(shutil.copytree(ranker_bundle, tmp_path / "damaged")) / "ranker" / "tensors.pt").write_bytes(b"x")
    with pytest.raises(FoundrecError, match="ranker/tensors.pt"):
        load_bundle(tmp_path / "damaged")


def test_event_feedback_mapping() -> None:
    assert [event_feedback(t, None) for t in ("view", "click", "purchase", "rating")] == [1, 1, 1, 1]
    assert event_feedback("rating", 4.0) == 1 and event_feedback("rating", 3.0) == 0
    assert PAD_FEEDBACK not in (0, 1)


def test_export_refuses_a_head_of_other_data(run_dir: Path, tmp_path: Path) -> None:
    make_head(run_dir, extra_users=1).save(tmp_path / "small")
    with pytest.raises(FoundrecError, match="other data"):
        export_bundle(run_dir, tmp_path / "b", ranker=tmp_path / "small")
