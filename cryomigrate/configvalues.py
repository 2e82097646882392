"""Checks of single configuration values, shared by the schema and by resolved ``${VAR}``s.

A value written in environments.yaml is checked when the file is validated; a value
that comes from ``${VAR}`` only once it is resolved for the environment in use. Both
paths call these pure functions, which raise ValueError with the message the user sees
after ``file:line: key:``.
"""

from __future__ import annotations

import re

from cryomigrate.urls import check_database_url

# ``${NAME}`` or ``${NAME:-default}``: a reference to the process environment.
VAR_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

KeyPath = tuple[str, ...]
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|min|h)\s*$")
_UNITS_MS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000}
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")

__all__ = ["VAR_REFERENCE", "KeyPath", "check_database_url", "check_table_name",
           "parse_duration"]


# lock_timeout and statement_timeout are int4 milliseconds on the server.
_MAX_TIMEOUT_MS = 2**31 - 1


def parse_duration(value: str) -> int:
    """'10s' -> 10000 (milliseconds); units ms, s, min, h as PostgreSQL spells them."""
    if value.strip() == "0":
        return 0
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"'{value}' is not a duration; write it like 500ms, 10s, 5min or 1h")
    ms = round(float(match[1]) * _UNITS_MS[match[2]])
    if ms > _MAX_TIMEOUT_MS:
        raise ValueError(f"'{value}' is longer than PostgreSQL's timeouts allow "
                         f"({_MAX_TIMEOUT_MS} ms, about 24 days); write 0 for no timeout")
    return ms


def check_table_name(value: str) -> None:
    """The history table is spelled into SQL, so only plain (schema.)identifiers pass."""
    if not _TABLE.match(value):
        raise ValueError("must be a table name, optionally schema-qualified (ops.history)")
