"""A migration file -> an executable migration (a Python module or SQL sections).

Loading is done for every migration of a run before the first one executes, so that a
syntax error in migration 7 is reported before migrations 1-6 change anything.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal, Protocol

from cryomigrate import migration_output, sqlscript, templating
from cryomigrate.discovery import MigrationFile, checksum_of, decode_text
from cryomigrate.errors import MigrationFailed, MigrationFileError
from cryomigrate.formats.base import ForeignFile
from cryomigrate.migration_conn import MigrationConnection
from cryomigrate.sqlscript import Script

Direction = Literal["apply", "rollback"]


class Migration(Protocol):
    @property
    def file(self) -> MigrationFile: ...

    @property
    def checksum(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def transactional(self) -> bool: ...

    @property
    def reversible(self) -> bool: ...

    def run(self, direction: Direction, conn: MigrationConnection) -> None: ...

    def preview(self, direction: Direction) -> str | None:
        """The SQL a dry run shows, or None when it cannot be known without running."""
        ...


@dataclass(frozen=True)
class SqlMigration:
    """A loaded SQL (or template) migration, its script ready to send."""
    file: MigrationFile
    checksum: str
    description: str
    transactional: bool
    apply_script: Script
    rollback_script: Script | None
    notices: tuple[str, ...]

    @property
    def reversible(self) -> bool:
        return self.rollback_script is not None

    def run(self, direction: Direction, conn: MigrationConnection) -> None:
        for notice in self.notices:
            if conn._notice is not None:
                conn._notice(notice)
        script = self.apply_script if direction == "apply" else self.rollback_script
        if script is None or not script.text.strip():
            return
        if conn._transaction is not None:
            conn._transaction.defer_script(script)  # sent with the COMMIT: a round trip less
        else:
            conn._backend.run_script(script)

    def preview(self, direction: Direction) -> str | None:
        script = self.apply_script if direction == "apply" else self.rollback_script
        return script.text.strip("\n") if script is not None else None


@dataclass(frozen=True)
class PythonMigration:
    """A loaded Python migration, its module imported and checked."""
    file: MigrationFile
    checksum: str
    description: str
    transactional: bool
    module: ModuleType

    @property
    def reversible(self) -> bool:
        return callable(getattr(self.module, "rollback", None))

    def run(self, direction: Direction, conn: MigrationConnection) -> None:
        function: Callable[..., Any] = getattr(self.module, direction)
        with _importable(os.path.dirname(self.file.path)):  # for imports inside apply()
            returned = function(conn, conn.environment)
        if inspect.isawaitable(returned) or inspect.isgenerator(returned):
            if inspect.iscoroutine(returned) or inspect.isgenerator(returned):
                returned.close()  # never started: nothing ran, and no "never awaited" noise
            raise MigrationFailed(
                f"{self.file.label}: {direction}() returned {type(returned).__name__} "
                "instead of running; nothing it holds was executed. Write it as a plain def"
            )

    def preview(self, direction: Direction) -> str | None:
        return None


# Whether this process has run a Python migration's code: what it built may need the
# interpreter's last collection at exit to be finalized (see ``cli.run``).
_user_code_ran = False


def user_code_ran() -> bool:
    return _user_code_ran


def load(file: MigrationFile, *, environment: str, vars: dict[str, Any],
         content: bytes | None = None) -> Migration:
    """``content`` is the file's bytes when the caller has read them already."""
    if isinstance(file, ForeignFile):  # a folder written for another tool (DESIGN §9.1)
        from cryomigrate.formats import load_foreign

        return load_foreign(file, content)
    if content is None:
        content = file.read_bytes()
    checksum = checksum_of(content)
    text = decode_text(file.label, content)
    if file.kind == "python":
        migration: Migration = _load_python(file, checksum, text)
    else:
        if file.kind == "template":
            text = templating.render(text, origin=file.label, environment=environment,
                                     vars=vars)
            if file.repeatable:
                # What a repeatable runs is its rendered SQL: a changed variable changes
                # the view it creates, so it must make the repeatable run again.
                checksum = checksum_of(text.encode())
        migration = _load_sql(file, checksum, text)
    if file.repeatable:
        _check_repeatable(migration)
    return migration


def _check_repeatable(migration: Migration) -> None:
    """A repeatable runs forwards only, in a transaction (DESIGN §12).

    A rollback it carries would never run, and a user who wrote one expects it to: that is
    refused rather than silently ignored. Outside a transaction, a failure half-way would
    need the dirty-state machinery of versioned migrations; re-running an idempotent file
    (CREATE OR REPLACE) atomically is the point of a repeatable.
    """
    label = migration.file.label
    if migration.reversible:
        how = ("a rollback() function" if migration.file.kind == "python"
               else "a -- cryomigrate:rollback section")
        raise MigrationFileError(
            f"{label}: has {how}, but a repeatable migration is never rolled back; remove "
            "it (to undo what a repeatable made, drop it in a versioned migration and "
            "delete the repeatable's file)"
        )
    if not migration.transactional:
        raise MigrationFileError(
            f"{label}: a repeatable migration always runs in a transaction, so it cannot be "
            "non-transactional; move that work into a versioned migration"
        )


def _load_sql(file: MigrationFile, checksum: str, text: str) -> SqlMigration:
    # A template's lines are counted in what it rendered, which --dry-run shows; a loop
    # or an include makes them differ from the file's.
    origin = f"{file.label} (rendered)" if file.kind == "template" else file.label
    sections = sqlscript.parse_sections(text, origin)
    notices: list[str] = []
    apply_script = sqlscript.prepare(sections.apply, origin=origin,
                                   first_line=sections.apply_line,
                                   transactional=sections.transactional, notice=notices.append)
    rollback_script = None
    if sections.rollback is not None:
        rollback_script = sqlscript.prepare(sections.rollback, origin=origin,
                                          first_line=sections.rollback_line,
                                          transactional=sections.transactional)
    return SqlMigration(file, checksum, _sql_description(text), sections.transactional,
                        apply_script, rollback_script, tuple(notices))


def _sql_description(text: str) -> str:
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("--") and "cryomigrate:" not in stripped:
            return stripped.lstrip("-").strip()
        if stripped:
            break
    return ""


def _load_python(file: MigrationFile, checksum: str, source: str) -> PythonMigration:
    # A name unique to the file's path: two projects with 001_initial.py in one process
    # must not find each other's module in sys.modules.
    module_name = f"cryomigrate_migration_{checksum[7:19]}_{abs(hash(file.path))}"
    spec = importlib.util.spec_from_file_location(module_name, file.path)
    if spec is None or spec.loader is None:
        raise MigrationFileError(f"{file.label}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        code = compile(source, file.path, "exec")
    except SyntaxError as exc:
        raise MigrationFileError(
            f"{file.label} line {exc.lineno}: Python syntax error: {exc.msg}"
        ) from None
    global _user_code_ran
    _user_code_ran = True
    sys.modules[module_name] = module
    try:
        # What a module prints while it loads is a diagnostic: stdout holds cryomigrate's
        # own output, with --format json exactly one document.
        with _importable(os.path.dirname(file.path)), migration_output.to_stderr():
            exec(code, module.__dict__)
    except (Exception, SystemExit) as exc:
        raise MigrationFileError(
            f"{file.label}{_line_in(exc, file)}: importing it raised "
            f"{type(exc).__name__}: {exc}"
        ) from None
    finally:
        sys.modules.pop(module_name, None)
    _check_functions(file, module)
    transactional = getattr(module, "transactional", True)
    if not isinstance(transactional, bool):
        raise MigrationFileError(f"{file.label}: 'transactional' must be True or False")
    doc = (module.__doc__ or "").strip().splitlines()
    return PythonMigration(file, checksum, doc[0] if doc else "", transactional, module)


def _check_functions(file: MigrationFile, module: ModuleType) -> None:
    """apply is a plain function, and so is rollback if there is one.

    Calling an ``async def`` or a generator function runs none of its body; the migration
    would be recorded as applied having done nothing.
    """
    if not callable(getattr(module, "apply", None)):
        raise MigrationFileError(
            f"{file.label}: has no apply(conn, environment) function; every Python "
            "migration needs one"
        )
    rollback = getattr(module, "rollback", None)
    if rollback is not None and not callable(rollback):  # rollback = "DROP TABLE a"
        raise MigrationFileError(
            f"{file.label}: rollback is a {type(rollback).__name__}, not a function, so the "
            "migration could not be rolled back; write def rollback(conn, environment), or "
            "set rollback = None (or leave it out) for an irreversible migration")
    for name in ("apply", "rollback"):
        function = getattr(module, name, None)
        if not callable(function):
            continue  # rollback = None (or absent): irreversible; a bad apply is found above
        code = getattr(function, "__code__", None)
        where = f" line {code.co_firstlineno}" if code is not None else ""
        what = _not_plain(function)
        if what is not None:
            raise MigrationFileError(
                f"{file.label}{where}: {name}() is {what}, so calling it would run none of "
                f"its body and the migration would be recorded as done; write it as a plain "
                f"def {name}(conn, environment)"
            )
        try:  # found now, not when the migrations before it have been applied
            signature = inspect.signature(function, follow_wrapped=False)  # as called
            signature.bind(None, None)
        except TypeError:
            raise MigrationFileError(
                f"{file.label}{where}: {name}{signature} cannot be called as "
                f"{name}(conn, environment); write it as def {name}(conn, environment)"
            ) from None
        except ValueError:
            pass  # no signature to read (a builtin): called as it is


def _not_plain(function: object) -> str | None:
    if inspect.isasyncgenfunction(function):
        return "an async generator"
    if inspect.iscoroutinefunction(function):
        return "an async def"
    if inspect.isgeneratorfunction(function):
        return "a generator (it contains yield)"
    return None


@contextmanager
def _importable(folder: str) -> Iterator[None]:
    """Let a migration import the ``_helpers.py`` kept beside it, and leave nothing behind.

    The folder is on sys.path only meanwhile, and modules loaded from it are dropped from
    sys.modules afterwards, so that another project's ``_helpers`` in the same process
    is its own. No bytecode is written into the user's migrations folder.
    """
    sys.path.insert(0, folder)
    count, bytecode = len(sys.modules), sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        yield
    finally:
        sys.dont_write_bytecode = bytecode
        if folder in sys.path:
            sys.path.remove(folder)
        sys.path_importer_cache.pop(folder, None)  # its file listing may be stale next time
        if len(sys.modules) != count:
            _forget_modules_in(folder)


def _forget_modules_in(folder: str) -> None:
    prefix = os.path.join(folder, "")
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None)
        if isinstance(origin, str) and origin.startswith(prefix):
            del sys.modules[name]


def _line_in(exc: BaseException, file: MigrationFile) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == file.path]
    return f" line {frames[-1].lineno}" if frames else ""
