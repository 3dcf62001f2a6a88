"""The vision bridge: images (and videos) sent to a target that cannot see become the local VLM's text about them.

A target cannot see when its config says `vision: false`, or once it refused an image (each upstream words it
its own way: `_REFUSALS`); the refusal is remembered per provider + model (bounded) and the attempt is made again
with the bridge. Each image is then described by the local model (`vision_bridge.prompt`), cached by content
(vision_bridge_describe.py), and replaced in place by a text block `[image 1: …]` (`[video 1: …]`), numbered in
request order, tool results included. A target that can see — a fallback, say — gets the original images.

The bridge runs before an account is leased (the local model's time is not an upstream's) and within the
request's retry deadline. It never drops an image silently: when it cannot describe one (no local model, a model
that cannot see, an engine error, the deadline, more than `max_images` to describe) that target fails with a
clear error and the next target is tried; with none left, the client gets that error in its protocol's shape.

The answer says what the bridge did in `x-smolgate-vision-bridge: images=<n>, cached=<k>` (an RFC 8941
dictionary): n images and videos became text for the target that answered, k of them without a model run (the
cache, or the same bytes earlier in the request). The usage ledger keeps n (`vision_images`), the metrics both.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from ..canonical import Block, Image, Request, Text, ToolResult, Video
from ..config import Config, LocalProviderConfig, VisionBridgeConfig
from ..errors import ErrorKind, GatewayError
from ..providers.base import Provider
from ..routing import Route
from ..telemetry import RequestRecord
from .vision_bridge_describe import Describer, Settings, cache_key, model_id, new_store

HEADER = "x-smolgate-vision-bridge"
DEFAULT_PROMPT = (
    "Describe this image for a reader who cannot see it. First transcribe every piece of text in it exactly, "
    "keeping its layout (code, tables, labels, numbers). Then describe what it shows: its kind (photo, "
    "screenshot, diagram, chart, document), the main objects and their positions, colours, and anything "
    "unusual. Answer as:\nText: <the text, or none>\nDescription: <the description>"
)
DEFAULTS = VisionBridgeConfig(prompt=DEFAULT_PROMPT, max_images=8, max_tokens=512, mode="auto")
LEARNED_MAX = 1024  # provider + model pairs remembered as blind (LRU)
PARALLEL = 4  # descriptions running at once for one request (the engine batches them)

# How upstreams refuse an image or a video (a refusal of this shape for a request with media teaches us the
# target is blind): OpenAI; Gemini ("Image input modality is not enabled for models/…"); Anthropic-compatible
# and Bedrock ("does not support image input", "doesn't support the image content block"); Ollama ("this model
# is missing data required for image input", `"m" does not support vision`); llama.cpp ("image input is not
# supported - hint: … mmproj"); vLLM ("… is not a multimodal model"); LM Studio ("Model does not support
# images"); OpenRouter ("No endpoints found that support image input"); DeepSeek ("unknown variant `image_url`").
_REFUSALS = re.compile(
    r"image_url is only supported by certain models|(?:image|video) input modality is not enabled|"
    r"does(?: not|n't) support (?:the )?(?:image|vision|video|multimodal)|"
    r"missing data required for image input|image input is not supported|is not a multimodal model|"
    r"no endpoints found that support image input|unknown variant `(?:image_url|input_image)`",
    re.I,
)


def refuses_media(message: str) -> bool:
    return _REFUSALS.search(message) is not None


def _media(req: Request) -> list[tuple[str, Image | Video]]:
    """(field path, block) of every image and video, in request order (tool results' images included)."""
    out: list[tuple[str, Image | Video]] = []
    for mi, msg in enumerate(req.messages):
        for bi, b in enumerate(msg.content):
            if isinstance(b, (Image, Video)):
                out.append((f"messages[{mi}].content[{bi}]", b))
            elif isinstance(b, ToolResult):
                out += [
                    (f"messages[{mi}].content[{bi}].content[{ci}]", c)
                    for ci, c in enumerate(b.content)
                    if isinstance(c, Image)
                ]
    return out


def has_media(req: Request) -> bool:
    return any(
        isinstance(b, (Image, Video))
        or (isinstance(b, ToolResult) and any(isinstance(c, Image) for c in b.content))
        for m in req.messages
        for b in m.content
    )


def _replace(req: Request, texts: dict[int, Text]) -> Request:
    """`req` with each block whose id is in `texts` swapped for its text (the rest shared, not copied)."""

    def swap(b: Block) -> Block:
        if isinstance(b, ToolResult) and any(id(c) in texts for c in b.content):
            return msgspec.structs.replace(b, content=[texts.get(id(c), c) for c in b.content])
        return texts.get(id(b), b)

    messages = [
        msgspec.structs.replace(m, content=[swap(b) for b in m.content])
        if any(id(b) in texts or isinstance(b, ToolResult) for b in m.content)
        else m
        for m in req.messages
    ]
    return msgspec.structs.replace(req, messages=messages)


def _settings(vb: list[VisionBridgeConfig], local: str | None) -> Settings:
    """The first value set in `vb` (alias, then global), else the default; the model's provider name."""

    def pick(name: str) -> Any:
        return next((v for c in (*vb, DEFAULTS) if (v := getattr(c, name)) is not None), None)

    model = pick("model") or local
    return Settings(
        provider=model.split("/")[0] if model else None,
        prompt=pick("prompt"),
        max_images=pick("max_images"),
        max_tokens=pick("max_tokens"),
        on=pick("mode") in ("auto", True),
    )


class VisionBridge:
    """The dispatcher's hook: `begin` a request, `shape` what goes to each target, `learn` from refusals."""

    def __init__(
        self,
        cfg: Config,
        providers: dict[str, Provider],
        inline: Callable[[Request, Provider], Awaitable[Request]],
    ) -> None:
        self.providers = providers
        self.inline = inline  # fetches remote media into bytes (the dispatcher's guarded fetcher)
        local = next((p.name for p in cfg.providers if isinstance(p, LocalProviderConfig)), None)
        self.default = _settings([cfg.vision_bridge], local)
        self.by_alias = {
            m.name: _settings([m.vision_bridge, cfg.vision_bridge], local)
            for m in cfg.models
            if m.vision_bridge is not None
        }
        self.declared: dict[tuple[str, str], bool] = {}
        for m in cfg.models:
            for t in m.targets:
                # one `false` wins: a target that cannot see is never sent images
                if isinstance(t.vision, bool):
                    key = (t.provider, t.model)
                    self.declared[key] = self.declared.get(key, True) and t.vision
        self.blind: OrderedDict[tuple[str, str], None] = OrderedDict()  # learned from refusals
        self.describer = Describer(new_store(cfg.state.reveal() if cfg.state else None))

    def sees(self, route: Route) -> bool:
        key = (route.provider, route.model)
        declared = self.declared.get(key)
        if declared is not None:
            return declared
        if key in self.blind:
            self.blind.move_to_end(key)
            return False
        # a local provider's engine knows whether it sees (a text-only model is blind)
        engine = getattr(self.providers.get(route.provider), "engine", None)
        return engine is None or bool(engine.supports_images)

    def learn(self, exc: GatewayError, route: Route, sent: Request) -> bool:
        """Whether `exc` was the target refusing the images `sent` carried: then it is remembered as blind
        (so the next attempt at it goes through the bridge)."""
        key = (route.provider, route.model)
        if self.declared.get(key) is not None or not self.sees(route):  # declared, or known blind already
            return False
        if not refuses_media(exc.message) or not has_media(sent):
            return False
        self.blind[key] = None
        self.blind.move_to_end(key)
        while len(self.blind) > LEARNED_MAX:
            self.blind.popitem(last=False)
        return True

    def begin(self, req: Request, deadline: float) -> BridgeRun:
        return BridgeRun(self, self.by_alias.get(req.model, self.default), deadline)

    async def close(self) -> None:
        await self.describer.store.close()


class BridgeRun:
    """One client request's bridge: its descriptions (each image described once, whatever the attempts) and
    what each bridged request it handed out carried."""

    def __init__(self, bridge: VisionBridge, settings: Settings, deadline: float) -> None:
        self.bridge, self.s, self.deadline = bridge, settings, deadline
        self.texts: dict[str, str] = {}  # cache key → description
        self.ran: set[str] = set()  # keys the model described for this request
        # id(source) → (source, what was made of it, images, cached)
        self.shaped: dict[int, tuple[Request, Request, int, int]] = {}

    async def shape(self, req: Request, route: Route) -> Request:
        """What to send to `route`: `req` itself, or for a target that cannot see, `req` with its media
        described. Raises GatewayError when the bridge cannot describe them."""
        # (a local text model that is its own bridge's model refuses the image itself, in its own words)
        if self.bridge.sees(route) or not has_media(req) or route.provider == self.s.provider:
            return req
        done = self.shaped.get(id(req))
        if done is not None and done[0] is req:
            return done[1]
        s = self.s
        if not s.on:
            raise GatewayError(
                ErrorKind.INVALID_REQUEST,
                f"model '{route.model}' of provider '{route.provider}' does not accept images, and the "
                "vision bridge is off for this model",
            )
        local = self.bridge.providers.get(s.provider or "")
        if local is None:
            raise GatewayError(
                ErrorKind.INVALID_REQUEST,
                f"model '{route.model}' of provider '{route.provider}' does not accept images, and no local "
                "vision model is configured for the vision bridge (vision_bridge.model)",
            )
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise _late()
        try:
            async with asyncio.timeout(remaining):
                out, n, cached = await self._describe_all(req, local)
        except TimeoutError:
            raise _late() from None
        self.shaped[id(req)] = (req, out, n, cached)
        return out

    async def _describe_all(self, req: Request, local: Provider) -> tuple[Request, int, int]:
        inlined = await self.bridge.inline(req, local)  # remote image URLs fetched (guarded) into bytes
        media = _media(inlined)
        model, s = model_id(local), self.s
        keys = [cache_key(model, s, b) for _, b in media]
        missing = [k for k in dict.fromkeys(keys) if k not in self.texts]
        self.texts.update(await self.bridge.describer.cached(missing))
        todo = {k: i for i, k in reversed(list(enumerate(keys))) if k not in self.texts}  # first occurrence
        if len(todo) > s.max_images:
            raise GatewayError(
                ErrorKind.INVALID_REQUEST,
                f"the request has {len(todo)} images the vision bridge would have to describe; it describes "
                f"at most {s.max_images} per request (vision_bridge.max_images)",
            )
        gate = asyncio.Semaphore(PARALLEL)
        numbers = _numbers(media)

        async def one(key: str, i: int) -> None:
            where, block = media[i]
            async with gate:
                try:
                    self.texts[key] = await self.bridge.describer.describe(local, s, block, key)
                except GatewayError as exc:
                    raise _failed(exc, numbers[i], where) from exc
            self.ran.add(key)

        await _gather([one(k, i) for k, i in todo.items()])
        texts = {
            id(b): Text(text=_block_text(numbers[i], self.texts[keys[i]]), cache=getattr(b, "cache", None))
            for i, (_, b) in enumerate(media)
        }
        model_runs = len({k for k in keys if k in self.ran})
        return _replace(inlined, texts), len(media), len(media) - model_runs

    def note(self, rec: RequestRecord | None, sent: Request) -> None:
        """Tell the record (ledger, metrics, response header) what the request about to be sent carries."""
        if rec is None:
            return
        hit = next((v for v in self.shaped.values() if v[1] is sent), None)
        if hit is None:
            rec.vision_images, rec.vision_cached = None, 0
            rec.headers.pop(HEADER, None)
            return
        _, _, n, cached = hit
        rec.vision_images, rec.vision_cached = n, cached
        rec.headers[HEADER] = f"images={n}, cached={cached}"


def _numbers(media: list[tuple[str, Image | Video]]) -> list[str]:
    """`image 1`, `image 2`, `video 1`, … in request order."""
    seen = {"image": 0, "video": 0}
    out = []
    for _, b in media:
        kind = "video" if isinstance(b, Video) else "image"
        seen[kind] += 1
        out.append(f"{kind} {seen[kind]}")
    return out


def _block_text(label: str, description: str) -> str:
    return f"[{label}: {description or '(the vision model returned no description)'}]"


def _late() -> GatewayError:
    return GatewayError(
        ErrorKind.TIMEOUT,
        "the vision bridge could not describe the request's images within its deadline (retry.deadline)",
    )


def _failed(exc: GatewayError, label: str, where: str) -> GatewayError:
    message = exc.message.replace("messages[0].content[0]", where)  # the engine names its own request's part
    return GatewayError(
        exc.kind,
        f"the vision bridge could not describe {label} ({where}): {message}",
        param=where if exc.kind is ErrorKind.INVALID_REQUEST else None,
        retry_after=exc.retry_after,
    )


async def _gather(jobs: list[Awaitable[None]]) -> None:
    """Run all; the first failure cancels the rest and is raised."""
    tasks = [asyncio.ensure_future(j) for j in jobs]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
