"""The FastAPI app: thin handlers over ServingPipeline and EventStore, created in the lifespan.

`create_app` is what tests and `foundrec serve` use; `app_from_env` builds the same app from
FOUNDREC_BUNDLE / FOUNDREC_STORE / FOUNDREC_TOKEN (and FOUNDREC_BATCH_WINDOW_MS) for uvicorn's worker
processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from foundrec.errors import FoundrecError
from foundrec.serve import service
from foundrec.serve.bundle import load_bundle
from foundrec.serve.middleware import BodyLimit, Metrics, MetricsMiddleware
from foundrec.serve.schemas import (
    MAX_K,
    Accepted,
    Deleted,
    EventBatch,
    EventIn,
    Id,
    RecommendRequest,
    RecommendResponse,
    ReloadRequest,
    ReloadResponse,
    ScoredItem,
)
from foundrec.serve.service import ServingPipeline
from foundrec.serve.store import Event, EventStore, open_store

bearer = HTTPBearer(auto_error=False)


def authorised(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> None:
    token: str = request.app.state.token
    if creds is None or not secrets.compare_digest(creds.credentials.encode(), token.encode()):
        raise HTTPException(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})


def _pipeline(request: Request) -> ServingPipeline:
    return request.app.state.pipeline


def _store(request: Request) -> EventStore:
    return request.app.state.store


Pipeline = Annotated[ServingPipeline, Depends(_pipeline)]
Store = Annotated[EventStore, Depends(_store)]


def create_app(bundle_path: Path, store_url: str, token: str | None = None, window: float = 0.001) -> FastAPI:
    """The service for one bundle folder and one store; `token` defaults to $FOUNDREC_TOKEN."""
    token = token or os.environ.get("FOUNDREC_TOKEN")
    if not token:
        raise FoundrecError("no API token: set FOUNDREC_TOKEN (write and admin endpoints need one)")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pipeline = ServingPipeline(await asyncio.to_thread(load_bundle, bundle_path), window)
        pipeline.start()
        app.state.pipeline, app.state.store = pipeline, open_store(store_url)
        app.state.reload_lock = asyncio.Lock()
        metrics.set_version(pipeline.version)
        yield
        await app.state.pipeline.close()
        await app.state.store.close()

    app = FastAPI(title="foundrec", version="1", lifespan=lifespan)
    app.state.token = token
    app.add_exception_handler(RequestValidationError, _validation_error)
    metrics = Metrics()
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(BodyLimit)

    @app.post("/v1/recommend", response_model=RecommendResponse)
    async def recommend(body: RecommendRequest, p: Pipeline, s: Store) -> RecommendResponse:
        """Top k items for a user (history from the store) and/or an anonymous `history`."""
        if body.user_id is None and body.history is None:
            _invalid(["body"], "send user_id, history or both")
        filters = service.Filters(**body.filters.model_dump()) if body.filters else None
        try:
            rec = await p.recommend(
                s, body.user_id, body.k, body.exclude_seen, body.exclude_items, filters, body.history
            )
        except service.UnknownItems as exc:
            _invalid(["body", exc.field], str(exc))
        except service.UnknownAttribute as exc:
            _invalid(["body", "filters", "attributes", exc.name], str(exc))
        return _response(rec, p.version)

    @app.post("/v1/events", status_code=202, response_model=Accepted, dependencies=[Depends(authorised)])
    async def events(body: EventIn | EventBatch, p: Pipeline, s: Store) -> Accepted:
        """Store one event or a batch; 202 once they are durable in the store."""
        batch = body.events if isinstance(body, EventBatch) else [body]
        try:
            p.item_indices([e.item_id for e in batch], "item_id")
        except service.UnknownItems as exc:
            _invalid(["body", "item_id"], str(exc))
        now = time.time()
        await s.append(
            [
                Event(e.user_id, e.item_id, e.type, e.value, now if e.timestamp is None else e.timestamp)
                for e in batch
            ]
        )
        return Accepted(accepted=len(batch))

    @app.get("/v1/items/{item_id}/similar", response_model=RecommendResponse)
    async def similar(
        item_id: Id, p: Pipeline, k: Annotated[int, Query(ge=1, le=MAX_K)] = 10
    ) -> RecommendResponse:
        """Items closest to this one in the model's embedding space."""
        item = p.bundle.items.index(item_id)
        if item is None:
            raise HTTPException(404, f"unknown item {item_id!r}")
        try:
            return _response(p.similar(item, k), p.version)
        except service.NoItemVectors as exc:
            raise HTTPException(409, str(exc)) from None

    @app.delete("/v1/users/{user_id}", response_model=Deleted, dependencies=[Depends(authorised)])
    async def forget(user_id: Id, s: Store) -> Deleted:
        """Delete every stored event of a user (the bundle's training data is not changed)."""
        return Deleted(deleted=await s.delete_user(user_id))

    @app.post("/v1/admin/reload", response_model=ReloadResponse, dependencies=[Depends(authorised)])
    async def reload(body: ReloadRequest, request: Request) -> ReloadResponse:
        """Serve another bundle (or the same folder, rewritten); requests in flight finish on the old one."""
        state = request.app.state
        async with state.reload_lock:
            old = state.pipeline
            path = Path(body.path) if body.path else old.bundle.path
            try:
                new = ServingPipeline(await asyncio.to_thread(load_bundle, path), window)
            except (FoundrecError, OSError, ValueError) as exc:
                _invalid(["body", "path"], f"cannot load bundle: {exc}")
            new.start()
            state.pipeline = new
            metrics.set_version(new.version)
        await old.close()
        return ReloadResponse(model_version=new.version, previous_version=old.version)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(p: Pipeline, s: Store) -> dict[str, str]:
        """A bundle is loaded and the store answers."""
        try:
            await s.ping()
        except Exception as exc:
            raise HTTPException(503, f"store not reachable: {exc}") from None
        return {"status": "ready", "model_version": p.version}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        """Prometheus text format: requests and latency per endpoint, model version."""
        return PlainTextResponse(metrics.render(), media_type=metrics.content_type)

    return app


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    """FastAPI's 422 without echoing the input (it may hold NaN, which JSON lacks), ASCII-escaped (a lone
    surrogate in a field name cannot be encoded as UTF-8)."""
    errors = [{key: v for key, v in e.items() if key != "input"} for e in exc.errors()]
    body = json.dumps({"detail": jsonable_encoder(errors)}, ensure_ascii=True)
    return Response(body, 422, media_type="application/json")


def _invalid(loc: list[str], msg: str) -> None:
    """A 422 shaped like FastAPI's own validation errors, so clients parse one format."""
    raise HTTPException(422, [{"loc": loc, "msg": msg, "type": "value_error"}])


def _response(rec: service.Recommendation, version: str) -> RecommendResponse:
    return RecommendResponse(
        items=[ScoredItem(item_id=i, score=s) for i, s in zip(rec.items, rec.scores, strict=True)],
        model_version=version,
        source=rec.source,
        history_size=rec.history_size,
        ranked_by=rec.ranked_by,
    )


def app_from_env() -> FastAPI:
    """For `uvicorn --factory` worker processes, configured by `foundrec serve` through the environment."""
    window = float(os.environ.get("FOUNDREC_BATCH_WINDOW_MS", "1")) / 1000
    return create_app(Path(os.environ["FOUNDREC_BUNDLE"]), os.environ["FOUNDREC_STORE"], window=window)
