"""How numbers and facts are written in tables: one place, so the CLI, report.md and report.html agree.

A missing metric is always ``n/a`` (DESIGN.md §4: never invent a number).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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
"""A value this close to an exact landmark (a cosine of FP32 against itself) is that landmark."""


def number(value: float | None, digits: int = 4) -> str:
    if value is None:
        return NA
    if not math.isfinite(value):
        return str(value)
    return _fixed(value, digits)


@dataclass(frozen=True)
class Unit:
    """How one metric's numbers print, alone or against a bar: never two unequal numbers as one.

    Digits grow past ``digits`` until a value differs in print from its bar (a reader must not see
    "0.9900 >= 0.9900: FAIL" for a mean cosine of 0.98996) and from each of ``exact`` it is not (a
    cosine of 0.99998 is not "1.0000"; one flip in 10^5 pairs is not "0.00%").
    """

    digits: int
    """Decimals, or significant digits when ``significant``: the least a number gets."""
    suffix: str = ""
    """Written after every finite number: "%" for shares, " dB" where no header names the unit."""
    scale: float = 1.0
    """100 for shares printed as percent."""
    significant: bool = False
    """For errors that may be tiny (3e-05): significant digits instead of decimals."""
    exact: tuple[float, ...] = ()
    """Landmarks a different value must never print as (1 for cosines, 0 and 1 for shares)."""

    def _plain(self, value: float, digits: int) -> str:
        scaled = value * self.scale
        return f"{scaled:.{digits}g}" if self.significant else _fixed(scaled, digits)

    def _ambiguous(self, value: float, bar: float, digits: int) -> bool:
        text = self._plain(value, digits)
        if value != bar and text == self._plain(bar, digits):
            return True
        return any(abs(value - e) > EXACT_TOLERANCE and text == self._plain(e, digits) for e in self.exact)

    def pair(self, value: float | None, bar: float) -> tuple[str, str]:
        """``(value, bar)`` as text, with the same digits, enough that they never look equal unless equal."""
        if value is None or not math.isfinite(value):
            return number(value), self._plain(bar, self.digits) + self.suffix
        digits, most = self.digits, 17 if self.significant else 12
        while digits < most and self._ambiguous(value, bar, digits):
            digits += 1
        return self._plain(value, digits) + self.suffix, self._plain(bar, digits) + self.suffix

    def text(self, value: float | None) -> str:
        """One value alone (a table cell): ``n/a`` when missing, never printed as a landmark it is not."""
        if value is None or not math.isfinite(value):
            return number(value)
        return self.pair(value, value)[0]


SCORE = Unit(4, exact=(1.0,))
"""Cosine, AUC, mask IoU: 0.99998 (an FP16 variant) never prints as 1.0000, which would claim exact."""
DIFFERENCE = Unit(4, exact=(0.0,))
"""A difference of scores (AUC drop): a drop that is not zero never prints as 0.0000."""
SHARE = Unit(2, suffix="%", scale=100.0, exact=(0.0, 1.0))
"""A share of inputs or pairs (decision flips, top-1 agreement) as a percentage: how app teams talk."""
DECIBELS = Unit(2)
"""SQNR/PSNR in a column headed "dB": two decimals are finer than any gate bar."""
DB = Unit(2, suffix=" dB")
"""SQNR where no header names the unit (a gate's value and bar)."""
NATS = Unit(3, suffix=" nats", significant=True, exact=(0.0,))
"""KL divergence of a gate: may be tiny, so significant digits."""


def score(value: float | None) -> str:
    """Cosine or AUC (:data:`SCORE`)."""
    return SCORE.text(value)


def percent(share: float | None) -> str:
    """A share (0.0123) as a percentage ("1.23%", :data:`SHARE`)."""
    return SHARE.text(share)


def decibels(value: float | None) -> str:
    return DECIBELS.text(value)


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


def times(value: float | None) -> str:
    """A latency ratio ("0.63x"): below 1.00x is faster than the baseline."""
    return NA if value is None or not math.isfinite(value) else f"{_fixed(value, 2)}x"


def millis(value: float | None) -> str:
    return number(value, 2)


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


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
