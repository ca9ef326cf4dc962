"""Example python edits for batch_rule_update jobs (``op = "python"``).

A python edit is ``def name(entity, rule) -> dict | None``: ``entity`` is the gate or dynamic
config as read (a copy), ``rule`` one selected rule as edited so far (a copy). Return the new rule,
the same rule for no change, or None to delete it. An exception fails that entity only; the job
goes on and ends with exit 3. Make it idempotent (set values, never increment them): the planner
applies the edits twice and fails an entity whose rules would change again, because a re-run of
the job would otherwise change it again.

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
