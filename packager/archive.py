"""Deterministic zip archives: the same files give the same bytes, whenever and wherever zipped.

Entries are sorted, with a fixed timestamp (1980-01-01, the zip format's epoch), fixed permissions
(0644 files, 0755 folders) recorded as Unix ones whatever the host, and fixed compression, so a release
pipeline can compare archives by checksum (the way reproducible-builds.org asks of release tarballs).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

EPOCH = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644
DIR_MODE = 0o040755
UNIX = 3
"""``create_system`` of every entry: zipfile writes 0 (MS-DOS) on Windows, 3 elsewhere, and the modes
above are Unix ones (APPNOTE.TXT 4.4.2, "version made by")."""


def write_zip(folder: Path, archive: Path) -> Path:
    """Zip ``folder`` (entries named ``<folder name>/...``) into ``archive``; returns ``archive``.

    Symlinks are not followed (a bundle holds none); empty folders are kept as entries.
    """
    entries = sorted(p for p in folder.rglob("*") if not p.is_symlink())
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for path in entries:
            name = path.relative_to(folder.parent).as_posix()
            if path.is_dir():
                info = zipfile.ZipInfo(name + "/", EPOCH)
                info.create_system = UNIX
                info.external_attr = DIR_MODE << 16
                zf.writestr(info, b"")
                continue
            info = zipfile.ZipInfo(name, EPOCH)
            info.create_system = UNIX
            info.external_attr = FILE_MODE << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes(), compresslevel=9)
    return archive
