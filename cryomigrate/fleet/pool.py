"""Run one command on every database of a fleet, at most ``parallel`` at once.

Each database runs in a worker thread exactly as it would alone: the same api function,
given an Environment whose ``database`` is that one's URL, so it has its own connection,
lock, history and policies. Threads, because the work waits on the network; a worker
holds at most one connection at a time, so ``parallel`` workers never hold more than
``parallel`` connections.

Stopping. ``--fail-fast`` and Ctrl-C both stop *starting*: a worker checks before each
database, and before each migration (the runner's ``start`` event), whether it may go
on. Ctrl-C lands in the calling thread only, and psycopg cancels a statement on
KeyboardInterrupt only in the thread it lands in, so the calling thread cancels the
workers' statements itself (``backend.cancel()``, safe from any thread); each cancelled
migration then fails in its own thread and rolls back like any failure.

Output. Migrations print diagnostics, and the runner sends ``print`` to stderr by
swapping ``sys.stdout``, which is process-wide: two threads swapping it at once could
leave stdout pointing at stderr, or a migration's print in the middle of the JSON
document. So for the whole run ``sys.stdout`` *is* stderr (every swap then trades stderr
for stderr), and it is restored once the workers are done. ``on_database`` runs in the
calling thread; a caller that prints there writes to a stream taken before the run.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import redirect_stdout, suppress
from dataclasses import dataclass, replace
from typing import Any

from cryomigrate.backends import Backend
from cryomigrate.config import Environment
from cryomigrate.errors import ConnectionFailed, CryomigrateError, Interrupted
from cryomigrate.fleet.result import DatabaseOutcome, FleetResult
from cryomigrate.redact import redact
from cryomigrate.session import watcher
from cryomigrate.tracker import elapsed_ms
from cryomigrate.urls import mask_password

# Runs the command on one database (an Environment of its own) and returns its result;
# the progress callback is the one the api functions take.
Work = Callable[[Environment, Callable[[str, Any], None]], Any]
# The newest applied version after the command, when known: (known, version). Called with
# the command's result, or with None after it failed part-way.
VersionOf = Callable[[Environment, Any], tuple[bool, str | None]]

INTERRUPTED_CODE = Interrupted.exit_code


@dataclass(frozen=True)
class FleetOptions:
    """How to run a fleet; every field also has a CLI option."""

    parallel: int | None = None  # None: the environment's parallel (default 4)
    shard: tuple[int, int] | None = None  # (K, N): the K-th of N slices
    fail_fast: bool = False  # start no database after one failed
    # Called in the calling thread with each database's outcome as it finishes.
    on_database: Callable[[DatabaseOutcome], None] | None = None
    # Called from worker threads with (masked URL, "warning" | "notice", text).
    on_event: Callable[[str, str, str], None] | None = None


def member(env: Environment, url: str) -> Environment:
    """One database of a fleet, as an environment of its own."""
    return replace(env, database=url, databases=None)


class Fleet:
    """One fleet run: the stop flags its workers share, and the backends they hold open."""

    def __init__(self, env: Environment, work: Work, options: FleetOptions,
                 version_of: VersionOf | None) -> None:
        self.env = env
        self.work = work
        self.options = options
        self.version_of = version_of
        self.interrupted = threading.Event()  # Ctrl-C: start nothing, cancel what runs
        self.failure = threading.Event()  # --fail-fast: start no new database
        self._lock = threading.Lock()
        self._open: set[Backend] = set()
        self._first_failure: DatabaseOutcome | None = None

    # -- session.Watcher: the backends the workers hold, so Ctrl-C can cancel them -----

    def opened(self, backend: Backend) -> None:
        with self._lock:
            self._open.add(backend)
        if self.interrupted.is_set():
            _cancel(backend)

    def closed(self, backend: Backend) -> None:
        with self._lock:
            self._open.discard(backend)

    def cancel_all(self) -> None:
        with self._lock:
            running = list(self._open)
        for backend in running:
            _cancel(backend)

    # -- one database, in a worker thread ------------------------------------------------

    def one(self, url: str) -> DatabaseOutcome:
        shown = mask_password(url)
        refusal = self._refusal()
        if refusal is not None:
            return DatabaseOutcome(shown, "not started", code=refusal[0], message=refusal[1])
        token = watcher.set(self)  # read-backs included: Ctrl-C cancels them too
        try:
            return self._one(shown, member(self.env, url), time.perf_counter())
        finally:
            watcher.reset(token)

    def _one(self, shown: str, env: Environment, clock: float) -> DatabaseOutcome:
        try:
            result = self.work(env, self._progress(shown))
        except CryomigrateError as exc:
            failed = self._failed(shown, clock, exc.exit_code, str(exc), exc.result)
        except Exception as exc:  # a bug must cost one database, not the fleet's report
            return self._failed(shown, clock, 1, redact(f"{type(exc).__name__}: {exc}"), None)
        else:
            known, version = self.version_of(env, result) \
                if self.version_of and not self.interrupted.is_set() else (False, None)
            return DatabaseOutcome(shown, "ok", elapsed_ms(clock), result, version=version,
                                   version_known=known)
        # Where a failed database now stands, for the summary's count at each version:
        # read back unless it could not be reached or the user asked to stop.
        if self.version_of is None or failed.outcome != "failed" \
                or failed.code == ConnectionFailed.exit_code or self.interrupted.is_set():
            return failed
        known, version = self.version_of(env, None)
        return replace(failed, version=version, version_known=known)

    def _refusal(self) -> tuple[int, str] | None:
        if self.interrupted.is_set():
            return INTERRUPTED_CODE, "not started: interrupted (Ctrl-C)"
        first = self._first_failure
        if self.failure.is_set() and first is not None:
            return first.code, f"not started: --fail-fast, after {first.database} failed"
        return None

    def _failed(self, shown: str, clock: float, code: int, message: str,
                partial: Any) -> DatabaseOutcome:
        outcome = DatabaseOutcome(shown, "failed", elapsed_ms(clock), partial, code, message)
        if self.interrupted.is_set():
            outcome = replace(outcome, outcome="interrupted", code=INTERRUPTED_CODE,
                              message=f"interrupted (Ctrl-C): {message}")
        if self.options.fail_fast:
            with self._lock:
                if self._first_failure is None:
                    self._first_failure = outcome
            self.failure.set()
        return outcome

    def _progress(self, shown: str) -> Callable[[str, Any], None]:
        on_event = self.options.on_event

        def progress(event: str, payload: Any) -> None:
            if event == "start" and self.interrupted.is_set():
                label = getattr(getattr(payload, "file", None), "label", "the next migration")
                raise Interrupted(f"interrupted (Ctrl-C) before {label}, which did not start")
            if event in ("warning", "notice") and on_event is not None:
                on_event(shown, event, str(payload))
        return progress

    # -- the calling thread ---------------------------------------------------------------

    def run(self, urls: tuple[str, ...], parallel: int) -> list[DatabaseOutcome]:
        """Every database's outcome, in the order of ``urls``."""
        outcomes: dict[int, DatabaseOutcome] = {}
        executor = ThreadPoolExecutor(max_workers=max(1, min(parallel, len(urls))),
                                      thread_name_prefix="cryomigrate-fleet")
        try:
            with redirect_stdout(sys.stderr):
                futures = {executor.submit(self.one, url): i for i, url in enumerate(urls)}
                try:
                    self._collect(futures, outcomes)
                except KeyboardInterrupt:
                    self.interrupted.set()
                    self.cancel_all()
                    executor.shutdown(wait=False, cancel_futures=True)
                    self._collect(futures, outcomes)
        finally:
            executor.shutdown(wait=True)
        return [outcomes.get(i) or DatabaseOutcome(
            mask_password(url), "not started", code=INTERRUPTED_CODE,
            message="not started: interrupted (Ctrl-C)") for i, url in enumerate(urls)]

    def _collect(self, futures: dict[Future[DatabaseOutcome], int],
                 outcomes: dict[int, DatabaseOutcome]) -> None:
        pending = {f for f, i in futures.items() if i not in outcomes and not f.cancelled()}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                if future.cancelled():
                    continue
                outcome = future.result()
                outcomes[futures[future]] = outcome
                if self.options.on_database is not None:
                    self.options.on_database(outcome)


def run_fleet(env: Environment, command: str, work: Work, options: FleetOptions,
              version_of: VersionOf | None = None) -> FleetResult:
    """Run ``work`` on every database of ``env`` (or of its ``options.shard``)."""
    from cryomigrate.fleetconfig import shard

    everything = env.databases or ()
    urls = shard(everything, *options.shard) if options.shard else everything
    fleet = Fleet(env, work, options, version_of)
    outcomes = fleet.run(urls, options.parallel or env.parallel)
    spelled = f"{options.shard[0]}/{options.shard[1]}" if options.shard else None
    result = FleetResult(env.name, command, tuple(outcomes), len(everything), spelled)
    if fleet.interrupted.is_set():
        raise Interrupted(_interrupted_message(result), result=result)
    if result.exit_code:
        raise _failure(result)
    return result


def _failure(result: FleetResult) -> CryomigrateError:
    from cryomigrate.errors import FleetFailed

    first = result.failed[0]
    return FleetFailed(
        f"{len(result.failed)} of {len(result.databases)} databases did not succeed; the "
        f"first, {first.database}: {first.message}", exit_code=result.exit_code, result=result)


def _interrupted_message(result: FleetResult) -> str:
    return (f"interrupted (Ctrl-C): {result.count('ok')} database(s) finished, "
            f"{result.count('interrupted')} stopped (each says where), "
            f"{result.count('not started')} not started; run the command again to go on "
            "where each stopped")


def _cancel(backend: Backend) -> None:
    cancel = getattr(backend, "cancel", None)  # a backend without one stops between calls
    if callable(cancel):
        with suppress(Exception):
            cancel()
