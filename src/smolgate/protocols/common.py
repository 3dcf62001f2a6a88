"""Small helpers every protocol module shares: JSON, validation with field paths, ids, data URLs."""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from typing import Any, TypeVar

import orjson

from ..errors import invalid

T = TypeVar("T")

MAX_INLINE_BYTES = 20 * 1024 * 1024  # per decoded image/video; the body limit bounds the total

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
               dict: "an object", list: "an array"}


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def loads_body(body: bytes) -> dict[str, Any]:
    """Parse a request body that must be a JSON object."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"request body is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise invalid("request body must be a JSON object")
    return obj


def field(obj: dict[str, Any], key: str, typ: type[T] | tuple[type, ...], path: str = "",
          *, required: bool = False, default: Any = None) -> Any:
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
    return decode_b64(payload, name), head[5:-7] or "application/octet-stream"


def decode_b64(payload: str, name: str) -> bytes:
    if len(payload) * 3 // 4 > MAX_INLINE_BYTES:
        raise invalid(f"'{name}' is larger than {MAX_INLINE_BYTES // (1024 * 1024)} MiB", param=name)
    try:
        return base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError):
        raise invalid(f"'{name}' is not valid base64", param=name) from None


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
