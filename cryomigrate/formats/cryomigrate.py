"""cryomigrate's own format (DESIGN §2.1): the default, read by ``discovery``.

Listed here so that every format, the default included, has its module; the loader
reads these files itself (``sqlscript.parse_sections``), so ``sections`` is only for
callers that ask any format the same question.
"""

from __future__ import annotations

from pathlib import Path

from cryomigrate import sqlscript
from cryomigrate.discovery import Scan, scan_folder
from cryomigrate.formats.base import ForeignFile, Part, Sections


def scan(folder: Path) -> Scan:
    return scan_folder(folder)


def sections(file: ForeignFile, text: str, down: str | None) -> Sections:
    found = sqlscript.parse_sections(text, file.label)
    rollback = None
    if found.rollback is not None:
        rollback = Part(found.rollback, file.label, found.rollback_line)
    return Sections(Part(found.apply, file.label, found.apply_line), rollback,
                    found.transactional)


def missing_rollback(file: ForeignFile) -> tuple[str, str]:
    return "has no -- cryomigrate:rollback section", "add a rollback"
