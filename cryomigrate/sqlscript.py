"""Turn SQL text into a runnable Script, and split SQL files into their sections.

Shared by SQL migrations and by ``conn.sql`` in Python migrations, so both treat a
user's own ``BEGIN; ... COMMIT;`` the same way: inside a transactional migration it is
recognised, not sent, and reported as a notice, because a user's ``COMMIT`` would end
cryomigrate's transaction and break the migration's atomicity. The Script remembers what
was dropped, so that a failure later in the file can say so.

A SQL file is checked before anything runs for what would silently change its meaning:
a near-miss section marker (``-- cryomigrate: rollback``) would turn rollback SQL into
apply SQL, and psql-only input (``\\set``, ``COPY ... FROM stdin``) cannot be sent to a
server at all. Markers are recognised exactly (see ``_MARKER_LINE``): a ``--`` comment on
a line of its own, spaces or tabs allowed around it and after ``--``, the name in lower
case; any other comment that mentions ``cryomigrate:`` is an error, while the same text
in a string or dollar-quoted body is data.

The lexer is imported only where a file needs it: cheap regexes first decide whether a
text mentions anything worth lexing, and most scripts need no split at all.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryomigrate.errors import MigrationFileError

if TYPE_CHECKING:
    from cryomigrate.sqlsplit import Region, Statement

MARKERS = ("apply", "rollback", "no-transaction")
# A comment naming cryomigrate with a colon, or with a marker's name after other
# punctuation (``cryomigrate rollback``, ``cryomigrate_rollback``, a full-width colon): a
# marker, or a near miss of one, never a plain comment.
_MENTION = re.compile(r"(?i)cryomigrate(?:[ \t]*:|[\W_]*(?:apply|rollback|no[\W_]*"
                      r"transaction|lint[\W_]*ignore)\b)")
# Other tools' section markers, which cryomigrate's own format would read as comments and
# so run a down section during apply.
_FOREIGN_MARKER = re.compile(r"(?im)^[ \t]*--[ \t]*(migrate:[ \t]*(?:up|down)\b|"
                             r"\+goose[ \t]+(?:up|down)\b)")
# ``lint-ignore`` waives lint rules for the file (DESIGN 10.1): one or more rule names in
# lower case; it is no section marker, so sections never end at it.
_LINT_IGNORE = "lint-ignore"
_MARKER_LINE = re.compile(r"[ \t]*--[ \t]*cryomigrate:(apply|rollback|no-transaction"
                          r"|lint-ignore(?:[ \t]+[a-z0-9][a-z0-9-]*)+)[ \t]*\r?")
_KNOWN = ", ".join(f"-- cryomigrate:{name}" for name in (*MARKERS, "lint-ignore <rule>..."))
_LINE_BACKSLASH = re.compile(r"(?m)^[ \t]*\\")
_STDIN = re.compile(r"(?i)\bstdin\b")
_COPY_FROM_STDIN = re.compile(r"(?i)(?:^|;)\s*(COPY\b[^;]*?\bFROM\s+STDIN)\b")
# Every transaction-control statement starts with one of these words; a script without
# any of them needs no split before it is sent.
_CONTROL_WORD = re.compile(r"(?i)\b(?:begin|start|commit|end|rollback|abort|prepare)\b")



class Script:
    """SQL ready to run: ``text`` with transaction control blanked out, and its statements.

    ``first_line`` is the line of ``text`` in the migration file, so a failing statement
    can be reported at its line in the file the user edits. Statements are split out of
    ``text`` only when asked for: a networked backend sends the text whole and needs them
    only to place an error. ``dropped_control`` lists the user's own transaction control
    that was blanked out, as (file line, words such as ``BEGIN``), so that a failure can
    say the file's ``BEGIN ... COMMIT`` no longer scoped anything.
    """

    def __init__(self, origin: str, text: str, first_line: int = 1,
                 statements: Sequence[Statement] | None = None, *,
                 dropped_control: tuple[tuple[int, str], ...] = ()) -> None:
        self.origin = origin
        self.text = text
        self.first_line = first_line
        self._statements = statements
        self.dropped_control = dropped_control

    def _parts(self) -> Sequence[Statement]:
        if self._statements is None:
            from cryomigrate.sqlsplit import split  # imported only when a split is needed

            self._statements = split(self.text)
        return self._statements

    @property
    def statements(self) -> tuple[str, ...]:
        return tuple(s.text for s in self._parts())


    def file_line(self, index: int) -> int:
        parts = self._parts()
        if not parts:
            return self.first_line
        return self.first_line + parts[max(0, min(index, len(parts) - 1))].line - 1

    def index_at(self, offset: int) -> int:
        """The statement that holds character ``offset`` of ``text``."""
        parts = self._parts()
        return max((i for i, s in enumerate(parts) if s.start <= offset), default=0)


def prepare(sql: str, *, origin: str, first_line: int = 1, transactional: bool = True,
            notice: Callable[[str], None] | None = None) -> Script:
    if not transactional or not _CONTROL_WORD.search(sql):
        return Script(origin, sql, first_line)  # nothing to strip: split only if needed
    from cryomigrate.sqlsplit import blank_out, split

    statements = split(sql)
    controls = [s for s in statements if s.control]
    if not controls:
        return Script(origin, sql, first_line, statements)
    dropped = tuple((first_line + s.line - 1, _control_words(s)) for s in controls)
    for statement, (line, words) in zip(controls, dropped, strict=True):
        _refuse_control(statement, origin, line)
        if notice is not None:
            notice(f"{origin} line {line}: {words} not sent; "
                   "the migration already runs in one transaction")
    return Script(origin, blank_out(sql, controls), first_line,
                  [s for s in statements if not s.control], dropped_control=dropped)


def _control_words(statement: Statement) -> str:
    return " ".join(statement.words[:2] if statement.words[0] == "START" else
                    statement.words[:1])


def _refuse_control(statement: Statement, origin: str, line: int) -> None:
    """Transaction control that cannot simply be left out of a transactional migration."""
    if statement.control == "prepare":
        raise MigrationFileError(
            f"{origin} line {line}: PREPARE TRANSACTION would hand the migration's "
            "transaction to two-phase commit and leave it uncommitted; remove it"
        )
    if statement.control == "rollback":
        raise MigrationFileError(
            f"{origin} line {line}: a top-level {statement.words[0]} would undo the "
            "migration's own transaction; remove it (a failing migration is rolled "
            "back for you) or mark the file -- cryomigrate:no-transaction"
        )


def dropped_control_advice(script: Script) -> str:
    """What to add to the message of a statement failing in a script whose own transaction
    control was not sent: its ``BEGIN ... COMMIT`` no longer scopes anything."""
    where = ", ".join(f"{words} at line {line}" for line, words in script.dropped_control)
    return (
        f"note: the transaction control written in {script.origin} was not sent ({where}), because "
        "the migration already runs in one transaction; whatever the file scoped to its "
        "own transaction (SET LOCAL, set_config(..., true)) now lasts to the end of the "
        "file. If the file relies on its own BEGIN/COMMIT, mark it "
        "-- cryomigrate:no-transaction"
    )


@dataclass(frozen=True)
class Sections:
    """The parts of a SQL migration file, each with the file line it starts on."""

    apply: str
    apply_line: int
    rollback: str | None
    rollback_line: int
    transactional: bool


@dataclass(frozen=True)
class _Marker:
    """A cryomigrate section marker and where its section starts."""
    name: str
    line: int
    start: int  # where its line starts
    end: int  # just after its newline, where its section's text starts


def parse_sections(text: str, origin: str) -> Sections:
    markers = [m for m in check_text(text, origin) if not m.name.startswith(_LINT_IGNORE)]
    _refuse_foreign_markers(text, origin)
    transactional = True
    sections: dict[str, tuple[str, int]] = {}
    for index, marker in enumerate(markers):
        if marker.name == "no-transaction":
            if sections:
                raise MigrationFileError(
                    f"{origin} line {marker.line}: -- cryomigrate:no-transaction must come "
                    "before the first section marker"
                )
            transactional = False
            continue
        if marker.name in sections:
            raise MigrationFileError(
                f"{origin} line {marker.line}: a second -- cryomigrate:{marker.name}")
        end = markers[index + 1].start if index + 1 < len(markers) else len(text)
        sections[marker.name] = (text[marker.end : end], marker.line + 1)
    if not sections:
        return Sections(text, 1, None, 0, transactional)
    if "apply" not in sections:
        opener = min((m for m in markers if m.name in sections), key=lambda m: m.start)
        raise MigrationFileError(
            f"{origin} line {opener.line}: -- cryomigrate:{opener.name} starts a section, "
            "but the file has no -- cryomigrate:apply; put it on its own line above the SQL "
            "that applies the migration")
    first = min(m.start for m in markers if m.name != "no-transaction")
    preamble = text[:first]
    if not _only_line_comments(preamble) and _has_statements(preamble):
        raise MigrationFileError(
            f"{origin}: SQL before the first -- cryomigrate:apply marker; move it into "
            "the apply section"
        )
    rollback_text, rollback_line = sections.get("rollback", (None, 0))
    return Sections(*sections["apply"], rollback_text, rollback_line, transactional)


def _refuse_foreign_markers(text: str, origin: str) -> None:
    """A dbmate or goose file in a folder read in cryomigrate's own format: its down
    section would run during apply. Only comments count (not text in strings)."""
    lowered = text.lower()
    if "migrate:" not in lowered and "+goose" not in lowered:
        return
    from cryomigrate.sqlsplit import line_of, regions

    comments = [r for r in regions(text) if r.kind == "comment"]
    for match in _FOREIGN_MARKER.finditer(text):
        at = match.start(1)
        if any(r.start <= at < r.end for r in comments):
            tool = "dbmate" if match[1].lower().startswith("migrate") else "goose"
            raise MigrationFileError(
                f"{origin} line {line_of(text, at)}: '{match[1].strip()}' is a {tool} section "
                f"marker, but this folder is read in cryomigrate's format, where it would be a "
                f"plain comment and its down section would run during apply; set "
                f"'format: {tool}' in environments.yaml, or use -- cryomigrate:apply and "
                "-- cryomigrate:rollback")


def lint_waivers(text: str, origin: str) -> dict[str, int]:
    """The rules a file's ``-- cryomigrate:lint-ignore`` lines waive, with each one's line."""
    return {rule: marker.line for marker in check_text(text, origin)
            if marker.name.startswith(_LINT_IGNORE) for rule in marker.name.split()[1:]}


def check_text(text: str, origin: str) -> list[_Marker]:
    """The section markers of a SQL file; raises for near-miss markers and psql-only input.

    Cheap regexes decide first whether there is anything to look at; only then is the
    text lexed, so that a marker or a backslash in a string or dollar-quoted body is data.
    """
    lowered = text.lower()  # one copy beats three case-insensitive searches
    mention = "cryomigrate" in lowered and _MENTION.search(text) is not None
    stdin = "stdin" in lowered and _STDIN.search(text) is not None
    backslash = "\\" in text and _LINE_BACKSLASH.search(text) is not None
    if not (mention or backslash or stdin):
        return []
    from cryomigrate.sqlsplit import regions

    found = regions(text)
    problems: list[tuple[int, str]] = []
    markers = _markers(text, origin, found, problems) if mention else []
    if stdin:
        problems += _copy_from_stdin(text, origin, found)
    if backslash:
        problems += _meta_commands(text, origin, found)
    if problems:
        raise MigrationFileError("; ".join(message for _, message in sorted(problems)))
    return markers


def _markers(text: str, origin: str, found: list[Region],
             problems: list[tuple[int, str]]) -> list[_Marker]:
    from cryomigrate.sqlsplit import line_of

    markers: list[_Marker] = []
    for region in found:
        mention = region.kind == "comment" and _MENTION.search(text, region.start, region.end)
        if not mention:
            continue
        line = line_of(text, mention.start())
        line_start = text.rfind("\n", 0, region.start) + 1
        exact = _MARKER_LINE.fullmatch(text, line_start, region.end)
        if text.startswith("/*", region.start):
            why = "a /* */ comment mentions cryomigrate:, but markers are -- line comments"
        elif text[line_start : region.start].strip():
            why = "a marker must be on a line of its own, not after SQL"
        elif exact is None:
            shown = text[region.start : region.end].strip()
            why = f"unknown marker {shown[:60]!r}"
        else:
            markers.append(_Marker(exact[1], line, line_start,
                                   min(region.end + 1, len(text))))
            continue
        problems.append((line, (
            f"{origin} line {line}: {why}; the markers are exactly {_KNOWN}, each on a "
            "line of its own (any other comment mentioning cryomigrate: is refused, so that "
            "a near miss never runs rollback SQL as apply SQL)")))
    return markers


def _copy_from_stdin(text: str, origin: str, found: list[Region]) -> list[tuple[int, str]]:
    from cryomigrate.sqlsplit import code_only, line_of

    problems = []
    for match in _COPY_FROM_STDIN.finditer(code_only(text, found)):
        line = line_of(text, match.start(1))
        problems.append((line, (
            f"{origin} line {line}: COPY ... FROM stdin is not SQL: psql only (psql sends "
            "the data rows that follow it); write the rows as INSERT statements")))
    return problems


def _meta_commands(text: str, origin: str, found: list[Region]) -> list[tuple[int, str]]:
    from cryomigrate.sqlsplit import line_of

    starts = [region.start for region in found]
    problems = []
    for match in _LINE_BACKSLASH.finditer(text):
        at = match.end() - 1
        index = bisect.bisect_right(starts, at) - 1
        if index >= 0 and found[index].end > at:
            continue  # inside a string, comment or dollar-quoted body: data
        command = text[at : at + 20].split(None, 1)[0]
        if command == "\\.":
            continue  # the end of COPY data, reported with its COPY
        line = line_of(text, at)
        problems.append((line, (
            f"{origin} line {line}: {command} is a psql meta-command, not SQL: psql only; "
            "cryomigrate sends the file to the server, which cannot run it; remove it or "
            "write it as SQL")))
    return problems


def _only_line_comments(text: str) -> bool:
    """Blank lines and -- comments only: the usual header above the first marker."""
    return all(not line.strip() or line.lstrip().startswith("--") for line in text.splitlines())


def _has_statements(text: str) -> bool:
    from cryomigrate.sqlsplit import split

    return bool(split(text))
