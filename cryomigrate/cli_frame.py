"""The frame every command runs in: whatever stops it (a ``CryomigrateError``, a bad
option value, Ctrl-C) becomes one exit code and one report, the one place this happens;
and what a command prints, asks and reports as it goes.

Every failure ends the same way: one paragraph on stderr and, with ``--format json``,
exactly one JSON document with ``"error": {"code", "message"}`` on stdout. Every line that
leaves the process goes through the redactor. Only click and the redactor are imported
here, so that ``cryomigrate --help`` stays fast.
"""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import click

from cryomigrate.errors import CryomigrateError, Interrupted
from cryomigrate.redact import redact, redact_values

if TYPE_CHECKING:
    from cryomigrate.config import Environment

# The shell's convention for a process ended by SIGINT (128 + 2), so scripts can tell a
# person's Ctrl-C from a migration failing (1).
EXIT_INTERRUPTED = Interrupted.exit_code


def environment_name_of(option: str | None) -> str:
    """The environment a failed command was for; config's rule, imported only on this
    error path so that ``--help`` does not load it."""
    from cryomigrate.config import environment_name

    return environment_name(option)


def out(text: str = "") -> None:
    click.echo(redact(text))


def err(text: str) -> None:
    click.echo(redact(text), err=True)


class Command(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # click keeps the last of an option given twice; `--target 2 --target 3` is a
        # near miss whose meaning nobody can tell, so it is refused instead.
        refuse_repeated(self, ctx, args)
        return super().parse_args(ctx, args)


def refuse_repeated(command: click.Command, ctx: click.Context, args: list[str]) -> None:
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


class Group(click.Group):
    """Runs a command and turns whatever stopped it into one exit code and one report."""

    command_class = Command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # A bad option value is found while click parses the command, before the command
        # knows its --format and --env: read them from the raw arguments so that even
        # that error is reported as JSON, for the right environment.
        state = ctx.ensure_object(dict)
        state["format"] = raw_option(args, "--format") or "text"
        state["environment"] = raw_option(args, "--env")
        refuse_repeated(self, ctx, args[:next((i for i, arg in enumerate(args)
                                                if arg in self.commands), len(args))])
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        # A command builds many objects and frees them all at exit: the cyclic collector
        # would only walk the heap again and again (a tenth of a no-op run over 1,000
        # files). It is back on once a migration starts (``progress_printer``): its code may
        # need it.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return super().invoke(ctx)
        except CryomigrateError as exc:
            fail(ctx, exc.exit_code, str(exc),
                 exc.result if exc.result is not None else progress_so_far(ctx))
        except click.UsageError as exc:
            fail(ctx, exc.exit_code, usage_message(exc), None, hint=help_hint(exc))
        except (KeyboardInterrupt, click.Abort):
            fail(ctx, EXIT_INTERRUPTED, INTERRUPTED, progress_so_far(ctx))
        finally:
            if collecting:
                gc.enable()


# For Ctrl-C outside a migration (planning, waiting, connecting); inside one, the runner
# raises an error saying what that migration left behind.
INTERRUPTED = ("interrupted (Ctrl-C): what finished before it stays done; run "
                "`cryomigrate status` to see where it stopped")


def fail(ctx: click.Context, code: int, message: str, result: Any, *,
          hint: str = "") -> NoReturn:
    """Report a failure once (JSON document or partial text, then stderr) and exit."""
    state = ctx.ensure_object(dict)
    if state.get("format") == "json":
        document: dict[str, Any] = result.to_dict() if hasattr(result, "to_dict") else {}
        document.setdefault("environment", environment_name_of(state.get("environment")))
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


def usage_message(exc: click.UsageError) -> str:
    """``--target: '5x' is not a migration version``: the option as the user typed it."""
    if isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter) \
            and exc.param is not None:
        param = exc.param
        name = param.opts[0] if isinstance(param, click.Option) else param.human_readable_name
        return f"{name}: {exc.message}"
    return exc.format_message()


def help_hint(exc: click.UsageError) -> str:
    if isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter):
        return ""  # the message already names the option and what it takes
    path = exc.ctx.command_path if exc.ctx is not None else "cryomigrate"
    return f"see `{path} --help`"


def raw_option(args: Sequence[str], name: str) -> str | None:
    """The last value given for ``name`` (``--name V`` or ``--name=V``), as click takes it."""
    found = None
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            found = args[i + 1]
        elif arg.startswith(name + "="):
            found = arg[len(name) + 1:]
    return found


def progress_so_far(ctx: click.Context) -> Any:
    """What an interrupted run had finished, from its progress events; None if no run."""
    state = ctx.ensure_object(dict)
    if state.get("action") is None:
        return None
    from cryomigrate.models import RunResult

    return RunResult(environment_name_of(state.get("environment")), state["action"],
                     bool(state.get("dry_run")), tuple(state.get("done", ())),
                     skipped=tuple(state.get("skipped", ())))


# --- running a command ------------------------------------------------------------------

def stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def confirmer(yes: bool, verb: str) -> bool | Callable[[str, Sequence[str]], bool]:
    if yes:
        return True

    def ask(environment: str, labels: Sequence[str]) -> bool:
        if not stdin_is_terminal():
            err(f"environment '{environment}' requires confirmation and there is no terminal "
                "to ask; pass --yes to confirm")
            return False
        from cryomigrate.policies import DESTRUCTIVE_PREFIX  # loaded by now: no cost

        count = sum(1 for label in labels if not label.startswith(DESTRUCTIVE_PREFIX))
        err(f"About to {verb} {count} migration(s) in '{environment}':")
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


def progress_printer(ctx: click.Context, fmt: str, verb: str) -> Callable[[str, Any], None]:
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


def begin(ctx: click.Context, fmt: str, env: str | None) -> None:
    state = ctx.ensure_object(dict)
    state["format"] = fmt
    state["environment"] = env


def emit(fmt: str, result: Any, text: Callable[[Any], str]) -> None:
    if fmt == "json":
        out(json.dumps(redact_values(result.to_dict()), indent=2, default=str))
    else:
        rendered = text(result)
        if rendered:
            out(rendered)


def on_fleet(ctx: click.Context, fmt: str, env: str | None, command: str, *,
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
                                   f"'{environment_name_of(env)}' has one database", ctx)
        return loaded.environment(env) if strict_vars else lenient
    from cryomigrate import fleet
    from cryomigrate.fleet.terminal import render_line, render_summary

    ctx.obj.pop("action", None)  # a fleet's refusal is no single run's document

    gc.enable()  # many databases, migrations' code in threads: see Group.invoke
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
    emit(fmt, result, render_summary)
    return None
