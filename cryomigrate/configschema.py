"""Parse environments.yaml and validate it strictly: the slow path behind the config cache.

pydantic and PyYAML cost ~150 ms to import, so they live here and are imported only when
a configuration file is new or changed (see ``configcache``). The result is the
validated model as plain data, plus the line of every key for later messages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from cryomigrate.config import _TABLE, KeyPath, check_url, parse_duration
from cryomigrate.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class PoliciesModel(_Strict):
    require_confirmation: bool | None = None
    allow_rollback: bool | None = None
    allow_modified: bool | None = None
    allow_out_of_order: bool | None = None


class EnvironmentModel(_Strict):
    database: str | None = None
    lock_timeout: str | None = None
    statement_timeout: str | None = None
    pooler: Literal["transaction", "session"] | None = None
    policies: PoliciesModel = PoliciesModel()
    vars: dict[str, Any] = {}

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
            check_url(value)
        return value


class ConfigModel(_Strict):
    migrations: str = "migrations"
    history_table: str = "cryomigrate_history"
    defaults: EnvironmentModel = EnvironmentModel()
    environments: dict[str, EnvironmentModel]

    @field_validator("history_table")
    @classmethod
    def _table(cls, value: str) -> str:
        if not _TABLE.match(value):
            raise ValueError("must be a table name, optionally schema-qualified (ops.history)")
        return value


def validate(text: str, path: Path) -> tuple[dict[str, Any], dict[KeyPath, int]]:
    """The validated configuration as plain data (defaults filled in) and its key lines."""
    data, lines = _parse_yaml(text, path)
    try:
        model = ConfigModel.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path, lines)) from None
    return model.model_dump(), lines


def _parse_yaml(text: str, path: Path) -> tuple[Any, dict[tuple[str, ...], int]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        node = yaml.compose(text, Loader=loader)
        data = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}:{where}: invalid YAML: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys such as environments:")
    lines: dict[tuple[str, ...], int] = {}
    if node is not None:
        _collect_lines(node, (), lines)
    return data, lines


def _collect_lines(node: yaml.Node, path: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, str(key.value))
            out[sub] = key.start_mark.line + 1
            _collect_lines(value, sub, out)


def _describe(exc: ValidationError, path: Path, lines: dict[tuple[str, ...], int]) -> str:
    problems = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), None)
        where = f"{path}:{line}" if line else str(path)
        key = ".".join(loc) or "(top level)"
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "missing":
            message = "required key is missing"
        else:
            message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {key}: {message}")
    return "invalid configuration: " + "; ".join(problems)
