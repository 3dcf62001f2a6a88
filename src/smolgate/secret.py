"""`Secret`: a credential that never prints, and the redaction of known secret values from text.

Every credential the gateway holds (upstream API keys, provider header values, client keys, the admin key,
the state store's URL) is a `Secret` from the moment the config is parsed. `str()`, `repr()`, f-strings and
`%s` all show `***`; only `reveal()` gives the value, at the one place it goes on the wire. `Redactor`
scrubs every known secret value (and its common encodings) out of text that leaves the process: upstream
error messages passed to clients, and log records.
"""

from __future__ import annotations

import base64
import hmac
import logging
import re
import weakref
from collections.abc import Iterable
from typing import NoReturn
from urllib.parse import quote, urlsplit, urlunsplit

MASK = "***"


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str | Secret) -> None:
        self._value = value.reveal() if isinstance(value, Secret) else str(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"'{MASK}'"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            other = other._value
        if not isinstance(other, str):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other.encode())

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> NoReturn:  # pickling would be a way to print it: refuse
        raise TypeError("a Secret cannot be pickled")


def reveal(value: Secret | str | None) -> str | None:
    if value is None:
        return None
    return value.reveal() if isinstance(value, Secret) else value


def as_secret(value: Secret | str | None) -> Secret | None:
    if value is None or isinstance(value, Secret):
        return value
    return Secret(value)


def redact_url(url: str, query: bool = False) -> str:
    """A URL with its password (and user name) masked: redis://:pw@host → redis://***@host; with `query`,
    each query value too (`?key=***`), for URLs where one may be a credential (a provider's base_url)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if query and parts.query:
        masked = "&".join(p.split("=", 1)[0] + f"={MASK}" if "=" in p else p for p in parts.query.split("&"))
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, masked, parts.fragment))
        parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{MASK}@{host}" + (f":{port}" if port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


_MIN_LEN = 6  # shorter "secrets" (test keys like "k") would redact ordinary words


class Redactor:
    """Replaces every known secret value, and its URL- and base64-encoded forms, with `***`."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for v in values:
            if not v or len(v) < _MIN_LEN:
                continue
            forms.add(v)
            forms.add(quote(v, safe=""))
            forms.add(base64.b64encode(v.encode()).decode().rstrip("="))
        # Longest first, so a key that contains another key is masked whole.
        ordered = sorted(forms, key=len, reverse=True)
        self._rx = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __call__(self, text: str) -> str:
        return self._rx.sub(MASK, text) if self._rx is not None else text

    @property
    def empty(self) -> bool:
        return self._rx is None


_FILTERS: weakref.WeakSet[RedactingFilter] = weakref.WeakSet()


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs secret values from each record's final message. Every live one is known to
    `redact_in_logs`, wherever it is attached (serve puts it on its log writers, not on the root logger)."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        super().__init__()
        self.values = [v for v in dict.fromkeys(values) if v]
        self.redactor = Redactor(self.values)
        _FILTERS.add(self)

    def add(self, values: Iterable[str]) -> None:
        new = [v for v in dict.fromkeys(values) if v and v not in self.values]
        if new:
            self.values += new
            self.redactor = Redactor(self.values)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.redactor.empty:
            return True
        try:
            msg = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler
            return True
        clean = self.redactor(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = self.redactor(text)
        return True


def redact_in_logs(values: Iterable[str]) -> None:
    """Add secret values (an account added at run time, a reloaded config's) to every live `RedactingFilter`."""
    values = list(values)
    for f in list(_FILTERS):
        f.add(values)
