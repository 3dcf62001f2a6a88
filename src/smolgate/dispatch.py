"""The attempt loop: route → pick an account → call → retry elsewhere on failure.

Order of attempts: the other accounts of a target's provider, then the next target, then the alias's
fallbacks — bounded by an attempt budget and a deadline. An attempt is only retried while nothing has
reached the client; once the first event is out, a failure ends the stream with a `StreamError` (the
client's codec renders its in-stream error form). Client-fault errors (400, 404) are never retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import msgspec

from . import caching, forced_tools, stops
from .canonical import (
    Block,
    Event,
    Image,
    MessageDelta,
    MessageStart,
    Request,
    Response,
    StreamError,
    ToolResult,
    Video,
)
from .config import Config
from .errors import ErrorKind, GatewayError, context_overflow, overflow_from_message
from .fetch import MAX_PARALLEL, MediaBudget, fetch_media, new_session
from .policies.cache import ResponseCache
from .policies.offline import OfflineFallback
from .policies.privacy import Privacy
from .policies.vision_bridge import VisionBridge
from .pool import Lease, Pools
from .providers.base import Attempt, Provider
from .reasoning import ReasoningPolicy
from .routing import Route, Router
from .secret import reveal
from .signatures import Signatures, SignatureStore
from .telemetry import RequestRecord

log = logging.getLogger("smolgate.dispatch")

T = TypeVar("T")


def estimate_tokens(req: Request) -> int:
    """A cheap prompt-size estimate for tpm accounting (≈ 4 characters per token)."""
    chars = sum(len(t.text) for t in req.system)
    for m in req.messages:
        for b in m.content:
            text = getattr(b, "text", None) or getattr(b, "arguments", None)
            if isinstance(text, str):
                chars += len(text)
    return chars // 4 + 1


def _before_output(ev: StreamError) -> GatewayError:
    """An upstream's error event before any output. "Prompt too long" is about the client's request: a 400 in
    each protocol's own form, not retried; anything else is the upstream's failure and may be retried."""
    overflow = overflow_from_message(ev.message)
    if overflow is not None:
        return context_overflow(overflow.prompt_tokens, overflow.limit, overflow.max_tokens, ev.message)
    return GatewayError(ErrorKind.UPSTREAM, ev.message)


class Dispatcher:
    def __init__(self, cfg: Config, router: Router, providers: dict[str, Provider], pools: Pools) -> None:
        self.cfg = cfg
        self.router = router
        self.providers = providers
        self.pools = pools
        self.reasoning = ReasoningPolicy(
            {
                (m.name, t.provider, t.model): t.reasoning
                for m in cfg.models
                for t in m.targets
                if isinstance(t.reasoning, bool)
            }
        )
        self.privacy = Privacy(cfg)
        self._auto_cache = {m.name for m in cfg.models if m.prompt_caching == "auto"}
        self._anthropic = {p.name for p in cfg.providers if p.protocol == "anthropic"}
        self.signatures = Signatures(
            {p.name: p.protocol for p in cfg.providers},
            SignatureStore(redis_url=cfg.state.reveal() if cfg.state else None),
        )
        self.cache = ResponseCache(cfg, self.privacy.policy)
        self.offline = OfflineFallback(cfg)
        self.vision = VisionBridge(cfg, providers, lambda r, p: self._prepare(r, p, {}))

    # ------------------------------------------------------------------ public API

    async def complete(
        self, req: Request, rec: RequestRecord | None = None, cache_control: str | None = None
    ) -> Response:
        """The answer; `cache_control`: the client's x-smolgate-cache header (policies/cache.py)."""
        return await self.cache.complete(self._complete, req, rec, cache_control)

    def stream(
        self, req: Request, rec: RequestRecord | None = None, cache_control: str | None = None
    ) -> AsyncIterator[Event]:
        """Events for the client. Raises GatewayError before the first event; never after it."""
        return self.cache.stream(self._stream, req, rec, cache_control)

    async def _complete(self, req: Request, rec: RequestRecord | None = None) -> Response:
        plan = self.privacy.plan(req, rec)
        req = plan.request

        async def call(provider: Provider, route: Route, lease: Lease, sent: Request) -> Response:
            key = reveal(lease.account.api_key)
            forced = forced_tools.applies(req, provider.supports_tool_choice)
            resp, status, headers = await self._send(
                lambda r: provider.complete(forced_tools.constrain(r) if forced else r, route.model, key),
                sent,
                route,
            )
            lease.record(status=status, headers=headers, tokens=resp.usage.total_tokens)
            if req.stop and not provider.supports_stop:
                resp = stops.apply_to_response(resp, req.stop)
            if forced:
                resp = forced_tools.apply_to_response(resp, req)
            await self.signatures.record(req, resp.content, route.provider)
            return resp

        req_for: dict[str, Request] = {}
        resp = await self._attempts(req, req_for, call, rec=rec)
        if rec is not None:
            rec.usage = resp.usage
        return plan.response(resp)

    async def _stream(self, req: Request, rec: RequestRecord | None = None) -> AsyncIterator[Event]:
        plan = self.privacy.plan(req, rec)
        req = plan.request
        req_for: dict[str, Request] = {}

        async def call(
            provider: Provider, route: Route, lease: Lease, sent: Request
        ) -> tuple[Attempt, AsyncIterator[Event], Event, Lease]:
            key = reveal(lease.account.api_key)
            forced = forced_tools.applies(req, provider.supports_tool_choice)
            attempt = await self._send(
                lambda r: provider.open(forced_tools.constrain(r) if forced else r, route.model, key),
                sent,
                route,
            )
            lease.record(status=attempt.status, headers=attempt.headers)
            it = self.signatures.watch(attempt.events(), req, route.provider).__aiter__()
            if req.stop and not provider.supports_stop:
                it = stops.apply_to_stream(it, req.stop).__aiter__()
            if forced:
                it = forced_tools.apply_to_stream(it, req).__aiter__()
            it = plan.stream(it).__aiter__()
            try:
                first = await it.__anext__()
            except StopAsyncIteration:
                await attempt.aclose()
                raise GatewayError(
                    ErrorKind.UPSTREAM, f"provider '{route.provider}' sent an empty stream"
                ) from None
            except BaseException:
                await attempt.aclose()
                raise
            if isinstance(first, StreamError):  # failed before anything reached the client
                await attempt.aclose()
                raise _before_output(first)
            return attempt, it, first, lease  # the lease stays held until the stream ends

        attempt, it, first, lease = await self._attempts(req, req_for, call, keep_lease=True, rec=rec)
        if rec is not None:
            rec.first_output()
            if isinstance(first, MessageStart) and first.usage is not None:
                rec.usage = first.usage  # prompt-side usage told early (Anthropic): kept if the client leaves
        try:
            yield first
            async for ev in it:
                if isinstance(ev, MessageDelta) and ev.usage is not None:  # real usage for tpm windows
                    lease.record(status=attempt.status, tokens=ev.usage.total_tokens)
                    if rec is not None:
                        rec.usage = ev.usage
                elif isinstance(ev, StreamError) and rec is not None:
                    rec.error_kind = ev.kind.value
                yield ev
        except GatewayError as exc:
            lease.record(error=exc.kind)
            if rec is not None:
                rec.error_kind = exc.kind.value
            yield StreamError(kind=exc.kind, message=exc.message)
        finally:
            await attempt.aclose()
            await lease.release()

    async def count_tokens(self, req: Request) -> int:
        req = self.privacy.plan(req).request
        route = self.privacy.routes(req, self.router.resolve(req.model))[0]
        provider = self.providers[route.provider]
        exact = await provider.count_tokens(req, route.model, None)
        return exact if exact is not None else estimate_tokens(req)

    async def _send(self, send: Callable[[Request], Awaitable[T]], req: Request, route: Route) -> T:
        """One upstream call with per-target shaping: signed reasoning state put back, prompt-cache
        breakpoints, the reasoning policy."""
        req = await self.signatures.restore(req, route.provider, route.model)
        if req.model in self._auto_cache and route.provider in self._anthropic:
            req = caching.inject(req)
        return await self.reasoning.call(send, req, route.provider, route.model)

    # ------------------------------------------------------------------ the loop

    async def _attempts(
        self,
        req: Request,
        req_for: dict[str, Request],
        call: Callable[[Provider, Route, Lease, Request], Awaitable[T]],
        keep_lease: bool = False,
        rec: RequestRecord | None = None,
        offline: Route | None = None,
    ) -> T:
        routes = (
            [offline] if offline is not None else self.privacy.routes(req, self.router.resolve(req.model))
        )
        budget = self.cfg.retry.attempts
        deadline = time.monotonic() + self.cfg.retry.deadline
        tokens = estimate_tokens(req)
        last: GatewayError | None = None
        bridge = self.vision.begin(req, deadline)
        for route in routes:
            provider = self.providers[route.provider]
            pool = self.pools.get(route.provider)
            if route.provider not in req_for:
                req_for[route.provider] = await self._prepare(req, provider, req_for)
            tried: set[str] = set()
            while budget > 0 and time.monotonic() < deadline:
                try:  # images for a target that cannot see become text, before an account is leased
                    sent = await bridge.shape(req_for[route.provider], route)
                except GatewayError as exc:  # never sent without them: a target that can see may follow
                    last = exc
                    break
                try:
                    lease = await pool.acquire(tokens=tokens, exclude=frozenset(tried), deadline=deadline)
                except GatewayError as exc:  # nothing usable here: next target
                    last = last or exc  # an upstream's own failure explains more than "no account left"
                    break
                budget -= 1
                name = lease.account.name
                if rec is not None:
                    rec.begin_attempt(route.provider, name, route.model, provider.protocol)
                bridge.note(rec, sent)
                try:
                    result = await call(provider, route, lease, sent)
                except GatewayError as exc:
                    if rec is not None:
                        rec.end_attempt(exc.upstream_status, exc.kind.value)
                    if exc.upstream_status is not None:
                        lease.record(status=exc.upstream_status, headers=exc.upstream_headers)
                    else:
                        lease.record(error=exc.kind)
                    await lease.release()
                    if self.vision.learn(exc, route, sent):  # it refused images: again, through the bridge
                        last = exc
                        continue
                    if not exc.retryable:
                        raise
                    log.warning(
                        "attempt failed: provider=%s account=%s kind=%s status=%s",
                        route.provider,
                        name,
                        exc.kind.value,
                        exc.upstream_status,
                    )
                    last = exc
                    tried.add(name or "")
                    continue
                except BaseException:
                    await lease.release()
                    raise
                if not keep_lease:
                    await lease.release()
                return result
        if last is None:
            last = GatewayError(
                ErrorKind.OVERLOADED, "no upstream attempt could be made within the retry budget"
            )
        if offline is None and (fb := self.offline.route(req.model, last, routes)) is not None:
            return await self._offline(req, req_for, call, keep_lease, rec, fb, last)
        raise last

    async def _offline(
        self,
        req: Request,
        req_for: dict[str, Request],
        call: Callable[[Provider, Route, Lease, Request], Awaitable[T]],
        keep_lease: bool,
        rec: RequestRecord | None,
        fb: Route,
        cause: GatewayError,
    ) -> T:
        """Every route failed upstream-side: the local model answers (policies/offline.py), or the upstream's
        failure stands."""
        log.warning(
            "every target of '%s' failed (%s): answering from '%s'", req.model, cause.kind.value, fb.provider
        )
        try:
            result = await self._attempts(req, req_for, call, keep_lease, rec, offline=fb)
        except GatewayError as exc:
            log.warning("offline fallback '%s' failed too: %s", fb.provider, exc.kind.value)
            raise cause from None
        if rec is not None:
            rec.served_by = "offline"
        return result

    async def _prepare(self, req: Request, provider: Provider, prepared: dict[str, Request]) -> Request:
        """Fetch remote media for targets that only take inline bytes (through the guarded fetcher).

        Fetched once per client request (a later target that also needs bytes reuses them), within the
        request's budget (server.max_media_urls / max_media_bytes), at most MAX_PARALLEL URLs at a time."""
        if not provider.needs_inline_images:
            return req
        inlined = next((r for r in prepared.values() if r is not req), None)
        if inlined is not None:
            return inlined
        jobs: list[tuple[str, Image | Video]] = []  # (field path, block) in request order
        for mi, msg in enumerate(req.messages):
            for bi, b in enumerate(msg.content):
                if isinstance(b, (Image, Video)) and b.data is None and b.url:
                    jobs.append((f"messages[{mi}].content[{bi}].url", b))
                elif isinstance(b, ToolResult):
                    jobs += [
                        (f"messages[{mi}].content[{bi}].content[{ci}].url", c)
                        for ci, c in enumerate(b.content)
                        if isinstance(c, Image) and c.data is None and c.url
                    ]
        if not jobs:
            return req
        server = self.cfg.server
        budget = MediaBudget(server.max_media_urls, server.max_media_bytes)
        if len(jobs) > budget.max_urls:  # refuse before fetching anything
            budget.urls = budget.max_urls
            budget.take_url(jobs[budget.max_urls][0])
        gate = asyncio.Semaphore(MAX_PARALLEL)

        async def one(param: str, b: Image | Video) -> Image | Video:
            async with gate:
                data, mtype = await fetch_media(
                    b.url or "",
                    param=param,
                    session=session,
                    budget=budget,
                    kinds=("video/",) if isinstance(b, Video) else ("image/",),
                    allow_private=server.allow_private_image_urls,
                )
            return msgspec.structs.replace(b, data=data, media_type=b.media_type or mtype, url=None)

        async with new_session() as session:
            tasks = [asyncio.ensure_future(one(param, b)) for param, b in jobs]
            try:
                fetched = dict(zip((id(b) for _, b in jobs), await asyncio.gather(*tasks), strict=True))
            except BaseException:  # the first failure decides; stop the others
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise

        def swap(b: Block) -> Block:
            if isinstance(b, ToolResult) and any(id(c) in fetched for c in b.content):
                return msgspec.structs.replace(b, content=[fetched.get(id(c), c) for c in b.content])
            return fetched.get(id(b), b)

        messages = [msgspec.structs.replace(m, content=[swap(b) for b in m.content]) for m in req.messages]
        return msgspec.structs.replace(req, messages=messages)
