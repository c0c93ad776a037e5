"""CSV that legal reviewers can open in a spreadsheet without any cell running as a formula.

Excel, LibreOffice and Google Sheets evaluate a cell that starts with = + - @ (and, after
their own trimming, tab or CR) as a formula: `=HYPERLINK(...)` sends the neighbouring cells
to a stranger's server when clicked, `+cmd|...` asks to start a program through DDE. Names,
user agents and reasons in our exports are typed by subjects, browsers and staff, so every
CSV export writes through `SpreadsheetSafeWriter` here (a test fails on any other `csv.writer`).

Following OWASP's CSV injection guidance, such a cell gets a leading apostrophe, which
spreadsheets read as "this is text". A value that already starts with an apostrophe gets one
too, so the escape is reversible without ambiguity: removing one leading apostrophe from
every cell that has one gives back the exact value. Only strings are escaped: an int or float
cannot carry a formula, so negative numbers stay numbers. (defusedcsv does the same job but
misses tab and CR and rewrites every `|` in an escaped cell, changing values a reviewer
must see as they were.)
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any, Protocol

# What makes a spreadsheet evaluate a cell (OWASP), plus the escape character itself.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
ESCAPE = "'"


class _TextSink(Protocol):
    def write(self, text: str, /) -> Any: ...


def spreadsheet_safe(value: Any) -> Any:
    """The value as a spreadsheet shows it as text: strings that could start a formula get an apostrophe."""
    if isinstance(value, str) and value.startswith((*FORMULA_PREFIXES, ESCAPE)):
        return ESCAPE + value
    return value


class SpreadsheetSafeWriter:
    """`csv.writer` whose rows pass through `spreadsheet_safe`, cell by cell."""

    def __init__(self, sink: _TextSink) -> None:
        self._writer = csv.writer(sink)

    def writerow(self, row: Iterable[Any]) -> Any:
        """Returns what the sink's write() returned (a streaming export yields it as its next chunk)."""
        return self._writer.writerow([spreadsheet_safe(cell) for cell in row])
