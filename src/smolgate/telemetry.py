"""What one client request did: a `RequestRecord` filled along its path (server → dispatcher → attempts) and
handed, when the request ends, to the runtime's observers (the usage ledger, metrics, the access log, traces).

Observers run on the event loop at the end of every request, so `finished` must not block or await: it
buffers, counts or logs. The record is plain data; nothing in it is a secret (account *names*, key *ids*).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from .canonical import Usage

# The gateway's own operational routes (probes, the metrics scrape): no client key, and not counted as traffic.
OPERATIONAL_PATHS = frozenset({"/health", "/healthz", "/ready", "/readyz", "/metrics"})
MAX_ATTEMPTS_KEPT = 32  # attempts recorded per request (the retry budget is far smaller; a bound anyway)


@dataclass(slots=True)
class AttemptRecord:
    """One upstream attempt (a trace span; the ledger keeps only the last)."""

    provider: str
    account: str | None
    upstream_model: str
    upstream_protocol: str
    start: float  # Unix seconds
    end: float | None = None
    status: int | None = None  # the upstream's HTTP status when it answered
    error_kind: str | None = None  # ErrorKind value when the attempt failed


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    method: str
    path: str
    ts: float = field(default_factory=time.time)  # arrival, Unix seconds
    t0: float = field(default_factory=time.perf_counter)
    client_protocol: str | None = None  # the codec's name; None on the gateway's own routes
    generation: bool = False  # a model call (chat / messages / generate…): the ledger records these
    key_id: str | None = None  # virtual key id, "config:<name>" for a config key, None when open
    alias: str | None = None  # the model the client asked for
    stream: bool = False
    usage: Usage | None = None
    ttft_ms: float | None = None
    latency_ms: float = 0.0
    status: int = 200
    error_kind: str | None = None  # set for refusals and for errors inside a stream (status stays 200)
    cost_usd: float | None = None  # priced once when it ends (Runtime.cost), read by every observer
    attempts: list[AttemptRecord] = field(default_factory=list)
    traceparent: str | None = None  # the client's W3C trace context, when it sent one (traces join it)
    served_by: str | None = None  # "cache" or "offline" when no upstream answered (policies/)
    cache: str | None = None  # the response cache's verdict: "hit", "miss", "bypass"; None: not consulted
    privacy: str | None = (
        None  # what its privacy policy did, JSON: {"policy": "redact", "email": 2}; never values
    )
    headers: dict[str, str] = field(default_factory=dict)  # response headers to add (set before it starts)
    vision_images: int | None = None  # images/videos the vision bridge turned into text for the answer
    vision_cached: int = 0  # of those, how many came from its cache (no model run)

    # -------------------------------------------------------------- filled by the dispatcher
    def begin_attempt(self, provider: str, account: str | None, model: str, protocol: str) -> None:
        if len(self.attempts) < MAX_ATTEMPTS_KEPT:
            self.attempts.append(AttemptRecord(provider, account, model, protocol, time.time()))

    def end_attempt(self, status: int | None = None, error_kind: str | None = None) -> None:
        if self.attempts and self.attempts[-1].end is None:
            a = self.attempts[-1]
            a.end, a.status, a.error_kind = time.time(), status, error_kind

    def first_output(self) -> None:
        if self.ttft_ms is None:
            self.ttft_ms = (time.perf_counter() - self.t0) * 1000

    # -------------------------------------------------------------- filled by the server
    def finish(self, status: int, error_kind: str | None = None) -> None:
        self.latency_ms = (time.perf_counter() - self.t0) * 1000
        self.status = status
        if error_kind is not None:
            self.error_kind = error_kind
        self.end_attempt(status if status >= 400 else None, error_kind)

    @property
    def last(self) -> AttemptRecord | None:
        return self.attempts[-1] if self.attempts else None


class Observer(Protocol):
    def finished(self, rec: RequestRecord) -> None:
        """Called once per request when its answer is complete (or abandoned). Must not block."""
