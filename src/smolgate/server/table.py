"""The route table: (method, path pattern) → an HTTP-only handler and the error shape of its path.

Built once from the protocols' specs (routes.py) and given to the app; matching is a dict lookup for fixed
paths and a short list of patterns for the rest (`{name}` is one segment, `{name:path}` the remainder).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..protocols.base import Codec
from ..protocols.spec import KeyPresentation
from .asgi import HttpRequest, Receive, Send

if TYPE_CHECKING:
    from .runtime import Runtime

Handler = Callable[["Runtime", HttpRequest, dict[str, str], Send, Receive], Awaitable[None]]

_FIELD = re.compile(r"\{(\w+)(:path)?\}")


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str  # the pattern, as declared
    handler: Handler
    errors: Codec  # whose shape an error answered on this path takes
    keys: KeyPresentation  # where its clients put their key (every claimant's styles, on a shared path)


def compile_path(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + _FIELD.sub(lambda m: f"(?P<{m[1]}>{'.+' if m[2] else '[^/]+'})", pattern) + "$")


class RouteTable:
    def __init__(self, endpoints: Iterable[Endpoint], error_prefixes: Mapping[str, Codec]) -> None:
        """`error_prefixes`: the error shape of paths that match no route, by longest matching prefix ("/"
        must be among them: the default)."""
        self._all = tuple(endpoints)
        self._exact: dict[tuple[str, str], Endpoint] = {}
        self._path_errors: dict[str, Codec] = {}  # a fixed path's shape, whatever the method
        patterns: list[tuple[str, re.Pattern[str], Endpoint]] = []
        seen: set[tuple[str, str]] = set()
        for e in self._all:
            if (e.method, e.path) in seen:
                raise ValueError(f"two routes for {e.method} {e.path}")
            seen.add((e.method, e.path))
            if "{" in e.path:
                patterns.append((e.method, compile_path(e.path), e))
            else:
                self._exact[(e.method, e.path)] = e
                self._path_errors.setdefault(e.path, e.errors)
        # A catch-all (`{…:path}`) is tried after every other pattern, whatever the declaration order.
        self._patterns = sorted(patterns, key=lambda p: ":path}" in p[2].path)
        self._prefixes = sorted(error_prefixes.items(), key=lambda kv: -len(kv[0]))
        if "/" not in error_prefixes:
            raise ValueError("no default error shape (the prefix '/')")
        self.default_errors = error_prefixes["/"]

    def __iter__(self) -> Iterator[Endpoint]:
        return iter(self._all)

    def match(self, method: str, path: str) -> tuple[Endpoint | None, dict[str, str]]:
        hit = self._exact.get((method, path))
        if hit is not None:
            return hit, {}
        for m, rx, endpoint in self._patterns:
            if m == method:
                found = rx.match(path)
                if found:
                    return endpoint, found.groupdict()
        return None, {}

    def errors_for(self, path: str) -> Codec:
        """The error shape of any request to `path`, whatever its method (also before a route is known)."""
        fixed = self._path_errors.get(path)
        if fixed is not None:
            return fixed
        for _, rx, endpoint in self._patterns:
            if rx.match(path):
                return endpoint.errors
        return next(c for prefix, c in self._prefixes if path.startswith(prefix))
