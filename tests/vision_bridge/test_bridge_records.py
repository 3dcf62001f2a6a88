"""What the bridge did is counted: the usage ledger's `vision_images` column, the metrics by source, and the same
numbers in the response header, for an Ollama client streaming (no SDK hides the header there)."""

from __future__ import annotations

import base64
import json
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .conftest import image


def _ask(url: str, rid: str, png: bytes) -> httpx.Response:
    body = {
        "model": "blind",
        "messages": [{"role": "user", "content": "Describe.", "images": [base64.b64encode(png).decode()]}],
    }
    with httpx.stream("POST", url + "/api/chat", json=body, headers={"x-request-id": rid}, timeout=60) as r:
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert r.status_code == 200 and lines[-1]["done"], lines
    return r


def _ledger_row(url: str, rid: str) -> dict[str, object]:
    end = time.monotonic() + 20  # the ledger writes behind, once a second
    while time.monotonic() < end:
        rows = httpx.get(url + "/admin/usage/recent", params={"limit": 500}).json()["rows"]
        row = next((r for r in rows if r["request_id"] == rid), None)
        if row is not None:
            return row
        time.sleep(0.05)
    raise AssertionError(f"no ledger row for {rid}")


def _bridged(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics").text
    return {
        s.labels["source"]: s.value
        for f in text_string_to_metric_families(text)
        if f.name == "smolgate_vision_bridge_images"
        for s in f.samples
        if s.name.endswith("_total") and s.labels["alias"] == "blind"
    }


def test_the_ledger_the_metrics_and_the_header_count_bridged_images(gateway):
    png, before = image((33, 44, 55)), _bridged(gateway.url)
    first = _ask(gateway.url, "req-bridge-cold", png)
    second = _ask(gateway.url, "req-bridge-warm", png)
    assert first.headers["x-smolgate-vision-bridge"] == "images=1, cached=0"
    assert second.headers["x-smolgate-vision-bridge"] == "images=1, cached=1"
    assert _ledger_row(gateway.url, "req-bridge-cold")["vision_images"] == 1
    assert _ledger_row(gateway.url, "req-bridge-warm")["vision_images"] == 1
    after = _bridged(gateway.url)
    assert after["model"] - before.get("model", 0) == 1
    assert after["cache"] - before.get("cache", 0) == 1


def test_a_request_without_images_has_no_bridge_header_and_a_null_count(gateway):
    body = {"model": "blind", "messages": [{"role": "user", "content": "Hi."}], "stream": False}
    r = httpx.post(
        gateway.url + "/api/chat", json=body, headers={"x-request-id": "req-no-bridge"}, timeout=60
    )
    assert r.status_code == 200 and "x-smolgate-vision-bridge" not in r.headers
    assert _ledger_row(gateway.url, "req-no-bridge")["vision_images"] is None
