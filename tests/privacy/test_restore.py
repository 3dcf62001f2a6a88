"""Redaction of a canonical request and restoration of answers, whole and streamed split at every position."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from smolgate.canonical import (
    BlockStart,
    BlockStop,
    Event,
    Message,
    MessageStop,
    Reasoning,
    ReasoningDelta,
    Request,
    Response,
    Text,
    TextDelta,
    ToolArgsDelta,
    ToolCall,
    ToolResult,
)
from smolgate.policies.detectors import Detectors
from smolgate.policies.redact import Redaction
from smolgate.policies.restore import Restorer

EMAIL, PHONE = "jane.doe@example.com", "+44 20 7946 0958"
PEM = '-----BEGIN PRIVATE KEY-----\nMIIEvQ"IBADANBg\n-----END PRIVATE KEY-----'


def _request() -> Request:
    return Request(
        model="m",
        system=[Text(text=f"owner {EMAIL}")],
        messages=[
            Message(role="user", content=[Text(text=f"I am {EMAIL}, phone {PHONE}")]),
            Message(
                role="assistant",
                content=[
                    Reasoning(text=f"they gave {PHONE}", signature="sig"),
                    ToolCall(id="c1", name="send", arguments=json.dumps({"to": EMAIL, "n": 1})),
                ],
            ),
            Message(role="user", content=[ToolResult(call_id="c1", content=[Text(text=f"sent to {EMAIL}")])]),
        ],
    )


def test_one_value_one_placeholder_everywhere_numbered_by_first_appearance():
    r = Redaction(Detectors())
    out = r.request(_request())
    dumped = out.system[0].text + repr(out.messages)
    assert EMAIL not in dumped and PHONE not in dumped
    assert out.system[0].text == "owner ⟦EMAIL_1⟧"
    assert out.messages[0].content[0].text == "I am ⟦EMAIL_1⟧, phone ⟦PHONE_1⟧"
    assert out.messages[1].content[0].text == "they gave ⟦PHONE_1⟧"
    assert json.loads(out.messages[1].content[1].arguments) == {"to": "⟦EMAIL_1⟧", "n": 1}
    assert out.messages[2].content[0].content[0].text == "sent to ⟦EMAIL_1⟧"
    assert r.counts == {"email": 1, "phone": 1}
    assert r.values == {"EMAIL_1": EMAIL, "PHONE_1": PHONE}


def test_a_longer_conversation_keeps_the_earlier_placeholders():
    first = Redaction(Detectors()).request(_request())
    longer = _request()
    longer.messages.append(Message(role="user", content=[Text(text="also bob@example.org")]))
    second = Redaction(Detectors()).request(longer)
    assert second.messages[:3] == first.messages
    assert second.messages[3].content[0].text == "also ⟦EMAIL_2⟧"


def test_nothing_found_returns_the_same_objects():
    req = Request(model="m", messages=[Message(role="user", content=[Text(text="hello")])])
    out = Redaction(Detectors()).request(req)
    assert out.messages[0] is req.messages[0]


def test_whole_response_restored_with_json_escaping_in_tool_arguments():
    r = Restorer({"EMAIL_1": EMAIL, "SECRET_1": PEM})
    resp = Response(
        id="r",
        model="m",
        content=[
            Reasoning(text="write ⟦EMAIL_1⟧"),
            Text(text="to ⟦EMAIL_1⟧, not ⟦EMAIL_9⟧ or ⟦email_1⟧"),
            ToolCall(id="c", name="f", arguments='{"key": "⟦SECRET_1⟧"}'),
        ],
    )
    out = r.response(resp).content
    assert out[0].text == f"write {EMAIL}"
    assert out[1].text == f"to {EMAIL}, not ⟦EMAIL_9⟧ or ⟦email_1⟧"  # placeholders it never gave stay
    assert json.loads(out[2].arguments) == {"key": PEM}


async def _events(deltas: list[Event]) -> AsyncIterator[Event]:
    for d in deltas:
        yield d


def _run(r: Restorer, events: list[Event]) -> list[Event]:
    async def go() -> list[Event]:
        return [e async for e in r.stream(_events(events))]

    return asyncio.run(go())


def _text_of(events: list[Event], kind: type = TextDelta) -> str:
    return "".join(getattr(e, "json", None) or getattr(e, "text", "") for e in events if isinstance(e, kind))


def test_every_split_of_a_stream_restores_the_same_text():
    r = Restorer({"EMAIL_1": EMAIL, "PHONE_1": PHONE})
    answer = "Write to ⟦EMAIL_1⟧ or ⟦PHONE_1⟧⟦EMAIL_1⟧; ⟦NOPE_3⟧ and ⟦ alone, ⟦EMAIL_"
    expected = f"Write to {EMAIL} or {PHONE}{EMAIL}; ⟦NOPE_3⟧ and ⟦ alone, ⟦EMAIL_"
    for i in range(len(answer) + 1):
        for j in range(i, len(answer) + 1):
            pieces = [answer[:i], answer[i:j], answer[j:]]
            events: list[Event] = [BlockStart(index=0, block=Text(text=""))]
            events += [TextDelta(index=0, text=p) for p in pieces]
            events += [BlockStop(index=0), MessageStop()]
            out = _run(r, events)
            assert _text_of(out) == expected, pieces
            assert isinstance(out[-2], BlockStop) and isinstance(out[-1], MessageStop)


def test_text_that_cannot_be_a_placeholder_is_never_held():
    r = Restorer({"EMAIL_1": EMAIL})
    for delta in ["plain text", "a ⟦ b", "x ⟦lower", "⟦EMAIL_1⟧ done", "price [1] 2"]:
        out = _run(r, [TextDelta(index=0, text=delta)])
        assert len(out) == 1  # everything went out with the delta that brought it
    held = _run(r, [TextDelta(index=0, text="to ⟦EMA")])
    assert [e.text for e in held] == ["to ", "⟦EMA"]  # only the possible prefix waited (released at the end)


def test_held_tail_is_released_before_the_next_block_and_per_delta_kind():
    r = Restorer({"EMAIL_1": EMAIL})
    events: list[Event] = [
        ReasoningDelta(index=0, text="about ⟦EMA"),
        ReasoningDelta(index=0, text="IL_1⟧"),
        BlockStop(index=0),
        ToolArgsDelta(index=1, json='{"to": "⟦EM'),
        ToolArgsDelta(index=1, json='AIL_1⟧"}'),
        TextDelta(index=2, text="⟦EMAIL"),
        TextDelta(index=3, text="_1⟧"),  # another block: the first tail is released as it was
    ]
    out = _run(r, events)
    assert _text_of(out, ReasoningDelta) == f"about {EMAIL}"
    assert json.loads(_text_of(out, ToolArgsDelta)) == {"to": EMAIL}
    assert [(e.index, e.text) for e in out if isinstance(e, TextDelta)] == [(2, "⟦EMAIL"), (3, "_1⟧")]
