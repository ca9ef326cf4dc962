"""Demo segments and gates: three families (``checkout_*``, ``search_*``, ``growth_*``) of gates
whose rules mix "Internal" e-mail rules, user-id lists, segment conditions and conditions on
earlier gates (dependency chains at most three deep), at varied pass percentages; a few gates
carry overrides, two require review.
"""

from __future__ import annotations

import random
from typing import Any

from ._demo_kit import PCTS, Tick, internal_rule, rule
from ._store import Project
from ._validation import validate
from .resources import gates, segments
from .resources._id_overrides import EMPTY_OVERRIDES, apply_overrides
from .resources.target_apps import app_ids

__all__ = ["FAMILIES", "add_gates", "add_segments"]

FAMILIES = ("checkout", "search", "growth")
_TAG_CHOICES = ("★ Core", "growth", "finance")
_NOUNS = (
    "new_flow", "banner", "redesign", "fast_path", "promo", "v2_api", "ranking", "cache",
    "onboarding", "referral", "upsell", "dark_mode", "autocomplete", "wallet", "coupon",
    "filters", "reviews", "shipping", "badges", "tooltip",
)  # fmt: skip


def add_segments(project: Project, tick: Tick) -> None:
    specs: list[tuple[dict[str, Any], list[str] | None]] = [
        (
            {
                "name": "internal_employees",
                "type": "rule_based",
                "rules": [
                    rule(
                        "Employees",
                        100,
                        {
                            "type": "email",
                            "operator": "str_contains_any",
                            "targetValue": ["@example.com", "@example.org"],
                        },
                    )
                ],
            },
            None,
        ),
        (
            {
                "name": "beta_testers",
                "type": "rule_based",
                "tags": ["growth"],
                "rules": [
                    rule(
                        "Beta list",
                        100,
                        {"type": "user_id", "operator": "any", "targetValue": ["u1", "u2", "u3"]},
                    )
                ],
            },
            None,
        ),
        (
            {
                "name": "eu_users",
                "type": "rule_based",
                "rules": [
                    rule(
                        "EU",
                        100,
                        {
                            "type": "country",
                            "operator": "any",
                            "targetValue": ["DE", "FR", "ES", "IT"],
                        },
                    )
                ],
            },
            None,
        ),
        (
            {
                "name": "eu_beta",
                "type": "rule_based",
                "rules": [
                    rule(
                        "EU beta",
                        50,
                        {"type": "passes_segment", "targetValue": "eu_users"},
                        {"type": "passes_segment", "targetValue": "beta_testers"},
                    )
                ],
            },
            None,
        ),
        (
            {"name": "vip_users", "type": "id_list", "team": "Payments"},
            [f"vip_{i}" for i in range(25)],
        ),
        ({"name": "blocked_users", "type": "id_list"}, ["bad_1", "bad_2"]),
        (
            {"name": "qa_devices", "type": "id_list", "idType": "stableID"},
            [f"device-{i:03d}" for i in range(12)],
        ),
    ]
    for body, ids in specs:
        fields = validate(segments.CREATE_SCHEMA, body)
        segments.create_segment(project, fields, tick(), ids=ids)


def _gate_rules(
    rng: random.Random, family: str, earlier: list[tuple[str, int]]
) -> tuple[list[dict[str, Any]], int]:
    """Rules for one gate and its dependency depth (1 + deepest gate it references)."""
    rules: list[dict[str, Any]] = []
    depth = 1
    if rng.random() < 0.45:
        rules.append(internal_rule())
    if rng.random() < 0.3:
        rules.append(
            rule(
                "Staff ids",
                rng.choice(PCTS),
                {
                    "type": "user_id",
                    "operator": "any",
                    "targetValue": [f"staff_{rng.randint(1, 99)}"],
                },
            )
        )
    if rng.random() < 0.35:
        seg = rng.choice(("beta_testers", "eu_users", "vip_users", "eu_beta"))
        rules.append(
            rule(
                "Segment rollout", rng.choice(PCTS), {"type": "passes_segment", "targetValue": seg}
            )
        )
    shallow = [(g, d) for g, d in earlier if d < 3 and g.startswith(family)]
    if shallow and rng.random() < 0.3:
        ref, ref_depth = rng.choice(shallow)
        kind = "passes_gate" if rng.random() < 0.8 else "fails_gate"
        rules.append(rule(f"Requires {ref}", rng.choice(PCTS), {"type": kind, "targetValue": ref}))
        depth = ref_depth + 1
    if not rules or rng.random() < 0.4:
        rules.append(
            rule(
                "Everyone",
                rng.choice(PCTS),
                {"type": "public"},
                environments=rng.choice((None, ["production"])),
            )
        )
    return rules, depth


def add_gates(project: Project, rng: random.Random, tick: Tick, per_family: int) -> list[str]:
    made: list[tuple[str, int]] = []
    for family in FAMILIES:
        for i in range(1, per_family + 1):
            name = f"{family}_{_NOUNS[(i - 1) % len(_NOUNS)]}_{i}"
            rules, depth = _gate_rules(rng, family, made)
            body: dict[str, Any] = {
                "name": name,
                "description": f"Demo gate {name}",
                "rules": rules,
                "tags": sorted(rng.sample((family, *_TAG_CHOICES), rng.randint(0, 2))),
                "type": "TEMPORARY" if rng.random() < 0.3 else "PERMANENT",
                "isEnabled": rng.random() > 0.08,
                "team": rng.choice((None, "Growth", "Payments")),
                "targetApps": app_ids(
                    project, rng.sample(("iOS App", "Android", "Web"), rng.randint(0, 2))
                ),
            }
            if name == "checkout_wallet_14":
                body["reviewSettings"] = {"requiredReview": True}
            gates.create_gate(project, validate(gates.CREATE_SCHEMA, body), tick())
            made.append((name, depth))
    gates.create_gate(
        project,
        validate(
            gates.CREATE_SCHEMA,
            {
                "name": "checkout_payment_guard",
                "description": "Needs review to change",
                "reviewSettings": {"requiredReview": True},
                "tags": ["★ Core", "checkout"],
                "rules": [internal_rule(), rule("Everyone", 25, {"type": "public"})],
            },
        ),
        tick(),
    )
    _gate_overrides(project, [g for g, _ in made][::37])
    return [g for g, _ in made]


def _gate_overrides(project: Project, gate_ids: list[str]) -> None:
    coll = project.collection("gates_overrides")
    for n, gate_id in enumerate(gate_ids):
        body = {
            "passingUserIDs": [f"qa_{n}", "owner_1"],
            "failingUserIDs": [f"blocked_{n}"],
            "environmentOverrides": [
                {
                    "environment": "staging",
                    "unitID": "stableID",
                    "passingIDs": [f"device-{n:03d}"],
                    "failingIDs": [],
                }
            ],
        }
        coll.add(gate_id, apply_overrides(dict(EMPTY_OVERRIDES), body, "replace"))
