"""The text templates packager renders: report today; kotlin, swift, gradle and spm for the targets next.

They live in the repository's top-level ``templates/`` folder, which pyproject.toml installs as the resource
package ``packager_templates`` (``[tool.setuptools.package-dir]``). They are found with importlib.resources,
so an installed wheel and an editable install both work; nothing walks up from ``__file__``.
"""

from __future__ import annotations

import importlib
import importlib.resources
from collections.abc import Callable, Iterator
from importlib.resources.abc import Traversable
from pathlib import Path
from types import ModuleType

import jinja2
from jinja2.loaders import split_template_path

from packager.errors import PackagerError

TEMPLATE_PACKAGE = "packager_templates"
"""The name pyproject.toml gives ``templates/``; the folder holds no Python, so it is a namespace package."""


class TemplatesNotFound(PackagerError):
    """Templates are missing from the installed copy: the install is broken or older than the templates."""

    def __init__(self, problem: str) -> None:
        fix = "reinstall packager from its repository (pip install . or pip install -e .)"
        super().__init__(f"{problem}. Fix: {fix}")


def _namespace_root(module: ModuleType) -> Traversable:
    """The first real folder of a namespace package.

    setuptools' editable finder puts a placeholder entry (``__editable__...__path_hook__``) in a namespace
    package's ``__path__``; Python 3.11's importlib.resources refuses it (NotADirectoryError), and
    importlib_resources 6.4.5 fixed that by skipping such entries (python/importlib_resources#311).
    """
    for entry in module.__path__:
        if Path(entry).is_dir():
            return Path(entry)
    raise TemplatesNotFound(f"{TEMPLATE_PACKAGE} has no folder on disk (its path: {list(module.__path__)})")


def templates_root() -> Traversable:
    """The installed ``templates/`` folder."""
    try:
        return importlib.resources.files(TEMPLATE_PACKAGE)
    except ModuleNotFoundError as exc:
        raise TemplatesNotFound(f"the templates package {TEMPLATE_PACKAGE} is not installed") from exc
    except NotADirectoryError:
        return _namespace_root(importlib.import_module(TEMPLATE_PACKAGE))


def template_dir(kind: str) -> Traversable:
    """The templates of one kind (``report``, later ``kotlin``...): a folder to read or copy files from."""
    root = templates_root()
    folder = root / kind
    if not folder.is_dir():
        found = ", ".join(sorted(child.name for child in root.iterdir() if child.is_dir())) or "none"
        raise TemplatesNotFound(f"no {kind!r} templates in {TEMPLATE_PACKAGE} (it has: {found})")
    return folder


def _walk(folder: Traversable, prefix: str) -> Iterator[str]:
    for child in folder.iterdir():
        if child.is_dir():
            yield from _walk(child, f"{prefix}{child.name}/")
        elif child.is_file():
            yield f"{prefix}{child.name}"


class TraversableLoader(jinja2.BaseLoader):
    """Jinja2 templates read from an importlib.resources folder (any Traversable, not only a directory).

    Template names are ``/``-separated paths below that folder; ``..`` is refused as by jinja2's own loaders.
    """

    def __init__(self, folder: Traversable) -> None:
        self.folder = folder

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        path = self.folder
        for piece in split_template_path(template):
            path = path / piece
        if not path.is_file():
            raise jinja2.TemplateNotFound(template)
        # Callers build one Environment per render, so a template read once is never stale.
        return path.read_text(encoding="utf-8"), str(path), lambda: True

    def list_templates(self) -> list[str]:
        return sorted(_walk(self.folder, ""))


def template_loader(kind: str) -> TraversableLoader:
    """A jinja2 loader over ``template_dir(kind)``."""
    return TraversableLoader(template_dir(kind))
