"""`GET /admin/openapi.json`: every admin route is documented, and the document is valid OpenAPI 3.1 (checked
by openapi-spec-validator against the specification's schema)."""

from __future__ import annotations

import httpx
import pytest
from openapi_spec_validator import validate

from smolgate.config import parse_config
from smolgate.server.admin import ROUTES
from tests.gateway_server import GatewayServer


@pytest.fixture(scope="module")
def doc(tmp_path_factory):
    cfg = parse_config(
        f"data_dir: {tmp_path_factory.mktemp('openapi')}\nserver: {{admin_key: adm-123456789}}\n"
    )
    with GatewayServer(cfg) as gw:
        assert httpx.get(gw.url + "/admin/openapi.json").status_code == 401  # the admin key guards it too
        r = httpx.get(gw.url + "/admin/openapi.json", headers={"authorization": "Bearer adm-123456789"})
        assert r.status_code == 200
        yield r.json()


def test_document_is_valid_openapi_3_1(doc):
    assert doc["openapi"].startswith("3.1")
    validate(doc)  # raises on any structural error


def test_every_admin_route_is_in_it_with_its_summary(doc):
    for r in ROUTES:
        op = doc["paths"][r.path][r.method.lower()]
        assert op["summary"] == r.summary
    assert sum(len(ops) for ops in doc["paths"].values()) == len(ROUTES)


def test_admin_auth_scheme_and_schemas(doc):
    schemes = doc["components"]["securitySchemes"]
    assert schemes["adminBearer"] == {"type": "http", "scheme": "bearer", "description": "server.admin_key"}
    assert doc["security"]
    add = doc["paths"]["/admin/accounts"]["post"]
    body = add["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert set(doc["components"]["schemas"][body]["required"]) == {"provider", "name", "api_key"}
    answer = add["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert "api_key" not in doc["components"]["schemas"][answer]["properties"]  # never returned
    params = doc["paths"]["/admin/accounts/{name}/enable"]["post"]["parameters"]
    assert {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}} in params
