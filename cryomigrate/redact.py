"""The single choke point that keeps secrets out of every message and document.

Every error message and every line the CLI prints passes through :func:`redact`. Secrets
are masked where they stand, not wherever their text happens to occur: a password that
is a common word (Supabase's local default is ``postgres``) must not turn
``postgresql://`` into ``***ql://`` or ``001_postgres_things.sql`` into
``001_***_things.sql``. So:

- the password of every URL-shaped word is masked by its position (see ``urls``), and so
  is every ``password=`` / ``sslpassword=`` keyword value;
- a secret's text (a URL's decoded password, a ``${DB_PASSWORD}`` rendered into a
  template) is masked wherever it occurs only when that text cannot be ordinary output:
  see :func:`_distinctive`. A short or word-like secret is still masked in URLs and
  keywords, which is where a password stands.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote

from cryomigrate.urls import MASK, mask_urls, password_of, query_passwords

_secrets: set[str] = set()
# libpq keyword strings and URL query strings: password=... or sslpassword=..., quoted
# the libpq way or bare up to the next separator.
_KEYWORD_PASSWORD = re.compile(
    r"(?i)(?P<head>\b\w*password=)(?P<pw>'(?:[^'\\]|\\.)*'?|[^\s&'\"]+)")
# A password written into SQL (CREATE ROLE ... PASSWORD 'x', ALTER USER ... ENCRYPTED
# PASSWORD 'x'), shown by a dry run or quoted back in an error: masked where it stands,
# in each way SQL spells a string: '', E'' (backslash escapes), U&'' and $tag$...$tag$; an
# E'' string that no quote closes, up to the end of its line. Each alternative inside a
# string starts with its own character, so a failed match cannot backtrack at length.
# JSON documents are masked value by value before they are encoded (``redact_values``).
_SQL_PASSWORD = re.compile(
    r"(?ism)(?P<head>\bPASSWORD\s+)(?:E'(?:[^'\\\n]|\\[^\n]|'')*\\?(?:'|$)"
    r"|(?:U&)?'(?:[^']|'')*'|\$(?P<tag>[A-Za-z_][A-Za-z0-9_]*|)\$.*?\$(?P=tag)\$)")
# Text that may be a secret but is also what output is made of: words, identifiers and
# numbers. Shorter than 12 characters, such text is masked only where it stands.
_ORDINARY = re.compile(r"[A-Za-z_.\-]{1,11}|[0-9]{1,11}")
MIN_SECRET_LENGTH = 8


def _distinctive(secret: str) -> bool:
    """Whether masking every occurrence of ``secret`` cannot garble ordinary output.

    At least 8 characters, and not a short plain word, identifier or number (under 12
    characters): ``postgres``, ``supabase`` or ``created_at`` would mask URL schemes, file
    names and SQL.
    """
    return len(secret) >= MIN_SECRET_LENGTH and not _ORDINARY.fullmatch(secret)


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever it shows up later, if that is safe (see :func:`_distinctive`).

    Its JSON-escaped spelling too, since ``--format json`` escapes quotes, backslashes
    and non-ASCII characters, and its lower-case one.
    """
    if not value or not _distinctive(value):
        return
    # Lower-cased too: PostgreSQL folds an unquoted identifier, so a token rendered into
    # SQL by mistake comes back lower-cased in its error (column "tok..." does not exist).
    for spelling in {value, value.lower()}:
        if _distinctive(spelling):  # the same test for both: it ignores letter case
            _secrets.add(spelling)
            escaped = json.dumps(spelling)[1:-1]
            if escaped != spelling:
                _secrets.add(escaped)


def register_url(url: str) -> None:
    """Remember a database URL's passwords, decoded as a driver may print them back.

    As written they are masked by position; decoded (``p%40ss`` -> ``p@ss``) they no
    longer look like part of a URL, so their text is registered.
    """
    for written in (password_of(url), *query_passwords(url)):
        if written:
            register_secret(written)
            register_secret(unquote(written))


def redact_values(value: Any) -> Any:
    """``value`` (a JSON document's data) with every string in it redacted: a SQL string
    is masked as it was written, before JSON encoding doubles its backslashes."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_values(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_values(item) for item in value]
    return value


def redact(text: str) -> str:
    # Each pattern needs its word: a scan for it is far cheaper than the pattern over a
    # long text (a status of 1,000 migrations), and has the same outcome when it is absent.
    if "://" in text:
        text = mask_urls(text)
    if "password" in text.lower():
        text = _KEYWORD_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", text)
        text = _SQL_PASSWORD.sub(lambda m: f"{m['head']}'{MASK}'", text)
    # Longest first, so a secret that contains another is masked whole.
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text
