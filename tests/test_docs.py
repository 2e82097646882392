"""README.md documents every command and every exit code the CLI has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cryomigrate.cli import main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_has_an_example_in_the_readme(command: str) -> None:
    assert re.search(rf"^cryomigrate {command}\b", README, re.MULTILINE), command


def test_every_exit_code_is_in_the_readme_table() -> None:
    from cryomigrate import errors

    codes = {cls.exit_code for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, errors.CryomigrateError)}
    for code in codes | {0}:
        assert re.search(rf"^\| {code} \|", README, re.MULTILINE), code
