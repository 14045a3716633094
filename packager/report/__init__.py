"""The human-readable build report: report.md for review in a PR, report.html with ROC plots.

Both are rendered from a ``BuildResult`` alone, so a stored results.json regenerates them exactly.
The renderer is loaded on first use: ``packager.report.tables`` (the summary and gate tables, the
gate failure messages) is imported by the CLI and the pipeline, which must not pay for jinja2 and the
templates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from packager.report.render import render_html, render_markdown, write_report

__all__ = ["render_html", "render_markdown", "write_report"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from packager.report import render

        return getattr(render, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
