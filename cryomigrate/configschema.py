"""Parse environments.yaml and validate it strictly: the slow path behind the config cache.

pydantic and PyYAML are slow to import, so they live here and are imported only when a
configuration file is new or changed (see ``configcache``). The result is the validated
model as plain data, plus the line of every key for later messages.

Every problem is one line, ``file:line: key.path: what is wrong``, in the words of the
YAML file: never a pydantic class name or its ``Value error,`` prefix.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from yaml.constructor import SafeConstructor

from cryomigrate.configvalues import (
    KeyPath,
    check_database_url,
    check_table_name,
    parse_duration,
)
from cryomigrate.errors import ConfigError

Lines = dict[KeyPath, int]
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class PoliciesModel(_Strict):
    require_confirmation: bool | None = None
    allow_rollback: bool | None = None
    allow_modified: bool | None = None
    allow_out_of_order: bool | None = None
    # Production safety (DESIGN 10): lint findings, destructive statements, promotion.
    lint: Literal["off", "warn", "refuse"] | None = None
    destructive: Literal["allow", "confirm", "refuse"] | None = None
    require_applied_in: str | None = None

    @field_validator("lint", mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        # YAML reads an unquoted `off` as false: `lint: off` is how DESIGN spells it.
        return "off" if value is False else value

    @field_validator("*", mode="before")
    @classmethod
    def _written(cls, value: Any) -> Any:
        # `allow_rollback:` with nothing after it is YAML's null: a safety key half
        # written, which would silently mean its default. (An unwritten key is not
        # validated, so None here was written.)
        if value is None:
            raise ValueError("is empty; write its value (true or false, or one of the "
                             "choices), or remove the key")
        return value


def _fleet_url(value: str) -> str:
    # A URL that still holds ${VAR} is checked once resolved, for the environment in use.
    if "${" not in value:
        check_database_url(value)
    return value


class EnvironmentModel(_Strict):
    database: str | None = None
    lock_timeout: str | None = None
    statement_timeout: str | None = None
    pooler: Literal["transaction", "session"] | None = None
    service_key: str | None = None  # the Supabase HTTP API (DESIGN 8.1)
    supabase_history: bool | None = None  # the Supabase CLI's table kept in step (8.2)
    after_run: str | None = None  # SQL run after a run that changed something (8.3)
    lock_retries: int | None = None  # retries of a migration failing on lock_timeout (10.2)
    scratch_setup: str | None = None  # SQL file run on verify/drift's scratch database
    # A fleet (DESIGN 11): these instead of database; the file is read when used.
    databases: list[Annotated[str, AfterValidator(_fleet_url)]] | None = None
    databases_file: str | None = None
    parallel: int | None = None
    policies: PoliciesModel = PoliciesModel()
    vars: dict[str, Any] = {}

    @field_validator("databases")
    @classmethod
    def _some_databases(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("an empty list; list at least one database URL here, or remove "
                             "databases:")
        return value

    @field_validator("parallel")
    @classmethod
    def _parallel(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"must be 1 or more (how many databases run at once), not "
                             f"{value}")
        return value

    @field_validator("lock_retries")
    @classmethod
    def _retries(cls, value: int | None) -> int | None:
        if value is not None and not 0 <= value <= 100:
            raise ValueError(f"must be from 0 to 100 (retries after a lock_timeout), not "
                             f"{value}")
        return value

    @model_validator(mode="after")
    def _one_or_fleet(self) -> EnvironmentModel:
        if self.database is not None and (self.databases is not None
                                          or self.databases_file is not None):
            raise ValueError("set database (one database) or databases / databases_file (a "
                             "fleet), not both")
        return self

    @field_validator("lock_timeout", "statement_timeout")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None and "${" not in value:
            parse_duration(value)
        return value

    @field_validator("database")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        # A URL that still holds ${VAR} is checked once resolved, for the environment in use.
        if value is not None and "${" not in value:
            check_database_url(value)
        return value


class ConfigModel(_Strict):
    migrations: str = "migrations"
    history_table: str = "cryomigrate_history"
    format: str = "cryomigrate"  # another tool's folder, read as it is (DESIGN 9.1)
    defaults: EnvironmentModel = EnvironmentModel()
    environments: dict[str, EnvironmentModel]

    @field_validator("migrations")
    @classmethod
    def _folder(cls, value: str) -> str:
        if "${" in value:
            raise ValueError("${...} is resolved only in an environment's values (and "
                             "defaults:), not here; write the folder's path")
        return value

    @field_validator("history_table")
    @classmethod
    def _table(cls, value: str) -> str:
        check_table_name(value)
        return value

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        from cryomigrate.formats import names

        if value not in names():
            raise ValueError(f"unknown format '{value}'; one of {', '.join(names())}")
        return value

    @field_validator("defaults")
    @classmethod
    def _no_fleet(cls, value: EnvironmentModel) -> EnvironmentModel:
        if value.databases is not None or value.databases_file is not None:
            raise ValueError("databases and databases_file name a fleet, so they belong "
                             "to an environment, not to defaults")
        return value

    @model_validator(mode="after")
    def _promotion_source(self) -> ConfigModel:
        """``require_applied_in`` names a defined environment: a typo must not turn the
        promotion gate into one that nothing passes. (Naming itself, as an environment
        inheriting the key from defaults does, gates nothing.)"""
        for name, env in [("defaults", self.defaults), *self.environments.items()]:
            source = env.policies.require_applied_in
            if source is not None and source not in self.environments:
                raise ValueError(
                    f"{name}.policies.require_applied_in: '{source}' must name an "
                    f"environment of this file ({', '.join(self.environments)})")
            if source == name:  # written under the environment itself: a gate on nothing
                raise ValueError(
                    f"environments.{name}.policies.require_applied_in names '{name}' itself, "
                    "so it gates nothing; name the environment its migrations must reach "
                    "first (staging, say)")
        return self

    @field_validator("environments")
    @classmethod
    def _some(cls, value: dict[str, EnvironmentModel]) -> dict[str, EnvironmentModel]:
        if not value:
            raise ValueError("no environment is defined; add one, e.g. "
                             "development: {database: sqlite:///dev.db}")
        if any(not name.strip() for name in value):
            raise ValueError("an environment name is empty; `--env` could never choose it")
        return value


def validate(text: str, path: Path) -> tuple[dict[str, Any], Lines]:
    """The validated configuration as plain data (defaults filled in) and its key lines."""
    data, lines = _parse_yaml(text, path)
    try:
        model = ConfigModel.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path, lines)) from None
    return model.model_dump(), lines


def _parse_yaml(text: str, path: Path) -> tuple[dict[str, Any], Lines]:
    """Parse once into nodes, check them (duplicate keys, lines), then build the data."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    walker = _Walker(path)
    try:
        node = yaml.compose(text, Loader=loader)
        if node is not None:
            walker.walk(node, (), False, frozenset())
        data = walker.constructor.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_problem(exc, path, text)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the top level must be a mapping of keys such as "
                          "environments:")
    return data, walker.lines


def _yaml_problem(exc: yaml.YAMLError, path: Path, text: str) -> str:
    """One line, ``file:line: invalid YAML: problem (column n)``.

    Never ``str(exc)``: it quotes the offending line, which may hold a password.
    """
    mark = getattr(exc, "problem_mark", None)
    where = f"{path}:{mark.line + 1}" if mark else str(path)
    column = f" (column {mark.column + 1})" if mark else ""
    problem = getattr(exc, "problem", None) or "cannot be parsed"
    context = getattr(exc, "context", None)
    lines = text.splitlines()
    if mark and mark.line < len(lines) and lines[mark.line][mark.column:mark.column + 1] == "\t":
        problem += ": a tab; YAML indents with spaces only"  # PyYAML does not say "tab"
    return f"{where}: invalid YAML: {f'{context}, ' if context else ''}{problem}{column}"


class _Walker:
    """Record the line of every key; refuse a key written twice or one that is not a name.

    A duplicate key would otherwise silently replace the first (a second ``policies:``
    dropping ``allow_rollback: false``). Every key is a name except inside the values of
    ``vars`` (``free``), so ``no:`` or ``1:`` (read as false and 1) is refused here, at its
    own line. A node reached again through an alias is not walked again, so aliases of
    aliases cannot blow up; one that encloses its own alias is refused.
    """

    def __init__(self, file: Path) -> None:
        self.file = file
        self.lines: Lines = {}
        self.constructor = SafeConstructor()
        self._done: set[int] = set()

    def walk(self, node: yaml.Node, path: KeyPath, free: bool, above: frozenset[int]) -> None:
        if id(node) in above:
            raise ConfigError(f"{self.file}:{node.start_mark.line + 1}: {'.'.join(path)}: "
                              "this alias refers to a value that contains it, so it never ends")
        if id(node) in self._done:
            return
        self._done.add(id(node))
        above = above | {id(node)}
        if isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.walk(item, (*path, str(index)), free, above)
        elif isinstance(node, yaml.MappingNode):
            self._mapping(node, path, free, above)

    def _mapping(self, node: yaml.MappingNode, path: KeyPath, free: bool,
                 above: frozenset[int]) -> None:
        first: dict[Any, int] = {}
        for key, value in node.value:
            if key.tag == _MERGE_TAG:  # `<<: *defaults`: explicit keys may override those
                continue
            loaded = self.constructor.construct_object(key, deep=True)
            name = loaded if isinstance(loaded, str) else str(key.value)
            where, line = (*path, name), key.start_mark.line + 1
            if not free and not isinstance(loaded, str):
                raise ConfigError(f"{self.file}:{line}: {'.'.join(where)}: this key is read as "
                                  f"{_spelled(loaded)}, not a name; quote it: '{name}'")
            identity = _identity(loaded, key)
            if identity in first:
                _refuse_duplicate(self.file, where, first[identity], line)
            first[identity] = line
            self.lines[where] = line
            self.walk(value, where, free or path[-1:] == ("vars",), above)


def _identity(loaded: Any, key: yaml.Node) -> Any:
    """What makes two keys the same key once loaded: ``yes`` and ``true`` are both True."""
    try:
        hash(loaded)
    except TypeError:
        return (key.tag, id(key))  # PyYAML itself refuses unhashable keys
    return (type(loaded).__name__, loaded)


def _refuse_duplicate(file: Path, key: KeyPath, first: int, second: int) -> None:
    where = f"twice on line {first}" if first == second else f"on lines {first} and {second}"
    raise ConfigError(
        f"{file}:{second}: {'.'.join(key)}: duplicate key, written {where}; YAML would "
        "silently keep only the last one, so write each key once"
    )


def _describe(exc: ValidationError, path: Path, lines: Lines) -> str:
    problems = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        is_key = bool(loc) and loc[-1] == "[key]"
        loc = loc[:-1] if is_key else loc
        line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), None)
        where = f"{path}:{line}" if line else str(path)
        key = ".".join(loc) or "(top level)"
        problems.append(f"{where}: {key}: {_problem(error, is_key)}")
    return "invalid configuration: " + "; ".join(problems)


_EXPECTED = {
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "dict_type": "must be a mapping of keys to values",
    "model_type": "must be a mapping of keys to values",
    "model_attributes_type": "must be a mapping of keys to values",
}


def _problem(error: ErrorDetails, is_key: bool) -> str:
    """What is wrong with one value, in YAML's words; never a pydantic class name."""
    kind, given = error["type"], error.get("input")
    if is_key:
        return (f"this key is read as {_spelled(given)}, not a name; "
                "quote it if it is meant as one")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"must be {expected}, not {_spelled(given)}"
    if kind == "value_error":
        return str(error.get("ctx", {}).get("error", error["msg"]))
    if kind in _EXPECTED:
        return f"{_EXPECTED[kind]}, not {_spelled(given)}"
    # A check this file has no wording for yet: pydantic's sentence, minus its class names.
    said = re.sub(r" or instance of \w+", "", error["msg"]).replace("Input should", "should")
    return f"{said}, not {_spelled(given)}"


def _spelled(value: Any) -> str:
    """A value as a YAML reader knows it: 'null', 'a list', 'the number 3', ..."""
    if value is None:
        return "null (an empty value)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string '{shown}'"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__} value"
