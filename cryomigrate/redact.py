"""The single choke point that keeps secrets out of every message and document.

Passwords reach us in database URLs, often through ``${DATABASE_URL}``; once a URL has
been parsed its password is registered here, and every error message and every line the
CLI prints passes through :func:`redact`.
"""

from __future__ import annotations

import re

_MASK = "***"
_secrets: set[str] = set()
# scheme://user:password@host -- the password part, whatever the scheme.
# Up to the last @ before the host, since an unencoded @ can sit inside the password.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s]*:)(?P<pw>[^/?#\s]*)@")
# libpq keyword strings and URL query strings: password=... or sslpassword=...
_KEYWORD_PASSWORD = re.compile(r"(?i)(?P<head>\b(?:ssl)?password=)(?P<pw>[^\s&'\"]+)")


def register_secret(value: str | None) -> None:
    """Remember a secret so that it is masked wherever it shows up later."""
    if value and len(value) >= 3:
        _secrets.add(value)


def register_url(url: str) -> None:
    """Remember the password a database URL carries, in every spelling it may show up in."""
    match = _URL_PASSWORD.search(url)
    if match:
        from urllib.parse import unquote

        # An unencoded @ splits the password where a driver parses it: mask every piece.
        for secret in {match["pw"], unquote(match["pw"]), *match["pw"].split("@")}:
            register_secret(secret)
    for found in _KEYWORD_PASSWORD.finditer(url):
        register_secret(found["pw"])


def redact(text: str) -> str:
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{_MASK}@", text)
    text = _KEYWORD_PASSWORD.sub(lambda m: f"{m['head']}{_MASK}", text)
    # Longest first, so a secret that contains another is masked whole.
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, _MASK)
    return text
