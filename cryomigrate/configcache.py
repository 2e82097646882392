"""A cache of validated configurations, one entry per configuration file.

Parsing YAML and validating it with pydantic costs more in imports than everything else
a no-op ``apply`` does on SQLite (see bench/). The result depends only on the file's
bytes and on cryomigrate's own config code, so an entry holds a hash of both and is used
only while that hash still matches: an edited file, or an upgraded cryomigrate, simply
misses and overwrites its entry. ``${VAR}`` references are stored unresolved (they are
resolved per run), so no secret from the environment is written; what the file itself
spells out (a literal password, say) is copied as it is, under the user's 0700 folder.
Any problem with the cache directory just means no cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

_FORMAT = "2"  # 2: entries readable by their owner only; older ones are written anew


def _directory() -> Path:
    explicit = os.environ.get("CRYOMIGRATE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cryomigrate"


def _key(content: bytes) -> str:
    stamps = []
    for module in ("config.py", "configschema.py", "configvalues.py", "urls.py"):
        try:
            stat = Path(__file__).with_name(module).stat()
            stamps.append(f"{stat.st_mtime_ns}:{stat.st_size}")
        except OSError:
            stamps.append("?")
    return hashlib.sha256(f"{_FORMAT}:{':'.join(stamps)}:".encode() + content).hexdigest()


def _entry(path: Path) -> Path:
    name = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
    return _directory() / f"config-{name}.json"


def load(path: Path, content: bytes) -> dict[str, Any] | None:
    if os.environ.get("CRYOMIGRATE_NO_CACHE"):
        return None
    try:
        entry = json.loads(_entry(path).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("key") != _key(content):
        return None
    data = entry.get("value")
    return data if isinstance(data, dict) else None


def store(path: Path, content: bytes, data: dict[str, Any]) -> None:
    if os.environ.get("CRYOMIGRATE_NO_CACHE"):
        return
    target = _entry(path)
    temporary = target.with_suffix(f".{os.getpid()}.tmp")
    try:
        text = json.dumps({"key": _key(content), "value": data})
        if json.loads(text)["value"] != data:
            return  # YAML values JSON cannot keep exactly (dates, integer keys): no cache
    except (TypeError, ValueError):
        return
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Readable by its owner only, whatever the folder's mode: a literal password written
        # in environments.yaml is in it.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(descriptor, 0o600)  # a leftover temporary file keeps its mode otherwise
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, target)
    except OSError:
        temporary.unlink(missing_ok=True)
