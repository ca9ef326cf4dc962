"""The rule sub-resources of gates and dynamic configs, one implementation for both.

Gates (all in the current spec): ``GET /gates/{id}/rules``, ``POST /gates/{id}/rule`` (add one),
``POST /gates/{id}/rules`` (add many), ``PATCH /gates/{id}/rules`` (update listed rules, matched
on ``id`` or ``baseID``), ``PATCH``/``DELETE /gates/{id}/rules/{ruleID}``; gate overrides live
here too.

Dynamic configs: ``GET /dynamic_configs/{id}/rules``, ``GET``/``PATCH``/``DELETE
/dynamic_configs/{id}/rule/{ruleId}`` (current spec), plus the five operations only the
2025-03 spec has: ``POST …/rule``, ``POST``/``PATCH …/rules`` and ``PATCH``/``DELETE
…/rule/name/{ruleName}`` (by name: the first rule with that exact name).

``GET …/rules`` answers ``data: [{"rules": [...]}]`` with ``itemsPerPage: 20000`` for both kinds:
the spec's schema for both is a paginated list of ``{rules}`` (the gate *example* shows a bare
object, which the schema does not allow). Added rules are appended and always get fresh ids.
Every change goes through :func:`save_change`: version bump, review header.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._context import Call, Reply
from .._envelopes import single
from .._errors import not_found
from .._routing import Router
from .._store import Entity
from .._validation import ListOf, Obj, validate
from ._entities import DYNAMIC_CONFIGS, GATES, Kind, change_reply, get_entity, save_change
from ._id_overrides import register_id_overrides
from ._refs import check_references
from ._rules import (
    condition_errors,
    find_rule_or_404,
    new_rules,
    revise_rule,
    rule_schema,
    update_rules,
)

__all__ = ["register"]

Edit = Callable[[Call, Entity], list[Entity]]


class _RuleOps:
    """Rule handlers for one kind; ``config`` adds return values (dynamic configs)."""

    def __init__(self, kind: Kind, *, config: bool, added: str, updated: str, read: str) -> None:
        self.kind, self.config = kind, config
        self.msg_added, self.msg_updated, self.msg_read = added, updated, read
        self.one = rule_schema(config=config)
        self.partial = rule_schema(config=config, partial=True)
        self.many = Obj(fields={"rules": ListOf(self.one)}, required=("rules",))
        self.many_updates = Obj(fields={"rules": ListOf(self.partial)}, required=("rules",))

    def owner(self, entity: Entity) -> str:
        return f"{self.kind.label.lower()} {entity['id']!r}"

    def _check_conditions(self, call: Call, rules: list[dict[str, Any]], prefix: str) -> None:
        check_references(call.project, {}, condition_errors(call.project, rules, prefix))

    async def _edit(self, call: Call, edit: Edit, message: str) -> Reply:
        old = get_entity(call.project, self.kind, call.params["id"])
        new = {**old, "rules": edit(call, old)}
        stored, applied = save_change(call, self.kind, old, new)
        return change_reply(self.kind, stored, applied, message)

    async def read_all(self, call: Call) -> Reply:
        entity = get_entity(call.project, self.kind, call.params["id"])
        pagination = {
            "itemsPerPage": 20000,
            "pageNumber": 1,
            "totalItems": 1,
            "nextPage": None,
            "previousPage": None,
            "all": "",
        }
        body = {
            "message": self.msg_read,
            "data": [{"rules": entity["rules"]}],
            "pagination": pagination,
        }
        return Reply(200, body)

    async def read_one(self, call: Call) -> Reply:
        entity = get_entity(call.project, self.kind, call.params["id"])
        index = find_rule_or_404(entity["rules"], call.params["ruleId"], self.owner(entity))
        return single(self.msg_read, entity["rules"][index])

    def _add(self, call: Call, old: Entity, *, many: bool) -> list[Entity]:
        body = validate(self.many if many else self.one, call.json_body())
        incoming = body["rules"] if many else [body]
        self._check_conditions(call, incoming, "rules" if many else "")
        return [*old["rules"], *new_rules(call.project, incoming, config=self.config)]

    async def add_one(self, call: Call) -> Reply:
        return await self._edit(call, lambda c, o: self._add(c, o, many=False), self.msg_added)

    async def add_many(self, call: Call) -> Reply:
        return await self._edit(call, lambda c, o: self._add(c, o, many=True), self.msg_added)

    def _update_many(self, call: Call, old: Entity) -> list[Entity]:
        body = validate(self.many_updates, call.json_body())
        self._check_conditions(call, body["rules"], "rules")
        return update_rules(old["rules"], body["rules"], config=self.config, owner=self.owner(old))

    async def update_many(self, call: Call) -> Reply:
        return await self._edit(call, self._update_many, self.msg_updated)

    def _locate(self, call: Call, old: Entity) -> int:
        if "ruleName" in call.params:
            name = call.params["ruleName"]
            for i, rule in enumerate(old["rules"]):
                if rule["name"] == name:
                    return i
            raise not_found(f"Not Found. No rule named {name!r} in {self.owner(old)}.")
        return find_rule_or_404(old["rules"], call.params["ruleId"], self.owner(old))

    def _update_one(self, call: Call, old: Entity) -> list[Entity]:
        index = self._locate(call, old)
        changes = validate(self.partial, call.json_body())
        self._check_conditions(call, [changes], "")
        rules = list(old["rules"])
        rules[index] = revise_rule(rules[index], changes, config=self.config, fill=False)
        return rules

    async def update_one(self, call: Call) -> Reply:
        return await self._edit(call, self._update_one, self.msg_updated)

    def _delete_one(self, call: Call, old: Entity) -> list[Entity]:
        index = self._locate(call, old)
        return [r for i, r in enumerate(old["rules"]) if i != index]

    async def delete_one(self, call: Call, message: str) -> Reply:
        return await self._edit(call, self._delete_one, message)


def _register_gates(router: Router) -> None:
    ops = _RuleOps(
        GATES,
        config=False,
        added="Gate rules added successfully.",
        updated="Gate updated successfully.",
        read="Gate rules read successfully.",
    )
    base = "/console/v1/gates/{id}"

    async def delete(call: Call) -> Reply:
        return await ops.delete_one(call, "Gate updated successfully.")

    async def with_rule_id(call: Call) -> Reply:
        call.params["ruleId"] = call.params.pop("ruleID")
        return await (delete(call) if call.method == "DELETE" else ops.update_one(call))

    router.add("GET", f"{base}/rules", ops.read_all)
    router.add("POST", f"{base}/rule", ops.add_one)
    router.add("POST", f"{base}/rules", ops.add_many)
    router.add("PATCH", f"{base}/rules", ops.update_many)
    router.add("PATCH", f"{base}/rules/{{ruleID}}", with_rule_id)
    router.add("DELETE", f"{base}/rules/{{ruleID}}", with_rule_id)
    register_id_overrides(router, "/console/v1/gates", GATES, 201)


def _register_dynamic_configs(router: Router) -> None:
    ops = _RuleOps(
        DYNAMIC_CONFIGS,
        config=True,
        added="Dynamic Config rules added successfully.",
        updated="Dynamic Config rules updated successfully.",
        read="Dynamic Config rules read successfully.",
    )
    base = "/console/v1/dynamic_configs/{id}"

    async def delete(call: Call) -> Reply:
        return await ops.delete_one(call, "Dynamic Config rule deleted successfully.")

    router.add("GET", f"{base}/rules", ops.read_all)
    router.add("GET", f"{base}/rule/{{ruleId}}", ops.read_one)
    router.add("PATCH", f"{base}/rule/{{ruleId}}", ops.update_one)
    router.add("DELETE", f"{base}/rule/{{ruleId}}", delete)
    # Only in the 2025-03 spec:
    router.add("POST", f"{base}/rule", ops.add_one)
    router.add("POST", f"{base}/rules", ops.add_many)
    router.add("PATCH", f"{base}/rules", ops.update_many)
    router.add("PATCH", f"{base}/rule/name/{{ruleName}}", ops.update_one)
    router.add("DELETE", f"{base}/rule/name/{{ruleName}}", delete)


def register(router: Router) -> None:
    _register_gates(router)
    _register_dynamic_configs(router)
