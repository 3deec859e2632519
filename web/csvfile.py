"""Every CSV download is written here, so that no cell a spreadsheet opens can run as a formula.

Annotation set names and labels, term names and other text come from curators and files; a cell such as
``=HYPERLINK("https://evil.example","set")`` or ``=cmd|' /C calc'!A0`` would be a live formula in Excel, LibreOffice
or Google Sheets, in a file that other people download (an annotation set's labels reach the ``temporal.csv`` of
every curator's components of the movie). Following OWASP's advice on CSV injection, a text cell that starts with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading single quote, which spreadsheets show as
text and do not evaluate.

Numbers stay numbers: an ``int`` or ``float`` cell is written as it is, and so is text that is a plain decimal
number (``-0.53``, ``+1e-06``: the way the routes format their floats), because a number cannot be a formula
and a quote would turn every negative r into text. Only text is ever changed, and only at its start.
"""

from __future__ import annotations

import csv
import io
import numbers
import re
from collections.abc import Iterable, Sequence
from typing import Any

import flask

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def safe_cell(value: Any) -> Any:
    """``value`` as a cell no spreadsheet evaluates: numbers unchanged, None as empty, text that could start a
    formula prefixed with ``'``."""
    if value is None:
        return ""
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        return value
    text = str(value)
    if text.startswith(FORMULA_STARTS) and not _DECIMAL.fullmatch(text):
        return "'" + text
    return text


class SafeWriter:
    """A ``csv.writer`` whose every cell passes through :func:`safe_cell`."""

    def __init__(self, out: Any, **options: Any) -> None:
        self._writer = csv.writer(out, **options)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([safe_cell(cell) for cell in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_writer(out: Any, **options: Any) -> SafeWriter:
    """A CSV writer on ``out`` (``csv.writer``'s options) that neutralises formula cells."""
    return SafeWriter(out, **options)


def csv_text(header: Sequence[str], rows: Iterable[Iterable[Any]], preamble: Sequence[str] = ()) -> str:
    """A whole CSV: ``#`` comment lines (``preamble``, written as they are: they are the server's own text), the
    header and the rows, lines ending in ``\\n``."""
    out = io.StringIO()
    for line in preamble:
        out.write(f"# {line}\n")
    writer = csv_writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def csv_response(
    header: Sequence[str],
    rows: Iterable[Iterable[Any]],
    filename: str,
    cache_control: str,
    preamble: Sequence[str] = (),
) -> flask.Response:
    """A CSV download (``text/csv``, an attachment named ``filename``) of :func:`csv_text`."""
    response = flask.Response(csv_text(header, rows, preamble), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = cache_control
    return response
