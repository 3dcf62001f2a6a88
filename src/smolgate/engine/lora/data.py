"""Training data for `smolgate tune`: JSONL, one conversation per line, in the chat shapes the gateway accepts.

    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,…"}},
                                               {"type": "text", "text": "What colour is this?"}]},
                  {"role": "assistant", "content": "red"}]}

Content is a string or a list of parts: `text`, `image_url` (a data: URL or a local path / file: URL), `image`
(a local path), `video_url` / `video` likewise. The last message is the assistant's answer, the target; every
earlier turn is the prompt. Remote URLs are refused: training data stays on the device.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..messages import ChatMessage, ImagePart, Part, TextPart, VideoPart

ROLES = ("system", "user", "assistant")


class DataError(ValueError):
    """A line of the training file that cannot be used (the message names the line)."""


def _media(value: Any, base: Path) -> bytes | Path:
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str):
        raise DataError("a media part needs a URL or path")
    if url.startswith("data:"):
        _, _, payload = url.partition(",")
        return base64.b64decode(payload)
    if url.startswith(("http://", "https://")):
        raise DataError("remote media URLs are not fetched: inline them (data:) or give a local path")
    path = Path(url.removeprefix("file://"))
    return path if path.is_absolute() else base / path


def _parts(content: Any, base: Path) -> list[Part]:
    if isinstance(content, str):
        return [TextPart(content)]
    if not isinstance(content, list):
        raise DataError("content must be a string or a list of parts")
    parts: list[Part] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append(TextPart(str(part.get("text", ""))))
        elif kind in ("image_url", "image"):
            parts.append(ImagePart(_media(part.get(kind), base)))
        elif kind in ("video_url", "video"):
            parts.append(VideoPart(_media(part.get(kind), base)))
        else:
            raise DataError(f"unsupported content part type {kind!r}")
    return parts


def parse_line(line: str, base: Path) -> tuple[list[ChatMessage], str]:
    """One JSONL line -> (prompt messages, answer text)."""
    record = json.loads(line)
    messages = record.get("messages") if isinstance(record, dict) else None
    if not isinstance(messages, list) or len(messages) < 2:
        raise DataError("expected {'messages': [...]} with a prompt and the assistant's answer")
    out: list[ChatMessage] = []
    for m in messages:
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ROLES:
            raise DataError(f"unsupported role {role!r}")
        out.append(ChatMessage(role, _parts(m.get("content"), base)))
    answer = out.pop()
    if answer.role != "assistant" or not all(isinstance(p, TextPart) for p in answer.content):
        raise DataError("the last message must be the assistant's text answer")
    return out, "".join(p.text for p in answer.content if isinstance(p, TextPart))


def read_jsonl(path: str | Path) -> Iterator[tuple[list[ChatMessage], str]]:
    path = Path(path)
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield parse_line(line, path.parent)
            except (DataError, ValueError) as exc:
                raise DataError(f"{path.name} line {n}: {exc}") from exc
