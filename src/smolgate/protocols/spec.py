"""What a wire protocol declares about itself besides its codec.

Each protocol module ends with one `ProtocolSpec`: its codec, the paths its clients call (and what each
path does), how its clients present a key and how their requests can be told apart, its model listing and
token counting, and — when the gateway can call it upstream — the auth header and fixed headers a provider
of it needs. The registry (`protocols/__init__.py`) lists the specs; the server builds its route table from
them and the HTTP provider its headers, so adding a protocol is one module and one line in the registry.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..canonical import Request
from .base import Codec, ModelInfo, RequestContext


class RouteKind(enum.Enum):
    """What a client route does; the server has one HTTP-only handler per kind."""

    CHAT = "chat"  # decode with the route's codec → dispatch → encode (whole or streamed)
    COUNT_TOKENS = "count-tokens"  # the protocol's count-tokens request → its count reply
    LIST_MODELS = "list-models"  # the models the gateway serves, in the protocol's listing shape
    GET_MODEL = "get-model"  # one model, named by the path's `{id}`
    SHOW_MODEL = "show-model"  # one model, named in the JSON body (`model`, or Ollama's older `name`)
    FIXED = "fixed"  # a constant answer (a version, a liveness probe)
    # The stateful OpenAI Responses API (server/responses_api.py: the response store).
    RESPONSES_CREATE = "responses.create"
    RESPONSES_GET = "responses.get"
    RESPONSES_DELETE = "responses.delete"
    RESPONSES_INPUT_ITEMS = "responses.input-items"


# A path ending in `:{method}` (Google's custom methods): what each method name does.
CustomMethods = Mapping[str, RouteKind]


@dataclass(frozen=True, slots=True)
class ClientRoute:
    """One path a protocol's clients call, exactly as the real API spells it."""

    method: str
    path: str  # `{name}` matches one segment, `{name:path}` the rest of the path
    kind: RouteKind | CustomMethods
    codec: Codec | None = None  # CHAT through a codec other than the protocol's own (Ollama's /api/generate)
    body: bytes = b""  # FIXED: the answer …
    media_type: str = "application/json"  # … and its content type


@dataclass(frozen=True, slots=True)
class CountTokens:
    decode: Callable[[bytes, RequestContext], Request]
    encode: Callable[[int], bytes]


@dataclass(frozen=True, slots=True)
class Upstream:
    """What a provider speaking this protocol sends besides the codec's request."""

    auth: Callable[[str], dict[str, str]]  # an account's key → its auth header(s)
    fixed_headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KeyPresentation:
    """Where a protocol's clients put their key: each SDK's own style, and no other header or query name.

    Read in this order: `Authorization: Bearer`, then `headers`, then `query`.
    """

    bearer: bool = True  # `Authorization: Bearer <key>`
    headers: tuple[str, ...] = ()  # headers carrying the bare key (Anthropic's `x-api-key`)
    query: tuple[str, ...] = ()  # query names carrying it (a URL ends up in logs: only where an SDK does)

    def union(self, other: KeyPresentation) -> KeyPresentation:
        """Every style either accepts (a path several protocols share answers all their clients)."""
        return KeyPresentation(
            self.bearer or other.bearer,
            tuple(dict.fromkeys((*self.headers, *other.headers))),
            tuple(dict.fromkeys((*self.query, *other.query))),
        )


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@dataclass(frozen=True, slots=True)
class ProtocolSpec:
    name: str
    title: str  # as people write it, for messages ("Gemini")
    codec: Codec
    routes: tuple[ClientRoute, ...]
    upstream: Upstream | None = None  # None: clients may speak it, providers may not
    client_keys: KeyPresentation = KeyPresentation()  # how its clients present a key (bearer by default)
    # Request headers / query names only this protocol's SDKs send: on a path several protocols share
    # (`GET /v1/models`), they pick the protocol whose shape the answer takes.
    marker_headers: tuple[str, ...] = ()
    marker_query: tuple[str, ...] = ()
    # Paths under these prefixes that match no route still get this protocol's error shape.
    error_prefixes: tuple[str, ...] = ()
    list_models: Callable[[list[ModelInfo]], bytes] | None = None
    describe_model: Callable[[ModelInfo], bytes] | None = None
    count_tokens: CountTokens | None = None

    def marks(self, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
        """Whether a request carries this protocol's markers."""
        return any(h in headers for h in self.marker_headers) or any(q in query for q in self.marker_query)
