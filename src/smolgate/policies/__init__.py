"""Request-path policies built on the embedded model and the canonical model (issue #19): privacy (local-only,
redaction with restore), the vision bridge, the offline fallback and the response cache. Each says what it did
in the `RequestRecord` (`served_by`, `cache`, `vision_images`); the response headers below are read from it."""

from __future__ import annotations

from ..telemetry import RequestRecord


def response_headers(rec: RequestRecord | None) -> dict[str, str] | None:
    """`x-smolgate-fallback: offline` and `x-smolgate-cache: hit|miss|bypass` for what the policies did."""
    if rec is None or (rec.served_by is None and rec.cache is None):
        return None
    out = {}
    if rec.served_by == "offline":
        out["x-smolgate-fallback"] = "offline"
    if rec.cache is not None:
        out["x-smolgate-cache"] = rec.cache
    return out
