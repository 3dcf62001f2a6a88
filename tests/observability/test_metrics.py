"""/metrics after real requests through fake upstreams: the exposition parsed and its values checked against
what the clients were told."""

from __future__ import annotations

import time

import anthropic
import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway_server import GatewayServer
from tests.observability.conftest import obs_config


def scrape(url: str, **headers: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    r = httpx.get(url + "/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def settle(url: str, requests: int) -> None:
    """Wait until `requests` are counted (observers run just after a reply is sent)."""
    end = time.monotonic() + 10
    while value(scrape(url), "smolgate_requests_total") < requests and time.monotonic() < end:
        time.sleep(0.01)


def value(m: dict, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    return sum(v for lab, v in m.get(name, []) if all(lab.get(k) == want for k, want in labels.items()))


@pytest.fixture(scope="module")
def traffic(fakes):
    """A gateway after: 2 OpenAI calls and 1 OpenAI stream to `fast`, 1 Anthropic call to `claude`, 1 call
    to a model that does not exist, 1 call to `flaky` (a refused connection, then its fallback)."""
    with GatewayServer(obs_config(fakes)) as gw:
        oai = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)
        said = {"prompt": 0, "completion": 0}
        for q in ("hello there", "how are you today"):
            r = oai.chat.completions.create(model="fast", messages=[{"role": "user", "content": q}])
            said["prompt"] += r.usage.prompt_tokens
            said["completion"] += r.usage.completion_tokens
        stream = oai.chat.completions.create(
            model="fast",
            messages=[{"role": "user", "content": "stream me"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        for chunk in stream:
            if chunk.usage is not None:
                said["prompt"] += chunk.usage.prompt_tokens
                said["completion"] += chunk.usage.completion_tokens
        ant = anthropic.Anthropic(base_url=gw.url, api_key="unused", max_retries=0)
        msg = ant.messages.create(model="claude", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.NotFoundError):
            oai.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        oai.chat.completions.create(model="flaky", messages=[{"role": "user", "content": "fall back"}])
        settle(gw.url, 6)
        yield gw, said, msg.usage


def test_requests_are_counted_by_protocol_alias_provider_account_and_status(traffic):
    gw, _, _ = traffic
    m = scrape(gw.url)
    ok = {"provider": "up-openai", "account": "main", "status_class": "2xx"}
    assert value(m, "smolgate_requests_total", client_protocol="openai", alias="fast", **ok) == 3
    assert value(m, "smolgate_requests_total", client_protocol="openai", alias="flaky", **ok) == 1
    assert (
        value(
            m,
            "smolgate_requests_total",
            client_protocol="anthropic",
            alias="claude",
            provider="up-anthropic",
            account="ant",
        )
        == 1
    )
    # a model name nobody configured makes no series of its own
    assert value(m, "smolgate_requests_total", alias="unknown", status_class="4xx") == 1
    assert value(m, "smolgate_errors_total", alias="unknown", kind="not_found") == 1
    assert not any(lab.get("alias") == "no-such-model" for rows in m.values() for lab, _ in rows)
    # probes and scrapes are not traffic
    assert value(m, "smolgate_requests_total") == 6


def test_tokens_match_what_the_clients_were_told(traffic):
    gw, said, claude_usage = traffic
    m = scrape(gw.url)
    fast = {"alias": "fast", "provider": "up-openai", "account": "main"}
    assert value(m, "smolgate_tokens_total", kind="input", **fast) == said["prompt"]
    assert value(m, "smolgate_tokens_total", kind="output", **fast) == said["completion"]
    claude = {"alias": "claude", "provider": "up-anthropic"}
    assert value(m, "smolgate_tokens_total", kind="input", **claude) == claude_usage.input_tokens
    assert value(m, "smolgate_tokens_total", kind="output", **claude) == claude_usage.output_tokens


def test_latency_and_ttft_histograms(traffic):
    gw, _, _ = traffic
    m = scrape(gw.url)
    fast = {"alias": "fast", "provider": "up-openai", "account": "main"}
    assert value(m, "smolgate_request_duration_seconds_count", **fast) == 3
    assert value(m, "smolgate_request_duration_seconds_sum", **fast) > 0
    assert value(m, "smolgate_request_duration_seconds_bucket", le="+Inf", **fast) == 3
    assert value(m, "smolgate_time_to_first_token_seconds_count", **fast) == 1  # the one stream


def test_retries_and_fallbacks_show_as_attempts(traffic):
    gw, _, _ = traffic
    m = scrape(gw.url)
    dead = [(lab, v) for lab, v in m["smolgate_upstream_attempts_total"] if lab["provider"] == "dead"]
    assert sum(v for _, v in dead) == 1
    assert all(lab["outcome"] != "ok" for lab, _ in dead)
    assert (
        value(m, "smolgate_upstream_attempts_total", provider="up-openai", account="main", outcome="ok") == 4
    )


def test_pool_state_and_queue_are_read_at_scrape_time(traffic):
    gw, _, _ = traffic
    m = scrape(gw.url)
    state = "smolgate_account_state"
    assert value(m, state, provider="up-openai", account="main", state="healthy") == 1
    assert value(m, state, provider="up-openai", account="main", state="disabled") == 0
    assert value(m, state, provider="up-openai", account="off", state="disabled") == 1
    assert value(m, "smolgate_account_in_flight", provider="up-openai", account="main") == 0
    assert value(m, "smolgate_pool_waiting", provider="up-openai") == 0
    # exactly one state per account
    assert value(m, state, provider="up-anthropic", account="ant") == 1


def test_no_secret_reaches_the_exposition(traffic):
    gw, _, _ = traffic
    text = httpx.get(gw.url + "/metrics").text
    for secret in ("sk-up-openai", "sk-up-anthropic", "sk-unused", "sk-dead"):
        assert secret not in text


def test_cost_is_the_ledgers_price_of_the_usage(fakes):
    prices = "ledger: {prices: {gpt-fake: {input: 3.0, output: 15.0}}}\n"  # USD per million tokens
    with GatewayServer(obs_config(fakes, prices)) as gw:
        oai = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)
        usage = [
            oai.chat.completions.create(model="fast", messages=[{"role": "user", "content": q}]).usage
            for q in ("hi", "what is the weather like")
        ]
        settle(gw.url, 2)
        m = scrape(gw.url)
        want = sum(u.prompt_tokens * 3.0 + u.completion_tokens * 15.0 for u in usage) / 1e6
        got = value(m, "smolgate_cost_usd_total", alias="fast", provider="up-openai", account="main")
        assert got == pytest.approx(want, rel=1e-9) and got > 0


def test_running_totals_expose_what_prometheus_clients_own_metrics_would():
    """The per-request path adds to plain numbers and the exposition is built at scrape time: for the same
    requests it must say exactly what prometheus-client's Histogram and Counter would (buckets at their bounds,
    sums, one token/time series per alias/provider/account across client protocols)."""
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry, Histogram

    from smolgate.canonical import Usage
    from smolgate.observability.metrics import LATENCY_BUCKETS, Metrics
    from smolgate.telemetry import RequestRecord

    router = SimpleNamespace(is_known=lambda name: name == "fast")
    rt = SimpleNamespace(router=router, pools=None, providers={})
    m = Metrics(rt, cost=lambda rec: 0.25)  # type: ignore[arg-type]
    ref = Histogram("ref", "", ["alias"], buckets=LATENCY_BUCKETS, registry=CollectorRegistry())
    latencies = [
        30.0,
        50.0,
        70.0,
        100.0,
        250.0,
        999.0,
        400_000.0,
    ]  # ms: below, at and between bounds, past all
    for i, ms in enumerate(latencies):
        rec = RequestRecord(f"r{i}", "POST", "/v1/chat/completions")
        rec.generation, rec.alias = True, "fast"
        rec.client_protocol = "openai" if i % 2 else "anthropic"
        rec.begin_attempt("up", "a1", "m", "openai")
        rec.usage = Usage(input_tokens=10, output_tokens=i)
        rec.finish(200 if i < 6 else 502, None if i < 6 else "upstream")
        rec.latency_ms = ms
        m.finished(rec)
        ref.labels("fast").observe(ms / 1000)
    exposed = scrape_text(m.exposition().decode())
    got = {lab["le"]: v for lab, v in exposed["smolgate_request_duration_seconds_bucket"]}
    assert got == {lab["le"]: v for lab, v in reference_buckets(ref)}
    assert value(exposed, "smolgate_request_duration_seconds_count") == len(latencies)
    assert value(exposed, "smolgate_request_duration_seconds_sum") == pytest.approx(sum(latencies) / 1000)
    assert value(exposed, "smolgate_requests_total", status_class="2xx") == 6
    assert value(exposed, "smolgate_requests_total", status_class="5xx", client_protocol="anthropic") == 1
    assert value(exposed, "smolgate_errors_total", kind="upstream") == 1
    assert value(exposed, "smolgate_tokens_total", kind="output") == sum(range(len(latencies)))
    assert value(exposed, "smolgate_cost_usd_total") == pytest.approx(0.25 * len(latencies))
    assert len(exposed["smolgate_cost_usd_total"]) == 1  # one series across the two client protocols
    assert value(exposed, "smolgate_upstream_attempts_total", outcome="upstream") == 1


def scrape_text(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def reference_buckets(h) -> list[tuple[dict[str, str], float]]:  # type: ignore[no-untyped-def]
    return [(s.labels, s.value) for metric in h.collect() for s in metric.samples if s.name == "ref_bucket"]
