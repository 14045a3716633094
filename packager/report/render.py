"""Render report.md and report.html from the Jinja2 templates in ``templates/report``.

The templates live beside the other code templates (kotlin/, swift/...) so that one folder holds
everything generated as text; ``packager.resources`` finds that folder wherever packager is installed.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import jinja2

from packager.errors import OutputError
from packager.report import format as fmt
from packager.report.context import ReportView, report_view
from packager.report.plots import data_uri, roc_png
from packager.resources import template_loader
from packager.results import BuildResult

MARKDOWN_TEMPLATE = "report.md.j2"
HTML_TEMPLATE = "report.html.j2"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=template_loader("report"),
        autoescape=lambda name: name is not None and name.endswith(".html.j2"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["cell"] = fmt.md_cell
    env.filters["code"] = fmt.md_code
    env.filters["cell_code"] = fmt.md_cell_code
    env.filters["verdict"] = fmt.verdict
    return env


def _with_plots(view: ReportView, result: BuildResult) -> ReportView:
    models = []
    for model_view, model in zip(view.models, result.models, strict=True):
        png = roc_png(model)
        models.append(replace(model_view, roc_png=data_uri(png) if png is not None else None))
    return replace(view, models=models)


def render_markdown(result: BuildResult) -> str:
    text = _environment().get_template(MARKDOWN_TEMPLATE).render(report=report_view(result))
    return text.rstrip("\n") + "\n"


def render_html(result: BuildResult) -> str:
    """The markdown report's content plus one embedded ROC plot per model with evaluation pairs."""
    view = _with_plots(report_view(result), result)
    text = _environment().get_template(HTML_TEMPLATE).render(report=view)
    return text.rstrip("\n") + "\n"


def _write_atomic(path: Path, text: str) -> None:
    """Readers (CI upload, a browser) never see a half-written report."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8", newline="\n")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(
            path, f"cannot write the report ({exc.strerror})", "check the output folder is writable"
        ) from exc


def write_report(result: BuildResult, out_dir: Path) -> list[Path]:
    """Write ``report.md`` and ``report.html`` into ``out_dir`` (created if needed); return their paths."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            out_dir, f"cannot create the folder ({exc.strerror})", "choose a writable output folder"
        ) from exc
    written = []
    for name, text in (("report.md", render_markdown(result)), ("report.html", render_html(result))):
        path = out_dir / name
        _write_atomic(path, text)
        written.append(path)
    return written
