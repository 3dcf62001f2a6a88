"""Malicious fake upstreams: a raw asyncio HTTP/1.1 server on loopback that misbehaves on purpose.

aiohttp (tests/fakes) cannot send what these tests need — a second response behind the first, a body read
until close, a chunked body that never ends, endless headers, a byte every half second — so this server
parses requests itself (honestly: request line, headers, Content-Length body, keep-alive and pipelining,
exactly as a real server would, which is what makes request smuggling visible) and hands each one to a
`script(req, out)` coroutine that writes whatever bytes it likes. The script returns False to close the
connection. Every request, every connection and the bytes each script managed to write are recorded.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Self


@dataclass
class RawRequest:
    method: str
    target: str
    headers: dict[str, str]  # lower-case names; a repeated name keeps the last value
    body: bytes
    conn: int  # which connection (0, 1, …) it came on

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def user_text(self) -> str:
        """The last user text in any of the four request shapes (for 'whose answer is this' checks)."""
        obj = self.json if isinstance(self.json, dict) else {}
        texts: list[str] = []
        for m in obj.get("messages") or []:
            c = m.get("content")
            texts += (
                [c] if isinstance(c, str) else [p.get("text", "") for p in c or [] if isinstance(p, dict)]
            )
        for c in obj.get("contents") or []:
            texts += [p.get("text", "") for p in c.get("parts") or [] if isinstance(p, dict)]
        return texts[-1] if texts else ""


Script = Callable[[RawRequest, "Out"], Awaitable[bool]]


class Out:
    """The connection's writer, counting what got through; `closed` once the peer went away."""

    def __init__(self, writer: asyncio.StreamWriter, server: EvilUpstream) -> None:
        self._w, self._server = writer, server
        self.closed = False

    async def send(self, data: bytes) -> bool:
        if self.closed:
            return False
        try:
            self._w.write(data)
            await self._w.drain()
        except (ConnectionError, OSError):
            self.closed = True
            return False
        self._server.bytes_sent += len(data)
        return True

    async def drip(self, data: bytes, every: float) -> bool:
        for i in range(len(data)):
            if not await self.send(data[i : i + 1]):
                return False
            await asyncio.sleep(every)
        return True


class EvilUpstream:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[RawRequest] = []
        self.connections = 0
        self.bytes_sent = 0
        self.peer_closed = 0  # connections the gateway closed while a script was still writing
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> EvilUpstream:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=1 << 24)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def down() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(down(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = self.connections
        self.connections += 1
        out = Out(writer, self)
        try:
            while True:
                req = await _read_request(reader, conn)
                if req is None:
                    break
                self.requests.append(req)
                if not await self.script(req, out):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, asyncio.CancelledError):
            pass  # (cancelled: the server is stopping)
        finally:
            if out.closed:
                self.peer_closed += 1
            writer.close()


async def _read_request(reader: asyncio.StreamReader, conn: int) -> RawRequest | None:
    line = await reader.readline()
    if not line:
        return None
    method, target, _ = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    headers: dict[str, str] = {}
    while h := (await reader.readline()).decode("latin-1").rstrip("\r\n"):
        name, _, value = h.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return RawRequest(method, target, headers, body, conn)


# ------------------------------------------------------------------ response helpers


def response(
    body: bytes,
    status: int = 200,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> bytes:
    head = f"HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return head.encode() + b"\r\n" + body


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> bytes:
    return response(json.dumps(obj).encode(), status, headers)


def chunked_head(status: int = 200, content_type: str = "text/event-stream") -> bytes:
    return (
        f"HTTP/1.1 {status} OK\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n".encode()
    )


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


# ------------------------------------------------------------------ well-formed answers, per protocol


def openai_answer(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def gemini_answer(text: str) -> dict[str, Any]:
    return {
        "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1, "totalTokenCount": 2},
    }


def sse(obj: Any, event: str | None = None) -> bytes:
    data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return (f"event: {event}\n".encode() if event else b"") + b"data: " + data + b"\n\n"


def openai_chunk(text: str | None = None, finish: str | None = None) -> bytes:
    delta = {"role": "assistant", "content": text} if text is not None else {}
    return sse(
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


def complete_stream(protocol: str, text: str) -> list[bytes]:
    """A whole, well-formed stream body in one upstream protocol, ending with its terminal frame."""
    if protocol == "openai":
        return [openai_chunk(text), openai_chunk(finish="stop"), b"data: [DONE]\n\n"]
    if protocol == "anthropic":
        msg = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "m",
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": 1, "output_tokens": 0},
        }
        return [
            sse({"type": "message_start", "message": msg}, "message_start"),
            sse(
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                "content_block_start",
            ),
            sse(
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
                "content_block_delta",
            ),
            sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            sse(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": 1},
                },
                "message_delta",
            ),
            sse({"type": "message_stop"}, "message_stop"),
        ]
    if protocol == "gemini":
        last = {
            **gemini_answer(""),
            "candidates": [{"content": {"role": "model", "parts": []}, "finishReason": "STOP"}],
        }
        return [sse({"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}}]}), sse(last)]
    if protocol == "ollama":
        return [
            json.dumps(
                {"model": "m", "message": {"role": "assistant", "content": text}, "done": False}
            ).encode()
            + b"\n",
            json.dumps(
                {
                    "model": "m",
                    "message": {"role": "assistant", "content": ""},
                    "done": True,
                    "done_reason": "stop",
                    "prompt_eval_count": 1,
                    "eval_count": 1,
                }
            ).encode()
            + b"\n",
        ]
    raise ValueError(protocol)


STREAM_TYPE = {
    "openai": "text/event-stream",
    "anthropic": "text/event-stream",
    "gemini": "text/event-stream",
    "ollama": "application/x-ndjson",
}


def provider_config(
    protocol: str,
    url: str,
    *,
    keys: tuple[str, ...] = ("sk-evil-test-key-0001",),
    extra: str = "",
    name: str = "evil",
    transport: str = "h1",
) -> str:
    """A gateway config with one provider `evil` in front of `url` and model alias `m` → it."""
    base = url + "/v1" if protocol in ("openai", "openai-responses") else url
    accounts = ", ".join(f"{{api_key: {k}}}" for k in keys)
    return (
        f"providers:\n  - name: {name}\n    protocol: {protocol}\n    base_url: {base}\n"
        f"    transport: {transport}\n    accounts: [{accounts}]\n{extra}"
        f"models:\n  - name: m\n    targets: [{{provider: {name}, model: up-model}}]\n"
        "retry: {attempts: 1, deadline: 20}\n"
    )
