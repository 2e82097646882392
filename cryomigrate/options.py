"""The options the commands share, and the types that check option values at the edge.

A value that cannot be right (``--lock-wait inf``, ``--steps 0``, a 20-digit version,
``--target 5x``) is refused here, as a usage error naming the option, before any
configuration is read or any database is opened: nothing has run when it is reported.
Only click is imported, so ``cryomigrate --help`` stays fast.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

if TYPE_CHECKING:
    _TextParam = click.ParamType[str]
    _IntParam = click.ParamType[int]
    _FloatParam = click.ParamType[float]
else:  # click < 8.2's ParamType is not generic
    _TextParam = _IntParam = _FloatParam = click.ParamType

# The largest integer PostgreSQL (bigint) and SQLite (INTEGER) store: a version, --steps
# or --limit beyond it could only fail later, after something had run.
MAX_INT = 2**63 - 1
# PostgreSQL's lock_timeout and SQLite's busy timeout are 32-bit counts of milliseconds.
MAX_LOCK_WAIT_S = (2**31 - 1) // 1000


class Version(_TextParam):
    """A migration version as typed (``005``): ASCII digits, within what a database stores.

    The text is passed on unchanged, so messages show the spelling the user typed.
    """

    name = "version"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        text = str(value).strip()
        # isascii: str.isdigit() also accepts superscripts and other scripts' digits.
        if not (text.isascii() and text.isdigit()):
            self.fail(f"'{value}' is not a migration version (digits, like 005)", param, ctx)
        if int(text) > MAX_INT:
            self.fail(f"'{value}' is too large for a migration version (at most {MAX_INT})",
                      param, ctx)
        return text


class Count(_IntParam):
    """A whole number of migrations or entries, 1 or more."""

    name = "integer"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        text = str(value).strip()
        if not (text.isascii() and text.isdigit()) or int(text) < 1:
            self.fail(f"'{value}' is not a whole number of 1 or more", param, ctx)
        if int(text) > MAX_INT:
            self.fail(f"'{value}' is too large (at most {MAX_INT})", param, ctx)
        return int(text)


class Seconds(_FloatParam):
    """A wait in seconds: finite, not negative, and short enough for a database timeout."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value  # the default
        try:
            seconds = float(str(value))
        except ValueError:
            seconds = math.nan
        if not 0 <= seconds <= MAX_LOCK_WAIT_S:  # also false for nan
            self.fail(f"'{value}' is not a number of seconds from 0 to {MAX_LOCK_WAIT_S}",
                      param, ctx)
        return seconds


def _config_after_command(ctx: click.Context, param: click.Parameter,
                          value: str | None) -> None:
    """``cryomigrate status --config x.yaml`` means ``cryomigrate --config x.yaml status``.

    Given on both sides with different files, it is refused rather than one silently
    winning: which environments.yaml a command runs against is never a guess.
    $CRYOMIGRATE_CONFIG is only a default, so an explicit --config here overrides it.
    """
    if value is None:
        return
    state = ctx.ensure_object(dict)
    before = state.get("config")
    given_before = ctx.parent is not None and \
        ctx.parent.get_parameter_source("config") is ParameterSource.COMMANDLINE
    if given_before and before and Path(before).resolve() != Path(value).resolve():
        raise click.BadParameter(f"'{value}' differs from --config '{before}' given before "
                                 "the command; give it once", ctx=ctx, param=param)
    state["config"] = value


def config_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--config", metavar="PATH", expose_value=False,
                        callback=_config_after_command,
                        help="environments.yaml to use (also accepted before the "
                             "command).")(f)


def env_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--env", "env", metavar="NAME",
                        help="Environment from environments.yaml (default: $CRYOMIGRATE_ENV "
                             "or development).")(f)


def format_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
                        show_default=True, help="Output format.")(f)


def lock_wait_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--lock-wait", type=Seconds(), default=60.0,
                        show_default=True, metavar="SECONDS",
                        help="How long to wait for another run's lock before giving up.")(f)


def common_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--config, --env and --format: every command takes them, after the command name."""
    return config_option(env_option(format_option(f)))
