"""Hostile client input, in all five client protocols: a 4xx in the client's own error shape, never a 500.

Deep nesting anywhere a protocol takes free-form JSON (tool schemas, response formats, metadata, tool-call
arguments), deep JSON hidden in strings (tool-call arguments and tool results that the gateway parses for
another upstream protocol), huge numbers in every numeric field, and bad image URLs, sent through a real
gateway to real fake upstreams of each upstream protocol.
"""

from __future__ import annotations

import json

import httpx
import pytest

from smolgate.engine.json_schema import compile_schema
from smolgate.protocols.common import MAX_JSON_DEPTH
from tests.gateway.conftest import matrix_config, matrix_upstreams
from tests.gateway_server import GatewayServer

UPSTREAMS = ["openai", "anthropic", "gemini", "ollama"]
HEADERS = {"content-type": "application/json", "anthropic-version": "2023-06-01"}


@pytest.fixture(scope="module")
def gw():
    with (
        matrix_upstreams() as fakes,
        GatewayServer(matrix_config({k: f.url for k, f in fakes.items()})) as server,
        httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as client,
    ):
        server.client = client  # type: ignore[attr-defined]  (one client: no TLS context per request)
        yield server


# ------------------------------------------------------------------------------------ the five protocols
# Each builds a request body (JSON text, so nesting is not limited by a client-side encoder) around a few
# holes: a tool schema, a free-form object, an assistant tool call's arguments, a tool result, an image URL.


SCHEMA = '{"type":"object"}'


def _s(text: str) -> str:
    return json.dumps(text)  # a JSON string literal


class Chat:
    name = "openai-chat"

    def path(self, model: str) -> str:
        return "/v1/chat/completions"

    def body(
        self,
        model: str,
        *,
        schema: str = SCHEMA,
        extra: str = "",
        args: str = "{}",
        result: str = "ok",
        image: str | None = None,
        numbers: str = "",
    ) -> str:
        user = (
            _s("hi")
            if image is None
            else ('[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":' + _s(image) + "}}]")
        )
        msgs = (
            '[{"role":"user","content":' + user + '},{"role":"assistant","content":null,"tool_calls":'
            '[{"id":"c1","type":"function","function":{"name":"f","arguments":' + _s(args) + "}}]},"
            '{"role":"tool","tool_call_id":"c1","content":' + _s(result) + '},{"role":"user","content":"go"}]'
        )
        tools = '[{"type":"function","function":{"name":"f","parameters":' + schema + "}}]"
        return "{" + f'"model":{_s(model)},"messages":{msgs},"tools":{tools}' + extra + numbers + "}"

    numbers = (
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "seed",
        "n",
        "frequency_penalty",
        "presence_penalty",
        "top_logprobs",
    )
    nested_numbers = ('"stream":true,"max_tokens":%s', '"logit_bias":{"50256":%s}')
    free_form = (
        '"metadata":{"k":%s}',
        '"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":%s}}',
        '"logit_bias":%s',
    )

    def shape_ok(self, body: dict) -> bool:
        return {"message", "type"} <= set(body["error"])


class Responses(Chat):
    name = "openai-responses"

    def path(self, model: str) -> str:
        return "/v1/responses"

    def body(
        self,
        model: str,
        *,
        schema: str = SCHEMA,
        extra: str = "",
        args: str = "{}",
        result: str = "ok",
        image: str | None = None,
        numbers: str = "",
    ) -> str:
        user = (
            '[{"type":"input_text","text":"hi"}'
            + ("" if image is None else ',{"type":"input_image","image_url":' + _s(image) + "}")
            + "]"
        )
        items = (
            '[{"role":"user","content":' + user + '},{"type":"function_call","call_id":"c1","name":"f",'
            '"arguments":'
            + _s(args)
            + '},{"type":"function_call_output","call_id":"c1","output":'
            + _s(result)
            + "}]"
        )
        tools = '[{"type":"function","name":"f","parameters":' + schema + "}]"
        return "{" + f'"model":{_s(model)},"input":{items},"tools":{tools}' + extra + numbers + "}"

    numbers = ("max_output_tokens", "temperature", "top_p", "top_logprobs")
    nested_numbers = ('"reasoning":{"effort":"high"},"max_output_tokens":%s', '"max_tool_calls":%s')
    free_form = ('"metadata":{"k":%s}', '"text":{"format":{"type":"json_schema","name":"x","schema":%s}}')


class Anthropic:
    name = "anthropic"

    def path(self, model: str) -> str:
        return "/v1/messages"

    def body(
        self,
        model: str,
        *,
        schema: str = SCHEMA,
        extra: str = "",
        args: str = "{}",
        result: str = "ok",
        image: str | None = None,
        numbers: str = "",
    ) -> str:
        img = "" if image is None else ',{"type":"image","source":{"type":"url","url":' + _s(image) + "}}"
        user = '[{"type":"text","text":"hi"}' + img + "]"
        msgs = (
            '[{"role":"user","content":' + user + '},{"role":"assistant","content":[{"type":"tool_use",'
            '"id":"c1","name":"f","input":' + args + '}]},{"role":"user","content":[{"type":'
            '"tool_result","tool_use_id":"c1","content":' + _s(result) + "}]}]"
        )
        tools = '[{"name":"f","input_schema":' + schema + "}]"
        max_tokens = "" if '"max_tokens"' in numbers else '"max_tokens":16,'
        head = f'"model":{_s(model)},{max_tokens}"messages":{msgs},"tools":{tools}'
        return "{" + head + extra + numbers + "}"

    numbers = ("max_tokens", "temperature", "top_k", "top_p")
    nested_numbers = ('"thinking":{"type":"enabled","budget_tokens":%s}', '"stream":true,"top_k":%s')
    free_form = ('"metadata":{"user_id":"u","k":%s}', '"tool_choice":%s')
    args_is_json = True

    def shape_ok(self, body: dict) -> bool:
        return body.get("type") == "error" and {"type", "message"} <= set(body["error"])


class Gemini:
    name = "gemini"

    def path(self, model: str) -> str:
        return f"/v1beta/models/{model}:generateContent"

    def body(
        self,
        model: str,
        *,
        schema: str = SCHEMA,
        extra: str = "",
        args: str = "{}",
        result: str = "ok",
        image: str | None = None,
        numbers: str = "",
    ) -> str:
        user = (
            '[{"text":"hi"}'
            + ("" if image is None else ',{"fileData":{"mimeType":"image/png","fileUri":' + _s(image) + "}}")
            + "]"
        )
        contents = (
            '[{"role":"user","parts":' + user + '},{"role":"model","parts":[{"functionCall":'
            '{"name":"f","args":' + args + '}}]},{"role":"user","parts":[{"functionResponse":'
            '{"name":"f","response":{"output":' + _s(result) + "}}}]}]"
        )
        tools = '[{"functionDeclarations":[{"name":"f","parameters":' + schema + "}]}]"
        gen = '"generationConfig":{' + numbers.lstrip(",") + "}," if numbers else ""
        return "{" + gen + f'"contents":{contents},"tools":{tools}' + extra + "}"

    numbers = ("maxOutputTokens", "temperature", "topK", "topP", "seed", "candidateCount", "presencePenalty")
    nested_numbers = (
        '"generationConfig":{"thinkingConfig":{"thinkingBudget":%s}}',
        '"generationConfig":{"responseLogprobs":true,"logprobs":%s}',
    )
    free_form = (
        '"generationConfig":{"responseMimeType":"application/json","responseSchema":%s}',
        '"generationConfig":{"responseMimeType":"application/json","responseJsonSchema":%s}',
    )
    args_is_json = True

    def shape_ok(self, body: dict) -> bool:
        return {"code", "message", "status"} <= set(body["error"])


class Ollama:
    name = "ollama"

    def path(self, model: str) -> str:
        return "/api/chat"

    def body(
        self,
        model: str,
        *,
        schema: str = SCHEMA,
        extra: str = "",
        args: str = "{}",
        result: str = "ok",
        image: str | None = None,
        numbers: str = "",
    ) -> str:
        img = "" if image is None else ',"images":[' + _s(image) + "]"
        msgs = (
            '[{"role":"user","content":"hi"' + img + '},{"role":"assistant","content":"","tool_calls":'
            '[{"function":{"name":"f","arguments":'
            + args
            + '}}]},{"role":"tool","content":'
            + _s(result)
            + '},{"role":"user","content":"go"}]'
        )
        tools = '[{"type":"function","function":{"name":"f","parameters":' + schema + "}}]"
        opts = ',"options":{' + numbers.lstrip(",") + "}" if numbers else ""
        head = f'"model":{_s(model)},"stream":false,"messages":{msgs},"tools":{tools}'
        return "{" + head + extra + opts + "}"

    numbers = ("num_predict", "temperature", "top_k", "top_p", "seed", "num_ctx")
    nested_numbers = ('"think":true,"options":{"num_predict":%s}', '"keep_alive":%s')
    free_form = ('"format":%s',)
    args_is_json = True

    def shape_ok(self, body: dict) -> bool:
        return isinstance(body.get("error"), str)


PROTOCOLS = [Chat(), Responses(), Anthropic(), Gemini(), Ollama()]
IDS = [p.name for p in PROTOCOLS]


def post(gw: GatewayServer, proto, upstream: str, body: str) -> httpx.Response:
    model = f"via-{upstream}"
    return gw.client.post(proto.path(model), content=body.encode())  # type: ignore[attr-defined]


def assert_4xx(r: httpx.Response, proto) -> None:
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert proto.shape_ok(r.json()), r.text[:300]
    assert "Traceback" not in r.text


def assert_not_5xx(r: httpx.Response, proto) -> None:
    assert r.status_code < 500, (r.status_code, r.text[:300])
    if r.status_code >= 400:
        assert proto.shape_ok(r.json()), r.text[:300]


def deep_schema(n: int) -> str:
    return '{"type":"object","properties":{"a":' * n + '{"type":"string"}' + "}}" * n


def deep_value(n: int) -> str:
    return '{"a":[' * n + "1" + "]}" * n


# ------------------------------------------------------------------------------------------------ nesting


@pytest.mark.parametrize("depth", [150, 300, 1000, 5000])
@pytest.mark.parametrize("proto", PROTOCOLS, ids=IDS)
def test_a_deeply_nested_tool_schema_is_a_400(gw, proto, depth):
    for upstream in UPSTREAMS:
        r = post(gw, proto, upstream, proto.body(f"via-{upstream}", schema=deep_schema(depth)))
        assert_4xx(r, proto)
        assert "deeper than" in r.text


@pytest.mark.parametrize("proto", PROTOCOLS, ids=IDS)
def test_deep_nesting_in_any_free_form_object_is_a_400(gw, proto):
    for template in proto.free_form:
        for value in (deep_schema(200), deep_value(400), "[" * 3000 + "]" * 3000):
            r = post(gw, proto, "gemini", proto.body("via-gemini", extra="," + template % value))
            assert_4xx(r, proto)


@pytest.mark.parametrize(
    "proto", [p for p in PROTOCOLS if getattr(p, "args_is_json", False)], ids=lambda p: p.name
)
def test_deeply_nested_tool_call_arguments_are_a_400(gw, proto):
    for upstream in UPSTREAMS:
        assert_4xx(post(gw, proto, upstream, proto.body(f"via-{upstream}", args=deep_value(300))), proto)


def test_a_request_nested_to_the_documented_limit_still_works(gw):
    """64 levels is the documented limit of the body as a whole; a tool schema a little below it passes."""
    chat = PROTOCOLS[0]
    for upstream in UPSTREAMS:
        schema = deep_schema(MAX_JSON_DEPTH // 2 - 4)  # two JSON levels per schema level
        r = post(gw, chat, upstream, chat.body(f"via-{upstream}", schema=schema))
        assert r.status_code == 200, r.text[:300]


@pytest.mark.parametrize("proto", PROTOCOLS, ids=IDS)
def test_deep_json_inside_strings_never_breaks_another_protocols_encoder(gw, proto):
    """Tool-call arguments given as a JSON string (OpenAI, Responses) and tool results that look like JSON are
    parsed when another upstream protocol wants objects; too deep, they travel as text instead."""
    for text in (deep_value(300), deep_value(2000), "[" * 5000 + "]" * 5000):
        for upstream in UPSTREAMS:
            args = text if not getattr(proto, "args_is_json", False) else "{}"
            r = post(gw, proto, upstream, proto.body(f"via-{upstream}", args=args, result=text))
            assert r.status_code == 200, (upstream, r.status_code, r.text[:300])


# ------------------------------------------------------------------------------------------------ numbers

HUGE = [
    "1e308",
    "-1e308",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775808",
    "-9223372036854775809",
    "1e19",
    "123456789012345678901234567890",
    "1e400",
    "-0.0",
    "4.9e-324",
]


@pytest.mark.parametrize("proto", PROTOCOLS, ids=IDS)
def test_huge_numbers_are_never_a_500(gw, proto):
    """In every numeric field, in reasoning budgets, streaming and maps of numbers, and in free-form JSON
    (a schema's `maximum`, metadata, tool-call arguments)."""
    args_is_json = getattr(proto, "args_is_json", False)
    for upstream in UPSTREAMS:
        for value in HUGE:
            for name in proto.numbers:
                assert_not_5xx(
                    post(gw, proto, upstream, proto.body(f"via-{upstream}", numbers=f',"{name}":{value}')),
                    proto,
                )
            for template in proto.nested_numbers:
                assert_not_5xx(
                    post(gw, proto, upstream, proto.body(f"via-{upstream}", extra="," + template % value)),
                    proto,
                )
            schema = '{"type":"object","properties":{"n":{"type":"integer","maximum":%s}}}' % value  # noqa: UP031 - JSON braces
            r = post(
                gw,
                proto,
                upstream,
                proto.body(
                    f"via-{upstream}",
                    schema=schema,
                    extra="," + proto.free_form[0] % value,
                    args='{"n":%s}' % value if args_is_json else "{}",  # noqa: UP031 - JSON braces
                ),
            )
            assert_not_5xx(r, proto)


@pytest.mark.parametrize("proto", PROTOCOLS, ids=IDS)
def test_an_integer_beyond_64_bits_is_a_400_naming_the_field(gw, proto):
    """orjson reads integers up to 2**64-1 exactly; past 2**63-1 they overflow upstream APIs and our own
    arithmetic (a reasoning budget plus max_tokens), so the body is refused where it is decoded."""
    r = post(
        gw,
        proto,
        "anthropic",
        proto.body("via-anthropic", extra="," + proto.nested_numbers[0] % "18446744073709551615"),
    )
    assert_4xx(r, proto)
    assert "64-bit" in r.text


# --------------------------------------------------------------------------------------------- image URLs

BAD_URLS = [
    "http://h:99999/a.png",
    "http://h:abc/a.png",
    "http://[::1/a.png",
    "http://[::1]x/a.png",
    "http://u:p@example.com/a.png",
    "http://example.com\\@127.0.0.1/a.png",
    "http://a b/x.png",
    "javascript:alert(1)",
    "file:///etc/passwd",
    "data:image/png;base64,@@@@",
    "data:image/png;base64,",
    "data:text/html,<script>",
    "data:image/png;base64,QUJD=Q",
    "http://" + "a" * 9000 + ".com/x.png",
]


@pytest.mark.parametrize("proto", PROTOCOLS, ids=IDS)
def test_bad_image_urls_are_a_400_naming_the_field(gw, proto):
    for url in BAD_URLS:
        if proto.name == "ollama" and not url.startswith("data:"):
            continue  # Ollama takes base64 images only: there is no URL to check
        if proto.name == "gemini" and not url.startswith("http"):
            continue  # fileUri may be gs:// or a File API name: passed on, fetched only over http(s)
        for upstream in ("openai", "gemini"):  # passed through as a URL / fetched by the gateway
            r = post(gw, proto, upstream, proto.body(f"via-{upstream}", image=url))
            assert_4xx(r, proto)


# ----------------------------------------------------------------------------------- the local JSON schema


def test_a_long_chain_of_schema_refs_is_refused_by_the_local_compiler_not_a_recursion_error():
    defs = {f"d{i}": {"$ref": f"#/$defs/d{i + 1}"} for i in range(3000)}
    defs["d3000"] = {"type": "string"}
    with pytest.raises(ValueError, match="deeper than"):
        compile_schema({"$defs": defs, "$ref": "#/$defs/d0"})
    nested = {
        "$defs": {
            f"d{i}": {"type": "object", "properties": {"a": {"$ref": f"#/$defs/d{i + 1}"}}}
            for i in range(200)
        }
        | {"d200": {"type": "string"}},
        "$ref": "#/$defs/d0",
    }
    with pytest.raises(ValueError, match="deeper than"):
        compile_schema(nested)


@pytest.fixture(scope="module")
def local_gw(tmp_path_factory):
    """`protocol: local` serving a tiny random SmolLM2 as model `lm`."""
    import sys
    from pathlib import Path

    sys.path.insert(
        0, str(Path(__file__).resolve().parents[1] / "engine")
    )  # tests/engine imports by basename
    from checkpoints import make_checkpoint

    path, _ = make_checkpoint("smollm2-text", tmp_path_factory.mktemp("lm") / "tiny-smollm2")
    cfg = (
        f"providers:\n  - name: local\n    protocol: local\n    model: {path}\n    dtype: float32\n"
        "models:\n  - name: lm\n    targets: [{provider: local, model: default}]\n"
    )
    with (
        GatewayServer(cfg) as server,
        httpx.Client(base_url=server.url, headers=HEADERS, timeout=60) as client,
    ):
        server.client = client  # type: ignore[attr-defined]
        yield server


def test_the_local_engine_takes_deep_json_strings_as_text_and_refuses_deep_schemas(local_gw):
    chat = PROTOCOLS[0]
    for text in ("[" * 480 + "]" * 480, "[" * 990 + "]" * 990, deep_value(2000), "[" * 100000 + "]" * 100000):
        body = chat.body("lm", args=text, result=text, numbers=',"max_tokens":2')
        assert_not_5xx(post(local_gw, chat, "", body), chat)  # 200, or 400 when the prompt is too long
    defs = (
        ",".join(f'"d{i}":{{"$ref":"#/$defs/d{i + 1}"}}' for i in range(3000)) + ',"d3000":{"type":"string"}'
    )
    fmt = (
        ',"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"$defs":{'
        + defs
        + '},"$ref":"#/$defs/d0"}}}'
    )
    r = post(local_gw, chat, "", chat.body("lm", extra=fmt, numbers=',"max_tokens":2'))
    assert_4xx(r, chat)
    assert "deeper than" in r.text
