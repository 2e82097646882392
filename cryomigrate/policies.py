"""Pure policy checks: may this environment do this plan, and must a person confirm it?

Every refusal happens before anything is locked or written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cryomigrate.config import Environment
from cryomigrate.errors import PolicyRefused

# What the CLI passes to ask a person; the library takes True/False instead.
Confirm = bool | Callable[[str, Sequence[str]], bool]


def check_rollback_allowed(env: Environment) -> None:
    if not env.policies.allow_rollback:
        raise PolicyRefused(
            f"rollback is not allowed in environment '{env.name}' "
            "(policies.allow_rollback: false in environments.yaml)"
        )


def check_confirmed(env: Environment, action: str, labels: Sequence[str],
                    confirm: Confirm) -> None:
    """Raise unless a change that needs confirmation in ``env`` was confirmed."""
    if not labels or not env.policies.require_confirmation:
        return
    if confirm is True:
        return
    if callable(confirm) and confirm(env.name, labels):
        return
    raise PolicyRefused(
        f"environment '{env.name}' requires confirmation to {action} "
        f"{len(labels)} migration{'s' if len(labels) != 1 else ''}; not confirmed "
        "(pass --yes, or confirm=True from Python)"
    )
