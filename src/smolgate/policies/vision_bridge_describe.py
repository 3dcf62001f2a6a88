"""The vision bridge's describer: one image (or video) → the local model's text about it, cached by content.

The local model is reached through its one adapter (providers/local.py), with a canonical request of the image
and the prompt, greedy. Results are cached by a hash of (model, prompt, length cap, media kind, the bytes' hash):
in an in-process LRU bounded by count and bytes, written through to Redis when `state: redis://…` is configured
(the store signatures.py keeps its state in; Redis sees hashes and descriptions, never image bytes). The same
image sent by another client gets the same description: it is a function of bytes that client already holds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..canonical import Image, Message, Request, Text, Video
from ..errors import ErrorKind, GatewayError
from ..providers.base import Provider
from ..signatures import SignatureStore

CACHE_ENTRIES = 4096
CACHE_BYTES = 16 << 20
CACHE_TTL = 7 * 86400.0  # a description does not go stale; the bound is for Redis' memory


@dataclass(frozen=True, slots=True)
class Settings:
    """One alias's effective bridge settings (config: alias → global → these defaults)."""

    provider: str | None  # the local provider that describes; None: no local provider is configured
    prompt: str
    max_images: int
    max_tokens: int
    on: bool


def new_store(redis_url: str | None) -> SignatureStore:
    return SignatureStore(
        max_entries=CACHE_ENTRIES,
        max_bytes=CACHE_BYTES,
        ttl=CACHE_TTL,
        max_value=64 << 10,
        redis_url=redis_url,
        label="vision bridge cache",
    )


def model_id(provider: Provider) -> str:
    """The loaded checkpoint's id (a new checkpoint describes differently), else the provider's name."""
    engine = getattr(provider, "engine", None)
    return f"{provider.name}:{engine.model_id}" if engine is not None else provider.name


def cache_key(model: str, s: Settings, block: Image | Video) -> str:
    digest = hashlib.sha256(block.data or b"").hexdigest()
    kind = "video" if isinstance(block, Video) else "image"
    text = f"{model}\0{s.prompt}\0{s.max_tokens}\0{kind}\0{digest}"
    return "smolgate:vision:" + hashlib.sha256(text.encode()).hexdigest()[:40]


class Describer:
    def __init__(self, store: SignatureStore) -> None:
        self.store = store

    async def cached(self, keys: list[str]) -> dict[str, str]:
        found = await self.store.get(keys)
        return {k: v.decode("utf-8", "replace") for k, v in found.items()}

    async def describe(self, provider: Provider, s: Settings, block: Image | Video, key: str) -> str:
        """The local model's text about `block` (inline bytes), stored under `key`. Raises GatewayError."""
        engine = getattr(provider, "engine", None)
        if engine is not None and not (
            engine.supports_video if isinstance(block, Video) else engine.supports_images
        ):
            what = "video" if isinstance(block, Video) else "images"
            raise GatewayError(
                ErrorKind.INVALID_REQUEST,
                f"the vision bridge's model ('{provider.name}') cannot see {what}",
            )
        media: Image | Video = (
            Video(data=block.data, media_type=block.media_type)
            if isinstance(block, Video)
            else Image(data=block.data, media_type=block.media_type)
        )
        req = Request(
            model=provider.name,
            messages=[Message(role="user", content=[media, Text(text=s.prompt)])],
            max_tokens=s.max_tokens,
            temperature=0.0,
        )
        resp, _, _ = await provider.complete(req, "default", None)
        text = "".join(b.text for b in resp.content if isinstance(b, Text)).strip()
        await self.store.put({key: text.encode()})
        return text
