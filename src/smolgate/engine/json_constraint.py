"""Constrained decoding for JSON mode / json_schema: the output always parses, validates and ends.

The generation loop calls, per step:

    logits = constraint.mask_logits(logits)   # disallowed tokens -> -inf
    token = sampler(logits, seen)
    constraint.advance(token)

Testing every vocabulary token against the automaton per step in Python is far too slow, so: tokens are kept
sorted by their bytes, which makes the tokens sharing a prefix one contiguous range (an implicit trie). We
probe which next bytes the automaton accepts; in structural states (few bytes allowed: between values, in
numbers, keys, literals) we walk that trie with the automaton, visiting only valid prefixes, and get the exact
valid set. In string-like states (most bytes allowed, most tokens valid) we test tokens in descending-logit
order until `top_valid` pass (lazy masking); near a string's maxLength only tokens short enough or holding a
quote are candidates. Greedy decoding is exact everywhere; sampling inside strings sees the `top_valid`
likeliest valid tokens.

With `max_tokens`, a token is allowed only if the JSON can still be closed within the remaining budget
(automaton `distance` <= tokens left, counting one for EOS; every byte is a token in byte-level BPE), so a
length cut never leaves broken JSON.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt
import torch

from . import json_automaton as pda
from .json_schema import compile_schema

if TYPE_CHECKING:
    from tokenizers import Tokenizer as HFTokenizer

_ASCII = bytes(range(0x20, 0x7F)) + b"\n\r\t"  # control bytes are never valid JSON text
_HIGH = bytes(range(0x80, 0xF5))  # UTF-8 lead and continuation bytes
_WIDE = 40  # more allowed ASCII bytes than this: a string-like state, where most tokens are valid
_MARGIN = 30.0  # stop scanning once candidates are this far below the best valid logit (p < 1e-13)
_FIRST_BATCH = 64
_SHORT = 16  # strings with fewer characters left than this scan only tokens short enough (or with a quote)


def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode: byte-level BPE stores each byte as one printable character."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in keep]
    chars = keep + [256 + i for i in range(len(extra))]
    return {chr(c): b for b, c in zip(keep + extra, chars, strict=True)}


def byte_level_vocab(tokens: Sequence[str], special_ids: Collection[int] = ()) -> list[bytes | None]:
    """Byte-level BPE token strings (GGUF `tokenizer.ggml.tokens`, tokenizer.json vocab) -> exact bytes.

    Special tokens become None (never generated in JSON: they are dropped from the detokenized text)."""
    table = _byte_decoder()
    special = set(special_ids)
    out: list[bytes | None] = []
    for i, tok in enumerate(tokens):
        try:
            out.append(None if i in special else bytes(table[c] for c in tok))
        except KeyError:  # not a byte-level token (an added plain-text token)
            out.append(tok.encode())
    return out


def vocab_from_tokenizer(tok: HFTokenizer) -> list[bytes | None]:
    """Exact bytes per token id of a `tokenizers.Tokenizer`; special added tokens -> None."""
    from tokenizers import decoders

    size = tok.get_vocab_size(with_added_tokens=True)
    added = tok.get_added_tokens_decoder()
    if isinstance(tok.decoder, decoders.ByteLevel):
        tokens = [tok.id_to_token(i) or "" for i in range(size)]
        vocab = byte_level_vocab(tokens, [i for i, t in added.items() if t.special])
        for i, t in added.items():  # added tokens are stored as plain text, not byte-level characters
            if not t.special:
                vocab[i] = t.content.encode()
        return vocab
    # other decoders: one-token decodes (a token holding part of a UTF-8 character decodes lossily)
    return [None if i in added and added[i].special else tok.decode([i]).encode() for i in range(size)]


class TokenTable:
    """Token bytes sorted into a prefix-ordered list, so all tokens sharing a prefix form one contiguous range:
    walking that implicit trie with the automaton finds every valid token while visiting only valid prefixes.
    Built once per tokenizer; `of` caches it per vocab list."""

    _cache: ClassVar[dict[int, tuple[object, TokenTable]]] = {}

    def __init__(self, vocab: Sequence[str | bytes | None]) -> None:
        self.tokens: list[bytes | None] = [
            None if t is None or t == "" or t == b"" else t.encode() if isinstance(t, str) else bytes(t)
            for t in vocab
        ]
        groups: dict[bytes, list[int]] = {}
        for i, t in enumerate(self.tokens):
            if t is not None:
                groups.setdefault(t, []).append(i)
        self.keys = sorted(groups)
        self.ids = [groups[k] for k in self.keys]
        self.all_ids = np.array(sorted(i for g in self.ids for i in g), dtype=np.int64)
        # for strings near maxLength: quote-free tokens by character count, and tokens holding a quote
        chars = {
            i: sum(not 0x80 <= b <= 0xBF for b in t) for i, t in enumerate(self.tokens) if t and b'"' not in t
        }
        by_len = sorted(chars, key=chars.__getitem__)
        lengths = [chars[i] for i in by_len]
        self._short = np.array(by_len, dtype=np.int64)
        self._short_end = [bisect_left(lengths, n + 1) for n in range(_SHORT)]  # ids [:end] have <= n chars
        self._quoted = np.array([i for i, t in enumerate(self.tokens) if t and b'"' in t], dtype=np.int64)

    @classmethod
    def of(cls, vocab: Sequence[str | bytes | None] | TokenTable) -> TokenTable:
        """Reuse the table of a vocab list seen before (keyed by identity; the list is kept alive)."""
        if isinstance(vocab, TokenTable):
            return vocab
        hit = cls._cache.get(id(vocab))
        if hit is not None and hit[0] is vocab:
            return hit[1]
        table = cls(vocab)
        if len(cls._cache) >= 4:
            cls._cache.pop(next(iter(cls._cache)))
        cls._cache[id(vocab)] = (vocab, table)
        return table

    def string_candidates(self, room: int | None) -> npt.NDArray[np.int64]:
        """Tokens that may fit in a string with `room` characters left (all tokens if room is unknown)."""
        if room is None or room >= _SHORT:
            return self.all_ids
        return np.concatenate([self._short[: self._short_end[max(room, 0)]], self._quoted])

    def walk(
        self, state: pda.State, first: bytes, accept: Callable[[pda.State], bool]
    ) -> dict[int, pda.State]:
        """Every token starting with a byte in `first` that the automaton accepts from `state` (and `accept`
        approves of the state after it) -> that state."""
        found: dict[int, pda.State] = {}
        keys = self.keys

        def visit(st: pda.State, depth: int, lo: int, hi: int) -> None:
            if len(keys[lo]) == depth:  # the prefix itself is a token; it sorts first in its range
                if accept(st):
                    found.update(dict.fromkeys(self.ids[lo], st))
                lo += 1
            while lo < hi:
                b = keys[lo][depth]
                end = bisect_left(keys, keys[lo][:depth] + bytes((b + 1,)), lo, hi) if b < 255 else hi
                nxt = pda.advance(st, bytes((b,)))
                if nxt:
                    visit(nxt, depth + 1, lo, end)
                lo = end

        for b in first:
            lo = bisect_left(keys, bytes((b,)))
            hi = bisect_left(keys, bytes((b + 1,))) if b < 255 else len(keys)
            if lo < hi:
                visit(pda.advance(state, bytes((b,))), 1, lo, hi)
        return found


class JsonConstraint:
    """Masks logits so that generation spells a JSON text accepted by `schema`, then EOS.

    schema: a JSON Schema (see json_schema for the subset), None for JSON-object mode (any object), True/{}
    for any JSON value. tokenizer_vocab: decoded text or exact bytes per token id (None/"" = never allowed;
    prefer `vocab_from_tokenizer` / `byte_level_vocab`: decoded strings lose tokens holding partial UTF-8
    characters), or a prebuilt TokenTable. max_tokens: the generation budget including the EOS token.
    """

    def __init__(
        self,
        schema: Mapping[str, Any] | bool | None,
        tokenizer_vocab: Sequence[str | bytes | None] | TokenTable,
        eos_ids: Collection[int],
        *,
        max_tokens: int | None = None,
        top_valid: int = 8,
    ) -> None:
        compiled = compile_schema(schema)
        self.unenforced = compiled.unenforced  # schema keywords not enforced (pattern, minimum, ...)
        self.table = TokenTable.of(tokenizer_vocab)
        self.eos_ids = sorted(set(eos_ids))
        if not self.eos_ids:
            raise ValueError("JsonConstraint needs at least one EOS token id to end the output")
        self.max_tokens, self.top_valid = max_tokens, top_valid
        self.state: pda.State = pda.initial(compiled.root)
        self.generated = 0
        self._ended = False
        self._next: dict[int, pda.State] = {}  # states of the tokens found valid by the last mask

    @property
    def done(self) -> bool:
        """EOS was accepted, or the JSON is complete and only EOS may follow."""
        return self._ended or pda.finished(self.state)

    def allowed_bytes(self) -> bytes:
        """The bytes the automaton accepts next (non-ASCII ones only probed where text is being written)."""
        probe = _ASCII + _HIGH if pda.in_text(self.state) else _ASCII
        return bytes(b for b in probe if pda.advance(self.state, bytes((b,))))

    def valid_token_ids(self, logits: npt.NDArray[np.float32]) -> list[int]:
        """Tokens that keep the output valid (all of them, or the `top_valid` likeliest in string-like
        states), plus EOS when the JSON may end here."""
        eos = self.eos_ids if pda.can_finish(self.state) else []
        if self._ended or pda.finished(self.state):
            return eos or self.eos_ids
        limit = None if self.max_tokens is None else self.max_tokens - self.generated - 2
        self._next = self._find(logits, limit)
        if not self._next and not eos and limit is not None:
            self._next = self._find(logits, None)  # the budget is already too small: best effort
        for e in self.eos_ids:  # an EOS id that also spells text (a vocab of plain strings) still only ends
            self._next.pop(e, None)
        return list(self._next) + eos

    def _find(self, logits: npt.NDArray[np.float32], limit: int | None) -> dict[int, pda.State]:
        if limit is not None and limit < 0:
            return {}

        def fits(st: pda.State) -> bool:
            return limit is None or pda.distance(st) <= limit

        first = self.allowed_bytes()
        if limit is not None and (d := pda.distance(self.state)) > limit:
            # every token must bring the end closer: only tokens starting with such a byte are needed
            first = bytes(b for b in first if pda.distance(pda.advance(self.state, bytes((b,)))) < d)
        if sum(b < 0x80 for b in first) > _WIDE:
            return self._scan(logits, fits)
        return self.table.walk(self.state, first, fits)

    def _scan(
        self, logits: npt.NDArray[np.float32], fits: Callable[[pda.State], bool]
    ) -> dict[int, pda.State]:
        """Lazy masking for string-like states, where most tokens are valid: test in descending-logit order."""
        cands = self.table.string_candidates(pda.string_room(self.state))
        vals = logits[cands]
        found: dict[int, pda.State] = {}
        best, tokens = float("-inf"), self.table.tokens
        k = min(len(cands), _FIRST_BATCH)
        top = np.argpartition(vals, len(vals) - k)[len(vals) - k :]
        order = top[np.argsort(-vals[top], kind="stable")]
        start = 0
        while True:
            for i in order[start:].tolist():
                v = float(vals[i])
                if v < best - _MARGIN or v == float("-inf"):
                    return found
                tid = int(cands[i])
                if tid in found:  # already tested in the first batch (ties may sort differently)
                    continue
                nxt = pda.advance(self.state, tokens[tid])  # type: ignore[arg-type]
                if nxt and fits(nxt):
                    found[tid] = nxt
                    best = max(best, v)
                    if len(found) >= self.top_valid:
                        return found
            if len(order) >= len(cands):
                return found
            start, order = len(order), np.argsort(-vals, kind="stable")

    def mask_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """logits [V] (V may exceed the tokenizer's size) -> a copy with disallowed tokens at -inf.

        Host-side bookkeeping runs in numpy: torch hands a vocabulary-sized fill or gather to its intra-op thread
        pool, far slower than one thread on a busy machine (figures: docs/performance.md)."""
        src = logits.detach().float().numpy()
        ids = np.array(self.valid_token_ids(src), dtype=np.int64)
        out = np.full(src.shape, -np.inf, dtype=np.float32)
        out[ids] = src[ids]
        return torch.from_numpy(out).to(logits.dtype)

    def advance(self, token_id: int) -> None:
        """Consume the sampled token. Raises ValueError for a token the constraint does not allow."""
        self.generated += 1
        if token_id in self.eos_ids:
            if not pda.can_finish(self.state):
                raise ValueError("EOS before the JSON value is complete")
            self._ended = True
            return
        data = self.table.tokens[token_id] if token_id < len(self.table.tokens) else None
        nxt = self._next.get(token_id) or (pda.advance(self.state, data) if data else ())
        if not nxt:
            raise ValueError(f"token {token_id} ({data!r}) is not valid JSON for the schema here")
        self.state = nxt
        self._next.clear()
