"""Waiting for a migration marked dirty, as for the run lock.

A dirty row is also what a live run leaves while it executes a non-transactional
migration, and nothing in the database tells a live run from a dead one (no session state
may survive a transaction pooler). Planning waits for it, and so does a run about to mark
the migration itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# Re-checked this often until --lock-wait runs out.
DIRTY_POLL_S = 0.2


class DirtyWait:
    """Looked at again every ``DIRTY_POLL_S`` up to ``lock_wait``, with one warning when
    the wait starts rather than after it."""

    def __init__(self, lock_wait: float, warn: Callable[[str], None] | None) -> None:
        self._lock_wait = lock_wait
        self._deadline = time.monotonic() + lock_wait
        self._warn = warn
        self._warned = False

    def pause(self, label: str) -> bool:
        """Wait before the next look at ``label``'s row; False once ``lock_wait`` is up."""
        if time.monotonic() >= self._deadline:
            return False
        if not self._warned and self._warn is not None:
            self._warn(f"{label} is marked dirty: another run may be inside it; waiting up to "
                       f"{self._lock_wait:g}s (--lock-wait) for it to finish")
        self._warned = True
        time.sleep(DIRTY_POLL_S)
        return True
