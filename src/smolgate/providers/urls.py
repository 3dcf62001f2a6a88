"""Upstream request targets and headers: one builder, one gate.

Everything a client can influence (a model name reached through `provider/model`, a beta header) ends up
in an HTTP/1.1 request line or header. `path()` percent-encodes every value it puts into a path, so a value
is always exactly one segment: `/`, `?`, `#`, `%`, `:`, spaces and control bytes are escaped, and a value
made only of dots is escaped too (no `..` traversal). `check_target()` and `check_header()` are the last
gate before bytes go on the wire (both transports call them): a CR, LF, space, control or non-ASCII byte
there would let a value start a new header or a new request on a keep-alive connection.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from urllib.parse import quote


class UnsafeRequest(ValueError):
    """A request target or header that cannot be written to the wire as it is (the message names no value)."""


_FIELDS = re.compile(r"\{(\w+)\}")


def segment(value: str) -> str:
    """One path segment: everything but RFC 3986 unreserved characters percent-encoded (UTF-8)."""
    if not value:
        raise UnsafeRequest("an empty path segment")
    out = quote(value, safe="")
    if out.strip(".") == "":  # "." and ".." would be resolved as relative segments by some servers/proxies
        out = "%2E" * len(out)
    return out


def path(template: str, **values: str) -> str:
    """`/v1beta/models/{model}:{method}` with each `{field}` replaced by its percent-encoded value."""
    return _FIELDS.sub(lambda m: segment(values[m.group(1)]), template)


# A field name is an RFC 9110 token. Framing and connection headers are the client's (ours) to write; a
# configured or derived value never may.
_TOKEN_OK = re.compile("[" + re.escape("!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits) + "]+")
RESERVED = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "expect",
        "proxy-connection",
    }
)
_NAMES_OK: set[str] = set()  # names already checked (a handful: they come from code and config, not clients)


def check_target(target: str) -> str:
    """A request target: printable ASCII without spaces (RFC 9112 origin-form; '%' escapes everything else)."""
    if not (target.isascii() and target.isprintable() and " " not in target and target.startswith("/")):
        raise UnsafeRequest("the upstream request path contains characters not allowed in HTTP")
    return target


def check_header(name: str, value: str) -> None:
    """A value is printable ASCII (spaces allowed; no CR, LF, NUL, tab or other control byte)."""
    if name not in _NAMES_OK:
        if not _TOKEN_OK.fullmatch(name):
            raise UnsafeRequest("an upstream header name contains characters not allowed in HTTP")
        if name.lower() in RESERVED:
            raise UnsafeRequest(f"the upstream header '{name}' is set by the gateway itself")
        if len(_NAMES_OK) < 1024:
            _NAMES_OK.add(name)
    if not (value.isascii() and value.isprintable()):
        raise UnsafeRequest(f"the value of upstream header '{name}' contains characters not allowed in HTTP")


def check_headers(headers: Mapping[str, str]) -> None:
    for name, value in headers.items():
        check_header(name, value)
