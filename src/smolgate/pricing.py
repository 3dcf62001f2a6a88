"""What a request cost, in USD: the maintained `genai-prices` table (or a config override) applied to the usage
of the request's last upstream attempt.

Canonical usage counts are inclusive: `input_tokens` includes cache reads and cache writes, `output_tokens`
includes reasoning. Each part is billed at its own price: cache reads at the cached-input price, cache writes at
the cache-write price, the rest of the prompt at the input price; reasoning at the output price (or the model's
own reasoning price where the table has one). A model with tiered prices (Gemini 2.5 Pro, Claude over 200k)
bills every token at the tier the prompt's size reaches, as the providers do. Cache writes kept an hour
(Anthropic's 1-hour TTL) have their own price.

The table lookup (model matching, conditional prices) runs once per (provider, model, quarter hour); the per-request
arithmetic is a handful of float operations, so the ledger can price every request.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from .config import Config, PriceOverride, ProviderConfig

if TYPE_CHECKING:
    from .canonical import Usage
    from .telemetry import RequestRecord

log = logging.getLogger("smolgate.pricing")

# The embedded engine is free; an Ollama host is too, unless `ledger.prices` names its model (a paid host).
FREE_PROTOCOLS = frozenset({"local", "ollama"})
# The table's provider for each upstream protocol, when the provider's base_url names none it knows.
TABLE_PROVIDER = {
    "openai": "openai",
    "openai-responses": "openai",
    "anthropic": "anthropic",
    "gemini": "google",
}
_PER = 1_000_000  # prices are per million tokens
# Prices are looked up per quarter hour: the table has dated price changes and time-of-day prices (DeepSeek's
# off-peak half price from 16:30 to 00:30 UTC), whose bounds fall on quarter hours.
_SLOT = 900


@dataclass(frozen=True, slots=True)
class Tiered:
    """A price that depends on the prompt's size: all tokens at the highest tier whose start the prompt passes."""

    base: float
    tiers: tuple[tuple[int, float], ...] = ()  # (start, price), ascending

    def at(self, prompt_tokens: int) -> float:
        price = self.base
        for start, p in self.tiers:
            if prompt_tokens > start:
                price = p
        return price


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens for one model; unset parts fall back to the input / output price."""

    input: Tiered
    output: Tiered
    cache_read: Tiered | None = None
    cache_write: Tiered | None = None
    cache_write_1h: Tiered | None = None  # writes kept an hour (Anthropic: 2× input, against 1.25× for 5 min)
    reasoning: Tiered | None = None

    def cost(self, u: Usage) -> float:
        n = u.input_tokens
        cached = min(u.cached_tokens, n)
        written = min(u.cache_creation_tokens, n - cached)
        reasoning = min(u.reasoning_tokens, u.output_tokens)
        inp = self.input.at(n)
        out = self.output.at(n)
        usd = (n - cached - written) * inp
        usd += cached * (self.cache_read.at(n) if self.cache_read else inp)
        write = self.cache_write.at(n) if self.cache_write else inp
        hour = min(u.cache_creation_1h_tokens, written)
        usd += (written - hour) * write + hour * (self.cache_write_1h.at(n) if self.cache_write_1h else write)
        if self.reasoning is not None:
            usd += reasoning * self.reasoning.at(n) + (u.output_tokens - reasoning) * out
        else:
            usd += u.output_tokens * out
        return usd / _PER

    @classmethod
    def from_override(cls, o: PriceOverride) -> Price:
        return cls(
            input=Tiered(o.input),
            output=Tiered(o.output),
            cache_read=Tiered(o.cached_input) if o.cached_input is not None else None,
            cache_write=Tiered(o.cache_write) if o.cache_write is not None else None,
        )


FREE = Price(Tiered(0.0), Tiered(0.0))  # the local engine and Ollama


def _tiered(value: object) -> Tiered | None:
    """A genai-prices price (a Decimal or TieredPrices) as floats."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return Tiered(float(value))
    base, tiers = getattr(value, "base", None), getattr(value, "tiers", None)
    if isinstance(base, Decimal) and isinstance(tiers, list):
        return Tiered(float(base), tuple(sorted((int(t.start), float(t.price)) for t in tiers)))
    return None


def table_price(model: str, provider_id: str | None, api_url: str | None, when: datetime) -> Price | None:
    """The maintained table's price for `model` (None when the table does not know it)."""
    from genai_prices import data_snapshot  # a large table: loaded on the first priced request only

    snap = data_snapshot.get_snapshot()
    found = None
    if (
        api_url
    ):  # an OpenAI-compatible host the table knows (DeepSeek, Groq, OpenRouter…) prices its own models
        try:
            found = snap.find_provider_model(model, None, None, api_url)
        except LookupError:
            found = None
    if found is None and provider_id is not None:
        try:
            found = snap.find_provider_model(model, None, provider_id, None)
        except LookupError:
            return None
    if found is None:
        return None
    prices = found[1].get_prices(when)
    inp, out = _tiered(prices.input_mtok), _tiered(prices.output_mtok)
    if inp is None and out is None:
        return None  # priced per request or per character only: not a token model
    return Price(
        input=inp or Tiered(0.0),
        output=out or Tiered(0.0),
        cache_read=_tiered(prices.cache_read_mtok),
        cache_write=_tiered(prices.cache_write_mtok),
        cache_write_1h=_tiered(prices.cache_write_1h_mtok),
        reasoning=_tiered(prices.output_reasoning_mtok),
    )


class Pricing:
    """`cost_of(record)` for the ledger; prices cached per (provider, model, quarter hour)."""

    def __init__(self, cfg: Config) -> None:
        self._overrides = {m: Price.from_override(o) for m, o in cfg.ledger.prices.items()}
        self._urls = {p.name: p.base_url for p in cfg.providers if isinstance(p, ProviderConfig)}
        protocols = {p.name: p.protocol for p in cfg.providers}
        self._targets = [
            (t.provider, protocols[t.provider], t.model)
            for m in cfg.models
            for t in m.targets
            if t.provider in protocols and protocols[t.provider] != "local"
        ]
        self._cache: dict[tuple[str, str, str, int], Price | None] = {}
        self.unknown_models: set[str] = set()  # models priced at 0 because the table does not know them
        self.unpriced = 0  # requests priced at 0 for that reason

    def warm(self) -> list[str]:
        """Price every configured target now, off the event loop (Runtime.start runs this in a thread): loading
        the table takes ~0.3 s, which must not stall the first request. Models it cannot price are logged at
        info, once, and returned."""
        try:
            unknown = [m for p, proto, m in self._targets if self.price(p, proto, m, quiet=True) is None]
        except Exception:  # runs unwatched in a thread: a broken table is logged, then each request retries
            log.exception("cannot load the price table")
            return []
        for model in dict.fromkeys(unknown):
            log.info(
                "no price for model %r: its requests are recorded at $0 (set ledger.prices to price it)",
                model,
            )
        return unknown

    def cost_of(self, rec: RequestRecord) -> float:
        a, usage = rec.last, rec.usage
        if a is None or usage is None or a.upstream_protocol == "local":
            return 0.0
        price = self.price(a.provider, a.upstream_protocol, a.upstream_model, rec.ts)
        if price is None:
            self.unpriced += 1
            return 0.0
        return price.cost(usage)

    def price(
        self, provider: str, protocol: str, model: str, ts: float | None = None, quiet: bool = False
    ) -> Price | None:
        """The price of `model` reached through `provider` (a configured provider's name), or None."""
        override = self._overrides.get(model)
        if override is not None:
            return override
        if protocol in FREE_PROTOCOLS:
            return FREE
        slot = int((time.time() if ts is None else ts) // _SLOT)
        key = (provider, protocol, model, slot)
        try:
            return self._cache[key]
        except KeyError:
            pass
        if len(self._cache) > 10_000:  # a bound: model names come from config and routes, but time passes
            self._cache.clear()
        ref = model.removeprefix("models/")  # Gemini's resource name → the table's model name
        price = table_price(ref, TABLE_PROVIDER.get(protocol), self._urls.get(provider), _utc(slot))
        if price is None and model not in self.unknown_models:
            self.unknown_models.add(model)
            if not quiet:
                log.debug("no price for model %r (provider %r): its requests cost 0", model, provider)
        self._cache[key] = price
        return price


def _utc(slot: int) -> datetime:
    return datetime.fromtimestamp(slot * _SLOT, UTC)
