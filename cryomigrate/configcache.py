"""A cache of validated configurations, keyed by the file's exact bytes.

Parsing YAML and validating it with pydantic costs ~150 ms of imports, more than
everything else a no-op ``apply`` does on SQLite. The result depends only on the file's
bytes and on cryomigrate's own schema code, so it is cached by a hash of both: an edited
file, or an upgraded cryomigrate, simply misses. ``${VAR}`` references are stored
unresolved (they are resolved per run), so no secret from the environment is written.
Any problem with the cache directory just means no cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

_FORMAT = "1"


def _directory() -> Path:
    explicit = os.environ.get("CRYOMIGRATE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cryomigrate"


def _key(content: bytes) -> str:
    schema = Path(__file__).with_name("configschema.py")
    try:
        stamp = f"{schema.stat().st_mtime_ns}:{schema.stat().st_size}"
    except OSError:
        stamp = "?"
    digest = hashlib.sha256(f"{_FORMAT}:{stamp}:".encode() + content)
    return digest.hexdigest()


def load(content: bytes) -> dict[str, Any] | None:
    if os.environ.get("CRYOMIGRATE_NO_CACHE"):
        return None
    try:
        data = json.loads((_directory() / f"config-{_key(content)}.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def store(content: bytes, data: dict[str, Any]) -> None:
    if os.environ.get("CRYOMIGRATE_NO_CACHE"):
        return
    directory = _directory()
    target = directory / f"config-{_key(content)}.json"
    temporary = target.with_suffix(f".{os.getpid()}.tmp")
    try:
        text = json.dumps(data)
        if json.loads(text) != data:
            return  # YAML values JSON cannot keep exactly (dates, integer keys): no cache
    except (TypeError, ValueError):
        return
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, target)
    except OSError:
        temporary.unlink(missing_ok=True)
