"""``after_run:`` SQL, run after a run that applied or rolled back something (DESIGN 8.3).

E.g. ``NOTIFY pgrst, 'reload schema';`` so that PostgREST sees new tables at once. It is
rendered like a ``.sql.j2`` migration before the run starts (a template error is bad input
and changes nothing), and runs in a transaction of its own after the run: the run's own
migrations are committed by then and stay so, whatever the hook does.
"""

from __future__ import annotations

from cryomigrate import sqlscript, templating
from cryomigrate.backends import Backend
from cryomigrate.config import Environment
from cryomigrate.errors import CryomigrateError, MigrationFailed
from cryomigrate.models import RunResult
from cryomigrate.sqlscript import Script

ORIGIN = "after_run"


def prepare(env: Environment) -> Script | None:
    """The rendered hook, or None when the environment has none."""
    text = getattr(env, "after_run", None)
    if not text or not text.strip():
        return None
    rendered = templating.render(text, origin=ORIGIN, environment=env.name, vars=env.vars)
    return sqlscript.prepare(rendered, origin=ORIGIN)


def run(backend: Backend, script: Script | None, result: RunResult) -> RunResult:
    """Run the hook when ``result`` changed something; its failure is reported with the
    run's own result, which stays committed."""
    if script is None or result.dry_run or not result.migrations:
        return result
    try:
        with backend.transaction(lock=False) as tx:
            tx.defer_script(script)
            tx.commit()
    except CryomigrateError as exc:
        raise MigrationFailed(
            f"after_run failed: {exc}; the run itself succeeded and stays committed",
            result=result) from exc
    return result
