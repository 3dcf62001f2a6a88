"""Server-sent events and NDJSON framing: feed/flush parsers that buffer partial input."""

from __future__ import annotations

from dataclasses import dataclass


def sse_event(data: bytes, event: str | None = None) -> bytes:
    """One SSE frame. Always `data: ` with a space: google-genai rejects `data:{...}`."""
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


@dataclass(slots=True)
class SSEMessage:
    event: str | None
    data: str


class SSEParser:
    """Bytes → SSE messages. Handles CRLF, multi-line data, comments and frames split across feeds.

    A line split across many feeds is kept as a list of pieces and joined once, when its end arrives, so a
    long line (a large inline image) costs linear, not quadratic, time. How long a line may grow is the
    caller's cap (providers/http.py counts the bytes fed without an event)."""

    __slots__ = ("_data", "_event", "_parts")

    def __init__(self) -> None:
        self._parts: list[bytes] = []  # the unfinished last line
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SSEMessage]:
        out: list[SSEMessage] = []
        if b"\n" not in chunk:
            if chunk:
                self._parts.append(chunk)
            return out
        if self._parts:
            self._parts.append(chunk)
            chunk, self._parts = b"".join(self._parts), []
        *lines, tail = chunk.split(b"\n")
        if tail:
            self._parts.append(tail)
        for line in lines:
            self._line(line.rstrip(b"\r").decode("utf-8", "replace"), out)
        return out

    def flush(self) -> list[SSEMessage]:
        out: list[SSEMessage] = []
        if self._parts:
            tail, self._parts = b"".join(self._parts), []
            self._line(tail.rstrip(b"\r").decode("utf-8", "replace"), out)
        self._line("", out)
        return out

    def _line(self, line: str, out: list[SSEMessage]) -> None:
        if not line:
            if self._data:
                out.append(SSEMessage(self._event, "\n".join(self._data)))
            self._event, self._data = None, []
            return
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value


class LineSplitter:
    """Bytes → complete lines (for NDJSON); keeps the partial tail between feeds (as pieces, joined once)."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        if b"\n" not in chunk:
            if chunk:
                self._parts.append(chunk)
            return []
        if self._parts:
            self._parts.append(chunk)
            chunk, self._parts = b"".join(self._parts), []
        *lines, tail = chunk.split(b"\n")
        if tail:
            self._parts.append(tail)
        return [ln for ln in (x.strip() for x in lines) if ln]

    def flush(self) -> list[bytes]:
        tail, self._parts = b"".join(self._parts).strip(), []
        return [tail] if tail else []
