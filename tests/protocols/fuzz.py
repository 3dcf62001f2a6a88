"""Shared pieces of the request-decoder fuzz tests: JSON values, mutations of a valid request, the check."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from smolgate.canonical import Request
from smolgate.errors import GatewayError
from smolgate.protocols.base import Codec, RequestContext


def json_values() -> st.SearchStrategy[Any]:
    return st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False)
                        | st.text(max_size=5),
                        lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids,
                                                                                  max_size=3), max_leaves=8)


def mutate(obj: Any, path: list[int], value: Any) -> Any:
    """Replace the node at `path` (list of keys/indices, possibly stopping early) by `value`."""
    if not path or not isinstance(obj, (dict, list)) or not obj:
        return value
    key = path[0] % len(obj) if isinstance(obj, list) else sorted(obj)[path[0] % len(obj)]
    copy = list(obj) if isinstance(obj, list) else dict(obj)
    copy[key] = mutate(copy[key], path[1:], value)
    return copy


def assert_request_or_4xx(codec: Codec, body: bytes, ctx: RequestContext) -> None:
    """What a decoder may do with any input: return a Request, or raise a client error — nothing else."""
    try:
        assert isinstance(codec.decode_request(body, ctx), Request)
    except GatewayError as e:
        assert 400 <= e.status < 500
