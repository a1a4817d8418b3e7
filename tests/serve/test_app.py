"""The HTTP API in process: freshness, bad input, auth, filters, reload, metrics."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from serve_helpers import ids, recommend

from foundrec.serve.app import create_app
from foundrec.serve.bundle import load_bundle

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(bundle_dir: Path, store_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(bundle_dir, store_url, token=TOKEN)) as c:
        yield c


@pytest.fixture(scope="module")
def items(bundle_dir: Path) -> list[str]:
    return load_bundle(bundle_dir).items.ids


def test_a_click_shapes_the_very_next_recommendation(client: TestClient, items: list[str]) -> None:
    before = recommend(client, user_id="new-user", k=20)
    assert before["source"] == "popular" and before["history_size"] == 0
    clicked = ids(before)[0]
    event = {"user_id": "new-user", "item_id": clicked, "type": "click"}
    assert client.post("/v1/events", json=event, headers=AUTH).status_code == 202

    after = recommend(client, user_id="new-user", k=20)
    assert after["source"] == "model" and after["history_size"] == 1
    assert clicked not in ids(after)  # excluded as seen
    # the history used is exactly the click: the same as sending it anonymously
    assert after["items"] == recommend(client, history=[clicked], k=20)["items"]


def test_a_batch_of_events_is_one_history_in_order(client: TestClient, items: list[str]) -> None:
    batch = {
        "events": [
            {"user_id": "u2", "item_id": i, "type": "view", "timestamp": t} for t, i in enumerate(items[5:8])
        ]
    }
    assert client.post("/v1/events", json=batch, headers=AUTH).json() == {"accepted": 3}
    result = recommend(client, user_id="u2", k=10)
    assert result["history_size"] == 3
    assert result["items"] == recommend(client, history=items[5:8], k=10)["items"]
    assert not set(items[5:8]) & set(ids(result))


def test_known_user_gets_model_results_and_filters_apply(client: TestClient, items: list[str]) -> None:
    bundle = load_bundle(client.app.state.pipeline.bundle.path)
    user = bundle.users.ids[0]
    seen = {bundle.items.ids[i] for i in bundle.user_history(0)}
    result = recommend(client, user_id=user, k=10)
    assert result["source"] == "model" and len(result["items"]) == 10
    assert not seen & set(ids(result))
    scores = [i["score"] for i in result["items"]]
    assert scores == sorted(scores, reverse=True)

    allowed = [i for i in items if i not in seen][:3]
    filtered = recommend(client, user_id=user, k=10, filters={"allow_items": allowed})
    assert sorted(ids(filtered)) == sorted(allowed)  # exact fallback when ANN candidates run out
    denied = ids(result)[:2]
    assert not set(denied) & set(ids(recommend(client, user_id=user, k=10, exclude_items=denied)))
    with_seen = recommend(client, user_id=user, k=len(items), exclude_seen=False)
    assert len(with_seen["items"]) == len(items)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": "u", "k": 1001}, "k"),
        ({"user_id": "u", "k": 0}, "k"),
        ({"user_id": "u", "k": "ten"}, "k"),
        ({"user_id": "u", "k": True}, "k"),
        ({"user_id": "\ud800"}, "user_id"),
        ({"user_id": "a\x00b"}, "user_id"),
        ({"history": []}, "history"),
        ({"history": ["no-such-item"]}, "history"),
        ({"k": 5}, "body"),
        ({"user_id": "x" * 300}, "user_id"),
        ({"user_id": "u", "surprise": 1}, "surprise"),
        ({"user_id": "u", "filters": {"attributes": {"colour": ["red"]}}}, "colour"),
    ],
)
def test_bad_recommend_requests_are_422_naming_the_field(client: TestClient, body: dict, field: str) -> None:
    # json.dumps escapes the lone surrogate, as a hostile client could; httpx's json= cannot send it
    response = client.post(
        "/v1/recommend", content=json.dumps(body), headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert any(field in map(str, error["loc"]) for error in response.json()["detail"]), response.text


def test_bad_events_and_bodies(client: TestClient, items: list[str]) -> None:
    post = lambda body: client.post("/v1/events", json=body, headers=AUTH)  # noqa: E731
    assert post({"user_id": "u", "item_id": "nope", "type": "click"}).status_code == 422
    assert post({"user_id": "u", "item_id": items[0], "type": "like"}).status_code == 422
    assert post({"events": []}).status_code == 422
    assert post({"user_id": "u", "item_id": items[0], "type": "click", "timestamp": -1}).status_code == 422
    malformed = client.post(
        "/v1/events", content=b'{"user_id": ', headers={**AUTH, "content-type": "application/json"}
    )
    assert malformed.status_code == 422 and "json" in malformed.text.lower()
    huge = client.post("/v1/recommend", content=b"[" + b"1," * (1 << 20) + b"1]")
    assert huge.status_code == 413
    assert client.get("/v1/items/nope/similar").status_code == 404
    assert client.get(f"/v1/items/{items[0]}/similar?k=5000").status_code == 422
    # a rejected batch stores nothing
    assert recommend(client, user_id="u", k=1)["history_size"] == 0


def test_writes_and_admin_need_the_token(client: TestClient, items: list[str]) -> None:
    event = {"user_id": "u", "item_id": items[0], "type": "click"}
    assert client.post("/v1/events", json=event).status_code == 401
    wrong = {"Authorization": "Bearer wrong"}
    assert client.post("/v1/events", json=event, headers=wrong).status_code == 401
    assert client.post("/v1/admin/reload", json={}).status_code == 401
    assert client.delete("/v1/users/u").status_code == 401
    assert client.post("/v1/events", json=event, headers=AUTH).status_code == 202
    assert client.delete("/v1/users/u", headers=AUTH).json() == {"deleted": 1}
    assert recommend(client, user_id="u", k=1)["history_size"] == 0


def test_similar_health_and_metrics(client: TestClient, items: list[str]) -> None:
    similar = client.get(f"/v1/items/{items[0]}/similar?k=5").json()
    assert len(similar["items"]) == 5 and items[0] not in ids(similar)
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    text = client.get("/metrics").text
    assert 'foundrec_requests_total{endpoint="/v1/items/{item_id}/similar",method="GET",status="200"}' in text
    assert "foundrec_request_seconds_bucket" in text
    assert f'foundrec_model_info{{version="{ready["model_version"]}"}} 1.0' in text


def test_reload_serves_a_new_version_and_refuses_a_damaged_one(
    client: TestClient, run_dir: Path, tmp_path: Path
) -> None:
    from foundrec.serve.bundle import export_bundle

    old = client.get("/readyz").json()["model_version"]
    damaged = Path(shutil.copytree(client.app.state.pipeline.bundle.path, tmp_path / "damaged"))
    (damaged / "popularity.npy").write_bytes(b"x")
    response = client.post("/v1/admin/reload", json={"path": str(damaged)}, headers=AUTH)
    assert response.status_code == 422 and "popularity.npy" in response.text
    assert client.get("/readyz").json()["model_version"] == old

    fresh = export_bundle(run_dir, tmp_path / "fresh")
    response = client.post("/v1/admin/reload", json={"path": str(fresh)}, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["previous_version"] == old
    assert recommend(client, user_id="x", k=3)["model_version"] == response.json()["model_version"]
