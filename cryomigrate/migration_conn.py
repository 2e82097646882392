"""The ``conn`` object a Python migration receives.

It keeps the call shape of the Supabase client the project grew out of,
``conn.sql("...").execute().data``, so existing migration scripts run unchanged. All it
does goes through the backend on the migration's own connection, and so inside the
migration's transaction.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from cryomigrate import sqlscript, templating
from cryomigrate.backends.base import Backend, Params, QueryError, QueryResult, Transaction
from cryomigrate.errors import MigrationFailed


class SqlQuery:
    """A query waiting for ``.execute()``, as in ``conn.sql(...).execute()``."""

    def __init__(self, conn: MigrationConnection, query: str, params: Params) -> None:
        self._conn = conn
        self._query = query
        self._params = params

    def execute(self) -> QueryResult:
        conn = self._conn
        where = conn.where_called()
        if self._params is not None:
            # Transaction control is the same with parameters: BEGIN or COMMIT not sent,
            # ROLLBACK refused; the rest is bound by the driver in its own placeholder
            # style, the SQL not rewritten (blanking keeps every placeholder in place).
            checked = sqlscript.prepare(self._query, origin=f"{where}: conn.sql()",
                                        transactional=conn.transactional, notice=conn._notice)
            if checked.dropped_control and not checked.statements:
                return QueryResult()
            try:
                return conn._backend.query(checked.text, self._params)
            except QueryError as exc:
                raise QueryError(f"{where}: conn.sql(): {exc}", sqlstate=exc.sqlstate) from exc
        # Errors then read "001_x.py line 12: conn.sql() SQL line 2: ...".
        script = sqlscript.prepare(self._query, origin=f"{where}: conn.sql() SQL",
                                 transactional=conn.transactional, notice=conn._notice)
        return conn._backend.run_script(script)


class MigrationConnection:
    def __init__(self, backend: Backend, *, environment: str, vars: dict[str, Any],
                 origin: str, transactional: bool, path: str = "",
                 notice: Callable[[str], None] | None = None) -> None:
        self._backend = backend
        self._notice = notice
        self.environment = environment
        self.vars = vars
        self.origin = origin
        self.path = path
        self.transactional = transactional
        self._transaction: Transaction | None = None  # the migration's own, while it runs

    @property
    def dialect(self) -> str:
        """'postgresql' or 'sqlite', for migrations that must speak both."""
        return self._backend.dialect

    def sql(self, query: str, params: Params = None) -> SqlQuery:
        return SqlQuery(self, query, params)

    def rpc(self, name: str, params: dict[str, Any] | None = None) -> Any:
        """The Supabase client's own ``rpc(...)`` (call ``.execute()``), over the HTTP API."""
        return self._supabase_client("rpc").rpc(name, params or {})

    def table(self, name: str) -> Any:
        """The Supabase client's own ``table(...)`` query builder, over the HTTP API."""
        return self._supabase_client("table").table(name)

    def _supabase_client(self, method: str) -> Any:
        client = getattr(self._backend, "client", None)
        if client is None:
            raise MigrationFailed(
                f"{self.where_called()}: conn.{method}() is the Supabase client's and needs the "
                "Supabase HTTP API (database: https://..., service_key: ...); over a direct "
                "connection use conn.sql(...)")
        return client

    def render(self, template: str, **extra: Any) -> str:
        # Lines counted in the template string, placed at the call (``002_x.py line 3``).
        return templating.render(template, origin=f"{self.where_called()}: conn.render() "
                                 "template", environment=self.environment, vars=self.vars,
                                 extra=extra)

    def where_called(self) -> str:
        """``001_x.py line 12``, the migration's line that called ``conn.sql``: the line the
        user edits, rather than a line inside the SQL string."""
        # The innermost frame of the migration's file: read from the live frames, since
        # a formatted stack (traceback) reads every file's source lines, on every call.
        frame = inspect.currentframe()
        while frame is not None:
            if frame.f_code.co_filename == self.path:
                return f"{self.origin} line {frame.f_lineno}"
            frame = frame.f_back
        return self.origin
