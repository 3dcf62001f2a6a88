"""Engine-side chat messages: what the processor turns into token ids and pixels.

The gateway maps its canonical `Message` blocks onto these; parts keep the order the client gave.
`engine.py` re-exports them, so callers import from `smolgate.engine.engine`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias

if TYPE_CHECKING:
    from PIL import Image

Role: TypeAlias = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str


@dataclass(frozen=True, slots=True)
class ImagePart:
    """Encoded bytes (PNG, JPEG, ...), a local path, or an already-decoded PIL image."""

    image: bytes | str | Path | Image.Image


@dataclass(frozen=True, slots=True)
class VideoPart:
    """Encoded container bytes (mp4, webm, ...) or a local path."""

    video: bytes | str | Path


Part: TypeAlias = TextPart | ImagePart | VideoPart


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: list[Part] = field(default_factory=list)
