"""Backends by URL scheme; each driver is imported only when its scheme is used."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryomigrate.backends.base import (
    Backend,
    Expect,
    QueryError,
    QueryResult,
    Transaction,
)
from cryomigrate.errors import ConfigError

__all__ = [
    "Backend", "ConnectOptions", "Expect", "QueryError", "QueryResult", "Transaction",
    "open_backend",
]


@dataclass(frozen=True)
class ConnectOptions:
    """What a backend needs besides the URL; timeouts in milliseconds."""

    base_dir: Path
    lock_wait_ms: int = 60_000
    lock_timeout_ms: int | None = None
    statement_timeout_ms: int | None = None
    read_only: bool = False
    lock_name: str = "cryomigrate_history"  # runs sharing a history table share a lock
    pooler: str | None = None  # "transaction": no session-level setting is ever made
    service_key: str | None = None  # the Supabase HTTP API's key (a secret)


def open_backend(url: str, options: ConnectOptions) -> Backend:
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        from cryomigrate.backends.sqlite import SqliteBackend

        return SqliteBackend.connect(url, options)
    if scheme in ("postgresql", "postgres"):
        from cryomigrate.backends.postgres import PostgresBackend

        return PostgresBackend.connect(url, options)
    if scheme in ("https", "http"):
        from cryomigrate.backends.supabase_http import SupabaseHttpBackend

        return SupabaseHttpBackend.connect(url, options)
    raise ConfigError(
        f"unsupported database URL scheme '{scheme or url}': use sqlite:///file.db, "
        "postgresql://..., postgres://... or https://<project-ref>.supabase.co"
    )
