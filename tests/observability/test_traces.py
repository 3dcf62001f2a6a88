"""Traces exported over OTLP/HTTP to a real collector on 127.0.0.1, decoded from the protobuf it receives: a
server span per request, a client span per upstream attempt (a fallback shows as two), GenAI attributes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.gateway_server import GatewayServer
from tests.observability.conftest import obs_config

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


class Collector:
    """An OTLP/HTTP trace receiver: keeps each export's decoded spans and the headers it came with."""

    def __init__(self) -> None:
        self.exports: list[tuple[dict[str, str], ExportTraceServiceRequest]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                req = ExportTraceServiceRequest()
                req.ParseFromString(body)
                outer.exports.append(({k.lower(): v for k, v in self.headers.items()}, req))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def spans(self) -> Iterator[tuple[dict[str, Any], Any]]:
        """(resource attributes, span) for every span received."""
        for _, req in self.exports:
            for rs in req.resource_spans:
                res = attrs(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        yield res, span


def _value(v: AnyValue) -> Any:
    return getattr(v, v.WhichOneof("value"))


def attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


@pytest.fixture(scope="module")
def traced(fakes):
    col = Collector()
    col.thread.start()
    extra = (
        f"observability:\n  traces:\n    endpoint: {col.url}\n    service_name: gw-test\n"
        "    headers: {x-collector-token: tok-secret-123}\n"
    )
    with GatewayServer(obs_config(fakes, extra)) as gw:
        oai = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)
        oai.chat.completions.create(model="flaky", messages=[{"role": "user", "content": "fall back"}])
        for _ in oai.chat.completions.create(
            model="fast", messages=[{"role": "user", "content": "s"}], stream=True
        ):
            pass
        httpx.post(
            gw.url + "/v1/chat/completions",
            headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "x-request-id": "joined-1"},
            json={"model": "fast", "messages": [{"role": "user", "content": "joined"}]},
        )
    # leaving the block stopped the gateway, which flushed its batch of spans
    yield col
    col.server.shutdown()


def by_request(col: Collector, rid: str) -> tuple[Any, list[Any]]:
    spans = [s for _, s in col.spans()]
    server = next(s for s in spans if attrs(s.attributes).get("smolgate.request_id") == rid)
    children = [s for s in spans if s.parent_span_id == server.span_id]
    return server, sorted(children, key=lambda s: s.start_time_unix_nano)


def test_a_fallback_shows_as_two_attempt_spans_under_the_request(traced):
    flaky = next(s for _, s in traced.spans() if attrs(s.attributes).get("gen_ai.request.model") == "flaky")
    server, attempts = by_request(traced, attrs(flaky.attributes)["smolgate.request_id"])
    assert server.kind == server.SPAN_KIND_SERVER
    a = attrs(server.attributes)
    assert a["gen_ai.operation.name"] == "chat"
    assert a["http.response.status_code"] == 200
    assert a["gen_ai.usage.output_tokens"] > 0
    assert [attrs(s.attributes)["smolgate.provider"] for s in attempts] == ["dead", "up-openai"]
    failed, ok = (attrs(s.attributes) for s in attempts)
    assert failed["error.type"] and failed["gen_ai.request.model"] == "gpt-dead"
    assert attempts[0].status.code == attempts[0].status.STATUS_CODE_ERROR
    assert ok["gen_ai.provider.name"] == "openai" and ok["gen_ai.system"] == "openai"
    assert ok["gen_ai.request.model"] == ok["gen_ai.response.model"] == "gpt-fake"
    assert ok["smolgate.account"] == "main"
    assert ok["gen_ai.usage.input_tokens"] == a["gen_ai.usage.input_tokens"]
    assert "error.type" not in ok
    for s in attempts:  # children lie within their request
        assert s.kind == s.SPAN_KIND_CLIENT
        assert server.start_time_unix_nano <= s.start_time_unix_nano <= s.end_time_unix_nano
        assert s.end_time_unix_nano <= server.end_time_unix_nano


def test_resource_and_export_headers(traced):
    res, _ = next(traced.spans())
    assert res["service.name"] == "gw-test"
    headers, _ = traced.exports[0]
    assert headers["x-collector-token"] == "tok-secret-123"
    assert headers["content-type"] == "application/x-protobuf"
    sent = b"".join(req.SerializeToString() for _, req in traced.exports)
    for secret in (b"sk-up-openai", b"sk-up-anthropic", b"sk-dead", b"tok-secret-123"):
        assert secret not in sent  # no key in any span (the collector's own token only in its header)


def test_an_incoming_traceparent_is_joined(traced):
    server, attempts = by_request(traced, "joined-1")
    assert server.trace_id.hex() == TRACE_ID
    assert server.parent_span_id.hex() == PARENT_ID
    assert len(attempts) == 1 and attempts[0].trace_id.hex() == TRACE_ID


def test_stream_requests_are_traced_with_their_ttft(traced):
    streamed = [
        attrs(s.attributes) for _, s in traced.spans() if attrs(s.attributes).get("smolgate.stream") is True
    ]
    assert len(streamed) == 1 and streamed[0]["smolgate.ttft_ms"] > 0


def test_tracing_off_loads_no_tracer():
    """Off by default: neither our tracer nor the SDK's tracing and exporter are imported. (Other libraries may
    import opentelemetry's API for their own reasons: redis does.)"""
    code = (
        "import sys, httpx\n"
        "from tests.gateway_server import GatewayServer\n"
        "cfg = 'providers: []\\nmodels: []\\n'\n"
        "with GatewayServer(cfg) as gw:\n"
        "    assert httpx.get(gw.url + '/health').status_code == 200\n"
        "    assert gw.app.runtime.tracer is None\n"
        "mods = ('smolgate.observability.traces', 'opentelemetry.sdk.trace', 'opentelemetry.exporter')\n"
        "print(sorted(m for m in sys.modules if m.startswith(mods)))\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": f"{root / 'src'}{os.pathsep}{root}"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=root
    )
    assert out.stdout.strip() == "[]"
