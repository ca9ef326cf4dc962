"""``clone_experiments``: experiments and their whole dependency closure, from one project to another.

Plan: read the selected experiments and, transitively, everything they reference (``clone_reader``);
look each entity up in the target by id; then emit one operation per entity to create (or, with
``on_conflict = "update"``, update), in dependency order, as a graph. Entities already in the target
and equal to the source cost nothing, so re-running a finished clone sends zero mutations.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from bulkops.api.client import ConsoleClient
from bulkops.api.urls import group_names_path
from bulkops.engine.plan import (
    HeldReviews,
    Note,
    NoteKind,
    Operation,
    Plan,
    PlanNote,
    estimate_lines,
)
from bulkops.jobs.clone_bodies import (
    clean_rules,
    create_body,
    id_override_bodies,
    update_body,
    with_target_apps,
)
from bulkops.jobs.clone_reader import NAMED, Closure, Entity, create_name, read_closure
from bulkops.jobs.entity_kinds import ENTITY_KINDS, EXPERIMENT, HOLDOUT, LAYER, SEGMENT
from bulkops.jobs.planning import PlannedFunctions
from bulkops.jobs.semantics import differences, guard_of
from bulkops.jobs.spec import Items, JobDefinition, JobSpec, NamedProjects, ProjectSpec, Strict

EXPERIMENT_STATUSES = (
    "active",
    "setup",
    "decision_made",
    "abandoned",
    "archived",
    "experiment_stopped",
    "assignment_stopped",
)


class SelectSpec(Strict):
    ids: Items[str] = ()
    status: Items[Literal[EXPERIMENT_STATUSES]] = ()  # type: ignore[valid-type]
    tags: Items[str] = ()


class OptionsSpec(Strict):
    on_conflict: Literal["skip", "update", "fail"] = "skip"
    respect_review: bool = False


class Spec(JobSpec):
    kind: ClassVar[str] = "clone_experiments"
    roles: ClassVar[tuple[str, ...]] = ("source", "target")

    job: Literal["clone_experiments"]
    many_role: ClassVar[str | None] = "target"

    source: ProjectSpec
    target: ProjectSpec | None
    targets: NamedProjects | None = None
    select: SelectSpec = Field(default_factory=SelectSpec)
    options: OptionsSpec = Field(default_factory=OptionsSpec)


async def build_plan(
    job: JobDefinition[Spec], clients: dict[str, ConsoleClient], held: HeldReviews
) -> Plan:
    spec = job.spec
    closure = await read_closure(clients["source"], clients["target"], spec.select)
    planner = _Planner(closure, spec.options.on_conflict)
    for experiment in closure.experiments:
        planner.plan_experiment(experiment)
    planner.finish_holdouts()
    planner.finish_target_apps()
    return Plan(
        job=job.name,
        kind=Spec.kind,
        job_file=str(job.path),
        job_digest=job.digest,
        operations=planner.operations,
        notes=planner.notes,
    )


class _Planner:
    def __init__(self, closure: Closure, on_conflict: str) -> None:
        self.closure = closure
        self.on_conflict = on_conflict
        self.operations: list[Operation] = []
        self.notes: list[PlanNote] = []
        self._planned: dict[tuple[str, str], str | None] = {}  # entity -> op id (None: no op)
        #: Target apps new to the target -> the written entities to assign to each, by kind.
        self._new_apps: dict[str, list[tuple[str, str, str]]] = {}

    # -- per experiment ---------------------------------------------------------------------
    def plan_experiment(self, experiment: dict[str, Any]) -> None:
        exp_id = experiment["id"]
        problems = self.closure.cannot_carry.get(exp_id, [])
        for problem in problems:
            self._note(exp_id, "cannot_carry", problem["message"], fail=problem["fatal"])
        if any(p["fatal"] for p in problems):
            return
        if self.on_conflict == "fail":
            clashes = self._clashes(exp_id)
            if clashes:
                self._note(
                    exp_id,
                    "conflict",
                    f"the target already has, with different content: {', '.join(clashes)}",
                    fail=True,
                )
                return
        if experiment.get("status") not in (None, "setup"):
            self._note(
                exp_id,
                "not_setup_in_source",
                f"{experiment['status']} in the source; created in "
                "setup in the target (start it there when ready)",
            )
        deps = [self.plan_entity(entity, exp_id) for entity in self.closure.dependencies(exp_id)]
        exp_op = self.plan_entity(
            self.closure.entity("experiment", exp_id), exp_id, deps=[d for d in deps if d]
        )
        self._plan_overrides(experiment, exp_op)
        self._plan_holdouts(exp_id)

    def _clashes(self, exp_id: str) -> list[str]:
        entities = [*self.closure.dependencies(exp_id), self.closure.entity("experiment", exp_id)]
        return [
            f"{e.kind} {e.id!r}"
            for e in entities
            if e.target is not None and differences(e.target, self._expected(e))
        ]

    # -- per entity -------------------------------------------------------------------------
    def plan_entity(self, entity: Entity, group: str, deps: list[str] | None = None) -> str | None:
        key = (entity.kind, entity.id)
        if key in self._planned:
            return self._planned[key]
        if entity.kind == "target_app" and entity.target is None:
            # Its id is the target's to assign: created after the entities that reference it,
            # which its create assigns to it (finish_target_apps), not before them (#7).
            self._new_apps.setdefault(entity.id, [])
            self._planned[key] = None
            return None
        deps = list(deps or []) + [d for d in self._entity_deps(entity, group) if d]
        expected = self._expected(entity)
        op_id: str | None = None
        if entity.target is None:
            op_id = self._create(entity, expected, deps, group)
            self._plan_id_overrides(entity, op_id, group)
        elif differences(entity.target, expected):
            changed = sorted(differences(entity.target, expected))
            if self.on_conflict == "update":
                op_id = self._update(entity, expected, deps, group, changed)
            else:
                self._note(
                    group,
                    "differs",
                    f"{entity.kind} {entity.id!r} exists in the target "
                    f"and differs in {', '.join(changed)}; reused as it is (on_conflict="
                    f"{self.on_conflict})",
                )
        self._planned[key] = op_id
        if op_id is not None:
            for app in self._apps_new_to_target(entity):
                self._new_apps.setdefault(app, []).append((entity.kind, entity.id, op_id))
        return op_id

    def _apps_new_to_target(self, entity: Entity) -> list[str]:
        apps = entity.source.get("targetApps")
        values = [apps] if isinstance(apps, str) else list(apps or [])
        return [v for v in values if self.closure.target_app_id(v) is None]

    def _entity_deps(self, entity: Entity, group: str) -> list[str | None]:
        return [self.plan_entity(ref, group) for ref in self.closure.references(entity)]

    def _expected(self, entity: Entity) -> dict[str, Any]:
        body = create_body(entity.kind, entity.source)
        for field in ("id", "isCore"):
            body.pop(field, None)
        if entity.kind == "layer":
            body["parameters"] = entity.source.get("parameters") or []
        if entity.kind == "target_app":
            body = {"name": body["name"]}  # TargetAppDto shows only id and name
        body = with_target_apps(body, self.closure.target_app_id)
        if self._apps_new_to_target(entity):  # the app's create adds it: checked on a re-run
            body.pop("targetApps", None)
        return {k: v for k, v in body.items() if k not in self.closure.dropped_fields(entity)}

    def _body(self, entity: Entity, update: bool) -> dict[str, Any]:
        body = (update_body if update else create_body)(entity.kind, entity.source)
        if not update and entity.kind in NAMED:
            body["name"] = create_name(entity)  # most creates require one; the spec's DTOs do not
        body = with_target_apps(body, self.closure.target_app_id)  # the target's ids (#7)
        for field in self.closure.dropped_fields(entity):
            body.pop(field, None)
        return body

    def _create(self, entity: Entity, expected: dict[str, Any], deps: list[str], group: str) -> str:
        kind, eid = entity.kind, entity.id
        create_expected = {k: v for k, v in expected.items() if k != "parameters"}
        op_id = self._entity_op(
            entity, "create", "POST", ENTITY_KINDS[kind].collection_path(),
            self._body(entity, update=False),
            precondition="absent", expected=create_expected, deps=deps, group=group,
            describe=f"create {kind} {eid}",
        )  # fmt: skip
        if kind != "layer" or not entity.source.get("parameters"):
            return op_id
        # A layer's create DTO has no parameters: a partial update right after sets them (a
        # full update would have to repeat every other field, or a replacing server clears it).
        body = {"parameters": entity.source["parameters"]}
        return self._entity_op(
            entity, "set parameters", "PATCH", LAYER.item_path(eid), body,
            precondition=None, expected=expected, deps=[op_id], group=group,
            describe=f"set {len(body['parameters'])} parameters",
        )  # fmt: skip

    def _update(
        self,
        entity: Entity,
        expected: dict[str, Any],
        deps: list[str],
        group: str,
        changed: list[str],
    ) -> str | None:
        stuck = [f for f in changed if f not in ENTITY_KINDS[entity.kind].update_fields]
        if stuck:
            self._note(
                group,
                "cannot_update",
                f"{entity.kind} {entity.id!r} differs in the target in {', '.join(stuck)}, "
                "which the API cannot update; left as it is there",
            )
            expected = {k: v for k, v in expected.items() if k not in stuck}
            changed = [f for f in changed if f not in stuck]
            if not changed:
                return None
        method, path, body = _update_request(entity, self._body(entity, update=True))
        return self._entity_op(
            entity, "update", method, path, body,
            precondition=guard_of(entity.target or {}, expected), expected=expected, deps=deps, group=group,
            describe=f"update {entity.kind} {entity.id}: {', '.join(changed)}",
        )  # fmt: skip

    def _entity_op(
        self,
        entity: Entity,
        action: str,
        method: str,
        path: str,
        body: Any,
        *,
        precondition: Any,
        expected: dict[str, Any],
        deps: list[str],
        group: str,
        describe: str,
    ) -> str:
        op_id = f"{entity.kind}:{entity.id}:{action.replace(' ', '_')}"
        self._add(
            Operation(
                id=op_id,
                role="target",
                kind=entity.kind,
                entity_id=entity.id,
                action=action,
                method=method,
                path=path,
                body=body,
                read_path=entity.read_path,
                precondition=precondition,
                expected=expected,
                deps=deps,
                before=entity.target,
                group=group,
                describe=[describe],
            )
        )
        return op_id

    def _plan_overrides(self, experiment: dict[str, Any], exp_op: str | None) -> None:
        overrides = self.closure.overrides.get(experiment["id"])
        if not overrides or not (overrides["overrides"] or overrides["userIDOverrides"]):
            return
        exp_id = experiment["id"]
        # Answers may name each gate or segment by `id` or by `name`; compare.py reads both.
        expected = overrides
        current = self.closure.target_overrides.get(exp_id)
        if current is not None and not differences(current, expected):
            return
        deps = [exp_op] if exp_op else []
        for item in overrides.get("overrides", []):
            ref = self.closure.find(
                "gate" if item.get("type") == "gate" else "segment",
                item.get("id") or item.get("name"),
            )
            if ref is not None:
                deps.append(self.plan_entity(ref, exp_id) or "")
        path = EXPERIMENT.item_path(exp_id, "overrides")
        # Read back with group ids turned into names, as the planner compared them (#6).
        read_path = group_names_path(path, EXPERIMENT.item_path(exp_id))
        self._add(
            Operation(
                id=f"experiment:{exp_id}:overrides",
                role="target",
                kind="overrides",
                entity_id=exp_id,
                action="set overrides",
                method="POST",
                path=path,
                body=overrides,
                read_path=read_path,
                precondition=None if current is None else {"fields": current},
                expected=expected,
                deps=[d for d in deps if d],
                group=exp_id,
                describe=[
                    f"set {len(overrides.get('overrides', []))} override(s), "
                    f"{len(overrides.get('userIDOverrides', []))} id override group(s)"
                ],
            )
        )

    def _plan_id_overrides(self, entity: Entity, create_op: str, group: str) -> None:
        """The source's id overrides onto a gate or holdout just created, so with none: each
        form of ``UpdateOverridesContractDto`` (a ``oneOf``) in a ``PATCH`` of its own, which
        adds it whether ``POST`` would replace every list or only those it is given."""
        overrides = self.closure.id_overrides.get((entity.kind, entity.id))
        if overrides is None:
            return
        path = ENTITY_KINDS[entity.kind].item_path(entity.id, "overrides")
        deps = [create_op]
        for form, body in id_override_bodies(overrides):
            op_id = f"{entity.kind}:{entity.id}:add_{form}_overrides"
            self._add(
                Operation(
                    id=op_id,
                    role="target",
                    kind="overrides",
                    entity_id=entity.id,
                    action=f"add {form} overrides",
                    method="PATCH",
                    path=path,
                    body=body,
                    read_path=path,
                    precondition=None,
                    expected=body,
                    deps=deps,
                    group=group,
                    describe=[f"add the source's {form} overrides of {entity.kind} {entity.id}"],
                )
            )
            deps = [op_id]  # one after the other: both change the same overrides

    def _plan_holdouts(self, exp_id: str) -> None:
        for holdout in self.closure.holdouts_of(exp_id):
            self.closure.holdout_members.setdefault(holdout.id, []).append(exp_id)

    def finish_holdouts(self) -> None:
        """One update per holdout, adding every cloned experiment it includes in the source."""
        for holdout_id, members in self.closure.holdout_members.items():
            holdout = self.closure.entity("holdout", holdout_id)
            create_id = self.plan_entity(holdout, members[0])
            existing = list((holdout.target or {}).get("experimentIDs") or [])
            wanted = existing + [m for m in members if m not in existing]
            if wanted == existing:
                continue
            source = holdout.source
            body = {"experimentIDs": wanted}
            if holdout.target is None:  # a new holdout takes the source's settings too
                for field in ("isEnabled", "passPercentage", "description"):
                    if source.get(field) is not None:
                        body[field] = source[field]
            deps = [
                d
                for d in [create_id, *(self._planned.get(("experiment", m)) for m in members)]
                if d
            ]
            self._entity_op(
                holdout,
                "add experiments",
                "PATCH",
                HOLDOUT.item_path(holdout_id),
                body,
                precondition=None
                if holdout.target is None
                else guard_of(holdout.target, ("experimentIDs",)),
                expected={"experimentIDs": wanted},
                deps=deps,
                group=members[0],
                describe=f"add {', '.join(members)} to holdout {holdout_id}",
            )

    def finish_target_apps(self) -> None:
        """Create each target app the target lacks, after the entities referencing it, and
        assign them in its create (``gates``, ``experiments``): its id is the target's to
        assign, so no body planned before can name it (docs/api-assumptions.md #7)."""
        for app_id, members in self._new_apps.items():
            app = self.closure.entity("target_app", app_id)
            body = create_body("target_app", app.source)
            assignable = {"gate": "gates", "experiment": "experiments"}
            for kind, entity_id, _ in members:
                if kind in assignable:
                    body.setdefault(assignable[kind], []).append(entity_id)
                else:
                    self._note(
                        self._group_of(kind, entity_id),
                        "cannot_carry",
                        f"{kind} {entity_id!r} is written without target app "
                        f"{app.source['name']!r}: the target assigns the app's id when it is "
                        f"created, and a {kind} cannot be assigned to an app then; run the "
                        'clone again (on_conflict = "update") to add it',
                    )
            assigned = sum(len(body.get(k, [])) for k in ("gates", "experiments"))
            group = self._group_of(*members[0][:2]) if members else ""
            self._entity_op(
                app, "create", "POST", ENTITY_KINDS["target_app"].collection_path(), body,
                precondition="absent", expected=self._expected(app),
                deps=[op_id for _, _, op_id in members], group=group,
                describe=f"create target_app {app.source['name']}"
                + (f", assigned to {assigned} entities" if assigned else ""),
            )  # fmt: skip

    def _group_of(self, kind: str, entity_id: str) -> str:
        for op in self.operations:
            if op.kind == kind and op.entity_id == entity_id:
                return op.group
        return ""

    # -- bookkeeping ------------------------------------------------------------------------
    def _add(self, op: Operation) -> None:
        self.operations.append(op)

    def _note(self, experiment: str, kind: NoteKind, message: str, *, fail: bool = False) -> None:
        self.notes.append(
            Note(kind=kind, subject=experiment, subject_kind="experiment", message=message,
                 fail=fail)
        )  # fmt: skip


def _update_request(entity: Entity, body: dict[str, Any]) -> tuple[str, str, Any]:
    """The update of an entity that exists in the target: the one its kind's table entry names.

    A full update (metrics, metric sources) carries every field of its DTO that the source has
    (update_body), so a server that replaces the entity loses nothing. Tags and target apps are
    addressed by the target's own id for the same name.
    """
    kind = ENTITY_KINDS[entity.kind]
    assert kind.update_method is not None, f"{kind.name} is never updated by a clone"
    path = kind.update_path(entity.target_id or entity.id)
    if kind is SEGMENT:  # the segment has no update of its own; this replaces its rules
        return kind.update_method, path, clean_rules(body.get("rules"))
    return kind.update_method, path, body


# -- reporting ------------------------------------------------------------------------------
def render_plan(plan: Plan) -> list[str]:
    lines = [f"plan for clone job {plan.job!r}: {plan.mutation_count()} mutation(s)"]
    by_group: dict[str, list[str]] = {}
    for op in plan.operations:
        by_group.setdefault(op.group, []).extend(f"  {line}" for line in op.describe)
    for note in plan.notes:
        if isinstance(note, Note):
            tag = "FAILED" if note.fail else note.kind
            by_group.setdefault(note.subject, []).append(f"  [{tag}] {note.message}")
    for group, entries in by_group.items():
        lines.append(f"experiment {group}:")
        lines.extend(entries)
    lines.extend(estimate_lines(plan))
    return lines


def _respect_review(job: JobDefinition[Spec]) -> bool:
    return job.spec.options.respect_review


#: The ``clone_experiments`` kind. No undo: a clone is undone by deleting the target's copies,
#: which bulkops does not automate (yet).
KIND = PlannedFunctions(
    Spec, build_plan_=build_plan, render_plan_=render_plan, respect_review_=_respect_review
)
