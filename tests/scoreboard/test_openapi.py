"""The OpenAPI schema generates without warnings, validates, and documents what the API really does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from django.test import Client

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

OPERATIONS = {
    ("/v1/auth/register", "post"): {"201", "400", "409", "413", "415"},
    ("/v1/auth/login", "post"): {"200", "400", "401", "413", "415"},
    ("/v1/auth/refresh", "post"): {"200", "400", "401", "413", "415"},
    ("/v1/auth/logout", "post"): {"200", "400", "401", "413", "415"},
    ("/v1/actions", "post"): {"201", "400", "401", "404", "413", "415"},
    ("/v1/scores/update", "post"): {"200", "400", "401", "403", "409", "413", "415", "429", "503"},
    ("/v1/leaderboard", "get"): {"200", "400", "401", "403"},
}
# The per-IP rate limit and the body-size guard sit in front of every endpoint.
EVERYWHERE = {"413", "429"}


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory, django_db_blocker: Any) -> dict[str, Any]:
    path: Path = tmp_path_factory.mktemp("openapi") / "schema.yml"
    with django_db_blocker.unblock():
        # Raises (the command fails) on any warning or a schema that does not validate.
        call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path))
    return yaml.safe_load(path.read_text())


def test_every_operation_documents_its_success_and_error_statuses(schema):
    for (path, method), statuses in OPERATIONS.items():
        documented = set(schema["paths"][path][method]["responses"])
        assert statuses | EVERYWHERE <= documented, (path, method, (statuses | EVERYWHERE) - documented)
        for status in documented - {"200", "201"}:
            ref = schema["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]["$ref"]
            assert ref == "#/components/schemas/ErrorEnvelope", (path, method, status)


def test_every_429_documents_retry_after(schema):
    for (path, method), _statuses in OPERATIONS.items():
        headers = schema["paths"][path][method]["responses"]["429"].get("headers", {})
        assert headers["Retry-After"]["schema"]["type"] == "integer", (path, method)


def test_error_envelope_and_security_schemes(schema):
    envelope = schema["components"]["schemas"]["ErrorEnvelope"]
    assert set(envelope["properties"]) == {"success", "error"}
    assert set(schema["components"]["schemas"]["ErrorDetail"]["properties"]) == {"code", "message", "details"}
    assert schema["components"]["securitySchemes"]["jwtAuth"]["scheme"] == "bearer"
    assert schema["paths"]["/v1/scores/update"]["post"]["security"] == [{"jwtAuth": []}]
    assert {} in schema["paths"]["/v1/leaderboard"]["get"]["security"]  # public by default


def test_score_update_request_matches_the_contract(schema):
    body = schema["components"]["schemas"]["ScoreSubmitInputRequest"]
    assert body["required"] == ["action_token"]
    assert body["properties"]["action_token"]["maxLength"] == 1000
    assert body["additionalProperties"] is False


def test_schema_and_docs_are_served(client: Client):
    schema = client.get("/v1/schema/")
    assert schema.status_code == 200
    assert b"/v1/scores/update" in schema.content
    docs = client.get("/v1/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui-bundle.js" in docs.content


def test_docs_assets_are_served_locally_not_from_a_cdn(client: Client):
    """A self-hosted install may have no internet access: Swagger UI ships with the service."""
    from django.contrib.staticfiles import finders

    page = client.get("/v1/docs/").content.decode()
    assert "cdn.jsdelivr" not in page and "unpkg" not in page
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
