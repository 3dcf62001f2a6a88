"""StreamingDetokenizer: streamed pieces concatenate to decode(all) and never show half a character."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures import build_tokenizer

from smolgate.engine.tokenizer import StreamingDetokenizer, Tokenizer

TEXTS = {
    "cjk": "日本語のテキストと中文混合，还有한국어 문장입니다。",
    "emoji": "Family: 👨‍👩‍👧‍👦, flags 🇫🇷🇯🇵, skin 👍🏽, faces 😀🙃🤖!",
    "json": '{"name": "Zoë", "tags": ["a", "b"], "n": 12345, "nested": {"ok": true, "v": null}, "s": "tab\\t"}',
    "mixed": "Prix: 3,50 € — naïve café ☕ → ∑(x²) ≈ 0.5\n\n```py\nprint('héllo')\n```",
    "specials": "<|im_start|>assistant\nhi 🙂<end_of_utterance>",
}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    return Tokenizer.from_dir(Path(build_tokenizer(tmp_path_factory.mktemp("tok"))))


def stream_pieces(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    detok = StreamingDetokenizer(tokenizer)
    pieces = [detok.add(i) for i in ids]
    return [*pieces, detok.flush()]


@pytest.mark.parametrize("name", list(TEXTS))
def test_streamed_pieces_equal_full_decode(tokenizer: Tokenizer, name: str) -> None:
    ids = tokenizer.encode(TEXTS[name])
    pieces = stream_pieces(tokenizer, ids)
    assert "".join(pieces) == tokenizer.decode(ids)
    assert not any("\ufffd" in p for p in pieces)  # incomplete characters are held back, not emitted broken
    if name != "specials":
        assert tokenizer.decode(ids) == TEXTS[name]


def test_multibyte_characters_span_several_tokens(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("🤖")
    assert len(ids) > 1  # byte-level BPE splits this emoji: the case the hold-back exists for
    pieces = stream_pieces(tokenizer, ids)
    assert pieces[:-2] == [""] * (len(ids) - 1) and pieces[-2] == "🤖" and pieces[-1] == ""


def test_truncated_character_is_flushed_like_decode(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("ok 🤖")[:-1]  # stream ends in the middle of the emoji's bytes
    pieces = stream_pieces(tokenizer, ids)
    assert "".join(pieces) == tokenizer.decode(ids)
    assert pieces[-1].endswith("\ufffd")


def test_special_tokens_are_skipped_by_default(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("a<|im_end|>b")
    assert "".join(stream_pieces(tokenizer, ids)) == "ab"
    detok = StreamingDetokenizer(tokenizer, skip_special_tokens=False)
    assert "".join([detok.add(i) for i in ids] + [detok.flush()]) == "a<|im_end|>b"
