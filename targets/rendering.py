"""How both platforms turn a checked package description into files: one Jinja2 environment over the
project's templates, rendered jobs sorted by path, and files written with ``\\n`` newlines and no
timestamps, so the same description always gives the same bytes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import jinja2

from packager.errors import PackagerError
from packager.resources import template_loader

Job = tuple[str, str, object]
"""(output path relative to the package folder, template name ``kind/file.j2``, the model view or None)."""


class CodegenError(PackagerError):
    """A package description cannot become working code; every problem names its field and fix."""

    def __init__(self, what: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"cannot generate {what}: " + "; ".join(problems))


def environment(kinds: Iterable[str], filters: Mapping[str, Callable[..., str]]) -> jinja2.Environment:
    """Templates of ``templates/<kind>/`` as ``<kind>/<file>``; an undefined name is an error, blocks
    leave no blank lines, nothing is escaped (the filters make each language's literals)."""
    env = jinja2.Environment(
        loader=jinja2.PrefixLoader({kind: template_loader(kind) for kind in kinds}),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(filters)
    return env


def render(env: jinja2.Environment, jobs: Iterable[Job], base: Mapping[str, object]) -> dict[str, str]:
    """Relative path -> text, sorted by path; each template gets ``base`` and its view as ``m``; one
    trailing newline per file."""
    rendered = {}
    for path, template, view in sorted(jobs, key=lambda job: job[0]):
        rendered[path] = env.get_template(template).render(**base, m=view).rstrip("\n") + "\n"
    return rendered


def write_tree(files: Mapping[str, str], folder: Path) -> list[Path]:
    """Write ``files`` (relative path -> text) under ``folder`` as UTF-8; returns the paths in order."""
    written = []
    for rel, text in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
        written.append(path)
    return written
