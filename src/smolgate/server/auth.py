"""Client authentication: a key from any header style a supported SDK sends.

`Authorization: Bearer` (OpenAI, Anthropic 2.x, Ollama), `x-api-key` (Anthropic ≤1.x),
`x-goog-api-key` or `?key=` (Gemini). With no keys configured the gateway is open — and then `serve`
binds to loopback only (see cli.py).
"""

from __future__ import annotations

import hmac
from typing import Mapping

from ..config import ClientKey
from ..errors import ErrorKind, GatewayError


def presented_key(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return headers.get("x-api-key") or headers.get("x-goog-api-key") or query.get("key")


class Authenticator:
    def __init__(self, keys: list[ClientKey]) -> None:
        self._keys = [(k.key.reveal().encode(), k) for k in keys]

    @property
    def open(self) -> bool:
        return not self._keys

    def check(self, headers: Mapping[str, str], query: Mapping[str, str]) -> ClientKey | None:
        if not self._keys:
            return None
        key = presented_key(headers, query)
        if key:
            raw = key.encode()
            for expected, client in self._keys:  # constant-time per key: no timing oracle on prefixes
                if hmac.compare_digest(raw, expected):
                    return client
        raise GatewayError(ErrorKind.AUTH, "missing API key" if not key else "invalid API key")
