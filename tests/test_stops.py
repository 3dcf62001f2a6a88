"""Gateway-enforced stop sequences: split across chunks, held back only as long as needed."""

from __future__ import annotations

import asyncio
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from smolgate.canonical import (
    BlockStart,
    BlockStop,
    MessageDelta,
    MessageStart,
    MessageStop,
    Response,
    StopReason,
    Text,
    TextDelta,
)
from smolgate.stops import apply_to_response, apply_to_stream, cut


def run(chunks: list[str], stops: list[str]) -> tuple[str, list]:
    async def events():
        yield MessageStart(id="m", model="x")
        yield BlockStart(index=0, block=Text(text=""))
        for c in chunks:
            yield TextDelta(index=0, text=c)
        yield BlockStop(index=0)
        yield MessageDelta(stop_reason=StopReason.END_TURN)
        yield MessageStop()

    async def collect():
        return [ev async for ev in apply_to_stream(events(), stops)]

    out = asyncio.run(collect())
    return "".join(e.text for e in out if isinstance(e, TextDelta)), out


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet="ab|cx", max_size=30),
    stop=st.text(alphabet="ab|c", min_size=1, max_size=4),
    cuts=st.lists(st.integers(0, 30), max_size=6),
)
def test_stream_equals_cutting_the_whole_text(text, stop, cuts):
    bounds = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    chunks = [text[a:b] for a, b in itertools.pairwise(bounds)]
    got, events = run(chunks, [stop])
    want, hit = cut(text, [stop])
    assert got == want
    deltas = [e for e in events if isinstance(e, MessageDelta)]
    assert deltas[0].stop_reason == (StopReason.STOP_SEQUENCE if hit else StopReason.END_TURN)
    assert isinstance(events[-1], MessageStop)


def test_text_is_released_as_soon_as_it_cannot_match():
    _, events = run(["hello wor", "ld END"], ["END"])
    texts = [e.text for e in events if isinstance(e, TextDelta)]
    assert texts[0] == "hello wor"  # nothing held: no suffix of it starts "END"
    assert "".join(texts) == "hello world "


def test_response_is_cut_and_reports_the_sequence():
    r = Response(id="x", model="m", content=[Text(text="abc STOP def")])
    out = apply_to_response(r, ["STOP"])
    assert (
        out.content[0].text == "abc "
        and out.stop_reason == StopReason.STOP_SEQUENCE
        and out.stop_sequence == "STOP"
    )
