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
