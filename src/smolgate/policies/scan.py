"""Finding built-in kinds fast: cheap anchors over the whole text, precise patterns only around them.

A regex scan of the whole text costs ~10 ns per character in CPython's `re` whatever the pattern (it tries
every position), about 2 ms for a 4k-token prompt. Instead the text is mapped once per anchor family to a byte
string of character classes (`bytes.translate`, ~0.5 ns per character) where C-speed `find` / literal-led
searches locate the few places a value can start: a run of 20+ key characters (secrets, tokens), a run of
digits (cards, phones, IPv4, IBANs), two capitals and two digits (IBANs), a colon between hex digits (IPv6),
an `@` (e-mail), `eyJ` (JWTs), `-----BEGIN` (PEM). The precise pattern of those kinds then runs in a small
window around each anchor. Positions in the class bytes are the text's own: a non-ASCII character maps to one
byte (`encode("ascii", "replace")`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# Every kind starts where no word, number, address or path continues to its left.
_LEFT = r"(?<![\w.+@/-])"
SECRET = "|".join(
    (
        r"-----BEGIN (?P<pem>[A-Z0-9 ]{1,40})-----[\s\S]{1,16384}?-----END (?P=pem)-----",
        r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}",  # JWT: header and claims are JSON
        r"sk-(?:ant-|proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}",  # OpenAI, Anthropic
        r"AIza[0-9A-Za-z_-]{35}",  # Google API keys
        r"(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})",  # GitHub
        r"xox[abposr]-[A-Za-z0-9-]{15,}",  # Slack
        r"(?:AKIA|ASIA)[0-9A-Z]{16}",  # AWS access key ids
        r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe secret / restricted keys
        r"hf_[A-Za-z]{30,}",  # Hugging Face
    )
)
_TOKEN_CHARS = "A-Za-z0-9+/_-"
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# International (+CC …), North American ((415) 555-0100, 415-555-0100) or national with a trunk 0 and
# separators (030 1234 5678, 06 12 34 56 78). Plain digit runs, dates (2024-01-15) and versions do not match.
_PHONE = (
    r"\+\d{1,3}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,4}){2,6}"
    r"|(?:\(\d{3}\) ?|\d{3}[-.])\d{3}[-.]\d{4}"
    r"|0\d{1,4}(?:[ /-]\d{2,8}){1,4}"
)

RUN = re.compile(
    rf"{_LEFT}(?:(?P<secret>{SECRET})|(?P<token>[{_TOKEN_CHARS}]{{24,256}}={{0,2}})(?![={_TOKEN_CHARS}]))"
)
EMAIL = re.compile(
    rf"{_LEFT}[A-Za-z0-9._%+-]{{1,64}}@[A-Za-z0-9-]{{1,63}}(?:\.[A-Za-z0-9-]{{1,63}})*\.[A-Za-z]{{2,24}}"
)
DIGITS = re.compile(
    rf"{_LEFT}(?:(?P<iban>[A-Z]{{2}}\d{{2}}(?: ?[A-Z0-9]{{4}}){{2,7}}(?: ?[A-Z0-9]{{1,3}})?)(?!\w)"
    rf"|(?P<card>\d(?:[ -]?\d){{12,18}})(?![\w-])"
    rf"|(?P<ip>{_OCTET}(?:\.{_OCTET}){{3}})(?![\d.]*\d)"
    rf"|(?P<phone>{_PHONE})(?!\w))"
)
IP6 = re.compile(
    rf"{_LEFT}(?:(?:[0-9A-Fa-f]{{0,4}}:){{2,7}}[0-9A-Fa-f]{{0,4}}|::(?:[0-9A-Fa-f]{{1,4}}:){{0,6}}"
    r"[0-9A-Fa-f]{1,4})(?![\w:])"
)


def _table(classes: dict[str, bytes]) -> bytes:
    out = bytearray(b" " * 256)
    for chars, cls in classes.items():
        for c in chars:
            out[ord(c)] = cls[0]
    return bytes(out)


_DIGITS = "0123456789"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = _UPPER.lower()
_KEYISH = _table({_DIGITS + _UPPER + _LOWER + "+/_-": b"a"})  # characters of keys and tokens
_NUMERIC = _table({_DIGITS: b"d", " -()/": b"s", ".": b".", _UPPER: b"U"})
_HEX = _table({_DIGITS + "abcdefABCDEF": b"h", ":": b":"})
_RUN20 = b"a" * 20
_LONGEST_RUN = 512  # longer runs of key characters are data (base64 of a file), not a key or a token
_DIGIT_ZONE = re.compile(rb"d(?:[s.]{0,2}d){3,}")  # four digits or more, a separator or two between
_IBAN_ANCHOR = re.compile(rb"UUdd")
_IP6_ANCHOR = re.compile(rb":(?::|h{1,4}:)")  # literal-led: the search skips to each colon at C speed


def candidates(text: str) -> Iterator[tuple[str, re.Match[str]]]:
    """(kind, match) for every place a built-in kind's precise pattern matches; unvalidated, maybe overlapping."""
    n = len(text)
    raw = text.encode("ascii", "replace")  # one byte per character, whatever the text
    p = raw.find(b"@")
    while p >= 0:
        for email in EMAIL.finditer(text, max(0, p - 65), min(n, p + 260)):
            if email.start() <= p < email.end():  # the address around this '@' (not a neighbour's)
                yield "email", email
                break
        p = raw.find(b"@", p + 1)
    covered: list[tuple[int, int]] = []  # JWTs and PEM blocks: the key runs inside them are theirs
    for literal in (b"eyJ", b"-----BEGIN"):
        p = raw.find(literal)
        while p >= 0:
            for kind, m in _run_at(text, p, n):
                covered.append(m.span())
                yield kind, m
            p = raw.find(literal, p + 1)
    covered.sort()
    keyish = raw.translate(_KEYISH)
    p = keyish.find(_RUN20)
    while p >= 0:
        end = keyish.find(b" ", p)
        end = n if end < 0 else end
        while covered and covered[0][1] <= p:
            covered.pop(0)
        if not (covered and covered[0][0] <= p) and end - p <= _LONGEST_RUN:
            yield from _run_at(text, p, min(n, end + 3))  # the run, and what may follow a token ("==")
        p = keyish.find(_RUN20, end)
    numeric = raw.translate(_NUMERIC)
    for z in _DIGIT_ZONE.finditer(numeric):
        yield from _in(DIGITS, text, max(0, z.start() - 2), min(n, z.end() + 2))
    for z in _IBAN_ANCHOR.finditer(numeric):
        yield from _in(DIGITS, text, z.start(), min(n, z.start() + 45))
    if b":" in raw:
        hexes = raw.translate(_HEX)
        done = -1
        for z in _IP6_ANCHOR.finditer(hexes):
            if z.start() < done:
                continue
            done = min(n, z.end() + 40)
            for m in IP6.finditer(text, max(0, z.start() - 45), done):
                yield "ip6", m


def _run_at(text: str, p: int, end: int) -> Iterator[tuple[str, re.Match[str]]]:
    m = RUN.match(text, p, end)
    if m is not None and m.lastgroup is not None:
        yield ("token" if m.lastgroup == "token" else "secret"), m


def _in(pattern: re.Pattern[str], text: str, start: int, end: int) -> Iterator[tuple[str, re.Match[str]]]:
    for m in pattern.finditer(text, start, end):
        if m.lastgroup is not None:
            yield m.lastgroup, m
