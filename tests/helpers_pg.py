"""Helpers for the concurrency, fault and pooler tests: real CLI subprocesses, bounded waits.

A test that kills or races runs needs real processes, not CliRunner: a SIGKILL must take
the whole run down with its connection, and six runs must really hold six connections.
Every wait here is bounded so that a bug shows up as a failure, never as a hung suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
CLI_TIMEOUT = 120.0


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.pop("CRYOMIGRATE_CONFIG", None)
    env.pop("CRYOMIGRATE_ENV", None)
    env.update(extra or {})
    return env


def cli_command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "cryomigrate", "--config", str(config), *args]


def spawn(config: Path, *args: str, env: dict[str, str] | None = None
          ) -> subprocess.Popen[str]:
    """Start ``cryomigrate --config CONFIG ARGS`` in its own process."""
    return subprocess.Popen(cli_command(config, *args), cwd=config.parent, env=cli_env(env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen[str], timeout: float = CLI_TIMEOUT) -> Completed:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate(timeout=10)
        raise AssertionError(
            f"cryomigrate did not finish within {timeout}s\n{stdout}\n{stderr}"
        ) from None
    return Completed(process.returncode, stdout, stderr)


def run(config: Path, *args: str, env: dict[str, str] | None = None,
        timeout: float = CLI_TIMEOUT) -> Completed:
    return finish(spawn(config, *args, env=env), timeout)


def status_states(config: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """``status --format json`` as {version: state}, asserting it is one JSON document."""
    result = run(config, "status", "--format", "json", env=env)
    assert result.returncode == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return {m["version"]: m["state"] for m in document["migrations"]}


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               process: subprocess.Popen[str] | None = None) -> None:
    """Poll ``condition`` every 20 ms; fail (never hang) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            stdout, stderr = process.communicate(timeout=10)
            raise AssertionError(f"the run ended (exit {process.returncode}) before {what}\n"
                                 f"{stdout}\n{stderr}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


# A Python migration that creates its table, says so through a marker file, then waits
# for a release file (or a timeout) while its transaction is still open. Tests use it to
# kill, block or race a run at a known point inside a migration. ``{n}`` is the version.
GATED_PY = '''
"""Create table t{n}, then wait inside the transaction."""
import os
import pathlib
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def apply(conn, environment):
    conn.sql("CREATE TABLE t{n} (id INTEGER)").execute()
    conn.sql("INSERT INTO effects (version) VALUES ({n})").execute()
    (ROOT / "inside_{n}").touch()
    deadline = time.monotonic() + float(os.environ.get("CM_GATE_SECONDS", "0"))
    while time.monotonic() < deadline and not (ROOT / "release").exists():
        time.sleep(0.02)


def rollback(conn, environment):
    conn.sql("DROP TABLE t{n}").execute()
'''

EFFECTS_SQL = """
-- cryomigrate:apply
CREATE TABLE effects (version INTEGER NOT NULL);
-- cryomigrate:rollback
DROP TABLE effects;
"""
