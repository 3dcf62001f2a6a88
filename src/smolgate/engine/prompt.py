"""Prompt text for SmolVLM: render the checkpoint's chat template, then expand media placeholders.

The template emits one `<image>` / `<video>` per media part; each is replaced, in order, by the token layout the
model was trained on (transformers `SmolVLMProcessor`):
  split image   per row: (<fake_token_around_image><row_r_col_c><image>*N)*cols "\n", then
                "\n<fake_token_around_image><global-img><image>*N<fake_token_around_image>"
  single image  <fake_token_around_image><global-img><image>*N<fake_token_around_image>
  video         intro, then per frame "\nFrame from MM:SS:" + single image, then "\n\n"
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment
from num2words import num2words  # type: ignore[import-untyped]  # (no stubs or py.typed)

from smolgate.engine.messages import ChatMessage, ImagePart, TextPart, VideoPart

# Published checkpoints ship a template without a video branch; like transformers we switch to this one
# whenever a conversation contains a video.
VIDEO_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% elif line['type'] == 'video' %}{{ '<video>' }}{% endif %}"
    "{% endfor %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
VIDEO_INTRO = "You are provided the following series of {count} frames from a {duration} [H:MM:SS] video.\n"
FRAME_HEADER = "\nFrame from {minutes:02d}:{seconds:02d}:"
MEDIA_OUTRO = "\n\n"


@dataclass(frozen=True, slots=True)
class MediaTokens:
    """Token strings from tokenizer_config.json (`extra_special_tokens`), defaulting to SmolVLM's."""

    image: str = "<image>"
    video: str = "<video>"
    fake_around_image: str = "<fake_token_around_image>"
    global_image: str = "<global-img>"

    def single_image(self, seq_len: int) -> str:
        return f"{self.fake_around_image}{self.global_image}{self.image * seq_len}{self.fake_around_image}"

    def split_image(self, rows: int, cols: int, seq_len: int) -> str:
        if rows == 0 and cols == 0:
            return self.single_image(seq_len)
        tile = self.image * seq_len
        grid = "".join(
            "".join(f"{self.fake_around_image}<row_{r}_col_{c}>{tile}" for c in range(1, cols + 1)) + "\n"
            for r in range(1, rows + 1)
        )
        return f"{grid}\n{self.single_image(seq_len)}"

    def video_frames(self, timestamps: Sequence[float], duration: float, seq_len: int) -> str:
        # The duration is truncated to whole seconds, timestamps to MM:SS (minutes may exceed 59).
        intro = VIDEO_INTRO.format(
            count=num2words(len(timestamps)), duration=timedelta(seconds=int(duration))
        )
        frames = "".join(
            FRAME_HEADER.format(minutes=int(t // 60), seconds=int(t % 60)) + self.single_image(seq_len)
            for t in timestamps
        )
        return intro + frames + MEDIA_OUTRO


def render_chat(
    template: str, messages: Sequence[ChatMessage], add_generation_prompt: bool = True, **context: Any
) -> str:
    """Render with the same Jinja settings transformers uses (sandboxed, trim_blocks, lstrip_blocks)."""
    return _compile(template).render(
        messages=[_as_template_message(m) for m in messages],
        add_generation_prompt=add_generation_prompt,
        **context,
    )


def pick_template(template: str | None, messages: Sequence[ChatMessage]) -> str:
    if any(isinstance(p, VideoPart) for m in messages for p in m.content):
        return VIDEO_CHAT_TEMPLATE
    if template is None:
        raise ValueError("the checkpoint has no chat template")
    return template


def expand_media(prompt: str, tokens: MediaTokens, replacements: Sequence[tuple[str, str]]) -> str:
    """Replace each `<image>` / `<video>` placeholder in order with its expansion.

    `replacements` holds ("image" | "video", text) in message order. A count mismatch means the template dropped a
    media part or the user's text contains a placeholder literally; both would misalign pixels and tokens.
    """
    pattern = re.compile(f"({re.escape(tokens.image)}|{re.escape(tokens.video)})")
    pieces = pattern.split(prompt)
    found = [("image" if p == tokens.image else "video") for p in pieces[1::2]]
    if found != [kind for kind, _ in replacements]:
        raise ValueError(
            f"prompt holds media placeholders {found}, but the messages hold {len(replacements)} media"
        )
    pieces[1::2] = [text for _, text in replacements]
    return "".join(pieces)


def _as_template_message(message: ChatMessage) -> dict[str, Any]:
    content: list[dict[str, str]] = []
    for part in message.content:
        if isinstance(part, TextPart):
            content.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            content.append({"type": "image"})
        elif isinstance(part, VideoPart):
            content.append({"type": "video"})
        else:
            raise TypeError(f"unsupported message part {type(part).__name__}")
    return {"role": message.role, "content": content or [{"type": "text", "text": ""}]}


@functools.lru_cache(maxsize=8)
def _compile(template: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, **kwargs: Any) -> str:
    # Jinja's own tojson escapes HTML characters, which chat templates do not expect.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, **kwargs)


def _raise(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)
