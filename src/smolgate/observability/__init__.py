"""Metrics (Prometheus), traces (OpenTelemetry, only imported when configured), logs and the access log: each an
Observer of finished requests, installed on a Runtime from `Config.observability`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .access import AccessLog
from .metrics import Metrics

if TYPE_CHECKING:
    from ..server.runtime import Runtime


def install(rt: Runtime) -> None:
    """Add the configured observers to `rt` (metrics as `rt.metrics`, the tracer as `rt.tracer`); the
    metrics' cost is the runtime's (the ledger's and the budgets')."""
    o = rt.cfg.observability
    if o.metrics:
        rt.metrics = Metrics(rt, rt.cost)
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
