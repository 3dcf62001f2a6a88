"""Model names → ordered upstream targets.

A client's model name is an alias from the config (its targets in order, then its fallbacks' targets,
depth-first, each target once), or `provider/model` addressing a provider directly. Anything else is a
404 in the client's protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import Config
from .errors import not_found
from .protocols.base import ModelInfo


@dataclass(frozen=True, slots=True)
class Route:
    provider: str
    model: str


class Router:
    def __init__(self, cfg: Config) -> None:
        self._aliases = {m.name: m for m in cfg.models}
        self._providers = {p.name for p in cfg.providers}
        self._cache: dict[str, list[Route]] = {}

    def resolve(self, name: str) -> list[Route]:
        routes = self._cache.get(name)
        if routes is None:
            routes = self._resolve(name)
            self._cache[name] = routes
        return routes

    def _resolve(self, name: str) -> list[Route]:
        if name in self._aliases:
            routes: list[Route] = []
            self._walk(name, routes, set())
            return routes
        provider, sep, model = name.partition("/")
        if sep and provider in self._providers and model:
            return [Route(provider, model)]
        raise not_found(f"model '{name}' does not exist; GET /v1/models lists the models this gateway serves")

    def _walk(self, alias: str, out: list[Route], seen: set[str]) -> None:
        if alias in seen:  # fallback cycles are legal in config; each alias is visited once
            return
        seen.add(alias)
        m = self._aliases[alias]
        for t in m.targets:
            r = Route(t.provider, t.model)
            if r not in out:
                out.append(r)
        for fb in m.fallbacks:
            self._walk(fb, out, seen)

    def add(self, name: str, routes: list[Route]) -> None:
        """Names known only at run time (the local model's id once it is loaded)."""
        self._cache[name] = routes

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(id=name) for name in self._aliases]
