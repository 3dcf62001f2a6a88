"""Engine-side chat messages: what the processor turns into token ids and pixels.

The gateway maps its canonical `Message` blocks onto these; parts keep the order the client gave.
Torch- and PIL-free: part of the engine's boundary (api.py re-exports them).
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
    """Encoded bytes (PNG, JPEG, ...), a local path, or an already-decoded PIL image. `param` names where the
    caller got it (e.g. "messages[0].content[1]"), for errors about it."""

    image: bytes | str | Path | Image.Image
    param: str | None = None


@dataclass(frozen=True, slots=True)
class VideoPart:
    """Encoded container bytes (mp4, webm, ...) or a local path; `param` as for ImagePart."""

    video: bytes | str | Path
    param: str | None = None


Part: TypeAlias = TextPart | ImagePart | VideoPart


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: list[Part] = field(default_factory=list)
