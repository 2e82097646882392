"""The command line: click commands over ``cryomigrate.api``.

Each command parses options, calls one library function and renders its result; the
frame they run in (``cli_frame``) turns whatever stops one into its exit code and report,
and prints what it says. The library is imported inside the commands: ``cryomigrate
--help`` must not pay for pydantic, jinja2 or a database driver.
"""

from __future__ import annotations

import gc
import sys

import click

from cryomigrate import __version__
from cryomigrate.cli_frame import (
    Group,
    begin,
    confirmer,
    emit,
    on_fleet,
    out,
    progress_printer,
)
from cryomigrate.options import (
    Count,
    TableName,
    Version,
    common_options,
    fleet_options,
    lock_wait_option,
)
from cryomigrate.terminal import (
    render_history,
    render_run,
    render_status,
    render_stopped,
    render_validate,
)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
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

    begin(ctx, fmt, env)
    single = on_fleet(ctx, fmt, env, "status")
    if single is None:
        return
    result = api.get_migration_status(single, config=ctx.obj["config"])
    emit(fmt, result, render_status)


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

    begin(ctx, fmt, env)
    # Set first: a refusal before anything ran still reports apply's keys (DESIGN 6).
    ctx.obj.update(action="apply", render_partial=render_stopped, dry_run=dry_run)
    single = on_fleet(ctx, fmt, env, "apply", target_version=target, dry_run=dry_run,
                    confirm=confirmer(yes, "apply, on each database of the fleet that "
                                       "lacks them,"), lock_wait=lock_wait)
    if single is None:
        return
    result = api.apply_migrations(target, single, config=ctx.obj["config"], dry_run=dry_run,
                                  confirm=confirmer(yes, "apply"), lock_wait=lock_wait,
                                  progress=progress_printer(ctx, fmt, "applied"))
    emit(fmt, result, render_run)


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

    begin(ctx, fmt, env)
    ctx.obj.update(action="rollback", render_partial=render_stopped, dry_run=dry_run)
    if target is not None and steps is not None:
        raise click.UsageError("use --target or --steps, not both", ctx)
    single = on_fleet(ctx, fmt, env, "rollback", target_version=target, steps=steps,
                    dry_run=dry_run, confirm=confirmer(
                        yes, "roll back, on each database of the fleet that has them,"),
                    lock_wait=lock_wait)
    if single is None:
        return
    result = api.rollback_migrations(target, single, steps=steps, config=ctx.obj["config"],
                                     dry_run=dry_run, confirm=confirmer(yes, "roll back"),
                                     lock_wait=lock_wait,
                                     progress=progress_printer(ctx, fmt, "rolled back"))
    emit(fmt, result, render_run)


@main.command()
@fleet_options
@common_options
@click.pass_context
def validate(ctx: click.Context, env: str | None, fmt: str) -> None:
    """Check files, names, templates for every environment, the config and the database."""
    from cryomigrate import api
    from cryomigrate.config import load_config

    begin(ctx, fmt, env)
    single = None
    if not load_config(ctx.obj["config"]).names_none(env):  # else files and templates only
        single = on_fleet(ctx, fmt, env, "validate", strict_vars=False)  # as validate resolves
        if single is None:
            return
    ctx.obj["render_partial"] = render_validate
    emit(fmt, api.validate(single, config=ctx.obj["config"]), render_validate)


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

    begin(ctx, fmt, env)
    result = api.new_migration(name, sql=sql, config=ctx.obj["config"], environment=env,
                               repeatable=repeatable)
    emit(fmt, result, lambda r: f"created {r.path}")


@main.command()
@click.option("--limit", type=Count(), help="Show only the newest N entries.")
@fleet_options
@common_options
@click.pass_context
def history(ctx: click.Context, env: str | None, limit: int | None, fmt: str) -> None:
    """Show the journal of every apply, rollback, baseline and repair, newest first."""
    from cryomigrate import api

    begin(ctx, fmt, env)
    single = on_fleet(ctx, fmt, env, "history", limit=limit)
    if single is None:
        return
    emit(fmt, api.get_history(single, config=ctx.obj["config"], limit=limit), render_history)


@main.command()
@click.argument("version", type=Version())
@lock_wait_option
@common_options
@click.pass_context
def baseline(ctx: click.Context, version: str, env: str | None, lock_wait: float,
             fmt: str) -> None:
    """Record migrations up to VERSION as applied without running them."""
    from cryomigrate import api

    begin(ctx, fmt, env)
    result = api.baseline(version, env, config=ctx.obj["config"], lock_wait=lock_wait)
    emit(fmt, result, lambda r: f"recorded {len(r.recorded)} migration(s) as applied" + "".join(
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

    begin(ctx, fmt, env)
    result = api.repair(env, config=ctx.obj["config"], mark_applied=mark_applied,
                        mark_pending=mark_pending, lock_wait=lock_wait)
    lines = [f"checksum accepted: {x}" for x in result.checksums_updated]
    lines += [f"marked applied: {x}" for x in result.marked_applied]
    lines += [f"marked pending: {x}" for x in result.marked_pending]
    emit(fmt, result, lambda r: "\n".join(lines) or "nothing to repair")


@main.command()
@click.option("--from", "tool", required=True, metavar="TOOL",
              type=click.Choice(["supabase", "dbmate", "golang-migrate", "goose", "flyway",
                                 "sqlx", "cryoprotect"]),
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

    begin(ctx, fmt, env)
    result = api.adopt(tool, env, table=table, config=ctx.obj["config"], dry_run=dry_run,
                       lock_wait=lock_wait)
    verb = "would record" if result.dry_run else "recorded"
    emit(fmt, result, lambda r: f"{verb} {len(r.adopted)} migration(s) applied by {tool} "
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

    begin(ctx, fmt, env)
    single = on_fleet(ctx, fmt, env, "lint", all_migrations=all_migrations)
    if single is None:
        return
    ctx.obj["render_partial"] = render
    emit(fmt, api.lint(single, config=ctx.obj["config"], all_migrations=all_migrations), render)


@main.command()
@common_options
@fleet_options
@click.pass_context
def verify(ctx: click.Context, env: str | None, fmt: str) -> None:
    """Apply, roll back and re-apply each migration on a scratch database, comparing."""
    from cryomigrate import api
    from cryomigrate.snapshot import render

    begin(ctx, fmt, env)
    single = on_fleet(ctx, fmt, env, "verify")
    if single is None:
        return
    ctx.obj["render_partial"] = render
    emit(fmt, api.verify(single, config=ctx.obj["config"]), render)


@main.command()
@common_options
@fleet_options
@click.pass_context
def drift(ctx: click.Context, env: str | None, fmt: str) -> None:
    """Compare the database's schema with its applied migrations replayed elsewhere."""
    from cryomigrate import api
    from cryomigrate.snapshot import render

    begin(ctx, fmt, env)
    single = on_fleet(ctx, fmt, env, "drift")
    if single is None:
        return
    ctx.obj["render_partial"] = render
    emit(fmt, api.drift(single, config=ctx.obj["config"]), render)


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
