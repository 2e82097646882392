"""The sandboxed Jinja environment for ``.sql.j2`` migrations and ``conn.render``.

Sandboxed, because a template is data that travels with the project and should not reach
Python internals; ``StrictUndefined``, because a misspelt variable must fail validation
instead of rendering as an empty string into production SQL. Values are quoted only where
the author asks for it with the ``ident`` and ``literal`` filters.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from cryomigrate.errors import CryomigrateError, TemplateError

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment


def quote_ident(value: object) -> str:
    """An SQL identifier, double-quoted; ``schema.table`` stays two identifiers."""
    text = str(value)
    if not text:
        raise ValueError("an SQL identifier cannot be empty")
    if "\x00" in text:
        raise ValueError("an SQL identifier cannot hold a NUL character")
    return ".".join('"' + part.replace('"', '""') + '"' for part in text.split("."))


def quote_literal(value: object) -> str:
    """An SQL literal: NULL, a number as written, anything else a single-quoted string."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if "\x00" in text:  # PostgreSQL text cannot hold it: refused while rendering, not later
        raise ValueError("an SQL literal cannot hold a NUL character")
    return "'" + text.replace("'", "''") + "'"


@lru_cache(maxsize=1)
def _jinja() -> SandboxedEnvironment:
    # Imported here: jinja2 is slow to import and most runs render no template.
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
    )
    env.filters["ident"] = quote_ident
    env.filters["literal"] = quote_literal
    return env


def render(source: str, *, origin: str, environment: str, vars: dict[str, Any],
           extra: dict[str, Any] | None = None) -> str:
    """Render ``source``; ``origin`` (a file name) is what error messages point at."""
    import jinja2

    context = {"environment": environment, "vars": vars, **(extra or {})}
    try:
        template = _jinja().from_string(source)
        return template.render(context)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{origin} line {exc.lineno}: template syntax error: {exc.message}") \
            from None
    except jinja2.UndefinedError as exc:
        line = _template_line(exc)
        where = f" line {line}" if line else ""
        raise TemplateError(
            f"{origin}{where}: {exc.message} while rendering for environment '{environment}'; "
            "define it under vars: in environments.yaml"
        ) from None
    except CryomigrateError:
        raise  # a query a Python migration's callable ran: that migration failing (exit 1)
    except Exception as exc:
        # (1/0, range(10**8), a macro calling itself): the template is the bad input
        line = _template_line(exc)
        where = f" line {line}" if line else ""
        if isinstance(exc, TypeError) and "no loader" in str(exc):
            reason = ("include, import and extends are not supported: a migration is one "
                      "file, so that its checksum covers everything it renders")
        elif isinstance(exc, (jinja2.TemplateError, ValueError, TypeError)):
            reason = str(exc)
        else:
            reason = f"{type(exc).__name__}: {exc}"
        raise TemplateError(f"{origin}{where}: cannot render template: {reason}") from None


def _template_line(exc: BaseException) -> int | None:
    """The template line from the traceback Jinja rewrites to point into the template."""
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
