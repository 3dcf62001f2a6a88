"""The console's own routes (under `/ui`), added to the gateway's route table by server/routes.py."""

from __future__ import annotations

from ..server.table import Handler
from . import assets, session_api

ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/ui", assets.redirect),
    ("GET", "/ui/", assets.index),
    ("GET", "/ui/assets/{file}", assets.asset),
    ("POST", "/ui/api/session", session_api.sign_in),
    ("GET", "/ui/api/session", session_api.current),
    ("DELETE", "/ui/api/session", session_api.sign_out),
]
