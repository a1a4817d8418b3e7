"""Schemathesis against the running server's own OpenAPI schema: no input yields a 5xx.

Driven through Hypothesis directly: schemathesis' pytest plugin does not run under pytest 9.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

AUTH = {"Authorization": "Bearer test-token"}  # so write and admin endpoints are explored past the 401


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """SQLite only: the Redis store runs the same handlers, covered by test_app and test_durability."""
    return f"sqlite:{tmp_path / 'events.db'}"


def test_no_input_makes_a_server_error(server: Any) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=AUTH, checks=[not_a_server_error], timeout=30)

        fuzz()
