"""Tokenizer wrapper (HF `tokenizers`), the checkpoint's chat template, and a streaming detokenizer."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer as HFTokenizer


def _token_str(value: Any) -> str | None:
    """tokenizer_config.json stores special tokens as strings or as {"content": ...} dicts."""
    if isinstance(value, Mapping):
        return value.get("content")
    return value if isinstance(value, str) else None


class ChatTemplate:
    """A Jinja chat template rendered the way transformers does (sandboxed, trim/lstrip blocks)."""

    def __init__(self, source: str, **globals_: Any) -> None:
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        env.filters["tojson"] = lambda v, indent=None, **_: json.dumps(v, ensure_ascii=False, indent=indent)
        env.globals["raise_exception"] = _raise
        self._template = env.from_string(source)
        self._globals = globals_

    def render(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True) -> str:
        return self._template.render(
            messages=messages, add_generation_prompt=add_generation_prompt, **self._globals
        )


def _raise(message: str) -> None:
    raise ValueError(message)


class Tokenizer:
    """Encode/decode without implicit special tokens (chat templates add them) plus chat-template rendering."""

    def __init__(
        self,
        tokenizer: HFTokenizer,
        *,
        eos_token_ids: Iterable[int] = (),
        bos_token: str | None = None,
        eos_token: str | None = None,
        chat_template: str | None = None,
    ) -> None:
        self.hf = tokenizer
        self.eos_token_ids = tuple(dict.fromkeys(eos_token_ids))
        self.bos_token, self.eos_token = bos_token, eos_token
        self.chat_template = (
            ChatTemplate(chat_template, bos_token=bos_token or "", eos_token=eos_token or "")
            if chat_template
            else None
        )

    @classmethod
    def from_dir(cls, directory: Path) -> Tokenizer:
        """tokenizer.json + tokenizer_config.json (+ chat_template.json/.jinja, generation_config.json for EOS ids)."""
        tok = HFTokenizer.from_file(str(directory / "tokenizer.json"))
        cfg = _read(directory / "tokenizer_config.json")
        template = cfg.get("chat_template")
        if (directory / "chat_template.jinja").is_file():
            template = (directory / "chat_template.jinja").read_text(encoding="utf-8")
        elif (directory / "chat_template.json").is_file():
            template = _read(directory / "chat_template.json").get("chat_template", template)
        if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        bos, eos = _token_str(cfg.get("bos_token")), _token_str(cfg.get("eos_token"))
        gen_eos = _read(directory / "generation_config.json").get("eos_token_id")
        ids = gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else []
        if eos is not None and (eos_id := tok.token_to_id(eos)) is not None:
            ids.append(eos_id)
        return cls(tok, eos_token_ids=ids, bos_token=bos, eos_token=eos, chat_template=template)

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self.hf.token_to_id(token)

    def apply_chat_template(
        self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True
    ) -> str:
        if self.chat_template is None:
            raise ValueError("this checkpoint has no chat template")
        return self.chat_template.render(messages, add_generation_prompt)


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


class StreamingDetokenizer:
    """Turns a token stream into text pieces whose concatenation equals `decode(all tokens)`.

    Byte-level BPE splits multi-byte characters (CJK, emoji) across tokens, and decoding such a prefix yields
    U+FFFD. We decode a small window [prefix, end) and emit only the part beyond the already-emitted window
    [prefix, read), holding back while it ends in U+FFFD. The window restarts after every emission, so each
    token costs two decodes of a few tokens, not of the whole output.
    """

    __slots__ = ("_ids", "_prefix", "_read", "_skip", "_tok")

    def __init__(self, tokenizer: Tokenizer, skip_special_tokens: bool = True) -> None:
        self._tok = tokenizer.hf
        self._skip = skip_special_tokens
        self._ids: list[int] = []
        self._prefix = self._read = 0

    def add(self, token_id: int) -> str:
        """Feed one token; return the newly decodable text (possibly "")."""
        self._ids.append(token_id)
        done = self._tok.decode(self._ids[self._prefix : self._read], skip_special_tokens=self._skip)
        text = self._tok.decode(self._ids[self._prefix :], skip_special_tokens=self._skip)
        if len(text) > len(done) and not text.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self._ids)
            return text[len(done) :]
        return ""

    def flush(self) -> str:
        """Emit whatever is still held back (e.g. an incomplete character at the very end)."""
        done = self._tok.decode(self._ids[self._prefix : self._read], skip_special_tokens=self._skip)
        text = self._tok.decode(self._ids[self._prefix :], skip_special_tokens=self._skip)
        self._prefix = self._read = len(self._ids)
        return text[len(done) :]
