"""The admin API under `/admin/`: operators' routes, opened by the admin credential only (auth.py), answering
JSON and documented as OpenAPI (openapi.py). One module per resource declares its `ROUTES`; every change
it makes is written to the audit log (`Runtime.audit`)."""

from __future__ import annotations

from . import (
    accounts,
    adapters,
    audit,
    health,
    keys,
    models,
    openapi,
    reload,
    requests,
    routes_admin,
    usage,
)
from .common import AdminRoute

ROUTES: list[AdminRoute] = [
    *accounts.ROUTES,
    *keys.ROUTES,
    *usage.ROUTES,
    *audit.ROUTES,
    *reload.ROUTES,
    *adapters.ROUTES,
    *models.ROUTES,
    *routes_admin.ROUTES,
    *requests.ROUTES,
    *health.ROUTES,
    *openapi.ROUTES,
]

__all__ = ["ROUTES", "AdminRoute"]
