"""PostgreSQL's errors as cryomigrate's messages: on one line, a script's failing statement
placed at its file line, and never a password the user wrote."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import psycopg

from cryomigrate.backends.base import QueryError

if TYPE_CHECKING:
    from cryomigrate.sqlscript import Script

LOCK_NOT_AVAILABLE = "55P03"
_ACTIVE_SQL_TRANSACTION = "25001"
_SYNTAX_ERROR = "42601"
_UNFINISHED = ("unterminated quoted string", "unterminated quoted identifier",
               "syntax error at end of input")


def reason(exc: psycopg.Error, broken: bool) -> str:
    """What went wrong, from the server's fields where it sent them; ``broken``: the
    connection is gone."""
    diag = exc.diag
    sqlstate = diag.sqlstate
    if sqlstate is None:
        if broken:
            return f"lost the connection to the server: {one_line(str(exc))}"
        if isinstance(exc, psycopg.ProgrammingError):
            return (f"unsupported placeholder or parameters: {one_line(str(exc))}; use "
                    "%s or %(name)s for values and %% for a literal %")
        return f"{one_line(str(exc))} (nothing was sent to the server)"
    text = _compose(sqlstate, diag.message_primary or one_line(str(exc)),
                    diag.message_detail, diag.message_hint)
    if sqlstate == LOCK_NOT_AVAILABLE:
        text += _blocked_on(diag.context)
    return text


def script_error(script: Script, index: int, sql: str, exc: psycopg.Error,
                 reason: str) -> QueryError:
    """The failure of statement ``index`` (``sql``) of ``script``, named by its file line
    and, where the server gives a position on another line, that line too."""
    sqlstate = exc.diag.sqlstate
    primary = exc.diag.message_primary or ""
    position = exc.diag.statement_position
    line = script.file_line(index)
    where = f"line {line}"
    last = index == len(script.statements) - 1
    if sqlstate == _SYNTAX_ERROR and last and primary.startswith(_UNFINISHED):
        reason = (f"{primary.split(' at or near ')[0]} at the end of the script: it ends "
                  "inside an unfinished statement, string, quoted identifier or comment "
                  f"(SQLSTATE {sqlstate})")
    elif ' at or near "' in primary and "\n" in primary:
        # The server quotes the rest of the statement; its first line says enough.
        head, _, quoted = primary.partition(' at or near "')
        reason = reason.replace(primary, f'{head} at or near "{quoted.splitlines()[0]}..."')
    if position and position.isdigit():
        error_line = line + sql[:int(position) - 1].count("\n")
        if error_line != line:
            where += f" (error at line {error_line})"
    return QueryError(f"{script.origin} {where}: {reason}", sqlstate=sqlstate, line=line,
                      script=script)


def _compose(sqlstate: str, primary: str, detail: str | None, hint: str | None) -> str:
    text = f"{primary} (SQLSTATE {sqlstate})"
    if detail:
        text += f"; DETAIL: {detail}"
    if hint:
        text += f"; HINT: {hint}"
    if sqlstate == _ACTIVE_SQL_TRANSACTION:
        text += ("; this statement cannot run inside a transaction: mark the migration "
                 "non-transactional with a `-- cryomigrate:no-transaction` line at the top "
                 "(SQL) or `transactional = False` (Python)")
    return text


def _blocked_on(context: str | None) -> str:
    """The relation a lock_timeout waited for, when the server says it (a row lock's
    CONTEXT names it; a table lock's error does not)."""
    found = re.search(r'relation "([^"]+)"', context or "")
    return f"; it was waiting for a lock on relation {found[1]}" if found else ""


def one_line(text: str) -> str:
    """libpq's multi-line messages (an error, then a tab-indented hint) as one line."""
    return " ".join(line.strip() for line in text.strip().splitlines() if line.strip()) \
        or "unknown error"


def without_password(message: str, url: str) -> str:
    """libpq's complaint about a URL, unless it quotes a password back."""
    from urllib.parse import unquote

    from cryomigrate.urls import password_of, query_passwords

    written = [p for p in (password_of(url) or "", *query_passwords(url)) if p]
    if any(piece in message for p in written for piece in (p, unquote(p))):
        return "a part of it is malformed"
    return one_line(message)
