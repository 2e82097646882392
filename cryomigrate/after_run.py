"""``after_run:`` SQL, run after a run that applied or rolled back something (DESIGN 8.3).

E.g. ``NOTIFY pgrst, 'reload schema';`` so that PostgREST sees new tables at once. It is
rendered like a ``.sql.j2`` migration before the run starts (a template error is bad input
and changes nothing), and runs in a transaction of its own after the run: the run's own
migrations are committed by then and stay so, whatever the hook does.

A run that committed some migrations and then failed has changed the schema as much as a
run that succeeded with those, and PostgREST needs the reload just the same: the hook runs
then too, and the run's own error stays what is reported (the hook's failure is added to
it). Not after an interrupted run: the person pressed Ctrl-C to stop work, not to start
more.
"""

from __future__ import annotations

from collections.abc import Callable

from cryomigrate import sqlscript, templating
from cryomigrate.backends import Backend
from cryomigrate.config import Environment
from cryomigrate.errors import CryomigrateError, Interrupted, MigrationFailed
from cryomigrate.models import RunResult
from cryomigrate.sqlscript import Script


def prepare(env: Environment) -> Script | None:
    """The rendered hook, or None when the environment has none."""
    text = getattr(env, "after_run", None)
    if not text or not text.strip():
        return None
    where = env.where("after_run")
    rendered = templating.render(text, origin=where, environment=env.name, vars=env.vars)
    return sqlscript.prepare(rendered, origin=where)


def run(backend: Backend, script: Script | None, result: RunResult) -> RunResult:
    """Run the hook when ``result`` changed something; its failure is reported with the
    run's own result, which stays committed."""
    if script is None or result.dry_run or not result.migrations:
        return result
    try:
        _execute(backend, script)
    except CryomigrateError as exc:
        raise MigrationFailed(
            f"after_run failed: {exc}; the run itself succeeded and stays committed",
            result=result) from exc
    return result


def around(backend: Backend, script: Script | None, execute: Callable[[], RunResult]
           ) -> RunResult:
    """``execute`` the run, then the hook: after it succeeded, or after it failed having
    committed something (see the module docstring)."""
    try:
        result = execute()
    except CryomigrateError as exc:
        _after_failure(backend, script, exc)
        raise
    return run(backend, script, result)


def _after_failure(backend: Backend, script: Script | None, exc: CryomigrateError) -> None:
    partial = exc.result
    if (script is None or isinstance(exc, Interrupted) or not isinstance(partial, RunResult)
            or not partial.migrations):
        return
    try:
        _execute(backend, script)
    except CryomigrateError as hook_exc:
        # The run's error keeps its class and exit code; the hook's is said with it.
        exc.args = (f"{exc}; after_run then failed too: {hook_exc}",)


def _execute(backend: Backend, script: Script) -> None:
    with backend.transaction(lock=False) as tx:
        tx.defer_script(script)
        tx.commit()
