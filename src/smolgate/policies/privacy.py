"""Privacy policies: which targets may serve a request, and what of it may leave the machine.

Three policies, from loosest to strictest:
- `standard`: nothing changes.
- `redact`: detected personal data and secrets are replaced by placeholders in every text sent to the model
  (redact.py) and put back in the answer, streaming included (restore.py). It applies to every target, the
  embedded one too, so an answer does not depend on which target or fallback served it.
- `local`: only local targets (`protocol: local` providers, the embedded engine) may serve the request, retries
  and fallbacks included; with none among the model's targets, a 403 in the client's protocol.

A request's policy is the strictest of its model alias's (`models[].privacy`), its client key's (config `keys[]`
or a virtual key's `privacy`) and its own (`x-smolgate-privacy` header, or `metadata.smolgate_privacy` where
the protocol has a metadata object). A client can make its request stricter, never looser than its key or
model: a key made `local` stays local whatever the client sends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

import orjson

from ..canonical import Event, Request, Response
from ..errors import ErrorKind, GatewayError, invalid, shown
from .detectors import Detectors
from .redact import Redaction
from .restore import Restorer

if TYPE_CHECKING:
    from ..config import Config
    from ..routing import Route
    from ..telemetry import RequestRecord

PolicyName = Literal["standard", "redact", "local"]
POLICIES: tuple[PolicyName, ...] = ("standard", "redact", "local")  # loosest first
HEADER = "x-smolgate-privacy"
METADATA_KEY = "smolgate_privacy"
_RANK: dict[str, int] = {p: i for i, p in enumerate(POLICIES)}


def strictest(*policies: str | None) -> PolicyName | None:
    named = [p for p in policies if p is not None]
    return cast(PolicyName, max(named, key=_RANK.__getitem__)) if named else None


def _parse(value: object, where: str) -> PolicyName:
    if isinstance(value, str) and value.strip().lower() in _RANK:
        return cast(PolicyName, value.strip().lower())
    raise invalid(
        f"{where} must be one of {', '.join(POLICIES)} (got '{shown(str(value)[:40], '(a value)')}')",
        param=where,
    )


def requested(key_policy: str | None, headers: Mapping[str, str], metadata: dict[str, Any]) -> str | None:
    """The policy a request carries: the strictest of its key's, its header's and its metadata's (the metadata
    entry is removed: it is for the gateway, not the upstream). None when none of them says anything."""
    header = headers.get(HEADER)
    meta = metadata.pop(METADATA_KEY, None) if METADATA_KEY in metadata else None
    return strictest(
        key_policy,
        _parse(header, HEADER) if header is not None else None,
        _parse(meta, f"metadata.{METADATA_KEY}") if meta is not None else None,
    )


@dataclass(slots=True)
class Plan:
    """One request under its policy: the request to send and, for `redact`, how to restore the answer."""

    request: Request
    restorer: Restorer | None = None

    def response(self, resp: Response) -> Response:
        return self.restorer.response(resp) if self.restorer is not None else resp

    def stream(self, events: AsyncIterator[Event]) -> AsyncIterator[Event]:
        return self.restorer.stream(events) if self.restorer is not None else events


def images(req: Request) -> Request:
    """The hook for images under `redact`: a picture cannot be redacted as text, so today it passes as it is.
    The vision bridge (issue #19 §1) replaces images by a local description here; a deployment that must not
    send images out uses `local` for those requests."""
    return req


class Privacy:
    def __init__(self, cfg: Config) -> None:
        self._alias = {m.name: m.privacy for m in cfg.models if m.privacy != "standard"}
        self._local = frozenset(p.name for p in cfg.providers if p.protocol == "local")
        self.detectors = Detectors.build(cfg.privacy.detectors, cfg.privacy.patterns)

    def policy(self, req: Request) -> PolicyName:
        own = req.origin.privacy if req.origin is not None else None
        if own is None and not self._alias:  # the common case: no policy anywhere
            return "standard"
        return strictest(self._alias.get(req.model), own) or "standard"

    def plan(self, req: Request, rec: RequestRecord | None = None) -> Plan:
        policy = self.policy(req)
        if policy == "standard":
            return Plan(req)
        if policy == "local":
            if rec is not None:
                rec.privacy = '{"policy":"local"}'
            return Plan(req)
        redaction = Redaction(self.detectors)
        out = images(redaction.request(req))
        if rec is not None:
            rec.privacy = orjson.dumps({"policy": "redact", **redaction.counts}).decode()
        return Plan(out, Restorer(redaction.values) if redaction.values else None)

    def routes(self, req: Request, routes: list[Route]) -> list[Route]:
        """The targets the request's policy lets serve it (403 when `local` leaves none)."""
        if self.policy(req) != "local":
            return routes
        local = [r for r in routes if r.provider in self._local]
        if not local:
            raise GatewayError(
                ErrorKind.PERMISSION,
                f"this request's privacy policy is 'local' and model "
                f"'{shown(req.model, '(the requested name)')}' has no local target",
            )
        return local
