"""The offline fallback: when every target and fallback of an alias failed on the upstream side, answer from the
local model (issue #19 §3).

Which failures: those the dispatcher would retry elsewhere (`GatewayError.retryable`) — connection errors,
5xx, timeouts (408/504), the upstream's 429, and our upstream keys rejected (401/403 from the provider). All say
"the cloud cannot answer now", none says the client asked wrongly. A 429 is included because it is the
provider's capacity, not the client's doing: the client's own limits (key rpm, budgets) are refused before the
dispatcher and never fall back; neither does a request that waited `queue_timeout` for a free slot under our
own accounts' concurrency caps (the upstream is fine: a 429 with Retry-After is the better answer). Client
errors (400, 404, 413, context too long) never fall back: the local model would only hide the mistake. A stream that fails after its first event cannot fall back (the client has
the start of another model's answer); it ends with the protocol's in-stream error as before.

Which model: `offline_fallback` per alias, else the global one: a local provider's name, `off`, or `auto` (the
first local provider, i.e. the embedded model when one is configured). An alias whose own targets include that
provider already tried it, so it gets no second go.
"""

from __future__ import annotations

from ..config import Config, LocalProviderConfig
from ..errors import ErrorKind, GatewayError
from ..routing import Route


def _busy(error: GatewayError) -> bool:
    """Our own accounts' caps were full for the whole queue wait (pool/accounts.py `_busy`): the upstream is
    fine and a 429 with Retry-After serves the client better than a small model's answer."""
    return (
        error.kind is ErrorKind.RATE_LIMITED
        and error.upstream_status is None
        and " are busy " in error.message
    )


def _resolve(setting: str, local: list[str]) -> str | None:
    if setting == "off":
        return None
    if setting == "auto":
        return local[0] if local else None
    return setting  # a local provider's name (config.py checked it)


class OfflineFallback:
    def __init__(self, cfg: Config) -> None:
        local = [p.name for p in cfg.providers if isinstance(p, LocalProviderConfig)]
        self._default = _resolve(cfg.offline_fallback, local)
        self._by_alias = {
            m.name: _resolve(m.offline_fallback, local) if m.offline_fallback is not None else self._default
            for m in cfg.models
        }

    def route(self, alias: str, error: GatewayError, tried: list[Route]) -> Route | None:
        """Where to send a request whose routes `tried` all failed with `error` last; None: nowhere."""
        if not error.retryable or _busy(error):
            return None
        provider = self._by_alias.get(alias, self._default)
        if provider is None or any(r.provider == provider for r in tried):
            return None
        return Route(provider, "default")
