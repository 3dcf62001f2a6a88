"""Model names → ordered upstream targets, and the one check every client-supplied model name passes.

A client's model name is an alias from the config (its targets in order, then its fallbacks' targets,
depth-first, each target once), or `provider/model` addressing a provider directly. Anything else is a
404 in the client's protocol.

Client model names reach upstream URLs (Gemini's `/v1beta/models/{model}:{method}`), request bodies and
logs, so `check_model_name` bounds their length and charset once, right after a request is decoded: real
names (`gpt-4o-mini`, `Qwen/Qwen3-8B`, `hf.co/user/repo:Q4_K_M`, `@cf/meta/llama-3`, `gpt-4o@2024-08-06`,
`accounts/fireworks/models/x`) pass; controls, whitespace, `?#%\\`, empty and `.`/`..` path segments do not.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass

from .config import Config
from .errors import GatewayError, invalid, not_found, shown
from .protocols.base import ModelInfo

MAX_MODEL_NAME = 256
_NAME = re.compile(r"[A-Za-z0-9._:@+~-]+(?:/[A-Za-z0-9._:@+~-]+)*")
_DOT_SEGMENT = re.compile(r"(?:^|/)\.{1,2}(?:/|$)")
_DIRECT_CACHE = 256  # resolved `provider/model` names kept (a client chooses these: bounded, LRU)


@dataclass(frozen=True, slots=True)
class Route:
    provider: str
    model: str


def valid_model_name(name: object) -> bool:
    return (
        isinstance(name, str)
        and 0 < len(name) <= MAX_MODEL_NAME
        and _NAME.fullmatch(name) is not None
        and _DOT_SEGMENT.search(name) is None
    )


class Router:
    def __init__(self, cfg: Config) -> None:
        self._aliases = {m.name: m for m in cfg.models}
        self._providers = {p.name for p in cfg.providers}
        # Config aliases and run-time names: a fixed set, resolved once (O(1) lookups, never evicted).
        self._known: dict[str, list[Route]] = {}
        for name in self._aliases:
            routes: list[Route] = []
            self._walk(name, routes, set())
            self._known[name] = routes
        self._direct: OrderedDict[str, list[Route]] = OrderedDict()

    def check_name(self, name: object, param: str = "model") -> str:
        """`name` if it may be routed: a configured alias as written, else a name of the safe shape; a 400
        naming `param` otherwise (the name itself is not echoed: it may be huge or hold control bytes)."""
        if isinstance(name, str) and (name in self._known or valid_model_name(name)):
            return name
        raise invalid(
            f"'{param}' is not a valid model name: up to {MAX_MODEL_NAME} characters of letters, "
            "digits and . _ - : / @ + ~, without empty, '.' or '..' path segments",
            param=param,
        )

    def resolve(self, name: str) -> list[Route]:
        routes = self._known.get(name)
        if routes is not None:
            return routes
        routes = self._direct.get(name)
        if routes is not None:
            self._direct.move_to_end(name)
            return routes
        routes = self._resolve_direct(name)
        self._direct[name] = routes
        if len(self._direct) > _DIRECT_CACHE:
            self._direct.popitem(last=False)
        return routes

    def _resolve_direct(self, name: str) -> list[Route]:
        provider, sep, model = name.partition("/")
        if sep and provider in self._providers and model and len(name) <= MAX_MODEL_NAME:
            return [Route(provider, model)]
        raise unknown_model(name)

    def _walk(self, alias: str, out: list[Route], seen: set[str]) -> None:
        if alias in seen:  # fallback cycles are legal in config; each alias is visited once
            return
        seen.add(alias)
        m = self._aliases.get(alias)
        if m is None:  # (parse_config refuses unknown fallbacks; a Config built in code may not)
            return
        for t in m.targets:
            r = Route(t.provider, f"{t.model}+{t.adapter}" if t.adapter else t.model)
            if r not in out:
                out.append(r)
        for fb in m.fallbacks:
            self._walk(fb, out, seen)

    def add(self, name: str, routes: list[Route]) -> None:
        """Names known only at run time (the local model's id once it is loaded)."""
        self._known[name] = routes

    def is_known(self, name: str) -> bool:
        """A configured alias or a run-time name (not a `provider/model` the client made up)."""
        return name in self._known

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(id=name) for name in self._aliases]


def unknown_model(name: str) -> GatewayError:
    """The 404 for a model name this gateway does not serve (or does not serve to this key)."""
    return not_found(
        f"model '{shown(name, '(the requested name)')}' does not exist; "
        "GET /v1/models lists the models this gateway serves"
    )
