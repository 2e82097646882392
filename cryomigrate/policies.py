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


# -- production safety (DESIGN 10) -------------------------------------------------------

def lint_refusals(env: Environment, findings: int, destructive: Sequence[str]) -> list[str]:
    """Why ``env``'s lint and destructive policies refuse a run; empty when they do not."""
    reasons = []
    if env.policies.lint == "refuse" and findings:
        reasons.append(f"lint found {findings} finding{'s' if findings != 1 else ''} and "
                       f"environment '{env.name}' has policies.lint: refuse; fix them, or "
                       "waive a rule in its file with `-- cryomigrate:lint-ignore <rule>`")
    if env.policies.destructive == "refuse" and destructive:
        reasons.append(f"environment '{env.name}' has policies.destructive: refuse, and "
                       + "; ".join(destructive))
    return reasons


DESTRUCTIVE_PREFIX = "destructive: "


def check_destructive_confirmed(env: Environment, labels: Sequence[str],
                                statements: Sequence[str], confirm: Confirm) -> None:
    """``destructive: confirm``: a person says yes to the run's migrations (``labels``)
    and its destructive statements, as ``require_confirmation`` asks for a run (the one
    question answers both), or the run is refused."""
    if env.policies.destructive != "confirm" or not statements or confirm is True:
        return
    if callable(confirm) and confirm(env.name, [*labels, *(DESTRUCTIVE_PREFIX + s
                                                           for s in statements)]):
        return
    raise PolicyRefused(
        f"environment '{env.name}' requires confirmation of destructive statements "
        f"(policies.destructive: confirm): {'; '.join(statements)}; not confirmed "
        "(pass --yes, or confirm=True from Python)")


def unpromoted(labels_checksums: Sequence[tuple[int, str, str]],
               applied: dict[int, str]) -> list[str]:
    """The migrations (version, label, checksum) that another environment has not applied
    with the same checksum; ``applied`` maps its applied versions to their checksums."""
    return [label for version, label, checksum in labels_checksums
            if applied.get(version) != checksum]
