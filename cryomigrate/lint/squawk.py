"""squawk, the PostgreSQL migration linter, run as a subprocess (PyPI ``squawk-cli``).

The wheel carries squawk's binary as a script of the Python environment it is installed
in, so that environment's scripts folder is looked at before ``PATH``: a cryomigrate run
as ``.venv/bin/cryomigrate`` finds the squawk beside it without an activated venv.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from cryomigrate.errors import CryomigrateError, InputError

NOT_INSTALLED = ("squawk is not installed (PyPI squawk-cli, a dependency of cryomigrate); "
                 "reinstall cryomigrate or run `pip install squawk-cli`")


@dataclass(frozen=True)
class RawFinding:
    """One squawk finding; ``line`` is 0-based in the text squawk was given."""

    path: str
    line: int
    rule: str
    message: str


def find_squawk() -> str | None:
    name = "squawk.exe" if os.name == "nt" else "squawk"
    beside = Path(sysconfig.get_path("scripts")) / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("squawk")


def run_squawk(binary: str, paths: list[Path], *, in_transaction: bool) -> list[RawFinding]:
    """squawk over ``paths`` in one process; exit 1 only means it found something.

    Rules are never passed to ``--exclude``: squawk refuses a name it does not know, so
    a rule renamed in a later squawk would break every run. The caller filters instead.
    """
    command = [binary, "--reporter", "json", "--no-error-on-unmatched-pattern"]
    if in_transaction:
        command.append("--assume-in-transaction")
    command += [str(p) for p in paths]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                              check=False)
    except OSError as exc:
        raise InputError(f"{NOT_INSTALLED} ({exc})") from None
    except subprocess.TimeoutExpired:
        raise CryomigrateError("squawk did not finish within 300s") from None
    if done.returncode not in (0, 1):
        raise CryomigrateError(f"squawk failed (exit {done.returncode}): "
                               f"{done.stderr.strip() or done.stdout.strip()}")
    return _parse(done.stdout)


def unknown_rule(binary: str, names: list[str]) -> str | None:
    """The first of ``names`` that this squawk does not know as a rule, if any: squawk
    checks the names given to ``--exclude`` before it reads anything."""
    command = [binary, "--exclude", ",".join(names)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CryomigrateError(f"squawk could not check rule names: {exc}") from None
    if done.returncode == 0:
        return None
    named = _INVALID_RULE.search(done.stderr)
    if named is None or named[1] not in names:
        raise CryomigrateError(f"squawk failed (exit {done.returncode}) checking rule "
                               f"names: {done.stderr.strip() or done.stdout.strip()}")
    return named[1]


_INVALID_RULE = re.compile(r"invalid rule name (\S+)")


def _parse(output: str) -> list[RawFinding]:
    try:
        items = json.loads(output or "[]")
    except json.JSONDecodeError:
        raise CryomigrateError(f"squawk printed no JSON: {output[:200]!r}") from None
    return [RawFinding(str(item["file"]), int(item.get("line") or 0),
                       str(item["rule_name"]),
                       " ".join(filter(None, (item.get("message"), item.get("help")))))
            for item in items]
