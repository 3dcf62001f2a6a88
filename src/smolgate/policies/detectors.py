"""Detectors of personal data and secrets in text: ours, regex + checksum, one pass over the text.

Candidates come from scan.py (cheap anchors, then each kind's precise pattern around them); where several
kinds start at one position the first in `BUILTIN` wins (a PEM block before the key inside it, a card before a
phone number), and of overlapping findings the leftmost. A candidate is kept only
if its validator accepts it: Luhn for cards, mod-97 for IBANs, `ipaddress` for IPv6, a digit count for phone
numbers, character-class mix and Shannon entropy for unnamed tokens. Precision matters as much as recall: a
false positive silently changes what the model reads (a date, a version, a git hash must stay as written).

Operator patterns from the config (`privacy.patterns`) run first, each on its own: they are trusted config, and
usually name data this list cannot know (employee ids, case numbers).

No names: a person-name detector needs a NER model, and none that is small, published by its maintainers on
PyPI and runnable offline was found (spaCy's models are not on PyPI). `Detector` is the seam for one.
"""

from __future__ import annotations

import ipaddress
import math
import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from .scan import candidates

# Built-in kinds, in the order they win at one position. Their names are the ledger's counters and the
# placeholders' stems (⟦EMAIL_1⟧).
BUILTIN = ("secret", "email", "iban", "card", "ip", "phone", "token")
_RANK = {k: i for i, k in enumerate(BUILTIN)}


@dataclass(frozen=True, slots=True)
class Found:
    kind: str
    start: int
    end: int


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    s = text.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def entropy(s: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(s)
    return -sum(k / n * math.log2(k / n) for k in Counter(s).values())


_SEPARATORS = re.compile(r"[-/_+]")
_CLASSES = str.maketrans(
    {**{c: "U" for c in string.ascii_uppercase}, **{c: "l" for c in string.ascii_lowercase}}
    | {c: "d" for c in string.digits}
    | {c: None for c in "+/_=-"}
)
_CLASS_RUNS = re.compile(r"U+|l+|d+")


def token_ok(s: str) -> bool:
    """A random-looking token (an unnamed key, a session id): upper, lower and digits mixed, near the entropy of
    random base62, changing character class often (random: ~0.6 of neighbours; CamelCase names ~0.3), few vowels
    (random letters ~20%; words ~40%) and one stretch of 16+ characters without a separator (model names and
    paths are short words between separators). Measured on the identifiers of this repository and its venv
    against random base62/base64 keys: ~90% of keys found, identifiers almost never. (C-level string operations
    only: this runs on every long run of key characters.)"""
    classes = s.translate(_CLASSES)
    if "U" not in classes or "l" not in classes or "d" not in classes:
        return False
    letters = len(classes) - classes.count("d")
    if sum(map(s.count, "aeiouAEIOU")) > 0.3 * letters:
        return False
    switches = len(_CLASS_RUNS.findall(classes)) - 1
    if switches < 0.4 * (len(classes) - 1) or max(map(len, _SEPARATORS.split(s))) < 16:
        return False
    return entropy(s) >= min(4.0, math.log2(len(s)) - 0.6)


def _digits(s: str) -> str:
    return "".join(c for c in s if c.isdigit())


def _card_ok(s: str) -> bool:
    d = _digits(s)
    return 13 <= len(d) <= 19 and luhn(d) and len(set(d)) > 1


_DATE = re.compile(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}")


def _phone_ok(s: str) -> bool:
    n = len(_digits(s))
    if s.startswith("+"):
        return 8 <= n <= 15
    return 10 <= n <= 12 and _DATE.search(s) is None  # "05/06/2024 10" is a date and a number


def _ip6_ok(s: str) -> bool:
    if s.count(":") < 2 or sum(c not in ":" for c in s) < 3:
        return False
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return False
    return True


def _ip_ok(s: str) -> bool:
    """An address that says something about a network: not 0.0.0.0, 127.x or :: / ::1 (in every howto)."""
    if "." not in s:
        return _ip6_ok(s) and s not in ("::", "::1")
    return not (s.startswith("127.") or s == "0.0.0.0")


_VALID: dict[str, Callable[[str], bool]] = {
    "iban": iban_ok,
    "card": _card_ok,
    "phone": _phone_ok,
    "ip": _ip_ok,
    "token": token_ok,
}


@dataclass(frozen=True, slots=True)
class Detectors:
    """The enabled built-in kinds plus the operator's named patterns (compiled once, at config load)."""

    kinds: frozenset[str] = frozenset(BUILTIN)
    patterns: tuple[tuple[str, re.Pattern[str]], ...] = ()

    @classmethod
    def build(cls, kinds: Iterable[str] | None, patterns: dict[str, str]) -> Detectors:
        """Raises ValueError for an unknown kind, a bad name or a pattern that does not compile."""
        chosen = frozenset(BUILTIN if kinds is None else kinds)
        unknown = chosen - set(BUILTIN)
        if unknown:
            raise ValueError(f"unknown detector '{sorted(unknown)[0]}' (known: {', '.join(BUILTIN)})")
        compiled = []
        for name, pattern in patterns.items():
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,23}", name) or name.lower() in (*BUILTIN, "policy"):
                raise ValueError(  # ("policy" is the ledger record's own key)
                    f"pattern name '{name[:40]}': 1-24 letters and digits, not a built-in kind's name"
                )
            try:
                compiled.append((name.lower(), re.compile(pattern)))
            except re.error as exc:
                raise ValueError(f"pattern '{name}': {exc}") from None
        return cls(chosen, tuple(compiled))

    def find(self, text: str) -> list[Found]:
        """Non-overlapping findings in text order."""
        found: list[Found] = []
        for name, pat in self.patterns:
            found += [Found(name, m.start(), m.end()) for m in pat.finditer(text) if m.end() > m.start()]
        if found:
            found.sort(key=lambda f: f.start)
            found = list(_disjoint(found))
        builtin = self._builtin(text)
        if not found:
            return builtin
        merged = sorted(found + builtin, key=lambda f: (f.start, f.kind not in self._custom))
        return list(_disjoint(merged))

    @property
    def _custom(self) -> set[str]:
        return {n for n, _ in self.patterns}

    def _builtin(self, text: str) -> list[Found]:
        kinds = self.kinds
        found = []
        for kind, m in candidates(text):
            if kind == "ip6":
                kind = "ip"
            if kind not in kinds:
                continue
            check = _VALID.get(kind)
            if check is None or check(m.group()):
                found.append(Found(kind, m.start(), m.end()))
        found.sort(key=lambda f: (f.start, _RANK[f.kind]))
        return list(_disjoint(found))


def _disjoint(found: Iterable[Found]) -> Iterator[Found]:
    end = -1
    for f in found:
        if f.start >= end:
            end = f.end
            yield f
