"""Small helpers every protocol module shares: JSON, validation with field paths, ids, data URLs."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import secrets
import time
from typing import Any, TypeVar
from urllib.parse import SplitResult, urlsplit

import orjson

from ..errors import invalid

T = TypeVar("T")

MAX_INLINE_BYTES = 20 * 1024 * 1024  # per decoded image/video; the body limit bounds the total
# Client JSON may nest objects and arrays this deep (SECURITY.md). Far beyond any real request or tool schema,
# and far below what recursive code meets later (orjson.dumps stops at 255 levels, Python at ~1000 frames).
MAX_JSON_DEPTH = 64
MAX_URL_CHARS = 8192  # an http(s) media URL (signed URLs run to a few KiB)

_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    dict: "an object",
    list: "an array",
}


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def loads_body(body: bytes) -> dict[str, Any]:
    """Parse a request body that must be a JSON object nested at most MAX_JSON_DEPTH levels, with every
    integer in the signed 64-bit range (what upstream APIs and our own arithmetic assume)."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):  # orjson's own limit (1024) is far above ours: say ours
            raise invalid(f"request body nests JSON deeper than {MAX_JSON_DEPTH} levels") from None
        raise invalid(f"request body is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise invalid("request body must be a JSON object")
    if body.count(b"{") + body.count(b"[") <= MAX_JSON_DEPTH and not _LONG_DIGITS.search(body):
        return obj  # too few brackets to nest that deep, no digit run long enough for a 64-bit overflow
    problem = _scan(obj, MAX_JSON_DEPTH)
    if problem == "depth":
        where = _path_to(obj, lambda v, depth: depth > MAX_JSON_DEPTH)
        raise invalid(f"'{where}' nests JSON deeper than {MAX_JSON_DEPTH} levels", param=where)
    if problem == "int":
        where = _path_to(obj, lambda v, depth: type(v) is int and not _I64_MIN <= v <= _I64_MAX)
        raise invalid(f"'{where}' is an integer outside the 64-bit range", param=where)
    return obj


def loads_json(text: str | bytes) -> Any:
    """Client JSON inside a string (tool-call arguments, a tool result): parsed, or orjson.JSONDecodeError
    (a ValueError) when it is not JSON or nests deeper than MAX_JSON_DEPTH, so callers' "not JSON" path
    applies and nothing downstream recurses into it."""
    obj = orjson.loads(text)
    if too_deep(obj):
        raise orjson.JSONDecodeError(f"nested deeper than {MAX_JSON_DEPTH} levels", "", 0)
    return obj


_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_LONG_DIGITS = re.compile(rb"\d{19}")  # every integer outside the 64-bit range has 19 digits or more


def too_deep(obj: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if `obj` nests dicts/lists more than `limit` levels."""
    return _scan(obj, limit, ints=False) == "depth"


def _scan(obj: Any, limit: int, ints: bool = True) -> str | None:
    """ "depth" if `obj` nests deeper than `limit`, "int" if it holds an integer beyond 64 bits, else None.
    Iterative and allocation-light (a stack of containers), so a normal request costs microseconds."""
    if type(obj) is not dict and type(obj) is not list:
        return None
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return "depth"
        for v in node.values() if type(node) is dict else node:
            t = type(v)
            if t is dict or t is list:
                stack.append((v, depth + 1))
            elif t is int and ints and not _I64_MIN <= v <= _I64_MAX:
                return "int"
    return None


def _path_to(obj: Any, bad: Any) -> str:
    """The field path (`tools[0].function.parameters…`) of the first value for which bad(value, depth)
    holds; only run once a request is already refused. Long paths are cut after a few steps."""
    stack: list[tuple[Any, int, tuple[str | int, ...]]] = [(obj, 1, ())]
    while stack:
        node, depth, path = stack.pop()
        if bad(node, depth):
            break
        if type(node) is dict or type(node) is list:
            items = node.items() if type(node) is dict else enumerate(node)
            stack += [(v, depth + 1, (*path, k)) for k, v in reversed(list(items))]
    else:
        return ""
    text = ""
    for k in path[:6]:
        text += f"[{k}]" if isinstance(k, int) else f".{k}" if text else str(k)
    return text + ("…" if len(path) > 6 else "")


def field(
    obj: dict[str, Any],
    key: str,
    typ: type[T] | tuple[type, ...],
    path: str = "",
    *,
    required: bool = False,
    default: Any = None,
) -> Any:
    """`obj[key]` checked against `typ`; a clear 400 naming `path.key` otherwise. None counts as absent."""
    name = f"{path}.{key}" if path else key
    value = obj.get(key)
    if value is None:
        if required:
            raise invalid(f"missing required field '{name}'", param=name)
        return default
    return check(value, typ, name)


def check(value: Any, typ: type[T] | tuple[type, ...], name: str) -> Any:
    types = typ if isinstance(typ, tuple) else (typ,)
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok and float in types and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        want = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
        raise invalid(f"'{name}' must be {want}", param=name)
    return value


def whole_number(value: float | None, name: str) -> int | None:
    """An integer field read as a number, since clients may send it as a float (google-genai's topK: 3.0) -> int,
    or a clear 400 when it does not fit in 64 bits (int(1e19) would only fail later, encoding the upstream body)."""
    if value is None:
        return None
    if not -(2**63) <= value < 2**63:
        raise invalid(f"'{name}' is out of range", param=name)
    return int(value)


def new_id(prefix: str, n: int = 24) -> str:
    return prefix + secrets.token_hex(n // 2)


def now() -> int:
    return int(time.time())


def parse_data_url(url: str, name: str) -> tuple[bytes, str]:
    """`data:<media>;base64,<payload>` → (bytes, media type). Size-checked before decoding."""
    head, sep, payload = url.partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        raise invalid(f"'{name}' is not a base64 data URL", param=name)
    media = head[5:-7]
    if media and not _MEDIA_TYPE.match(media):
        raise invalid(f"'{name}' has an invalid media type", param=name)
    return decode_b64(payload, name), media or "application/octet-stream"


_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][\w.+-]*/[\w.+-]+( ?; ?[\w.+-]+=[\w.+-]+)*\Z")
_B64_SPACE = str.maketrans("", "", " \t\r\n")
_B64_URLSAFE = str.maketrans("-_", "+/")


def decode_b64(payload: str, name: str) -> bytes:
    """Standard or URL-safe base64 (pydantic-based SDKs send the latter), padding optional, line breaks
    ignored; anything else, or nothing, is a 400 rather than silently dropped bytes."""
    if len(payload) * 3 // 4 > MAX_INLINE_BYTES:
        raise invalid(f"'{name}' is larger than {MAX_INLINE_BYTES // (1024 * 1024)} MiB", param=name)
    text = payload.translate(_B64_SPACE).translate(_B64_URLSAFE).rstrip("=")
    if not text:
        raise invalid(f"'{name}' is empty", param=name)
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"'{name}' is not valid base64", param=name) from None


# A URL's authority: a bracketed IPv6 literal or a host name / IPv4 address, then an optional decimal port.
_NETLOC = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\[\]@:/\\%\s]+)(?::(\d{1,5}))?\Z")
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?\Z")


def check_http_url(url: str, name: str) -> tuple[SplitResult, str, int]:
    """A client's http(s) media URL → (parts, host, port), or a 400 naming `name`. Strict, so that no
    later parser (ours, aiohttp's, an upstream's) can read a different host or port out of it: no user
    info, no backslash or control characters, a decimal port in 1-65535, a well-formed IPv6 literal.
    The host is lower-case ASCII (IDNA for international names), IPv6 without brackets."""
    if len(url) > MAX_URL_CHARS:
        raise invalid(f"'{name}' is longer than {MAX_URL_CHARS} characters", param=name)
    if any(c <= " " or c in "\x7f\\" for c in url):
        raise invalid(f"'{name}' contains spaces, control characters or a backslash", param=name)
    try:
        parts = urlsplit(url)
    except ValueError:
        raise invalid(f"'{name}' is not a valid URL", param=name) from None
    if parts.scheme.lower() not in ("http", "https"):
        raise invalid(f"'{name}' must be an http(s) URL", param=name)
    if "@" in parts.netloc:
        raise invalid(f"'{name}' must not contain a user name or password", param=name)
    m = _NETLOC.match(parts.netloc)
    if m is None:
        raise invalid(f"'{name}' has an invalid host or port", param=name)
    host, port_text = m.group(1), m.group(2)
    port = int(port_text) if port_text else (443 if parts.scheme.lower() == "https" else 80)
    if not 0 < port < 65536:
        raise invalid(f"'{name}' has a port outside 1-65535", param=name)
    if host.startswith("["):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise invalid(f"'{name}' has an invalid IPv6 address", param=name) from None
        return parts, host.lower(), port
    try:
        host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise invalid(f"'{name}' has an invalid host name", param=name) from None
    if not _HOST_NAME.match(host):
        raise invalid(f"'{name}' has an invalid host name", param=name)
    return parts, host, port


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def data_url(data: bytes, media_type: str | None) -> str:
    return f"data:{media_type or 'application/octet-stream'};base64,{b64(data)}"


def sniff_image_type(data: bytes) -> str:
    """Media type from magic bytes, for protocols that send bare base64 (Ollama)."""
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"
