"""Example python edits for batch_rule_update jobs (``op = "python"``).

A python edit is ``def name(entity, rule) -> dict | None``: ``entity`` is the gate or dynamic
config as read (a copy), ``rule`` one selected rule as edited so far (a copy). Return the new rule,
the same rule for no change, or None to delete it. What it returns is checked like a rule in a job
file (the API's rule fields only, ``passPercentage`` a number from 0 to 100 with two decimals at
most, conditions as ``add_condition`` takes them); an exception, or a return that fails the
check, fails that entity only: the job goes on and ends with exit 3.

Prefer edits that set values (running the job again then changes nothing). An edit that changes
a value relative to what it finds (``halve_rollouts`` below) is applied once per plan; the plan
warns that running the job again after it finishes would apply it again.

This module is imported as a guest, under a private package: its name may be anything, even
that of a standard module; to use a helper module beside it, import it relatively
(``from . import helpers``).

Use one from a job file beside this one:

    [[edits]]
    op = "python"
    function = "edits_example:cap_temporary_rollouts"
"""

from __future__ import annotations

from typing import Any

CAP = 25


def cap_temporary_rollouts(entity: dict[str, Any], rule: dict[str, Any]) -> dict[str, Any]:
    """Temporary gates roll out to at most 25% per rule."""
    if entity.get("type") == "TEMPORARY" and rule.get("passPercentage", 0) > CAP:
        return {**rule, "passPercentage": CAP}
    return rule


def production_only(entity: dict[str, Any], rule: dict[str, Any]) -> dict[str, Any]:
    """Rules that apply in every environment apply in production only."""
    if not rule.get("environments"):
        return {**rule, "environments": ["production"]}
    return rule


def drop_zero_percent_rules(entity: dict[str, Any], rule: dict[str, Any]) -> dict[str, Any] | None:
    """A rule that passes nobody is dead weight: delete it."""
    return None if rule.get("passPercentage") == 0 else rule


def halve_rollouts(entity: dict[str, Any], rule: dict[str, Any]) -> dict[str, Any]:
    """Halve every partial rollout (to two decimals, as the API keeps it). Not idempotent."""
    pct = rule.get("passPercentage", 0)
    if 0 < pct < 100:
        return {**rule, "passPercentage": round(pct / 2, 2)}
    return rule
