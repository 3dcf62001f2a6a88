"""Our HTTP/1.1 client never sends a POST twice: once a request's bytes are written, a failure is an error,
not a retry (the upstream may have acted on it); only a pooled connection the upstream closed while it was
idle — before any byte of the request — is passed over for a new one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
import uvloop

from smolgate.providers.h1 import H1Error, H1Pool
from tests.security.evil_upstream import EvilUpstream, Out, RawRequest, response

T = TypeVar("T")
LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}  # the gateway serves on uvloop


def _run(loop: str, coro: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        return runner.run(coro)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_post_read_by_the_upstream_then_unanswered_is_not_sent_again(loop):
    async def script(req: RawRequest, out: Out) -> bool:
        if req.body == b"first":
            return await out.send(response(b"ok"))  # keep-alive: the connection goes back to the pool
        return False  # read the whole request, then close without a byte of answer

    async def go(url: str) -> None:
        pool = H1Pool(url, 5)
        r = await pool.post("/v1/x", b"first", {})
        assert await r.read() == b"ok"
        assert len(pool._idle) == 1  # the second POST goes on this reused connection
        with pytest.raises(H1Error):
            await pool.post("/v1/x", b"charge-the-card", {})
        pool.close()

    with EvilUpstream(script) as up:
        _run(loop, go(up.url))
        assert [r.body for r in up.requests] == [b"first", b"charge-the-card"]
        assert up.connections == 1  # no second connection was opened to resend it


def test_a_post_on_a_fresh_connection_closed_unanswered_is_not_sent_again():
    async def script(req: RawRequest, out: Out) -> bool:
        return False

    async def go(url: str) -> None:
        pool = H1Pool(url, 5)
        with pytest.raises(H1Error):
            await pool.post("/v1/x", b"once", {})

    with EvilUpstream(script) as up:
        asyncio.run(go(up.url))
        assert [r.body for r in up.requests] == [b"once"] and up.connections == 1


@pytest.mark.parametrize("loop", LOOPS)
def test_a_connection_closed_while_idle_is_passed_over_before_writing(loop):
    """The upstream answers, then closes the idle connection (a keep-alive timeout). Its FIN sits in our
    socket's queue unseen by the event loop (we block, as a busy loop would): the next POST must still go
    out exactly once, on a new connection — not fail, and not be written into the dead one."""

    async def script(req: RawRequest, out: Out) -> bool:
        await out.send(response(b"answer-to-" + req.body))  # no `connection: close`: looks reusable
        return False

    async def go(up: EvilUpstream) -> list[bytes]:
        pool = H1Pool(up.url, 5)
        bodies = []
        for i in range(3):
            r = await pool.post("/v1/x", b"r%d" % i, {})
            bodies.append(await r.read())
            time.sleep(0.2)  # blocking on purpose: the upstream closes, our event loop does not notice
            assert pool._idle and not pool._idle[-1].closed  # the FIN is queued, not yet delivered
        pool.close()
        return bodies

    with EvilUpstream(script) as up:
        assert _run(loop, go(up)) == [
            b"answer-to-r0",
            b"answer-to-r1",
            b"answer-to-r2",
        ]
        assert [r.body for r in up.requests] == [b"r0", b"r1", b"r2"]
        assert up.connections == 3
