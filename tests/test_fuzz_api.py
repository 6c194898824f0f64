"""Schemathesis against the app's own OpenAPI schema: every operation, with and without a valid
key. No 5xx, and every response matches its documented status codes and schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from opscore.api import create_app

from .conftest import KEY, make_settings

app = create_app(make_settings(dispatcher_enabled=False, access_log=False, log_level="WARNING"))
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
# The live stream never ends by design; it has its own tests with a real SSE client.
schema = schema.exclude(path="/v1/opscore/logs/stream")

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
# Valid-by-schema input can still be refused on meaning (an unknown agent, a template whose
# graph has a cycle), so "positive data acceptance" is not asked for; these are.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


@pytest.mark.slow
@schema.parametrize()
@FUZZ
def test_api_with_a_valid_key(case) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {KEY}"}, checks=CHECKS)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_without_a_key(case) -> None:
    response = case.call()
    assert response.status_code < 500
    if case.operation.path not in ("/health", "/ready", "/v1/opscore/internal/agent/notify"):
        assert response.status_code in (401, 404, 405, 422), response.text
