"""lock_retries (DESIGN 10.2): a migration that failed on the environment's lock_timeout.

Such a transactional migration was rolled back whole, so trying it again is safe; it is
tried again after a growing, jittered pause, so that runs retrying against one busy table
spread out. The run lock waiting past --lock-wait is ``LockTimeout`` instead, never
retried: that wait is the user's to bound.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from cryomigrate.errors import MigrationFailed

T = TypeVar("T")

_LOCK_NOT_AVAILABLE = "55P03"
_RETRY_PAUSE_S = 0.5  # the first pause; each one after doubles, up to the cap
_RETRY_PAUSE_CAP_S = 30.0


def with_lock_retries(retries: int, label: str, attempt: Callable[[], T],
                      warn: Callable[[str], None]) -> T:
    """``attempt`` once, and up to ``retries`` times more while it fails on lock_timeout;
    each failed attempt is the caller's to journal."""
    for tried in range(retries + 1):
        try:
            return attempt()
        except MigrationFailed as exc:
            if not lock_timed_out(exc):
                raise
            if tried == retries:
                if retries:
                    raise MigrationFailed(
                        f"{exc} -- gave up after {retries + 1} attempts "
                        f"(lock_retries: {retries}); another session holds a lock the "
                        "migration needs for longer than lock_timeout allows") from exc
                raise
            pause = retry_pause(tried)
            warn(f"{label}: lock_timeout, rolled back; retrying in {pause:.1f}s (attempt "
                 f"{tried + 2} of {retries + 1})")
            time.sleep(pause)
    raise AssertionError("unreachable")  # the last attempt returns or raises


def lock_timed_out(exc: BaseException) -> bool:
    """Whether a statement of the migration failed on lock_timeout (SQLSTATE 55P03), as
    the backend's QueryError says somewhere down the chain of causes."""
    seen: BaseException | None = exc
    while seen is not None:
        if getattr(seen, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
            return True
        seen = seen.__cause__
    return False


def retry_pause(attempt: int) -> float:
    """The pause after failed attempt ``attempt`` (from 0): doubling up to the cap, and
    cut by up to half at random."""
    ceiling = min(_RETRY_PAUSE_CAP_S, _RETRY_PAUSE_S * 2.0 ** attempt)
    return ceiling * random.uniform(0.5, 1.0)
