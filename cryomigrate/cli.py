"""The command line: click commands over ``cryomigrate.api``.

Each command parses options, calls one library function and renders its result. This
module is the one place where errors become exit codes and where text leaves the process,
so every line goes through the redactor. The library is imported inside the commands:
``cryomigrate --help`` must not pay for pydantic, jinja2 or a database driver.

Every failure, whatever raised it (a ``CryomigrateError``, a bad option value, Ctrl-C),
ends the same way: one paragraph on stderr and, with ``--format json``, exactly one JSON
document with ``"error": {"code", "message"}`` on stdout.
"""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import click

from cryomigrate import __version__
from cryomigrate.errors import CryomigrateError, Interrupted
from cryomigrate.options import (
    Count,
    TableName,
    Version,
    common_options,
    fleet_options,
    lock_wait_option,
)
from cryomigrate.redact import redact, redact_values
from cryomigrate.terminal import (
    render_history,
    render_run,
    render_status,
    render_stopped,
    render_validate,
)

if TYPE_CHECKING:
    from cryomigrate.config import Environment

# The shell's convention for a process ended by SIGINT (128 + 2), so scripts can tell a
# person's Ctrl-C from a migration failing (1).
EXIT_INTERRUPTED = Interrupted.exit_code


def _environment_name(option: str | None) -> str:
    """The environment a failed command was for; config's rule, imported only on this
    error path so that ``--help`` does not load it."""
    from cryomigrate.config import environment_name

    return environment_name(option)


def out(text: str = "") -> None:
    click.echo(redact(text))


def err(text: str) -> None:
    click.echo(redact(text), err=True)


class _Command(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # click keeps the last of an option given twice; `--target 2 --target 3` is a
        # near miss whose meaning nobody can tell, so it is refused instead.
        _refuse_repeated(self, ctx, args)
        return super().parse_args(ctx, args)


def _refuse_repeated(command: click.Command, ctx: click.Context, args: list[str]) -> None:
    seen: dict[str, str] = {}
    names = {name: option for option in command.params if isinstance(option, click.Option)
             and not option.multiple and not option.count for name in option.opts}
    for arg in args:
        if arg == "--":
            break
        name = arg.split("=", 1)[0]
        option = names.get(name)
        if option is None:
            continue
        if option.name in seen:
            also = "" if seen[option.name] == name else f" (also as {seen[option.name]})"
            raise click.UsageError(f"{name} is given twice{also}; give it once", ctx)
        seen[str(option.name)] = name


class _Group(click.Group):
    """Runs a command and turns whatever stopped it into one exit code and one report."""

    command_class = _Command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # A bad option value is found while click parses the command, before the command
        # knows its --format and --env: read them from the raw arguments so that even
        # that error is reported as JSON, for the right environment.
        state = ctx.ensure_object(dict)
        state["format"] = _raw_option(args, "--format") or "text"
        state["environment"] = _raw_option(args, "--env")
        _refuse_repeated(self, ctx, args[:next((i for i, arg in enumerate(args)
                                                if arg in self.commands), len(args))])
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        # A command builds many objects and frees them all at exit: the cyclic collector
        # would only walk the heap again and again (a tenth of a no-op run over 1,000
        # files). It is back on once a migration starts (``_progress``): its code may
        # need it.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return super().invoke(ctx)
        except CryomigrateError as exc:
            _fail(ctx, exc.exit_code, str(exc), exc.result)
        except click.UsageError as exc:
            _fail(ctx, exc.exit_code, _usage_message(exc), None, hint=_help_hint(exc))
        except (KeyboardInterrupt, click.Abort):
            _fail(ctx, EXIT_INTERRUPTED, _INTERRUPTED, _progress_so_far(ctx))
        finally:
            if collecting:
                gc.enable()


# For Ctrl-C outside a migration (planning, waiting, connecting); inside one, the runner
# raises an error saying what that migration left behind.
_INTERRUPTED = ("interrupted (Ctrl-C): what finished before it stays done; run "
                "`cryomigrate status` to see where it stopped")


def _fail(ctx: click.Context, code: int, message: str, result: Any, *,
          hint: str = "") -> NoReturn:
    """Report a failure once (JSON document or partial text, then stderr) and exit."""
    state = ctx.ensure_object(dict)
    if state.get("format") == "json":
        document: dict[str, Any] = result.to_dict() if hasattr(result, "to_dict") else {}
        document.setdefault("environment", _environment_name(state.get("environment")))
        document["error"] = {"code": code, "message": message}
        out(json.dumps(redact_values(document), indent=2, default=str))
    elif result is not None and state.get("render_partial"):
        text = state["render_partial"](result)
        if text:
            out(text)
    # One paragraph: a blank line inside a driver's message would split it in two.
    lines = [line for line in f"error: {message}".splitlines() if line.strip()]
    err("\n".join([*lines, hint] if hint else lines))
    ctx.exit(code)


def _usage_message(exc: click.UsageError) -> str:
    """``--target: '5x' is not a migration version``: the option as the user typed it."""
    if isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter) \
            and exc.param is not None:
        param = exc.param
        name = param.opts[0] if isinstance(param, click.Option) else param.human_readable_name
        return f"{name}: {exc.message}"
    return exc.format_message()


def _help_hint(exc: click.UsageError) -> str:
    if isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter):
        return ""  # the message already names the option and what it takes
    path = exc.ctx.command_path if exc.ctx is not None else "cryomigrate"
    return f"see `{path} --help`"


def _raw_option(args: Sequence[str], name: str) -> str | None:
    """The last value given for ``name`` (``--name V`` or ``--name=V``), as click takes it."""
    found = None
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            found = args[i + 1]
        elif arg.startswith(name + "="):
            found = arg[len(name) + 1:]
    return found


def _progress_so_far(ctx: click.Context) -> Any:
    """What an interrupted run had finished, from its progress events; None if no run."""
    state = ctx.ensure_object(dict)
    if state.get("action") is None:
        return None
    from cryomigrate.models import RunResult

    return RunResult(_environment_name(state.get("environment")), state["action"], False,
                     tuple(state.get("done", ())), skipped=tuple(state.get("skipped", ())))


# --- running a command ------------------------------------------------------------------

def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def _confirmer(yes: bool, verb: str) -> bool | Callable[[str, Sequence[str]], bool]:
    if yes:
        return True

    def ask(environment: str, labels: Sequence[str]) -> bool:
        if not _stdin_is_terminal():
            err(f"environment '{environment}' requires confirmation and there is no terminal "
                "to ask; pass --yes to confirm")
            return False
        err(f"About to {verb} {len(labels)} migration(s) in '{environment}':")
        for label in labels:
            err(f"  {label}")
        try:
            answer = click.prompt(f"Type the environment name ({environment}) to confirm",
                                  default="", show_default=False, err=True)
        except click.Abort:  # Ctrl-C or end of input at the question: not a yes
            err("")
            return False
        return bool(answer.strip() == environment)

    return ask


def _progress(ctx: click.Context, fmt: str, verb: str) -> Callable[[str, Any], None]:
    """Print each step as it happens, and keep what finished for an interrupted run."""
    state = ctx.ensure_object(dict)
    done: list[Any] = state.setdefault("done", [])
    skipped: list[str] = state.setdefault("skipped", [])

    def progress(event: str, payload: Any) -> None:
        if event == "start":
            gc.enable()
        elif event in ("notice", "warning"):
            err(f"{event}: {payload}")
        elif event == "done":
            done.append(payload)
            if fmt == "text":
                label = payload.label
                out(f"  {verb}  {label:<40} {payload.kind:<9} {payload.duration_ms:>6} ms")
        elif event == "skip":
            skipped.append(payload.file.label)
            if fmt == "text":
                out(f"  skipped  {payload.file.label}: another run did it first")
    return progress


def _begin(ctx: click.Context, fmt: str, env: str | None) -> None:
    state = ctx.ensure_object(dict)
    state["format"] = fmt
    state["environment"] = env


def _emit(fmt: str, result: Any, text: Callable[[Any], str]) -> None:
    if fmt == "json":
        out(json.dumps(redact_values(result.to_dict()), indent=2, default=str))
    else:
        rendered = text(result)
        if rendered:
            out(rendered)


def _fleet(ctx: click.Context, fmt: str, env: str | None, command: str, *,
           strict_vars: bool = True, **kwargs: Any) -> Environment | None:
    """Run ``command`` on every database of a fleet environment (DESIGN 11) and return
    None; when ``env`` has one database, do nothing and return it, resolved, for the api
    call, so that a command reads its configuration once and imports no fleet code."""
    from cryomigrate.config import load_config

    flags: dict[str, Any] = ctx.obj.get("fleet", {})
    loaded = load_config(ctx.obj["config"])
    # Resolved leniently first, as the fleet check always was: an unset ${VAR} must not
    # hide the error about fleet-only flags. The api then gets the strict resolution.
    lenient = loaded.environment(env, strict_vars=False)
    if not lenient.is_fleet:
        if flags:
            given = ", ".join(f"--{name.replace('_', '-')}" for name in flags)
            raise click.UsageError(f"{given}: only for a fleet environment (databases:); "
                                   f"'{_environment_name(env)}' has one database", ctx)
        return loaded.environment(env) if strict_vars else lenient
    from cryomigrate import fleet
    from cryomigrate.fleet.terminal import render_line, render_summary

    gc.enable()  # many databases, migrations' code in threads: see _Group.invoke
    stdout = sys.stdout  # while the fleet runs, sys.stdout is stderr (see fleet.pool)

    def line(outcome: Any) -> None:
        if fmt == "text":
            click.echo(redact(render_line(outcome)), file=stdout)

    def event(database: str, kind: str, text: str) -> None:
        err(f"{kind}: {database}: {text}")

    ctx.obj["render_partial"] = render_summary
    runs: dict[str, Callable[..., Any]] = {
        "status": fleet.fleet_status, "apply": fleet.apply_fleet,
        "rollback": fleet.rollback_fleet, "validate": fleet.validate_fleet,
        "history": fleet.fleet_history, "lint": fleet.lint_fleet,
        "verify": fleet.verify_fleet, "drift": fleet.drift_fleet}
    options = fleet.FleetOptions(on_database=line, on_event=event, **flags)
    result = runs[command](environment=env, config=ctx.obj["config"], options=options,
                           **kwargs)
    _emit(fmt, result, render_summary)
    return None


# --- the commands -----------------------------------------------------------------------

@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", metavar="PATH", envvar="CRYOMIGRATE_CONFIG",
              help="environments.yaml to use (default: nearest one upwards).")
@click.version_option(__version__, prog_name="cryomigrate")
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """Versioned schema migrations for PostgreSQL, Supabase and SQLite."""
    ctx.ensure_object(dict)["config"] = config


@main.command()
@fleet_options
@common_options
@click.pass_context
def status(ctx: click.Context, env: str | None, fmt: str) -> None:
    """Show every migration: applied, pending, modified, missing or dirty."""
    from cryomigrate import api

    _begin(ctx, fmt, env)
    single = _fleet(ctx, fmt, env, "status")
    if single is None:
        return
    result = api.get_migration_status(single, config=ctx.obj["config"])
    _emit(fmt, result, render_status)


@main.command()
@click.option("--target", type=Version(), metavar="VERSION",
              help="Apply up to and including this version.")
@click.option("--dry-run", is_flag=True, help="Print the plan and its SQL; change nothing.")
@click.option("--yes", is_flag=True, help="Confirm for environments that require it.")
@lock_wait_option
@fleet_options
@common_options
@click.pass_context
def apply(ctx: click.Context, env: str | None, target: str | None, dry_run: bool, yes: bool,
          lock_wait: float, fmt: str) -> None:
    """Apply pending migrations."""
    from cryomigrate import api

    _begin(ctx, fmt, env)
    single = _fleet(ctx, fmt, env, "apply", target_version=target, dry_run=dry_run,
                    confirm=_confirmer(yes, "apply, on each database of the fleet that "
                                       "lacks them,"), lock_wait=lock_wait)
    if single is None:
        return
    ctx.obj.update(action="apply", render_partial=render_stopped)
    result = api.apply_migrations(target, single, config=ctx.obj["config"], dry_run=dry_run,
                                  confirm=_confirmer(yes, "apply"), lock_wait=lock_wait,
                                  progress=_progress(ctx, fmt, "applied"))
    _emit(fmt, result, render_run)


@main.command()
@click.option("--target", type=Version(), metavar="VERSION",
              help="Roll back everything above this version.")
@click.option("--steps", type=Count(), help="Roll back the newest N migrations.")
@click.option("--dry-run", is_flag=True, help="Print the plan and its SQL; change nothing.")
@click.option("--yes", is_flag=True, help="Confirm for environments that require it.")
@lock_wait_option
@fleet_options
@common_options
@click.pass_context
def rollback(ctx: click.Context, env: str | None, target: str | None, steps: int | None,
             dry_run: bool, yes: bool, lock_wait: float, fmt: str) -> None:
    """Roll back applied migrations (all of them unless --target or --steps)."""
    from cryomigrate import api

    _begin(ctx, fmt, env)
    if target is not None and steps is not None:
        raise click.UsageError("use --target or --steps, not both", ctx)
    single = _fleet(ctx, fmt, env, "rollback", target_version=target, steps=steps,
                    dry_run=dry_run, confirm=_confirmer(
                        yes, "roll back, on each database of the fleet that has them,"),
                    lock_wait=lock_wait)
    if single is None:
        return
    ctx.obj.update(action="rollback", render_partial=render_stopped)
    result = api.rollback_migrations(target, single, steps=steps, config=ctx.obj["config"],
                                     dry_run=dry_run, confirm=_confirmer(yes, "roll back"),
                                     lock_wait=lock_wait,
                                     progress=_progress(ctx, fmt, "rolled back"))
    _emit(fmt, result, render_run)


@main.command()
@fleet_options
@common_options
@click.pass_context
def validate(ctx: click.Context, env: str | None, fmt: str) -> None:
    """Check files, names, templates for every environment, the config and the database."""
    from cryomigrate import api
    from cryomigrate.config import load_config

    _begin(ctx, fmt, env)
    single = None
    if not load_config(ctx.obj["config"]).names_none(env):  # else files and templates only
        single = _fleet(ctx, fmt, env, "validate", strict_vars=False)  # as validate resolves
        if single is None:
            return
    ctx.obj["render_partial"] = render_validate
    _emit(fmt, api.validate(single, config=ctx.obj["config"]), render_validate)


@main.command()
@click.argument("name")
@click.option("--sql", is_flag=True, help="Create a .sql migration instead of a .py one.")
@click.option("--repeatable", is_flag=True,
              help="Create a repeatable migration R_NAME, re-run whenever it changes.")
@common_options
@click.pass_context
def new(ctx: click.Context, name: str, sql: bool, repeatable: bool, env: str | None,
        fmt: str) -> None:
    """Create the next-numbered migration file NAME (a name, or a sentence made into one)."""
    from cryomigrate import api

    _begin(ctx, fmt, env)
    result = api.new_migration(name, sql=sql, config=ctx.obj["config"], environment=env,
                               repeatable=repeatable)
    _emit(fmt, result, lambda r: f"created {r.path}")


@main.command()
@click.option("--limit", type=Count(), help="Show only the newest N entries.")
@fleet_options
@common_options
@click.pass_context
def history(ctx: click.Context, env: str | None, limit: int | None, fmt: str) -> None:
    """Show the journal of every apply, rollback, baseline and repair, newest first."""
    from cryomigrate import api

    _begin(ctx, fmt, env)
    single = _fleet(ctx, fmt, env, "history", limit=limit)
    if single is None:
        return
    _emit(fmt, api.get_history(single, config=ctx.obj["config"], limit=limit), render_history)


@main.command()
@click.argument("version", type=Version())
@lock_wait_option
@common_options
@click.pass_context
def baseline(ctx: click.Context, version: str, env: str | None, lock_wait: float,
             fmt: str) -> None:
    """Record migrations up to VERSION as applied without running them."""
    from cryomigrate import api

    _begin(ctx, fmt, env)
    result = api.baseline(version, env, config=ctx.obj["config"], lock_wait=lock_wait)
    _emit(fmt, result, lambda r: f"recorded {len(r.recorded)} migration(s) as applied" + "".join(
        f"\n  {label}" for label in r.recorded))


@main.command()
@click.option("--mark-applied", type=Version(), metavar="VERSION",
              help="Record VERSION as applied.")
@click.option("--mark-pending", type=Version(), metavar="VERSION",
              help="Remove VERSION from the history.")
@lock_wait_option
@common_options
@click.pass_context
def repair(ctx: click.Context, env: str | None, mark_applied: str | None,
           mark_pending: str | None, lock_wait: float, fmt: str) -> None:
    """Accept changed checksums, or settle a dirty migration as applied or pending."""
    from cryomigrate import api

    _begin(ctx, fmt, env)
    result = api.repair(env, config=ctx.obj["config"], mark_applied=mark_applied,
                        mark_pending=mark_pending, lock_wait=lock_wait)
    lines = [f"checksum accepted: {x}" for x in result.checksums_updated]
    lines += [f"marked applied: {x}" for x in result.marked_applied]
    lines += [f"marked pending: {x}" for x in result.marked_pending]
    _emit(fmt, result, lambda r: "\n".join(lines) or "nothing to repair")


@main.command()
@click.option("--from", "tool", required=True, metavar="TOOL",
              type=click.Choice(["supabase", "dbmate", "golang-migrate", "goose", "flyway",
                                 "cryoprotect"]),
              help="The tool whose history table says what is applied.")
@click.option("--table", type=TableName(), metavar="NAME",
              help="That tool's history table (default: the tool's own default).")
@click.option("--dry-run", is_flag=True, help="List what would be recorded; change nothing.")
@lock_wait_option
@common_options
@click.pass_context
def adopt(ctx: click.Context, tool: str, table: str | None, dry_run: bool, env: str | None,
          lock_wait: float, fmt: str) -> None:
    """Record what another tool applied to this database as applied (its table is only read)."""
    from cryomigrate import api

    _begin(ctx, fmt, env)
    result = api.adopt(tool, env, table=table, config=ctx.obj["config"], dry_run=dry_run,
                       lock_wait=lock_wait)
    verb = "would record" if result.dry_run else "recorded"
    _emit(fmt, result, lambda r: f"{verb} {len(r.adopted)} migration(s) applied by {tool} "
          f"({r.table}) as applied" + "".join(f"\n  {label}" for label in r.adopted))


@main.command()
@click.option("--all", "all_migrations", is_flag=True,
              help="Lint every migration, not only the pending ones.")
@common_options
@fleet_options
@click.pass_context
def lint(ctx: click.Context, all_migrations: bool, env: str | None, fmt: str) -> None:
    """Lint the SQL of pending migrations with squawk and cryomigrate's own rules."""
    from cryomigrate import api
    from cryomigrate.lint import render

    _begin(ctx, fmt, env)
    single = _fleet(ctx, fmt, env, "lint", all_migrations=all_migrations)
    if single is None:
        return
    ctx.obj["render_partial"] = render
    _emit(fmt, api.lint(single, config=ctx.obj["config"], all_migrations=all_migrations), render)


@main.command()
@common_options
@fleet_options
@click.pass_context
def verify(ctx: click.Context, env: str | None, fmt: str) -> None:
    """Apply, roll back and re-apply each migration on a scratch database, comparing."""
    from cryomigrate import api
    from cryomigrate.snapshot import render

    _begin(ctx, fmt, env)
    single = _fleet(ctx, fmt, env, "verify")
    if single is None:
        return
    ctx.obj["render_partial"] = render
    _emit(fmt, api.verify(single, config=ctx.obj["config"]), render)


@main.command()
@common_options
@fleet_options
@click.pass_context
def drift(ctx: click.Context, env: str | None, fmt: str) -> None:
    """Compare the database's schema with its applied migrations replayed elsewhere."""
    from cryomigrate import api
    from cryomigrate.snapshot import render

    _begin(ctx, fmt, env)
    single = _fleet(ctx, fmt, env, "drift")
    if single is None:
        return
    ctx.obj["render_partial"] = render
    _emit(fmt, api.drift(single, config=ctx.obj["config"]), render)


@main.command("supabase-setup")
def supabase_setup() -> None:
    """Print the SQL of cryomigrate's functions for the Supabase HTTP API (run it once)."""
    from cryomigrate.backends.supabase_functions import SETUP_SQL

    out(SETUP_SQL.rstrip("\n"))


def run() -> None:
    """The program itself: the console script and ``python -m cryomigrate``.

    The interpreter's last act is a walk of the whole heap for cycles, which with psycopg
    imported costs a status or a no-op run much of its time. Unless a Python migration ran
    (its objects in cycles, say a temporary file, are finalized by that walk), the heap is
    frozen instead and left to the operating system. Refcounted objects are still freed
    as before and atexit handlers still run; a caller of ``main`` keeps its collector.
    """
    try:
        main(prog_name="cryomigrate")
    finally:
        loader = sys.modules.get("cryomigrate.loader")  # not imported: no migration loaded
        if loader is None or not loader.user_code_ran():
            gc.freeze()
