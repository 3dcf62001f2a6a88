"""Metrics (Prometheus), traces (OpenTelemetry, only imported when configured), logs and the access log: each an
Observer of finished requests, installed on a Runtime from `Config.observability`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..telemetry import RequestRecord
from .access import AccessLog
from .metrics import Metrics

if TYPE_CHECKING:
    from ..pricing import Pricing
    from ..server.runtime import Runtime


def metrics_cost(pricing: Pricing) -> Callable[[RequestRecord], float]:
    """The ledger's cost of a request, for the metrics: the same prices, without counting the unpriced a
    second time (`Pricing.cost_of` counts them for the ledger)."""

    def cost(rec: RequestRecord) -> float:
        a, usage = rec.last, rec.usage
        if a is None or usage is None or a.upstream_protocol == "local":
            return 0.0
        price = pricing.price(a.provider, a.upstream_protocol, a.upstream_model, rec.ts, quiet=True)
        return price.cost(usage) if price is not None else 0.0

    return cost


def install(rt: Runtime, cost: Callable[[RequestRecord], float] | None = None) -> None:
    """Add the configured observers to `rt` (metrics as `rt.metrics`, the tracer as `rt.tracer`); the
    metrics' cost is the runtime's pricing unless `cost` is given."""
    o = rt.cfg.observability
    if o.metrics:
        rt.metrics = Metrics(rt, cost or metrics_cost(rt.pricing))
        rt.observers.append(rt.metrics)
    if o.access_log:
        rt.observers.append(AccessLog())
    if o.traces.endpoint:
        try:
            from .traces import Tracer  # opentelemetry is imported only now
        except ImportError as exc:
            raise RuntimeError(
                "observability.traces.endpoint is set but OpenTelemetry is not installed: "
                "pip install 'smolgate[traces]'"
            ) from exc

        rt.tracer = Tracer(o.traces)
        rt.observers.append(rt.tracer)
