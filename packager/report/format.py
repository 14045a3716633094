"""How numbers and facts are written in tables: one place, so the CLI, report.md and report.html agree.

A missing metric is always ``n/a`` (DESIGN.md §4: never invent a number).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

NA = "n/a"
MEGABYTE = 1_000_000
"""Sizes are decimal MB, like the file browsers and app stores that app teams compare against."""


def _fixed(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}"
    # A tiny negative that rounds to zero (an AUC "drop" of -1e-17) must not print as "-0.0000".
    if text.startswith("-") and not text.strip("-0."):
        text = text[1:]
    return text


EXACT_TOLERANCE = 1e-9


def number(value: float | None, digits: int = 4) -> str:
    if value is None:
        return NA
    if not math.isfinite(value):
        return str(value)
    return _fixed(value, digits)


def score(value: float | None, digits: int = 4) -> str:
    """Cosine or AUC: like ``number``, with extra digits so a value below 1 never prints as 1.0000.

    FP16 variants sit at 0.99998; "1.0000" would claim they are exact.
    """
    if value is None or not math.isfinite(value):
        return number(value, digits)
    if abs(value - 1.0) < EXACT_TOLERANCE:
        return _fixed(1.0, digits)  # float rounding of an exact match, e.g. FP32 against itself
    return against(value, value, digits)[0]


def percent(share: float | None, digits: int = 2) -> str:
    """A share (0.0123) as a percentage ("1.23%"): how app teams talk about flips."""
    return NA if share is None else f"{number(share * 100.0, digits)}%"


def decibels(value: float | None) -> str:
    """SQNR/PSNR: two decimals are finer than any gate bar."""
    return number(value, 2)


def small(value: float | None) -> str:
    """An error that may be tiny (max abs 3e-05 of an FP16 output): 3 significant digits, so it never
    prints as a zero it is not; an exact zero prints ``0``."""
    if value is None or not math.isfinite(value):
        return number(value)
    return f"{value:.3g}"


def megabytes(size_bytes: int | None) -> str:
    return NA if size_bytes is None else f"{size_bytes / MEGABYTE:.2f}"


def ratio(value: float | None) -> str:
    return number(value, 3)


def millis(value: float | None) -> str:
    return number(value, 2)


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def against(value: float | None, bar: float, digits: int = 4) -> tuple[str, str]:
    """``(value, bar)`` with enough digits that a value unequal to its bar never prints equal to it.

    Otherwise a reader sees "0.9900 >= 0.9900: FAIL" for a mean cosine of 0.98996. For the same
    reason a value just below 1 (a cosine of 0.99998) gets the digits to not print as 1.0000.
    """
    if value is None or not math.isfinite(value):
        return number(value, digits), _fixed(bar, digits)

    def ambiguous(d: int) -> bool:
        looks_like_bar = value != bar and _fixed(value, d) == _fixed(bar, d)
        looks_like_one = value < 1.0 and _fixed(value, d) == _fixed(1.0, d)
        return looks_like_bar or looks_like_one

    while digits < 12 and ambiguous(digits):
        digits += 1
    return _fixed(value, digits), _fixed(bar, digits)


def detail(value: object) -> str:
    """Plain text for a recipe detail (excluded node lists, calibration settings, nested tables)."""
    if value is None:
        return NA
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, Mapping):
        return "; ".join(f"{key}: {detail(item)}" for key, item in value.items()) or "none"
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return ", ".join(detail(item) for item in value) or "none"
    return str(value)


def _one_line(text: object) -> str:
    return str(text).replace("\r", " ").replace("\n", " ")


def md_cell(text: object) -> str:
    """Text safe inside a Markdown table cell: a ``|`` or newline would split or end the row."""
    return _one_line(text).replace("\\", "\\\\").replace("|", "\\|")


def md_code(text: object) -> str:
    """An inline code span: node names like ``/conv_1/Conv*`` stay literal (backslashes included)."""
    body = _one_line(text)
    fence = "``" if "`" in body else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def md_cell_code(text: object) -> str:
    """A code span inside a table cell: GFM still splits cells on ``|`` there, and unescapes ``\\|``."""
    return md_code(text).replace("|", "\\|")
