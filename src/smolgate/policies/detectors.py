"""Detectors of personal data and secrets in text: ours, regex + checksum, one pass over the text.

One compiled alternation finds candidates left to right; where several kinds could start at one position the
first listed wins (a PEM block before the key inside it, a card before a phone number). A candidate is kept only
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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

# Built-in kinds, in the order they win at one position. Their names are the ledger's counters and the
# placeholders' stems (⟦EMAIL_1⟧).
BUILTIN = ("secret", "email", "iban", "card", "ip", "phone", "token")

_SECRET = "|".join(
    (
        r"-----BEGIN (?P<pem>[A-Z0-9 ]{1,40})-----[\s\S]{1,16384}?-----END (?P=pem)-----",
        r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}",  # JWT: header and claims are JSON
        r"sk-(?:ant-|proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}",  # OpenAI, Anthropic
        r"AIza[0-9A-Za-z_-]{35}",  # Google API keys
        r"(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})",  # GitHub
        r"xox[abposr]-[A-Za-z0-9-]{10,}",  # Slack
        r"(?:AKIA|ASIA)[0-9A-Z]{16}",  # AWS access key ids
        r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe secret / restricted keys
        r"hf_[A-Za-z]{30,}",  # Hugging Face
    )
)
_EMAIL = r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}"
_IBAN = r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?"
_CARD = r"\d(?:[ -]?\d){12,18}"
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IP = rf"{_OCTET}(?:\.{_OCTET}){{3}}(?![\d.]*\d)|(?:[0-9A-Fa-f]{{0,4}}:){{2,7}}[0-9A-Fa-f]{{0,4}}(?![\w:])"
# International (+CC …), North American ((415) 555-0100, 415-555-0100) or national with a trunk 0 and
# separators (030 1234 5678, 06 12 34 56 78). Plain digit runs, dates (2024-01-15) and versions do not match.
_PHONE = (
    r"\+\d{1,3}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,4}){2,6}"
    r"|(?:\(\d{3}\) ?|\d{3}[-.])\d{3}[-.]\d{4}"
    r"|0\d{1,4}(?:[ /-]\d{2,8}){1,4}"
)
_TOKEN = r"[A-Za-z0-9+/_=-]{24,256}"
_TOKEN_CHARS = "A-Za-z0-9+/_=-"

# Each kind must start where no word (or number) continues to its left, and end where none continues.
_PATTERN = re.compile(
    rf"(?<![\w.+@/-])(?:(?P<secret>{_SECRET})|(?P<email>{_EMAIL})|(?P<iban>{_IBAN})(?![\w])"
    rf"|(?P<card>{_CARD})(?![\w-])|(?P<ip>{_IP})|(?P<phone>{_PHONE})(?![\w])"
    rf"|(?P<token>{_TOKEN})(?![{_TOKEN_CHARS}]))"
    r"|(?<![\w.+@/-])(?P<ip6>::(?:[0-9A-Fa-f]{1,4}:){0,6}[0-9A-Fa-f]{1,4})(?![\w:])"
)
# A cheap gate: text with no digit, '@', or run of key-ish characters cannot hold any built-in kind.
_ANY = re.compile(r"[\d@]|[A-Za-z0-9_-]{20}|-----BEGIN")


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
    counts: dict[str, int] = {}
    for c in s:
        counts[c] = counts.get(c, 0) + 1
    return -sum(k / n * math.log2(k / n) for k in counts.values())


def token_ok(s: str) -> bool:
    """A random-looking token: upper, lower and digits mixed, and near the entropy of random base62 (long
    identifiers, hex hashes, UUIDs and base64 of text fall below)."""
    if not (any(c.isdigit() for c in s) and any(c.isupper() for c in s) and any(c.islower() for c in s)):
        return False
    return entropy(s) >= min(4.0, math.log2(len(s)) - 0.6)


def _digits(s: str) -> str:
    return "".join(c for c in s if c.isdigit())


def _card_ok(s: str) -> bool:
    d = _digits(s)
    return 13 <= len(d) <= 19 and luhn(d) and len(set(d)) > 1


def _phone_ok(s: str) -> bool:
    n = len(_digits(s))
    return 8 <= n <= 15 if s.startswith("+") else 10 <= n <= 12


def _ip6_ok(s: str) -> bool:
    if s.count(":") < 2 or sum(c not in ":" for c in s) < 3:
        return False
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return False
    return True


def _ip_ok(s: str) -> bool:
    return "." in s or _ip6_ok(s)


_VALID: dict[str, Callable[[str], bool]] = {
    "iban": iban_ok,
    "card": _card_ok,
    "phone": _phone_ok,
    "ip": _ip_ok,
    "ip6": _ip6_ok,
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
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,23}", name) or name.lower() in BUILTIN:
                raise ValueError(
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
        if _ANY.search(text) is None:
            return found
        builtin = list(self._builtin(text))
        if not found:
            return builtin
        merged = sorted(found + builtin, key=lambda f: (f.start, f.kind not in self._custom))
        return list(_disjoint(merged))

    @property
    def _custom(self) -> set[str]:
        return {n for n, _ in self.patterns}

    def _builtin(self, text: str) -> Iterator[Found]:
        kinds = self.kinds
        for m in _PATTERN.finditer(text):
            kind = m.lastgroup
            if kind == "pem":  # the inner name group of a PEM block
                kind = "secret"
            elif kind == "ip6":
                if "ip" in kinds and _ip6_ok(m.group()):
                    yield Found("ip", m.start(), m.end())
                continue
            if kind is None or kind not in kinds:
                continue
            check = _VALID.get(kind)
            if check is None or check(m.group()):
                yield Found(kind, m.start(), m.end())


def _disjoint(found: Iterable[Found]) -> Iterator[Found]:
    end = -1
    for f in found:
        if f.start >= end:
            end = f.end
            yield f
