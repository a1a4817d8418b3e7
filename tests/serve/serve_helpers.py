"""Serving test helpers: one recommendation request and the ids it returned."""

from __future__ import annotations

from fastapi.testclient import TestClient


def recommend(client: TestClient, **body) -> dict:
    response = client.post("/v1/recommend", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def ids(result: dict) -> list[str]:
    return [i["item_id"] for i in result["items"]]
