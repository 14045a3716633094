"""The pinned inputs (``sources.toml``) as typed records.

Pins live in a data file, not in code, so updating a package version is a reviewed one-file change
and the tests can check the pins without downloading anything.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from faceid_data import PrepareError

SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
IDENTITY_PATTERN = re.compile(r"^[a-z][a-z0-9-]*$")


@dataclass(frozen=True)
class Member:
    """One file inside an archive: a model file to install (``dest``) or a photo (``identity``)."""

    path: str
    sha256: str
    dest: str | None = None
    identity: str | None = None
    faces: int = 1
    pad: int = 0

    @property
    def basename(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Source:
    """One pinned archive from a package registry."""

    name: str
    version: str
    via: Literal["pip", "apt"]
    kind: Literal["wheel", "sdist", "deb"]
    file: str
    sha256: str
    members: tuple[Member, ...]
    required: bool = True
    note: str = ""
    pip_args: tuple[str, ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        return f"{self.name}=={self.version}" if self.via == "pip" else f"{self.name}={self.version}"


def _member(raw: dict[str, Any], where: str) -> Member:
    member = Member(**raw)
    if not SHA256_PATTERN.match(member.sha256):
        raise PrepareError(f"{where}: sha256 of {member.path!r} is not 64 lowercase hex digits")
    if (member.dest is None) == (member.identity is None):
        raise PrepareError(f"{where}: member {member.path!r} needs exactly one of 'dest' or 'identity'")
    if member.identity is not None and not IDENTITY_PATTERN.match(member.identity):
        raise PrepareError(f"{where}: identity {member.identity!r} must match {IDENTITY_PATTERN.pattern}")
    return member


def _source(raw: dict[str, Any], where: str) -> Source:
    raw = dict(raw)
    members = tuple(_member(m, where) for m in raw.pop("member", []))
    pip_args = tuple(raw.pop("pip_args", ()))
    source = Source(members=members, pip_args=pip_args, **raw)
    if not SHA256_PATTERN.match(source.sha256):
        raise PrepareError(f"{where}: sha256 of {source.file!r} is not 64 lowercase hex digits")
    if (source.via, source.kind) not in {("pip", "wheel"), ("pip", "sdist"), ("apt", "deb")}:
        raise PrepareError(f"{where}: {source.name}: kind {source.kind!r} cannot come via {source.via!r}")
    if not members:
        raise PrepareError(f"{where}: {source.name} lists no [[source.member]]")
    return source


def load_sources(path: Path) -> list[Source]:
    """Read and check ``sources.toml``; a malformed pin is an error before anything is downloaded."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PrepareError(f"{path}: cannot read the pinned sources: {exc}") from None
    try:
        sources = [
            _source(raw, f"{path} [[source]] #{i + 1}") for i, raw in enumerate(data.get("source", []))
        ]
    except TypeError as exc:
        raise PrepareError(f"{path}: unexpected or missing key: {exc}") from None
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise PrepareError(f"{path}: a source is listed twice: {sorted(names)}")
    return sources
