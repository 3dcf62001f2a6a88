"""Prometheus metrics: an Observer counting every finished request, plus a collector that reads the pools' and
the local engine's live state at scrape time.

Each Runtime has its own `CollectorRegistry` (several gateways may share a process, as in the tests). Label
values are configured names only — alias, provider, account name, protocol, error kind — never a key, never
what a client typed: a model name that is not a known alias counts as "unknown", so clients cannot create
series. The per-request cost is a few dict lookups: labelled children are cached by their label tuple.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..telemetry import RequestRecord

if TYPE_CHECKING:
    from ..server.runtime import Runtime

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ACCOUNT_STATES = ("healthy", "cooling", "open", "disabled")
TOKEN_KINDS = ("input", "cached", "cache_write", "output", "reasoning")
# The gateway's own operational routes are not traffic: counting every probe and scrape would drown it.
UNCOUNTED_PATHS = frozenset({"/health", "/healthz", "/ready", "/readyz", "/metrics"})


def no_cost(rec: RequestRecord) -> float:
    return 0.0


class Metrics:
    """The Observer behind `/metrics` (and its registry)."""

    def __init__(self, rt: Runtime, cost: Callable[[RequestRecord], float] = no_cost) -> None:
        self.rt = rt
        self.cost_of = cost
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        who = ["alias", "provider", "account"]
        self._requests = Counter(
            "smolgate_requests",
            "Requests answered, by client protocol, alias, provider, account and status class",
            ["client_protocol", *who, "status_class"],
            registry=r,
        )
        self._errors = Counter(
            "smolgate_errors",
            "Requests that failed (or whose stream ended in an error), by error kind",
            ["client_protocol", *who, "kind"],
            registry=r,
        )
        self._tokens = Counter("smolgate_tokens", "Tokens, by kind", [*who, "kind"], registry=r)
        self._cost = Counter("smolgate_cost_usd", "Cost of the requests in USD", who, registry=r)
        self._latency = Histogram(
            "smolgate_request_duration_seconds",
            "Time from request to the end of the answer",
            who,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._ttft = Histogram(
            "smolgate_time_to_first_token_seconds",
            "Time from request to the first streamed event",
            who,
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self._attempts = Counter(
            "smolgate_upstream_attempts",
            "Upstream attempts (retries and fallbacks included), by outcome ('ok' or an error kind)",
            ["provider", "account", "outcome"],
            registry=r,
        )
        r.register(LiveState(rt))
        self._series: dict[tuple[str | None, str, str | None, str | None], _Series] = {}
        self._attempt_children: dict[tuple[str, str | None, str | None], Counter] = {}

    def _new_series(
        self, proto: str | None, alias: str, provider: str | None, account: str | None
    ) -> _Series:
        p, who = proto or "none", (alias, provider or "none", account or "none")
        return _Series(
            requests={c: self._requests.labels(p, *who, c) for c in ("2xx", "4xx", "5xx")},
            errors={},
            error_labels=(p, *who),
            latency=self._latency.labels(*who),
            ttft=self._ttft.labels(*who),
            tokens=tuple(self._tokens.labels(*who, kind) for kind in TOKEN_KINDS),
            cost=self._cost.labels(*who),
        )

    def finished(self, rec: RequestRecord) -> None:
        if rec.path in UNCOUNTED_PATHS and not rec.generation:
            return
        alias = rec.alias if rec.alias is not None and self.rt.router.is_known(rec.alias) else "unknown"
        last = rec.last
        provider, account = (last.provider, last.account) if last is not None else (None, None)
        key = (rec.client_protocol, alias, provider, account)
        s = self._series.get(key)
        if s is None:
            s = self._series[key] = self._new_series(*key)
        klass = "2xx" if rec.status < 300 else "5xx" if rec.status >= 500 else "4xx"
        s.requests[klass].inc()
        if rec.error_kind is not None:
            s.error(self._errors, rec.error_kind).inc()
        for a in rec.attempts:
            akey = (a.provider, a.account, a.error_kind)
            child = self._attempt_children.get(akey)
            if child is None:
                child = self._attempt_children[akey] = self._attempts.labels(
                    a.provider, a.account or "none", a.error_kind or "ok"
                )
            child.inc()
        if not rec.generation:
            return
        s.latency.observe(rec.latency_ms / 1000)
        if rec.ttft_ms is not None:
            s.ttft.observe(rec.ttft_ms / 1000)
        u = rec.usage
        if u is not None:
            t = s.tokens
            for child, n in (
                (t[0], u.input_tokens),
                (t[1], u.cached_tokens),
                (t[2], u.cache_creation_tokens),
                (t[3], u.output_tokens),
                (t[4], u.reasoning_tokens),
            ):
                if n:
                    child.inc(n)
        cost = self.cost_of(rec)
        if cost:
            s.cost.inc(cost)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


@dataclass(slots=True)
class _Series:
    """The labelled children of one (protocol, alias, provider, account): one dict lookup per request."""

    requests: dict[str, Counter]  # by status class
    errors: dict[str, Counter]  # by error kind, made on first use
    error_labels: tuple[str, ...]
    latency: Histogram
    ttft: Histogram
    tokens: tuple[Counter, ...]  # in TOKEN_KINDS order
    cost: Counter

    def error(self, metric: Counter, kind: str) -> Counter:
        child = self.errors.get(kind)
        if child is None:
            child = self.errors[kind] = metric.labels(*self.error_labels, kind)
        return child


class LiveState(Collector):
    """Pool state per account, waiting requests per provider and the local engine's batch, read at scrape."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._last: dict[str, tuple[float, int]] = {}  # engine provider → (time, tokens) at the last scrape

    def collect(self) -> Iterator[Metric]:
        pools = self.rt.pools
        if pools is not None:
            state = GaugeMetricFamily(
                "smolgate_account_state",
                "1 for the account's current pool state (healthy, cooling, open breaker, disabled)",
                labels=["provider", "account", "state"],
            )
            in_flight = GaugeMetricFamily(
                "smolgate_account_in_flight",
                "Requests in flight on the account",
                labels=["provider", "account"],
            )
            for s in pools.snapshot():
                for st in ACCOUNT_STATES:
                    state.add_metric([s.provider, s.account, st], 1.0 if s.state == st else 0.0)
                in_flight.add_metric([s.provider, s.account], s.in_flight)
            waiting = GaugeMetricFamily(
                "smolgate_pool_waiting",
                "Requests queued for a free account of the provider",
                labels=["provider"],
            )
            for pool in pools:
                waiting.add_metric([pool.name], pool.waiting)
            yield from (state, in_flight, waiting)
        yield from self._engines()
        dropped = CounterMetricFamily(
            "smolgate_log_lines_dropped", "Log lines dropped because stderr was not read fast enough"
        )
        dropped.add_metric([], sum(getattr(h, "dropped", 0) for h in logging.getLogger().handlers))
        yield dropped

    def _engines(self) -> Iterator[Metric]:
        batch = GaugeMetricFamily(
            "smolgate_engine_batch_size",
            "Generations in the local engine's current decode batch",
            labels=["provider"],
        )
        queued = GaugeMetricFamily(
            "smolgate_engine_waiting", "Requests waiting for the local engine", labels=["provider"]
        )
        tokens = CounterMetricFamily(
            "smolgate_engine_generated_tokens", "Tokens the local engine generated", labels=["provider"]
        )
        rate = GaugeMetricFamily(
            "smolgate_engine_tokens_per_second",
            "Local engine output tokens per second since the previous scrape",
            labels=["provider"],
        )
        now = time.monotonic()
        for name, p in self.rt.providers.items():
            stats = getattr(p, "engine_stats", None)
            s = stats() if stats is not None else None
            if s is None:
                continue
            batch.add_metric([name], s.batch)
            queued.add_metric([name], s.waiting)
            tokens.add_metric([name], s.generated_tokens)
            t0, n0 = self._last.get(name, (now, s.generated_tokens))
            rate.add_metric([name], (s.generated_tokens - n0) / (now - t0) if now > t0 else 0.0)
            self._last[name] = (now, s.generated_tokens)
        yield from (batch, queued, tokens, rate)
