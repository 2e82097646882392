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


class TableName(_TextParam):
    """A table name, optionally schema-qualified, checked as ``history_table`` is."""

    name = "table"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        from cryomigrate.configvalues import check_table_name

        try:
            check_table_name(str(value))
        except ValueError as exc:
            self.fail(f"'{value}' {exc}", param, ctx)
        return str(value)


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


class Shard(_TextParam):
    """``K/N``: the K-th of N fixed slices of a fleet, 1 <= K <= N.

    Near misses (``0/3``, ``4/3``, ``1/0``, ``1-3``, ``a/b``) are refused: a CI matrix that
    silently took no database, or all of them, would look like a passing job.
    """

    name = "K/N"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        k, slash, n = str(value).strip().partition("/")
        if not slash or not all(p.isascii() and p.isdigit() and len(p) <= 9 for p in (k, n)):
            self.fail(f"'{value}' is not a shard; write K/N, e.g. 2/3 for the second of "
                      "three slices", param, ctx)
        if not 1 <= int(k) <= int(n):
            self.fail(f"'{value}': K must be from 1 to N (and N at least 1), e.g. 1/3, 2/3, "
                      "3/3", param, ctx)
        return int(k), int(n)


def _fleet_flag(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """Fleet options go to ``ctx.obj["fleet"]``, so commands keep their signatures."""
    if value is not None and value is not False and param.name is not None:
        ctx.ensure_object(dict).setdefault("fleet", {})[param.name] = value


def fleet_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--parallel, --shard and --fail-fast, for fleet environments (DESIGN 11)."""
    f = click.option("--fail-fast", "fail_fast", is_flag=True, expose_value=False,
                     callback=_fleet_flag,
                     help="Fleet: start no database after one failed.")(f)
    f = click.option("--shard", "shard", type=Shard(), expose_value=False,
                     callback=_fleet_flag, metavar="K/N",
                     help="Fleet: run only the K-th of N fixed slices of its databases.")(f)
    return click.option("--parallel", "parallel", type=Count(), expose_value=False,
                        callback=_fleet_flag, metavar="N",
                        help="Fleet: at most N databases at once (default: the "
                             "environment's parallel, or 4).")(f)
