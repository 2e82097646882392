"""A fleet environment's databases: its ``databases:`` list and its ``databases_file:``.

The file is read when the environment is used, like ``${VAR}``: an inventory written by
a deploy script may change between runs without touching environments.yaml (and the
config cache, which keys on that file alone). Each URL is checked here, with the file and
line it came from, so that a typo on line 40 of a 100-line inventory is an input error
before any database is touched, never database 40 failing half-way through a run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryomigrate.configvalues import VAR_REFERENCE
from cryomigrate.errors import ConfigError
from cryomigrate.redact import register_url
from cryomigrate.urls import check_database_url, database_identity, mask_password

# ``url`` written at ``where`` (``file:line: key``), for messages.
Located = tuple[str, str]


def fleet_databases(listed: list[Located], file: str | None, *, file_where: str, key: str,
                    base: Path, resolve: Callable[[str, str], str],
                    read_file: bool = True) -> tuple[str, ...]:
    """Every database URL of a fleet, in configuration order: the list, then the file.

    ``listed`` holds each list entry (already ``${VAR}``-resolved) with where it was
    written; ``file_where`` (``environments.yaml:7``) and ``key``
    (``environments.tenants.databases_file``) say where the file was named; ``resolve``
    resolves ``${VAR}`` in a line of the file, naming that line if one is unset.
    ``read_file=False`` skips the file (``validate`` rendering templates for environments
    it does not run against needs only their vars).
    """
    found: list[Located] = list(listed)
    if file is not None and read_file:
        found += _read_file(base / file, file_where, key, resolve)
    if not found and (read_file or file is None):
        raise ConfigError(f"{file_where}: {key}: the fleet has no database; list at least "
                          "one URL under databases: or in the databases_file")
    first: dict[str, str] = {}
    for url, where in found:
        register_url(url)
        # validate (read_file=False) may leave an unset ${VAR}; a run has resolved them all
        if read_file or not VAR_REFERENCE.search(url):
            try:
                check_database_url(url)
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        identity = database_identity(url)
        if identity in first:
            raise ConfigError(f"{where}: {mask_password(url)} is a database already listed "
                              f"at {first[identity]}; list each database once, or two runs "
                              "of one fleet would migrate it side by side")
        first[identity] = where
    return tuple(url for url, _ in found)


def _read_file(path: Path, file_where: str, key: str, resolve: Callable[[str, str], str]
               ) -> list[Located]:
    """One URL per line; blank lines and ``#`` comments (whole-line or after a space)
    are skipped. A URL never holds a space, so `` #`` cannot be part of one."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{file_where}: {key}: {path} cannot be read: {reason}") from None
    found: list[Located] = []
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.split(" #", 1)[0].split("\t#", 1)[0].strip()
        if not content or content.startswith("#"):
            continue
        where = f"{path}:{number}: {key}"
        if any(c.isspace() for c in content):
            raise ConfigError(f"{where}: one database URL per line; this line holds "
                              "several words")
        found.append((resolve(content, where), where))
    return found


def shard(items: tuple[str, ...], index: int, count: int) -> tuple[str, ...]:
    """The ``index``-th (1-based) of ``count`` contiguous slices of ``items``.

    Fixed by the configured order alone, so N machines given 1/N .. N/N each take a
    different slice with no coordinator, and together take every database once. Slice
    sizes differ by at most one.
    """
    if not 1 <= index <= count:
        raise ConfigError(f"shard {index}/{count}: K must be from 1 to N")
    size = len(items)
    return items[(index - 1) * size // count:index * size // count]
