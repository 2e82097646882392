"""Where a migration's output goes: stderr, since stdout is cryomigrate's own.

With ``--format json`` stdout must hold exactly one document, so what a migration prints,
at import or while it runs, is a diagnostic on stderr.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout


@contextmanager
def to_stderr() -> Iterator[None]:
    """``sys.stdout``, and descriptor 1 as well, so that what a migration writes to it
    directly (``os.write(1, ...)``, a program it starts) goes to stderr too. Not in a
    fleet's worker threads: there the descriptor is shared with databases running at the
    same time and with the fleet's own lines."""
    with redirect_stdout(sys.stderr):
        saved = _descriptor_aside()
        try:
            yield
        finally:
            if saved is not None:
                _flush_standard_streams()
                os.dup2(saved, 1)
                os.close(saved)


def _descriptor_aside() -> int | None:
    """Point descriptor 1 at descriptor 2; the original, to put back, or None."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        _flush_standard_streams()
        saved = os.dup(1)
    except (OSError, ValueError):
        return None  # no descriptor 1 to keep apart
    os.dup2(2, 1)
    return saved


def _flush_standard_streams() -> None:
    for stream in (sys.__stdout__, sys.__stderr__):
        if stream is not None:
            stream.flush()
