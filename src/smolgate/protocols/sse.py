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
    """Bytes → SSE messages. Handles CRLF, multi-line data, comments and frames split across feeds."""

    __slots__ = ("_buf", "_event", "_data")

    def __init__(self) -> None:
        self._buf = b""
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SSEMessage]:
        self._buf += chunk
        out: list[SSEMessage] = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                return out
            line = self._buf[:nl].rstrip(b"\r").decode("utf-8", "replace")
            self._buf = self._buf[nl + 1 :]
            self._line(line, out)

    def flush(self) -> list[SSEMessage]:
        out: list[SSEMessage] = []
        if self._buf:
            self._line(self._buf.rstrip(b"\r").decode("utf-8", "replace"), out)
            self._buf = b""
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
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value


class LineSplitter:
    """Bytes → complete lines (for NDJSON); keeps the partial tail between feeds."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buf += chunk
        if b"\n" not in self._buf:
            return []
        *lines, self._buf = self._buf.split(b"\n")
        return [ln for ln in (x.strip() for x in lines) if ln]

    def flush(self) -> list[bytes]:
        tail, self._buf = self._buf.strip(), b""
        return [tail] if tail else []
