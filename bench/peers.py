"""Install the peer tools into bench/.peers/ from their own registries (never committed).

Python peers go into one venv (so their dependencies never touch cryomigrate's
interpreter); npm peers into one ``npm install --prefix`` folder. Versions are pinned so two
runs of the benchmark compare the same peers. A failure is returned as text per tool, so
the report can say "install failed" instead of silently dropping the tool.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tools import CM_BIN, NPM_BIN, PEERS_DIR, VENV_BIN

PIP_PACKAGES: dict[str, list[str]] = {
    "alembic": ["alembic==1.20.1", "SQLAlchemy==2.1.9", "psycopg[binary]==3.3.9"],
    "yoyo": ["yoyo-migrations==9.0.0", "psycopg[binary]==3.3.9"],
}
NPM_PACKAGES: dict[str, str] = {"dbmate": "dbmate@2.36.0", "supabase": "supabase@2.117.0"}
PROFILERS = ["py-spy==0.4.3", "pyinstrument==5.1.3"]

INSTALL_TIMEOUT = 900.0


def _run(argv: list[str]) -> str | None:
    """Run an installer; None on success, else the tail of its output."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{type(exc).__name__}: {exc}"
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return f"exit {proc.returncode}: " + " | ".join(tail)
    return None


def ensure_venv() -> str | None:
    if (VENV_BIN / "python").exists():
        return None
    PEERS_DIR.mkdir(parents=True, exist_ok=True)
    return _run([sys.executable, "-m", "venv", str(PEERS_DIR / "venv")])


def pip_install(packages: list[str]) -> str | None:
    error = ensure_venv()
    if error:
        return f"venv: {error}"
    return _run([str(VENV_BIN / "python"), "-m", "pip", "install", "--quiet",
                 "--disable-pip-version-check", *packages])


def install_cryomigrate(source: Path) -> str | None:
    """(Re)install cryomigrate from ``source`` (a project folder) into its own venv, as a
    wheel with bytecode: what `pip install cryomigrate` gives a user. Dependencies stay
    installed between runs; cryomigrate itself is reinstalled every run."""
    if not (CM_BIN / "python").exists():
        error = _run([sys.executable, "-m", "venv", str(CM_BIN.parent)])
        if error:
            return f"venv: {error}"
    pip = [str(CM_BIN / "python"), "-m", "pip", "install", "--quiet",
           "--disable-pip-version-check"]
    if not (CM_BIN / "cryomigrate").exists():
        error = _run([*pip, str(source)])
    else:
        error = _run([*pip, "--force-reinstall", "--no-deps", str(source)])
    return f"install failed: {error}" if error else None


def ensure_peers(names: list[str], reinstall: bool = False) -> dict[str, str]:
    """Install the selected peers that are missing; return {tool: error} for failures."""
    errors: dict[str, str] = {}
    for name in names:
        if name in PIP_PACKAGES:
            binary: Path = VENV_BIN / name
            if reinstall or not binary.exists():
                print(f"installing {name} into {PEERS_DIR / 'venv'} ...", flush=True)
                error = pip_install(PIP_PACKAGES[name])
                if error:
                    errors[name] = f"install failed: {error}"
        elif name in NPM_PACKAGES:
            binary = NPM_BIN / name
            if reinstall or not binary.exists():
                print(f"installing {NPM_PACKAGES[name]} into {PEERS_DIR / 'npm'} ...",
                      flush=True)
                error = _run(["npm", "install", "--prefix", str(PEERS_DIR / "npm"),
                              "--no-audit", "--no-fund", "--loglevel=error",
                              NPM_PACKAGES[name]])
                if error:
                    errors[name] = f"install failed: {error}"
        else:
            continue
        if name not in errors and not binary.exists():
            errors[name] = f"install failed: {binary} missing after install"
    return errors


def version_of(name: str) -> str:
    """A peer's version as its registry spells it (for the machine-facts block)."""
    if name in PIP_PACKAGES:
        dist = {"alembic": "alembic", "yoyo": "yoyo-migrations"}[name]
        argv = [str(VENV_BIN / "python"), "-c",
                f"import importlib.metadata as m; print(m.version({dist!r}))"]
    elif name in NPM_PACKAGES:
        argv = [str(NPM_BIN / name), "--version"]
    else:
        return ""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    last = (proc.stdout.strip().splitlines() or ["?"])[-1]
    return last.removeprefix("dbmate version ").strip()
