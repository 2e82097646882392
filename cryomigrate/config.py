"""Find, parse and validate environments.yaml, and resolve one environment for use.

Validation is strict (unknown keys and wrong types are errors) because a typo in a
production policy such as ``allow_rolback: false`` must never be silently ignored.
``${NAME}`` references are resolved only for the environment in use, so a developer does
not need production's secrets in their shell. A database URL whose password is not
percent-encoded is refused here, once resolved, because a driver would read a piece of
it as the host or port and print it back: every backend receives only URLs that parse
one way.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryomigrate import configcache
from cryomigrate.configvalues import (
    VAR_REFERENCE,
    KeyPath,
    check_database_url,
    parse_duration,
)
from cryomigrate.errors import ConfigError
from cryomigrate.redact import register_secret, register_url

CONFIG_NAME = "environments.yaml"
DEFAULT_ENVIRONMENT = "development"
_SECRET_NAME = re.compile(r"(?i)pass|pwd|(?:^|_)pw(?:_|$)|secret|token|key|credential")
# A var's key names a secret by whole words: app_password, apiToken, stripe_secret_key,
# but neither partition_key nor bypass_rls nor api_tokens_table, whose values are the
# column names, SQL and file names that output is made of.
_SECRET_WORDS = frozenset({"password", "passwd", "pass", "pwd", "pw", "secret", "secrets",
                           "token", "credential", "credentials", "apikey", "passphrase"})
_SECRET_KEY_PAIRS = frozenset({"api", "secret", "private", "access", "service", "signing",
                               "encryption", "master", "license"})
# ... unless its last word says it names something about one: password_column, token_ttl.
_ABOUT_A_SECRET = frozenset({"column", "col", "table", "name", "field", "hash", "length",
                             "len", "policy", "schema", "type", "ttl", "expiry", "expires",
                             "header", "path", "file"})
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def _names_a_secret(key: str) -> bool:
    words = [w.lower() for w in _WORD.findall(key)]
    if not words or words[-1] in _ABOUT_A_SECRET:
        return False
    return any(w in _SECRET_WORDS for w in words) or any(
        a in _SECRET_KEY_PAIRS and b == "key" for a, b in itertools.pairwise(words))


@dataclass(frozen=True)
class Policies:
    """An environment's policies (DESIGN 3.1), defaults filled in."""
    require_confirmation: bool = False
    allow_rollback: bool = True
    allow_modified: bool = False
    allow_out_of_order: bool = False
    lint: str = "warn"  # off | warn | refuse (DESIGN 10.1)
    destructive: str = "allow"  # allow | confirm | refuse
    require_applied_in: str | None = None  # an environment that must have applied it first


@dataclass(frozen=True)
class Environment:
    """One environment with defaults merged in and ``${VAR}`` resolved: what a run uses."""

    name: str
    config_path: Path
    migrations_dir: Path
    history_table: str
    database: str
    lock_timeout_ms: int | None = None
    statement_timeout_ms: int | None = None
    pooler: str | None = None
    service_key: str | None = None
    supabase_history: bool = False
    after_run: str | None = None
    lock_retries: int = 0
    scratch_setup: Path | None = None  # SQL run on a scratch database first (verify, drift)
    format: str = "cryomigrate"  # whose folder layout migrations_dir has (DESIGN 9.1)
    policies: Policies = Policies()
    vars: dict[str, Any] = field(default_factory=dict)
    # A fleet (DESIGN 11): its databases in configuration order, and database is "".
    # Each is run with ``dataclasses.replace(env, database=url, databases=None)``.
    databases: tuple[str, ...] | None = None
    parallel: int = 4

    # Where keys read later than the file (after_run, scratch_setup) were written:
    # ``environments.yaml:6: environments.production.after_run``, for their errors.
    written_at: dict[str, str] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.config_path.parent

    def where(self, key: str) -> str:
        return self.written_at.get(key, key)

    @property
    def is_fleet(self) -> bool:
        return self.databases is not None


@dataclass(frozen=True)
class Config:
    """A validated environments.yaml, kept with its key lines for later errors."""
    path: Path
    data: dict[str, Any]  # the validated configuration, defaults filled in
    # The line of every key, so errors found after parsing can still point at the file.
    lines: dict[KeyPath, int] = field(default_factory=dict)

    @property
    def environment_names(self) -> tuple[str, ...]:
        return tuple(self.data["environments"])

    def names_none(self, name: str | None) -> bool:
        """Whether a command names no environment: no --env, no CRYOMIGRATE_ENV, and none
        called development. ``validate`` then checks what needs none."""
        return name is None and "CRYOMIGRATE_ENV" not in os.environ \
            and DEFAULT_ENVIRONMENT not in self.data["environments"]

    @property
    def migrations_dir(self) -> Path:
        """One folder for every environment, relative to this file."""
        return (self.path.parent / str(self.data["migrations"])).resolve()

    @property
    def format(self) -> str:
        return str(self.data.get("format", "cryomigrate"))

    def environment(self, name: str | None = None, *, strict_vars: bool = True) -> Environment:
        """Merge defaults under environment ``name`` and resolve its ``${VAR}`` references.

        ``strict_vars=False`` leaves an unset ``${VAR}`` as written; ``validate`` uses it to
        render templates for environments whose secrets this shell does not have.
        """
        if name is not None and not name.strip():
            raise ConfigError(f"the environment name is empty (--env \"\" or environment=\"\", "
                              "perhaps an unset shell variable); name one of: "
                              f"{', '.join(self.environment_names)}")
        if name is None and os.environ.get("CRYOMIGRATE_ENV", "unset").strip() == "":
            raise ConfigError("CRYOMIGRATE_ENV is set but blank; unset it, or name one of: "
                              f"{', '.join(self.environment_names)}")
        name = environment_name(name)
        envs = self.data["environments"]
        if name not in envs:
            raise ConfigError(
                f"{self.where(('environments',))}: unknown environment '{name}'; "
                f"defined environments: {', '.join(envs) or '(none)'}"
            )
        merged = _merge(self.data["defaults"], envs[name])
        resolved = {key: _resolve(value, self, name, (key,), strict_vars)
                    for key, value in merged.items()}
        _register_secret_vars(resolved.get("vars") or {})
        if envs[name].get("databases") is not None or \
                envs[name].get("databases_file") is not None:
            return _fleet_environment(self, name, resolved, strict_vars)
        if not resolved.get("database"):
            written = merged.get("database")
            key = self.key_of(name, ("database",))
            if written:  # ${VAR} resolved to nothing
                raise ConfigError(f"{self.where(key)}: {'.'.join(key)}: '{written}' is empty "
                                  "once its variables are resolved; set them")
            raise ConfigError(
                f"{self.where(('environments', name))}: environments.{name}.database is not "
                "set (set it there or under defaults)"
            )
        # validate renders environments whose secrets this shell may not have: a URL still
        # holding an unset ${VAR} cannot be checked yet. Any other one can, whatever the
        # characters its password holds (a literal "${" included).
        unresolved = not strict_vars and VAR_REFERENCE.search(str(resolved["database"]))
        return _build_environment(self, name, resolved, check_url=not unresolved)

    def key_of(self, environment: str, keys: KeyPath) -> KeyPath:
        """Where a merged value was written: under the environment, else under defaults."""
        own = ("environments", environment, *keys)
        return own if own in self.lines or ("defaults", *keys) not in self.lines \
            else ("defaults", *keys)

    def where(self, key: KeyPath) -> str:
        """``file:line`` of ``key`` (or of its nearest written parent), for messages."""
        line = next((self.lines[key[:n]] for n in range(len(key), 0, -1)
                     if key[:n] in self.lines), None)
        return f"{self.path}:{line}" if line else str(self.path)


def environment_name(option: str | None) -> str:
    """``--env``, else ``$CRYOMIGRATE_ENV``, else ``development``: the one place this rule
    lives, used also to name the environment of a command that failed before choosing."""
    return option or os.environ.get("CRYOMIGRATE_ENV") or DEFAULT_ENVIRONMENT


def find_config(path: str | os.PathLike[str] | None = None) -> Path:
    """``--config``, else ``$CRYOMIGRATE_CONFIG``, else the nearest environments.yaml upwards."""
    explicit = path or os.environ.get("CRYOMIGRATE_CONFIG")
    if explicit:
        candidate = Path(explicit)
        if candidate.is_dir():
            raise ConfigError(f"config file {candidate} is a folder; name the file "
                              f"({candidate / CONFIG_NAME}, say)")
        if not candidate.is_file():
            raise ConfigError(f"config file {candidate} does not exist")
        return candidate.resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"no {CONFIG_NAME} found in {here} or any parent folder; "
        "pass --config PATH or set CRYOMIGRATE_CONFIG"
    )


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    config_path = find_config(path)
    try:
        text = config_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{config_path}: cannot be read: {exc}") from exc
    content = text.encode("utf-8")
    cached = configcache.load(config_path, content)
    if cached is not None:
        lines = {tuple(entry[:-1]): int(entry[-1]) for entry in cached["lines"]}
        return Config(config_path, cached["data"], lines)
    from cryomigrate.configschema import validate

    data, lines = validate(text, config_path)
    configcache.store(config_path, content, {
        "data": data, "lines": [[*key, line] for key, line in lines.items()]})
    return Config(config_path, data, lines)


def _merge(defaults: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for key in ("database", "lock_timeout", "statement_timeout", "pooler", "service_key",
                "supabase_history", "after_run", "lock_retries", "scratch_setup"):
        merged[key] = env[key] if env[key] is not None else defaults[key]
    merged["policies"] = {
        key: env["policies"][key] if env["policies"][key] is not None else value
        for key, value in defaults["policies"].items()
    }
    merged["vars"] = {**defaults["vars"], **env["vars"]}
    merged["databases"] = env.get("databases")
    merged["parallel"] = env.get("parallel") or defaults.get("parallel") or 4
    return merged


def _resolve(value: Any, config: Config, env: str, keys: KeyPath, strict: bool) -> Any:
    if isinstance(value, str):
        return _substitute(value, config, env, keys, strict)
    if isinstance(value, dict):
        return {k: _resolve(v, config, env, (*keys, str(k)), strict) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, config, env, (*keys, str(i)), strict) for i, v in enumerate(value)]
    return value


def _substitute(text: str, config: Config, env: str, keys: KeyPath, strict: bool,
                where: str | None = None) -> str:
    """``where``: the file, line and key to name instead of ``keys``' (a line of a
    databases_file)."""
    def replace(match: re.Match[str]) -> str:
        name, default = match[1], match[2]
        value = os.environ.get(name)
        if value is None or (value == "" and default is not None):
            if default is not None:
                return default
            if not strict:
                return match[0]
            key = config.key_of(env, keys)
            place = where or f"{config.where(key)}: {'.'.join(key)}"
            raise ConfigError(
                f"{place}: environment '{env}' uses "
                f"${{{name}}}, but the variable {name} is not set; export {name} or write "
                f"${{{name}:-default}}"
            )
        if _SECRET_NAME.search(name):
            register_secret(value)  # e.g. ${DB_PASSWORD} rendered into a template
        return value

    return VAR_REFERENCE.sub(replace, text)


def _register_secret_vars(value: Any, secret: bool = False) -> None:
    """Mask the values of vars named like secrets (``app_password``, ``api_token``, and
    all under ``secrets:``), at any depth, as a ``${DB_PASSWORD}`` is: a template or a
    dry run may print them."""
    if isinstance(value, dict):
        for key, item in value.items():
            _register_secret_vars(item, secret or _names_a_secret(str(key)))
    elif isinstance(value, list):
        for item in value:
            _register_secret_vars(item, secret)
    elif secret and isinstance(value, str) and not VAR_REFERENCE.fullmatch(value):
        register_secret(value)  # (a ${VAR} validate left unset names what to set: shown)


def _build_environment(config: Config, name: str, data: dict[str, Any], *,
                       check_url: bool = True) -> Environment:
    def checked(key: str, check: Callable[[str], Any]) -> Any:
        raw = data.get(key)
        if raw is None:
            return None
        try:
            return check(raw)
        except ValueError as exc:
            where = config.key_of(name, (key,))
            raise ConfigError(f"{config.where(where)}: {'.'.join(where)}: {exc}") from None

    database = str(data["database"])
    register_url(database)
    if database and check_url:
        checked("database", check_database_url)
    return Environment(
        name=name,
        config_path=config.path,
        migrations_dir=config.migrations_dir,
        history_table=config.data["history_table"],
        format=config.format,
        database=database,
        lock_timeout_ms=checked("lock_timeout", parse_duration),
        statement_timeout_ms=checked("statement_timeout", parse_duration),
        pooler=data.get("pooler"),
        service_key=_service_key(config, name, database, data.get("service_key")),
        supabase_history=bool(data.get("supabase_history")),
        after_run=data.get("after_run"),
        written_at={key: _where(config, name, key) for key in ("after_run", "scratch_setup")},
        lock_retries=data.get("lock_retries") or 0,
        scratch_setup=(config.path.parent / data["scratch_setup"]).resolve()
        if data.get("scratch_setup") else None,
        policies=Policies(**{k: v for k, v in data["policies"].items() if v is not None}),
        vars=data["vars"],
    )


def _fleet_environment(config: Config, name: str, data: dict[str, Any],
                       strict: bool) -> Environment:
    """A fleet: every URL checked where it was written (the list's line, the file's).

    Unless ``strict``, the file is not read: validate renders templates for every
    environment, and a fleet's inventory may exist only where that fleet is migrated.
    """
    from cryomigrate.fleetconfig import fleet_databases

    listed = [(url, f"{config.where(key)}: {'.'.join(key)}")
              for index, url in enumerate(data["databases"] or [])
              for key in [("environments", name, "databases", str(index))]]
    file_key = ("environments", name, "databases_file")
    file = config.data["environments"][name].get("databases_file")
    urls = fleet_databases(
        listed, file, file_where=config.where(file_key), key=".".join(file_key),
        base=config.path.parent,
        resolve=lambda line, where: _substitute(line, config, name, ("databases_file",),
                                                strict, where),
        read_file=strict)
    return replace(_build_environment(config, name, {**data, "database": ""}),
                   databases=urls, parallel=data["parallel"])


def _where(config: Config, name: str, key: str) -> str:
    """``environments.yaml:6: environments.production.after_run``, or under defaults."""
    written = config.key_of(name, (key,))
    return f"{config.where(written)}: {'.'.join(written)}"


def _service_key(config: Config, name: str, database: str, key: str | None) -> str | None:
    """The Supabase HTTP API's key: a secret wherever it came from (a literal included),
    and required exactly when the URL selects that API. A ${VAR} that validate left unset
    is not a secret but the name of the variable to set."""
    if key is None or not VAR_REFERENCE.fullmatch(key):
        register_secret(key)
    if key is None and database.split(":", 1)[0].lower() in ("https", "http"):
        where = config.key_of(name, ("database",))
        raise ConfigError(
            f"{config.where(where)}: environments.{name}.database is an https:// URL, which "
            "selects the Supabase HTTP API: set service_key for this environment, e.g. "
            "service_key: ${SUPABASE_SERVICE_ROLE_KEY}")
    return key
