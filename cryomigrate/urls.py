"""Database URLs as people write them: where the password stands, and whether it is encoded.

People paste passwords into URLs without percent-encoding them, so a password may hold
``@``, ``:``, ``/``, ``?``, ``#`` or spaces. A URL parser (libpq, urllib) then takes a
piece of it for the host, port or database name and prints that piece back in an error.
So the password is found the way a person wrote it, not the way a parser reads it: the
user name ends at the first ``:`` after ``scheme://`` and the password runs up to the
last ``@``. The redactor masks that span in every text, and ``check_database_url``
refuses a password that needs encoding before any parser sees it.

Pure string functions with no imports from the rest of cryomigrate: the redactor, which
everything imports, depends on this module.
"""

from __future__ import annotations

import re

MASK = "***"
SCHEMES = ("sqlite", "postgresql", "postgres", "https", "http")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_URL_WORD = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://\S*")
# Characters that change where a parser splits user name, password, host and path.
_NEEDS_ENCODING = re.compile(r"[@:/?#\[\]\s]|%(?![0-9A-Fa-f]{2})")
_PORT_LIKE = re.compile(r"[0-9]+[/?,]")
# In a query value only these end it early; '&' always ends it, so it is not a password's.
_QUERY_NEEDS_ENCODING = re.compile(r"[#\s]|%(?![0-9A-Fa-f]{2})")
_QUERY_PASSWORD = re.compile(r"(?i)([?&](?:ssl)?password=)([^&]*)")
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
ENCODING_ADVICE = (
    "percent-encode it: @ as %40, : as %3A, / as %2F, ? as %3F, # as %23, % as %25, "
    "space as %20 (Python's urllib.parse.quote(password, safe='') does it)"
)


def password_span(url: str) -> tuple[int, int] | None:
    """Where the password of ``url`` starts and ends, as a person wrote it; None if none.

    ``url`` must start with its scheme. Text after the URL (a message going on) must
    not be part of it, except that an extra ``@`` there only widens the span: masking a
    little too much is harmless, masking too little is a leak.
    """
    scheme = _SCHEME.match(url)
    if not scheme:
        return None
    at = url.rfind("@", scheme.end())
    colon = url.find(":", scheme.end(), max(at, 0))
    if at < 0 or colon < 0:
        return None
    return colon + 1, at


def mask_password(url: str) -> str:
    """``url`` with its password (before the host, or ``password=`` in the query) masked."""
    span = password_span(url)
    if span is not None:
        url = f"{url[:span[0]]}{MASK}{url[span[1]:]}"
    return _QUERY_PASSWORD.sub(lambda match: f"{match[1]}{MASK}", url)


def mask_urls(text: str) -> str:
    """Every URL-shaped word of ``text`` with its password masked.

    A word runs to the next whitespace: a password that held whitespace is refused by
    the configuration before it can reach any message.
    """
    return _URL_WORD.sub(lambda match: mask_password(match[0]), text)


def password_of(url: str) -> str | None:
    """The password of ``url`` as written (still percent-encoded, if it was)."""
    span = password_span(url)
    return url[span[0]:span[1]] if span else None


def query_passwords(url: str) -> list[str]:
    """``password=`` and ``sslpassword=`` values of the URL's query string, as written."""
    return [match[2] for match in _QUERY_PASSWORD.finditer(url) if match[2]]


def check_database_url(url: str) -> None:
    """Raise ValueError unless cryomigrate has a backend for ``url`` and can parse it safely.

    Every message shows the URL with its password masked.
    """
    scheme = url.split(":", 1)[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        shown = f"scheme '{scheme}'" if scheme else "no scheme"
        raise ValueError(
            f"unsupported database URL ({shown}); use sqlite:///relative.db, "
            "sqlite:////absolute.db, postgresql://..., postgres://... or, for the Supabase "
            "HTTP API, https://<project-ref>.supabase.co"
        )
    part = _unencoded_part(url) if scheme != "sqlite" else None
    if part:
        raise ValueError(
            f"the {part} in {mask_password(url)} is not percent-encoded{_maybe_not(url)}, "
            "so a URL parser would read part of it as the host, port or database; "
            f"{ENCODING_ADVICE}"
        )
    wrong = _bad_value(url) if scheme in ("postgresql", "postgres") else None
    if wrong:
        raise ValueError(f"{mask_password(url)}: {wrong}")


# Settings that change how a database is reached, never which one.
_SAME_DATABASE_OPTIONS = frozenset({
    "host", "port", "dbname", "user", "password", "sslmode", "sslrootcert", "sslcert",
    "sslkey", "sslpassword", "connect_timeout", "application_name", "target_session_attrs",
    "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
    "gssencmode", "channel_binding", "tcp_user_timeout",
})


def _libpq_reading(url: str) -> dict[str, str] | None:
    """``url`` as libpq reads it (psycopg's conninfo_to_dict), or None if it cannot:
    then the connection says why. psycopg is imported only for a PostgreSQL URL."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        return {key: str(value) for key, value in conninfo_to_dict(url).items()}
    except ProgrammingError:
        return None


def database_identity(url: str) -> str:
    """The database ``url`` names, whatever its spelling: ``postgres://`` or
    ``postgresql://``, host and port in the path or after the ``?``, a host name in any
    case, the default port written or not, the user, password and connection settings
    aside. Two URLs with one identity are one database.

    A URL whose database cannot be told this way (no host or database name, a setting
    such as ``options`` or ``service`` that may choose another one) is its own identity,
    so that two databases are never taken for one.
    """
    if url.split(":", 1)[0].lower() not in ("postgresql", "postgres"):
        return url
    read = _libpq_reading(url)
    if read is None or not read.keys() <= _SAME_DATABASE_OPTIONS:
        return url
    hosts, ports = read.get("host", "").split(","), read.get("port", "").split(",")
    database = read.get("dbname") or read.get("user")
    if not all(hosts) or not database or len(ports) not in (1, len(hosts)):
        return url
    ports = ports * len(hosts) if len(ports) == 1 else ports
    named = [f"{host if host.startswith('/') else host.lower()}:{port or '5432'}"
             for host, port in zip(hosts, ports, strict=True)]
    return f"postgresql://{','.join(named)}/{database}"


def _bad_value(url: str) -> str | None:
    """A port or sslmode that libpq would refuse only when connecting, as if the server
    were unreachable: bad input, said now."""
    read = _libpq_reading(url) or {}
    for port in read.get("port", "").split(","):
        if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            return f"the port '{port}' is not a port number (1 to 65535)"
    sslmode = read.get("sslmode")
    if sslmode is not None and sslmode not in _SSLMODES:
        return f"sslmode '{sslmode}' is not one of {', '.join(_SSLMODES)}"
    return None


def _maybe_not(url: str) -> str:
    """host:port/db?app=me@home reads exactly like user:1234/pw@host: both are refused,
    so say how to write the first one too."""
    span = password_span(url)
    if span and _PORT_LIKE.match(url, span[0], span[1]):
        return " (if that @ is in the database name or a query parameter, write it as %40)"
    return ""


def _unencoded_part(url: str) -> str | None:
    """Which credential holds characters a URL parser would split it at, if any."""
    span = password_span(url)
    if span is not None:
        user = url[url.index("://") + 3:span[0] - 1]
        # A '/' before the first ':' means that ':' is not after a user name (it is in
        # the path or query), so this URL has no password at all.
        if "/" not in user:
            if _NEEDS_ENCODING.search(url[span[0]:span[1]]):
                return "password"
            if _NEEDS_ENCODING.search(user):
                return "user name"
    if any(_QUERY_NEEDS_ENCODING.search(value) for value in query_passwords(url)):
        return "password= value"
    return None
