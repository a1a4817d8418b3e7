"""Shared fixtures: a small synthetic dataset split once per session."""

from __future__ import annotations

import pytest

from foundrec.config import DataConfig
from foundrec.data.datasets import load_dataset
from foundrec.data.split import Split, leave_one_out


@pytest.fixture(scope="session")
def small_split() -> Split:
    cfg = DataConfig(
        dataset="synthetic", synthetic={"users": 600, "items": 300, "mean_length": 12, "seed": 1}
    )
    return leave_one_out(load_dataset(cfg).interactions)


@pytest.fixture(scope="session")
def rated_task():
    """A small rated log (item quality + user mood decide the rating) as protocol (a) task rows."""
    import numpy as np
    import polars as pl

    from foundrec.data.labeled import build_events, side_features, temporal_task
    from foundrec.data.prepare import build_interactions

    rng = np.random.default_rng(0)
    n_users, n_items, n = 60, 80, 3000
    users = rng.integers(0, n_users, n)
    items = rng.integers(0, n_items, n)
    quality, mood = rng.normal(0, 1.2, n_items), rng.normal(0, 0.8, n_users)
    ratings = np.clip(np.round(3.2 + quality[items] + mood[users] + rng.normal(0, 0.5, n)), 1, 5)
    frame = pl.DataFrame(
        {
            "user": users.astype(str),
            "item": items.astype(str),
            "rating": ratings,
            "timestamp": np.sort(rng.integers(0, 10_000, n)).astype(float),
            "line": np.arange(1, n + 1),
        }
    )
    data = build_interactions(frame)
    events = build_events(data)
    return temporal_task(events, side_features(None, None, data.users.ids, data.items.ids))
