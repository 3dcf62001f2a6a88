"""The signed-reasoning store and its restore rules (signatures.py), on canonical requests and responses.

End to end through the gateway with the official SDKs: tests/gateway/test_signatures_e2e.py."""

from __future__ import annotations

import pytest

from smolgate import signatures
from smolgate.canonical import (
    AnthropicExtras,
    BlockStart,
    BlockStop,
    Extras,
    Message,
    MessageDelta,
    MessageStart,
    MessageStop,
    Origin,
    Reasoning,
    ReasoningConfig,
    ReasoningDelta,
    Request,
    SignatureDelta,
    StopReason,
    Text,
    ToolArgsDelta,
    ToolCall,
    ToolResult,
)
from smolgate.signatures import BYPASS, Signatures, SignatureStore

KINDS = {"ant": "anthropic", "gem": "gemini", "oai": "openai"}
A, B = Origin(protocol="openai", owner="owner-a"), Origin(protocol="openai", owner="owner-b")
THINK = ReasoningConfig(effort="high")


def sigs() -> Signatures:
    return Signatures(KINDS, SignatureStore())


def call(cid: str, city: str = "Paris", sig: str | None = None) -> ToolCall:
    return ToolCall(id=cid, name="get_weather", arguments=f'{{"city": "{city}"}}', signature=sig)


def loop(
    calls: list[ToolCall],
    origin: Origin | None = A,
    reasoning: ReasoningConfig | None = THINK,
    before: list[Message] | None = None,
) -> Request:
    """A request whose last turn answers `calls`."""
    return Request(
        model="m",
        origin=origin,
        reasoning=reasoning,
        messages=[
            *(before or []),
            Message(role="user", content=[Text(text="weather?")]),
            Message(role="assistant", content=list(calls)),
            Message(
                role="user", content=[ToolResult(call_id=c.id, content=[Text(text="ok")]) for c in calls]
            ),
        ],
    )


# ---------------------------------------------------------------- the store


async def test_store_is_an_lru_bounded_by_count_bytes_and_ttl(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(signatures.time, "monotonic", lambda: now[0])
    st = SignatureStore(max_entries=3, max_bytes=10_000, ttl=60, max_value=2_000)
    await st.put({f"k{i}": b"x" * 10 for i in range(3)})
    assert (await st.get(["k0"])) == {"k0": b"x" * 10}  # k0 is now the most recent
    await st.put({"k3": b"y"})
    assert set(await st.get(["k0", "k1", "k2", "k3"])) == {"k0", "k2", "k3"}  # k1 was the least recent
    await st.put({"big": b"z" * 5_000})  # over max_value: not kept, evicts nothing
    assert len(st) == 3 and await st.get(["big"]) == {}
    await st.put({f"b{i}": b"w" * 1_900 for i in range(6)})  # bytes bound
    assert st.bytes <= 10_000 and len(st) <= 3
    now[0] += 61
    assert await st.get([f"b{i}" for i in range(6)]) == {} and st.bytes == 0  # expired entries are dropped


async def test_an_unreachable_redis_degrades_to_memory():
    st = SignatureStore(redis_url="redis://127.0.0.1:1/0", timeout=0.2)
    await st.put({"k": b"v"})
    assert await st.get(["k", "missing"]) == {"k": b"v"}


# ---------------------------------------------------------------- Anthropic thinking


async def test_anthropic_thinking_goes_back_first_in_the_tool_turn_for_the_same_client_only():
    s = sigs()
    c1, c2 = call("toolu_1"), call("toolu_2", "Tokyo")
    thinking = [Reasoning(text="Let me look.", signature="SIG1"), Reasoning(redacted="OPAQUE")]
    await s.record(loop([]), [*thinking, Text(text="Checking."), c1, c2], "ant")
    out = await s.restore(loop([c1, c2]), "ant", "claude")
    assert out.messages[1].content == [*thinking, c1, c2] and out.reasoning == THINK
    other = await s.restore(loop([c1, c2], origin=B), "ant", "claude")  # another key: none of A's state
    assert other.messages[1].content == [c1, c2] and other.reasoning is None  # and thinking off


async def test_thinking_off_for_a_tool_turn_with_nothing_to_send_back_only_while_the_loop_is_open():
    s = sigs()
    req = loop([call("toolu_x")])
    out = await s.restore(req, "ant", "claude")
    assert out.reasoning is None and out.messages == req.messages
    closed = Request(
        model="m",
        origin=A,
        reasoning=THINK,
        messages=[
            *req.messages,
            Message(role="assistant", content=[Text(text="Sunny.")]),
            Message(role="user", content=[Text(text="thanks")]),
        ],
    )
    assert await s.restore(closed, "ant", "claude") is closed  # a new question: no tool loop to continue
    unthinking = loop([call("toolu_x")], reasoning=None)
    assert await s.restore(unthinking, "ant", "claude") is unthinking


async def test_adaptive_thinking_gets_its_blocks_back_but_is_never_switched_off():
    """Adaptive thinking may skip thinking on a tool turn, so Anthropic does not require the block then."""
    s = sigs()
    adaptive = Extras(anthropic=AnthropicExtras(thinking={"type": "adaptive"}))
    await s.record(loop([]), [Reasoning(text="t", signature="S"), call("toolu_1")], "ant")
    req = loop([call("toolu_1")], reasoning=ReasoningConfig(effort="high"))
    req.extras = adaptive
    out = await s.restore(req, "ant", "claude")
    assert out.messages[1].content[0] == Reasoning(text="t", signature="S")
    bare = loop([call("toolu_2")])
    bare.extras = adaptive
    out = await s.restore(bare, "ant", "claude")
    assert out.extras == adaptive and out.reasoning == THINK


async def test_a_client_that_sent_its_thinking_back_is_left_alone():
    s = sigs()
    c = call("toolu_1")
    req = Request(
        model="m",
        origin=Origin(protocol="anthropic"),
        reasoning=THINK,
        messages=[
            Message(role="user", content=[Text(text="weather?")]),
            Message(role="assistant", content=[Reasoning(text="hm", signature="S"), c]),
            Message(role="user", content=[ToolResult(call_id="toolu_1", content=[Text(text="ok")])]),
        ],
    )
    assert await s.restore(req, "ant", "claude") is req


# ---------------------------------------------------------------- Gemini thoughtSignatures


async def test_gemini_signatures_return_to_their_calls_and_the_bypass_only_when_unknown():
    s = sigs()
    c1, c2 = call("call_1", sig="GSIG"), call("call_2", "Tokyo")  # Gemini signs the first of parallel calls
    await s.record(loop([]), [c1, c2], "gem")
    bare1, bare2 = call("call_1"), call("call_2", "Tokyo")
    out = await s.restore(loop([bare1, bare2]), "gem", "gemini-3-pro-preview")
    assert [b.signature for b in out.messages[1].content] == ["GSIG", None]
    unknown = await s.restore(loop([call("call_9"), call("call_8")]), "gem", "gemini-3-flash")
    assert [b.signature for b in unknown.messages[1].content] == [BYPASS, None]
    other = await s.restore(loop([bare1, bare2], origin=B), "gem", "gemini-3-pro-preview")
    assert [b.signature for b in other.messages[1].content] == [BYPASS, None]
    older = await s.restore(loop([call("call_9")]), "gem", "gemini-2.5-flash")  # validates none: no bypass
    assert older.messages[1].content[0].signature is None


async def test_only_the_current_turn_is_touched():
    s = sigs()
    earlier = [
        Message(role="user", content=[Text(text="first")]),
        Message(role="assistant", content=[call("call_old")]),
        Message(role="user", content=[ToolResult(call_id="call_old", content=[Text(text="ok")])]),
        Message(role="assistant", content=[Text(text="done")]),
    ]
    out = await s.restore(loop([call("call_new")], before=earlier), "gem", "gemini-3-pro")
    assert out.messages[1].content[0].signature is None
    assert out.messages[5].content[0].signature == BYPASS


async def test_state_goes_back_only_to_the_kind_that_made_it():
    s = sigs()
    await s.record(loop([]), [Reasoning(text="t", signature="S"), call("c1")], "ant")
    await s.record(loop([]), [call("c2", sig="G")], "gem")
    to_gemini = await s.restore(loop([call("c1")]), "gem", "gemini-3-pro")
    assert to_gemini.messages[1].content == [call("c1", sig=BYPASS)]
    to_anthropic = await s.restore(loop([call("c2")]), "ant", "claude")
    assert to_anthropic.reasoning is None and to_anthropic.messages[1].content == [call("c2")]
    plain = loop([call("c1")])
    assert await s.restore(plain, "oai", "gpt") is plain


async def test_native_clients_and_unknown_origins_store_nothing():
    s = sigs()
    await s.record(
        loop([], origin=Origin(protocol="anthropic")), [Reasoning(text="t", signature="S"), call("c1")], "ant"
    )
    await s.record(loop([], origin=Origin(protocol="gemini")), [call("c2", sig="G")], "gem")
    await s.record(loop([], origin=None), [call("c3", sig="G")], "gem")
    await s.record(loop([]), [Reasoning(text="t", signature="S"), Text(text="no call")], "ant")
    assert len(s.store) == 0


async def test_ollama_clients_that_drop_call_ids_are_matched_by_name_and_arguments():
    s = sigs()
    ollama = Origin(protocol="ollama", owner="owner-a")
    await s.record(loop([], origin=ollama), [call("call_abc", sig="G")], "gem")
    renamed = ToolCall(id="call_0", name="get_weather", arguments='{ "city":"Paris" }')
    out = await s.restore(loop([renamed], origin=ollama), "gem", "gemini-3-pro")
    assert out.messages[1].content[0].signature == "G"
    other = await s.restore(
        loop([renamed], origin=Origin(protocol="ollama", owner="owner-b")), "gem", "gemini-3-pro"
    )
    assert other.messages[1].content[0].signature == BYPASS


async def test_a_stream_is_recorded_before_its_final_events_reach_the_client():
    s = sigs()

    async def upstream():
        yield MessageStart(id="m", model="claude")
        yield BlockStart(index=0, block=Reasoning())
        yield ReasoningDelta(index=0, text="Let me ")
        yield ReasoningDelta(index=0, text="look.")
        yield SignatureDelta(index=0, signature="SIG")
        yield BlockStop(index=0)
        yield BlockStart(index=1, block=ToolCall(id="toolu_7", name="get_weather", arguments=""))
        yield ToolArgsDelta(index=1, json='{"city": ')
        yield ToolArgsDelta(index=1, json='"Paris"}')
        yield BlockStop(index=1)
        yield MessageDelta(stop_reason=StopReason.TOOL_USE)
        yield MessageStop()

    seen = 0
    async for ev in s.watch(upstream(), loop([]), "ant"):
        if isinstance(ev, MessageDelta):
            seen = len(s.store)
    assert seen == 1
    out = await s.restore(loop([call("toolu_7")]), "ant", "claude")
    assert out.messages[1].content[0] == Reasoning(text="Let me look.", signature="SIG")


@pytest.mark.parametrize(
    "model,strict",
    [
        ("gemini-3-pro-preview", True),
        ("models/gemini-3.1-flash-lite", True),
        ("gemini-2.5-pro", False),
        ("claude-opus", False),
    ],
)
def test_gemini3(model, strict):
    assert signatures.gemini3(model) is strict
