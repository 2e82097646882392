"""Split SQL into top-level statements, knowing strings, comments and dollar quotes.

Real migration files are full of semicolons inside ``$$`` function bodies, ``'...'``
strings, ``/* */`` comments and ``BEGIN ATOMIC ... END`` bodies; a naive split on ``;``
breaks them. The splitter is lexical (no SQL grammar): it only needs to know where each
top-level statement starts and ends, on which line, and what its first words are, so that
transaction control (``BEGIN``/``COMMIT``) can be recognised and the line of a failing
statement reported. It serves both dialects: SQLite's ``CREATE TRIGGER ... BEGIN ... END``
bodies are handled by the same block counting as PostgreSQL's ``BEGIN ATOMIC``.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

_TOKEN = re.compile(r"--|/\*|[';\"()$`]|[A-Za-z_][A-Za-z0-9_$]*")
# Non-ASCII is written as a negated ASCII class: a \u0080-\uffff range makes re build a
# bitmap of the whole BMP, which made importing this module cost more than using it.
_DOLLAR_TAG = re.compile(r"\$((?:[A-Za-z_]|[^\x00-\x7f])(?:[A-Za-z0-9_]|[^\x00-\x7f])*)?\$")
_IDENT_CHAR = re.compile(r"[A-Za-z0-9_$]|[^\x00-\x7f]")
_QUOTE_OR_COMMENT = re.compile(r"--|/\*|['\"`$]")
_LEADING_WORDS = 3


@dataclass(frozen=True)
class Statement:
    """One top-level statement: ``source[start:end]``, semicolon included if present."""

    source: str
    start: int
    end: int
    line: int
    words: tuple[str, ...]

    @property
    def text(self) -> str:
        return self.source[self.start : self.end]

    @property
    def control(self) -> str | None:
        """'begin', 'commit', 'rollback' or 'prepare' for top-level transaction control."""
        return transaction_control(self.words)


def transaction_control(words: tuple[str, ...]) -> str | None:
    if not words:
        return None
    first = words[0]
    second = words[1] if len(words) > 1 else ""
    if first == "BEGIN" or (first == "START" and second == "TRANSACTION"):
        return "begin"
    if first in ("COMMIT", "END"):
        return None if second == "PREPARED" else "commit"
    if first == "PREPARE" and second == "TRANSACTION":
        return "prepare"
    if first in ("ROLLBACK", "ABORT"):
        # ROLLBACK [WORK|TRANSACTION] TO SAVEPOINT x stays inside the transaction.
        if "TO" in words[1:3] or second == "PREPARED":
            return None
        return "rollback"
    return None


class _Lexer:
    def __init__(self, sql: str) -> None:
        self.sql = sql

    @cached_property
    def newlines(self) -> list[int]:
        return [m.start() for m in re.finditer("\n", self.sql)]

    def line_of(self, offset: int) -> int:
        return bisect.bisect_right(self.newlines, offset - 1) + 1

    def skip_quoted(self, pos: int, quote: str) -> int:
        """``pos`` is just after the opening quote; returns the offset after the closing one."""
        sql = self.sql
        escapes = quote == "'" and pos >= 2 and sql[pos - 2] in "eE" and (
            pos < 3 or not _IDENT_CHAR.match(sql[pos - 3])
        )
        while True:
            end = sql.find(quote, pos)
            if end < 0:
                return len(sql)
            if escapes:
                backslashes = 0
                k = end - 1
                while k >= pos and sql[k] == "\\":
                    backslashes += 1
                    k -= 1
                if backslashes % 2:
                    pos = end + 1
                    continue
            if sql.startswith(quote, end + 1):  # doubled quote: '' or ""
                pos = end + 2
                continue
            return end + 1

    def skip_block_comment(self, pos: int) -> int:
        depth = 1
        sql = self.sql
        while depth:
            opening = sql.find("/*", pos)
            closing = sql.find("*/", pos)
            if closing < 0:
                return len(sql)
            if 0 <= opening < closing:
                depth += 1
                pos = opening + 2
            else:
                depth -= 1
                pos = closing + 2
        return pos


def split(sql: str) -> list[Statement]:
    """Top-level statements of ``sql``; comment-only stretches yield no statement."""
    lexer = _Lexer(sql)
    statements: list[Statement] = []
    start: int | None = None  # offset of the current statement's first token
    words: list[str] = []
    previous = ""  # the word before, to tell BEGIN ATOMIC
    parens = blocks = 0
    pos = 0

    def finish(end: int) -> None:
        nonlocal start, words, parens, blocks, previous
        if start is not None:
            statements.append(Statement(sql, start, end, lexer.line_of(start), tuple(words)))
        start, words, parens, blocks, previous = None, [], 0, 0, ""

    while True:
        match = _TOKEN.search(sql, pos)
        if match is None:
            break
        token = match.group()
        pos = match.end()
        if token == "--":
            newline = sql.find("\n", pos)
            pos = len(sql) if newline < 0 else newline + 1
            continue
        if token == "/*":
            pos = lexer.skip_block_comment(pos)
            if start is None and not sql.endswith("*/", 0, pos):
                # Never closed: the server must see it and say so, rather than the rest
                # of the script silently vanishing into a comment.
                start = match.start()
            continue
        if token == ";":
            if parens == 0 and blocks == 0:
                finish(pos)
            continue
        if start is None:
            start = match.start()
        if token in ("'", '"', "`"):
            pos = lexer.skip_quoted(pos, token)
        elif token == "$":
            tag = _DOLLAR_TAG.match(sql, match.start())
            if tag and not (match.start() and _IDENT_CHAR.match(sql[match.start() - 1])):
                closing = sql.find(tag.group(), tag.end())
                pos = len(sql) if closing < 0 else closing + len(tag.group())
        elif token == "(":
            parens += 1
        elif token == ")":
            parens = max(0, parens - 1)
        else:
            upper = token.upper()
            if len(words) < _LEADING_WORDS:
                words.append(upper)
            # Block bodies only exist in CREATE statements: BEGIN ATOMIC, and a SQLite
            # trigger's BEGIN ... END. Elsewhere a leading BEGIN is transaction control,
            # CASE ... END is an expression, and "AS begin" is just a name.
            if words[0] == "CREATE" and parens == 0:
                if ((upper == "ATOMIC" and previous == "BEGIN")
                        or (upper == "BEGIN" and "TRIGGER" in words)
                        or (upper == "CASE" and blocks)):
                    blocks += 1
                elif upper == "END" and blocks:
                    blocks -= 1
            previous = upper
    finish(len(sql))
    return statements


def blank_out(sql: str, statements: list[Statement]) -> str:
    """``sql`` with ``statements`` replaced by spaces, newlines kept, so lines still match."""
    if not statements:
        return sql
    parts: list[str] = []
    pos = 0
    for statement in statements:
        parts.append(sql[pos : statement.start])
        parts.append(re.sub(r"[^\n]", " ", statement.text))
        pos = statement.end
    parts.append(sql[pos:])
    return "".join(parts)


@dataclass(frozen=True)
class Region:
    """A stretch of ``sql`` that is not code: a comment, or a string, quoted identifier or
    dollar-quoted body. A ``--`` comment ends before its newline."""

    kind: Literal["comment", "quoted"]
    start: int
    end: int


def regions(sql: str) -> list[Region]:
    """The comments and quoted stretches of ``sql``, in order.

    What a checker needs to tell SQL from data: ``-- cryomigrate:rollback`` or ``\\set`` in
    a dollar-quoted body or a string is data, in a comment or at a line's start it is not.
    """
    lexer = _Lexer(sql)
    found: list[Region] = []
    pos = 0
    while True:
        match = _QUOTE_OR_COMMENT.search(sql, pos)
        if match is None:
            return found
        token, start = match.group(), match.start()
        if token == "--":
            newline = sql.find("\n", start)
            end = len(sql) if newline < 0 else newline
            found.append(Region("comment", start, end))
        elif token == "/*":
            end = lexer.skip_block_comment(match.end())
            found.append(Region("comment", start, end))
        elif token == "$":
            tag = _DOLLAR_TAG.match(sql, start)
            if tag is None or (start and _IDENT_CHAR.match(sql[start - 1])):
                pos = match.end()  # $1, or part of a name like a$b
                continue
            closing = sql.find(tag.group(), tag.end())
            end = len(sql) if closing < 0 else closing + len(tag.group())
            found.append(Region("quoted", start, end))
        else:
            end = lexer.skip_quoted(match.end(), token)
            found.append(Region("quoted", start, end))
        pos = end


def line_of(sql: str, offset: int) -> int:
    """The 1-based line of character ``offset``."""
    return sql.count("\n", 0, offset) + 1


def code_only(sql: str, found: list[Region]) -> str:
    """``sql`` with every region blanked (newlines kept), so a regex sees only code."""
    parts: list[str] = []
    pos = 0
    for region in found:
        parts.append(sql[pos : region.start])
        parts.append(re.sub(r"[^\n]", " ", sql[region.start : region.end]))
        pos = region.end
    parts.append(sql[pos:])
    return "".join(parts)
