"""The one Retry-After parser (upstream replies) and renderer (our replies) every protocol uses."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from smolgate import retry_after
from smolgate.errors import ErrorKind, GatewayError
from smolgate.protocols.anthropic import AnthropicCodec
from smolgate.protocols.gemini import GeminiCodec
from smolgate.protocols.ollama import OllamaChatCodec
from smolgate.protocols.openai_chat import OpenAIChatCodec

NOW = 1_700_000_000.0


def _http_date(epoch: float) -> str:
    return format_datetime(datetime.fromtimestamp(epoch, UTC), usegmt=True)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30", 30.0),
        (" 7 ", 7.0),
        ("0.25", 0.25),  # fractional seconds, as some proxies send
        ("0", 0.0),
        ("-5", 0.0),  # a negative delay means "now", never a negative wait
        (_http_date(NOW + 120), 120.0),
        (_http_date(NOW - 60), 0.0),  # a date in the past
        ("soon", None),
        ("", None),
        ("inf", None),
        ("nan", None),
        ("Wed, 99 Foo 2024 99:99:99 GMT", None),
    ],
)
def test_parse_seconds_dates_and_garbage(value: str, seconds: float | None) -> None:
    assert retry_after.parse(value, NOW) == seconds


def test_headers_prefer_milliseconds_then_seconds_then_the_protocol_hint() -> None:
    assert retry_after.from_headers({"Retry-After-Ms": "1500", "Retry-After": "9"}, NOW) == 1.5
    assert retry_after.from_headers({"retry-after-ms": "junk", "retry-after": "9"}, NOW) == 9.0
    assert retry_after.from_headers({"Retry-After": _http_date(NOW + 30)}, NOW) == 30.0
    assert retry_after.from_headers({}, NOW, hint="12.5s") == 12.5
    assert retry_after.from_headers({"retry-after": "3"}, NOW, hint="12.5s") == 3.0
    assert retry_after.from_headers({}, NOW, hint="12 seconds") is None
    assert retry_after.from_headers(None, NOW) is None


@pytest.mark.parametrize(("seconds", "header"), [(0.0, "0"), (0.2, "1"), (1.0, "1"), (1.5, "2"), (-3.0, "0")])
def test_render_rounds_up_to_whole_seconds(seconds: float, header: str) -> None:
    assert retry_after.render(seconds) == {"retry-after": header}


def test_render_omits_no_or_unusable_delay() -> None:
    assert retry_after.render(None) == {} and retry_after.render(float("inf")) == {}


@pytest.mark.parametrize("codec", [OpenAIChatCodec(), AnthropicCodec(), GeminiCodec(), OllamaChatCodec()])
def test_every_protocol_renders_and_reads_retry_after_alike(codec) -> None:  # type: ignore[no-untyped-def]
    err = GatewayError(ErrorKind.RATE_LIMITED, "slow down", retry_after=2.3)
    assert codec.encode_error(err).headers["retry-after"] == "3"
    back = codec.decode_error(429, b'{"error": {"message": "slow down"}}', {"Retry-After": _http_date(NOW)})
    assert back.kind is ErrorKind.RATE_LIMITED and back.retry_after == 0.0


def test_gemini_reads_retry_delay_from_its_error_body() -> None:
    body = (
        b'{"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED", "details": '
        b'[{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"}]}}'
    )
    assert GeminiCodec().decode_error(429, body, {}).retry_after == 17.0
