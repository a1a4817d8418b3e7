"""Request and response bodies of the HTTP API; their limits are the API's input validation.

Every list and string is bounded, so one request costs bounded work; a violation is a 422 whose `loc`
names the field.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MAX_K = 1000
MAX_LIST = 1000  # items in history, exclude_items, allow/deny lists; events in a batch

# Printable ids without surrounding blanks: they are keys in the store and lines in the vocabulary.
Id = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Filters(Body):
    allow_items: list[Id] | None = Field(None, max_length=MAX_LIST, description="Only these items.")
    deny_items: list[Id] = Field(default_factory=list, max_length=MAX_LIST)
    attributes: dict[Id, list[Id]] = Field(
        default_factory=dict,
        max_length=20,
        description='Item attribute -> allowed values, e.g. {"genres": ["Comedy"]}.',
    )


class RecommendRequest(Body):
    user_id: Id | None = Field(None, description="Known or new user; omit for an anonymous `history`.")
    k: int = Field(10, ge=1, le=MAX_K, strict=True)  # strict: `true` or "10" is a client bug, not 1 or 10
    exclude_seen: bool = True
    exclude_items: list[Id] = Field(default_factory=list, max_length=MAX_LIST)
    filters: Filters | None = None
    history: list[Id] | None = Field(
        None, min_length=1, max_length=MAX_LIST, description="Items in time order, for an anonymous user."
    )


class ScoredItem(BaseModel):
    item_id: str
    score: float | None = Field(
        description="The ranking stage's score (P(like) when ranked_by is ctr); null for items filled in "
        "by popularity after a fusion's candidates ran out."
    )


class RecommendResponse(BaseModel):
    items: list[ScoredItem]
    model_version: str
    source: Literal["model", "popular"] = Field(description="popular: nothing was known to encode.")
    history_size: int = Field(description="Interactions the recommendation was computed from.")
    ranked_by: Literal["retrieval", "fusion", "ctr", "popular"] = Field(
        description="The stage that ordered the items: the retrieval model's inner product, the fused "
        "score, the bundle's CTR head, or popularity."
    )


class EventIn(Body):
    user_id: Id
    item_id: Id
    type: Literal["view", "click", "purchase", "rating"]
    value: Finite | None = Field(None, description="The rating, or any weight of the event.")
    timestamp: Annotated[float, Field(ge=0, le=1e11)] | None = Field(
        None, description="Seconds since the epoch; default: when the server received it."
    )


class EventBatch(Body):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_LIST)


class Accepted(BaseModel):
    accepted: int


class ReloadRequest(Body):
    path: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = Field(
        None, description="Bundle folder; default: the one being served, read again."
    )


class ReloadResponse(BaseModel):
    model_version: str
    previous_version: str


class Deleted(BaseModel):
    deleted: int
