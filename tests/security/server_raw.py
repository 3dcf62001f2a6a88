"""Raw-socket HTTP for the server tests: send exactly the bytes an attacker would, read what comes back."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

import orjson


@dataclass
class Reply:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    closed: bool = False  # the server closed the connection after answering
    raw: bytes = b""

    def json(self) -> object:
        return orjson.loads(self.body)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def send(sock: socket.socket, *parts: bytes) -> bool:
    """Send each part; False once the server has closed on us (it refused before we finished)."""
    try:
        for p in parts:
            sock.sendall(p)
    except OSError:
        return False
    return True


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """Everything the server sends until it closes (True) or `timeout` passes with the connection open (False)."""
    out = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return out, False
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            return out, False
        except ConnectionResetError:  # closed with our unread bytes in its buffer: still closed
            return out, True
        if not data:
            return out, True
        out += data


def parse(raw: bytes, closed: bool) -> Reply:
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        return Reply(closed=closed, raw=raw)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    body = rest
    if headers.get("transfer-encoding") == "chunked":
        body, buf = b"", rest
        while buf:
            size_line, _, buf = buf.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            body, buf = body + buf[:size], buf[size + 2 :]
    elif "content-length" in headers:
        body = rest[: int(headers["content-length"])]
    return Reply(status, headers, body, closed, raw)


def exchange(port: int, *parts: bytes, timeout: float = 10.0) -> Reply:
    """Send `parts` on a new connection and read the answer until the server closes (or `timeout`)."""
    with connect(port) as sock:
        send(sock, *parts)
        raw, closed = read_until_closed(sock, timeout)
    return parse(raw, closed)


def request(method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    h = {"host": "127.0.0.1", **(headers or {})}
    if body and "content-length" not in h:
        h["content-length"] = str(len(body))
    lines = "".join(f"{k}: {v}\r\n" for k, v in h.items())
    return f"{method} {path} HTTP/1.1\r\n{lines}\r\n".encode("latin-1") + body
