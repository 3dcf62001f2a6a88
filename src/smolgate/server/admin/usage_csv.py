"""Ledger rows as CSV for a spreadsheet: every column, one row per request, safe to open.

A cell a spreadsheet would read as a formula (starting with = + - @, a tab or a carriage return) gets a leading
apostrophe: the alias and the error kind come from clients and upstreams, and `=HYPERLINK(…)` must stay text
(OWASP's CSV injection advice)."""

from __future__ import annotations

import csv
import io

from ...store import UsageRow

COLUMNS = tuple(UsageRow.__struct_fields__)
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell(v: object) -> str:
    text = "" if v is None else str(int(v)) if isinstance(v, bool) else str(v)
    return "'" + text if text.startswith(_FORMULA) else text


def usage_csv(rows: list[UsageRow]) -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([_cell(getattr(r, c)) for c in COLUMNS])
    return out.getvalue().encode()
