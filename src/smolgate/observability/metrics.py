"""Prometheus metrics: an Observer counting every finished request, plus a collector that reads the pools' and
the local engine's live state at scrape time.

Each Runtime has its own `CollectorRegistry` (several gateways may share a process, as in the tests). Label
values are configured names only — alias, provider, account name, protocol, error kind — never a key, never
what a client typed: a model name that is not a known alias counts as "unknown", so clients cannot create
series. The per-request cost is a dict lookup and a few additions (see `Metrics`).
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ..telemetry import OPERATIONAL_PATHS, RequestRecord

if TYPE_CHECKING:
    from ..server.runtime import Runtime

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ACCOUNT_STATES = ("healthy", "cooling", "open", "disabled")
TOKEN_KINDS = ("input", "cached", "cache_write", "output", "reasoning")


def no_cost(rec: RequestRecord) -> float:
    return 0.0


class Metrics:
    """The Observer behind `/metrics` (and its registry).

    Per request it only adds to plain numbers in one `_Series` per (protocol, alias, provider, account) — no
    prometheus-client call, whose per-call lock and checks cost several times more — and the `Traffic` collector
    turns them into counter and histogram families at scrape time. Both run on the event loop: no lock needed."""

    def __init__(self, rt: Runtime, cost: Callable[[RequestRecord], float] = no_cost) -> None:
        self.rt = rt
        self.cost_of = cost
        self.registry = CollectorRegistry(auto_describe=False)
        self.series: dict[tuple[str | None, str, str | None, str | None], _Series] = {}
        self.attempts: dict[tuple[str, str, str], int] = {}  # (provider, account, outcome) → attempts
        self.served: dict[tuple[str, str], int] = {}  # (alias, "cache" | "offline") → answers (policies/)
        self.bridged: dict[str, list[int]] = {}  # alias → [described by the model, from the cache]
        self.registry.register(Traffic(self))
        self.registry.register(LiveState(rt))

    def finished(self, rec: RequestRecord) -> None:
        if rec.path in OPERATIONAL_PATHS and not rec.generation:  # probes and scrapes would drown traffic
            return
        alias = rec.alias if rec.alias is not None and self.rt.router.is_known(rec.alias) else "unknown"
        last = rec.last
        provider, account = (last.provider, last.account) if last is not None else (None, None)
        key = (rec.client_protocol, alias, provider, account)
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = _Series(
                rec.client_protocol or "none", alias, provider or "none", account or "none"
            )
        s.requests[0 if rec.status < 300 else 2 if rec.status >= 500 else 1] += 1
        if rec.error_kind is not None:
            s.errors[rec.error_kind] = s.errors.get(rec.error_kind, 0) + 1
        for a in rec.attempts:
            akey = (a.provider, a.account or "none", a.error_kind or "ok")
            self.attempts[akey] = self.attempts.get(akey, 0) + 1
        if rec.served_by is not None:
            self.served[alias, rec.served_by] = self.served.get((alias, rec.served_by), 0) + 1
        if not rec.generation:
            return
        if rec.vision_images:
            b = self.bridged.setdefault(alias, [0, 0])
            b[0] += rec.vision_images - rec.vision_cached
            b[1] += rec.vision_cached
        secs = rec.latency_ms / 1000
        s.latency[bisect_left(LATENCY_BUCKETS, secs)] += 1  # the first bucket whose bound is >= the value
        s.latency_sum += secs
        if rec.ttft_ms is not None:
            secs = rec.ttft_ms / 1000
            s.ttft[bisect_left(TTFT_BUCKETS, secs)] += 1
            s.ttft_sum += secs
        u = rec.usage
        if u is not None:
            t = s.tokens
            t[0] += u.input_tokens
            t[1] += u.cached_tokens
            t[2] += u.cache_creation_tokens
            t[3] += u.output_tokens
            t[4] += u.reasoning_tokens
        s.cost += self.cost_of(rec)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Series:
    """The running totals of one (protocol, alias, provider, account)."""

    __slots__ = (
        "cost",
        "errors",
        "labels",
        "latency",
        "latency_sum",
        "requests",
        "tokens",
        "ttft",
        "ttft_sum",
    )

    def __init__(self, protocol: str, alias: str, provider: str, account: str) -> None:
        self.labels = (protocol, alias, provider, account)
        self.requests = [0, 0, 0]  # by status class: 2xx (and 1xx/3xx), 4xx, 5xx
        self.errors: dict[str, int] = {}  # by error kind
        self.tokens = [0, 0, 0, 0, 0]  # in TOKEN_KINDS order
        self.cost = 0.0
        self.latency = [0] * (len(LATENCY_BUCKETS) + 1)  # per bucket (not cumulative); the last is +Inf
        self.latency_sum = 0.0
        self.ttft = [0] * (len(TTFT_BUCKETS) + 1)
        self.ttft_sum = 0.0

    def add(self, other: _Series) -> None:
        """Fold another series' token, cost and time figures into this one (at scrape time)."""
        for mine, theirs in (
            (self.tokens, other.tokens),
            (self.latency, other.latency),
            (self.ttft, other.ttft),
        ):
            for i, n in enumerate(theirs):
                mine[i] += n
        self.cost += other.cost
        self.latency_sum += other.latency_sum
        self.ttft_sum += other.ttft_sum


def _buckets(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    """Per-bucket counts → Prometheus' cumulative `le` buckets, +Inf last."""
    out, total = [], 0
    for le, n in zip((*(str(b) for b in bounds), "+Inf"), counts, strict=True):
        total += n
        out.append((le, float(total)))
    return out


class Traffic(Collector):
    """The request counters and histograms, built from the running totals at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        who = ["alias", "provider", "account"]
        requests = CounterMetricFamily(
            "smolgate_requests",
            "Requests answered, by client protocol, alias, provider, account and status class",
            labels=["client_protocol", *who, "status_class"],
        )
        errors = CounterMetricFamily(
            "smolgate_errors",
            "Requests that failed (or whose stream ended in an error), by error kind",
            labels=["client_protocol", *who, "kind"],
        )
        tokens = CounterMetricFamily("smolgate_tokens", "Tokens, by kind", labels=[*who, "kind"])
        cost = CounterMetricFamily("smolgate_cost_usd", "Cost of the requests in USD", labels=who)
        latency = HistogramMetricFamily(
            "smolgate_request_duration_seconds", "Time from request to the end of the answer", labels=who
        )
        ttft = HistogramMetricFamily(
            "smolgate_time_to_first_token_seconds",
            "Time from request to the first streamed event",
            labels=who,
        )
        per_target: dict[tuple[str, ...], _Series] = {}  # token and time figures across client protocols
        for s in self.m.series.values():
            proto, *names = s.labels
            for klass, n in zip(("2xx", "4xx", "5xx"), s.requests, strict=True):
                if n:
                    requests.add_metric([proto, *names, klass], n)
            for kind, n in s.errors.items():
                errors.add_metric([proto, *names, kind], n)
            t = per_target.get(s.labels[1:])
            if t is None:
                t = per_target[s.labels[1:]] = _Series("", *names)
            t.add(s)
        for target, t in per_target.items():
            names = list(target)
            if not any(t.latency):  # no model call answered on this target: no token or time figures
                continue
            for kind, n in zip(TOKEN_KINDS, t.tokens, strict=True):
                if n:
                    tokens.add_metric([*names, kind], n)
            cost.add_metric(names, t.cost)
            latency.add_metric(names, _buckets(LATENCY_BUCKETS, t.latency), t.latency_sum)
            if any(t.ttft):
                ttft.add_metric(names, _buckets(TTFT_BUCKETS, t.ttft), t.ttft_sum)
        attempts = CounterMetricFamily(
            "smolgate_upstream_attempts",
            "Upstream attempts (retries and fallbacks included), by outcome ('ok' or an error kind)",
            labels=["provider", "account", "outcome"],
        )
        for (provider, account, outcome), n in self.m.attempts.items():
            attempts.add_metric([provider, account, outcome], n)
        served = CounterMetricFamily(
            "smolgate_served_by_policy",
            "Answers no upstream gave: from the response cache or the offline fallback, by alias",
            labels=["alias", "by"],
        )
        for (alias, by), n in self.m.served.items():
            served.add_metric([alias, by], n)
        bridged = CounterMetricFamily(
            "smolgate_vision_bridge_images",
            "Images the vision bridge turned into text, by alias and source ('model' ran, or 'cache')",
            labels=["alias", "source"],
        )
        for alias, (ran, cached) in self.m.bridged.items():
            bridged.add_metric([alias, "model"], ran)
            bridged.add_metric([alias, "cache"], cached)
        yield from (requests, errors, tokens, cost, latency, ttft, attempts, served, bridged)


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
