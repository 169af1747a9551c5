"""schemathesis against /api/schema/: generated requests never get a 5xx.

A bounded run (a few examples per operation) in every `make test`; the
server under test is the real WSGI stack with the test database.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from hearo.wsgi import application

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)


@pytest.mark.django_db(transaction=True)
@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_server_error(case):
    response = case.call()
    assert response.status_code < 500 or response.status_code == 503, (
        case.method,
        case.formatted_path,
        response.status_code,
        response.text[:500],
    )
    if response.status_code >= 400 and response.headers.get("Content-Type", "").startswith("application/json"):
        body = response.json()
        assert "error" in body and "detail" in body
