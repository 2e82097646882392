"""The history edits behind ``cryomigrate repair``, each journaled as a 'repair' attempt."""

from __future__ import annotations

from collections.abc import Sequence

from cryomigrate.backends import Transaction
from cryomigrate.discovery import MigrationFile
from cryomigrate.errors import InputError
from cryomigrate.models import HistoryRow
from cryomigrate.planner import pad
from cryomigrate.tracker import Tracker, now


class Repair:
    """Queues its writes in the caller's locked transaction ``tx``, whose guard makes sure
    the history is still ``history``, the read the edits were decided from."""

    def __init__(self, tracker: Tracker, files: Sequence[MigrationFile],
                 history: dict[int, HistoryRow], tx: Transaction) -> None:
        self.tracker = tracker
        self.tx = tx
        self.files = {f.version: f for f in files}
        self.history = dict(history)
        self.checksums_updated: list[str] = []
        self.marked_applied: list[str] = []
        self.marked_pending: list[str] = []

    def accept_checksums(self) -> None:
        for version, row in sorted(self.history.items()):
            file = self.files.get(version)
            if file is None or row.state == "dirty":
                continue
            checksum = file.checksum()
            if checksum != row.checksum:
                self.tracker.set_checksum(version, row.version_text, checksum, tx=self.tx)
                self._journal(row.version_text, row.name)
                self.checksums_updated.append(file.label)

    def mark_applied(self, version: int) -> None:
        file = self.files.get(version)
        row = self.history.get(version)
        if file is None:
            raise InputError(f"no migration file has version {self._spell(version)}; nothing to "
                             "mark applied")
        if row is not None and row.state == "applied":
            raise InputError(f"{file.label} is already applied; nothing to mark")
        if row is None:
            self.tracker.insert(version=version, version_text=file.version_text, name=file.name,
                                kind=file.kind, checksum=file.checksum(), state="applied",
                                duration_ms=0, tx=self.tx)
        else:
            self.tracker.set_state(version, row.version_text, "applied", row.duration_ms,
                                   tx=self.tx)
            self.tracker.set_checksum(version, row.version_text, file.checksum(), tx=self.tx)
        self.history.pop(version, None)
        self._journal(file.version_text, file.name)
        self.marked_applied.append(file.label)

    def mark_pending(self, version: int) -> None:
        row = self.history.get(version)
        if row is None:
            raise InputError(f"version {self._spell(version)} is not in the history; it is "
                             "already pending")
        self.tracker.delete(version, row.version_text, tx=self.tx)
        self.history.pop(version)
        self._journal(row.version_text, row.name)
        self.marked_pending.append(f"{row.version_text}_{row.name}")

    def dirty_left(self) -> list[str]:
        return [f"{row.version_text}_{row.name}" for row in self.history.values()
                if row.state == "dirty"]

    def _spell(self, version: int) -> str:
        """``version`` as its file spells it, else padded as the folder pads versions."""
        if version in self.files:
            return self.files[version].version_text
        return pad(version, [*(f.version_text for f in self.files.values()),
                             *(r.version_text for r in self.history.values())])

    def _journal(self, version_text: str, name: str) -> None:
        self.tracker.journal(version_text=version_text, name=name, action="repair",
                             outcome="ok", started_at=now(), duration_ms=0, tx=self.tx)
