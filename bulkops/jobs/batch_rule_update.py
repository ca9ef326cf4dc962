"""``batch_rule_update``: scripted mass edits of gate or dynamic-config rules, planned and undoable.

Plan: read the selected entities (one list, or one GET per explicit id), run the job's edits over
each entity's rules (``bulkops.jobs.rule_edits``) and, for every entity whose rules come out
different, plan *one* mutation: ``PATCH /console/v1/{gates|dynamic_configs}/{id}`` with the whole
new ``rules`` list. Existing rules keep their ``id``/``baseID`` in the body (the request schema
allows both), which is how the server knows a rule was edited rather than replaced, and every
other field of the rule's DTO as read (automated-rollout histories, null ``environments``), so
a server that takes each rule whole loses nothing (docs/api-assumptions.md #25). The
precondition pins the entity as read (``version`` and ``lastModifiedTime``), so ``apply`` never
overwrites a change made after the plan; the before-image (the rules as read) is what ``undo``
restores, guarded by the version our write produced.

An entity whose ``python`` edit raised (anything, ``SystemExit`` included) or returned something
that is not a rule is left out of the plan and noted as failed (the traceback goes to the log); the
run then ends with exit 3. An entity whose edits are not idempotent (applied to their own result,
they change it again) is planned once, with a ``not_idempotent`` note that the plan shows as a
warning. Python edits are imported as guests: modules from the job file's folder live under a
private package, so a ``json.py`` or ``bulkops.py`` there never shadows the real one. Explicit
``ids`` that do not exist are failures too. With ``respect_review``, an entity that already has
a review pending is left alone: writing again would open a second review for the same change.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import importlib
import importlib.machinery
import sys
import threading
import traceback
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, cast

import orjson
import structlog
from pydantic import Field
from pydantic_core import ErrorDetails

from bulkops.api.client import ConsoleClient, read_entity
from bulkops.engine.concurrency import gather, run_in_daemon_thread
from bulkops.engine.plan import (
    HeldReviews,
    Note,
    NoteKind,
    Operation,
    Plan,
    PlanNote,
    Selection,
    estimate_lines,
)
from bulkops.errors import EditFailed, JobFileError
from bulkops.jobs.entity_kinds import DYNAMIC_CONFIG, GATE, EntityKind
from bulkops.jobs.planning import PlannedFunctions
from bulkops.jobs.rule_edits import (
    Edit,
    Edited,
    PythonEdit,
    Rule,
    RuleFunction,
    Slot,
    canonical,
    edit_entity,
    tidy_edit_errors,
)
from bulkops.jobs.semantics import SERVER_ASSIGNED, guard_of, normalize
from bulkops.jobs.spec import (
    Items,
    JobDefinition,
    JobSpec,
    NamedProjects,
    NonEmpty,
    ProjectSpec,
    Strict,
    field_error,
)

log = structlog.get_logger("bulkops.batch_rule_update")

ROLE = "target"
FAILED: NoteKind = "failed"
PENDING_REVIEW: NoteKind = "pending_review"
NOT_IDEMPOTENT: NoteKind = "not_idempotent"
NOT_IDEMPOTENT_MESSAGE = "not idempotent: running this job again after it finishes applies it again"
#: The private package that python edits from a job file's folder are imported under.
GUEST_PACKAGE = "_bulkops_guest"
#: The entity kind each ``select.entity`` edits.
SELECTABLE: dict[str, EntityKind] = {"gates": GATE, "dynamic_configs": DYNAMIC_CONFIG}
#: What a rule in a PATCH body holds: every field of the rule of GatePartialUpdateDto /
#: DynamicConfigPartialUpdateDto that the rule has. The automated-rollout histories are sent back
#: as read: a server that takes each rule whole would otherwise cancel a scheduled rollout
#: (docs/api-assumptions.md #25).
ROLLOUT_KEYS = ("completedAutomatedRollouts", "pendingAutomatedRollouts")
RULE_KEYS = ("id", "baseID", "name", "passPercentage", "conditions", "environments",
             "returnValue", *ROLLOUT_KEYS)  # fmt: skip
CONFIG_RULE_KEYS = (*RULE_KEYS, "returnValueJson5", "variants")
#: Sent even when the rule has none (null or empty): a server that merges each rule into the
#: stored one would keep the old value of a field left out (#25).
ALWAYS_SENT: dict[str, Any] = {"conditions": [], "environments": None}
CONFIG_ALWAYS_SENT: dict[str, Any] = {**ALWAYS_SENT, "variants": []}
#: The server's own fields of a rule, carried from the rule as read when an edit's result lacks
#: them (a python edit that builds a fresh dict still edits the same rule).
CARRIED_KEYS = ("id", "baseID", *ROLLOUT_KEYS)
CONDITION_KEYS = ("type", "operator", "targetValue", "field", "customID")
#: How the diff's first line of each changed rule starts (for the plan's totals).
RULE_LINES = ("~ rule '", '~ rule "', "+ rule ", "- rule ")


# -- the job file ----------------------------------------------------------------------------
class SelectSpec(Strict):
    entity: Literal["gates", "dynamic_configs"]
    ids: Items[str] = ()
    id_pattern: NonEmpty | None = None
    tags: Items[str] = ()
    rule_name: NonEmpty | None = None


class OptionsSpec(Strict):
    respect_review: bool = False


class Spec(JobSpec):
    kind: ClassVar[str] = "batch_rule_update"
    roles: ClassVar[tuple[str, ...]] = (ROLE,)

    many_role: ClassVar[str | None] = ROLE

    job: Literal["batch_rule_update"]
    target: ProjectSpec | None
    targets: NamedProjects | None = None
    select: SelectSpec
    edits: Items[Edit] = Field(min_length=1)
    options: OptionsSpec = OptionsSpec()

    @classmethod
    def tidy_errors(cls, errors: list[ErrorDetails]) -> list[ErrorDetails]:
        return tidy_edit_errors(errors)

    @classmethod
    def cross_field_errors(cls, data: Mapping[str, Any]) -> list[ErrorDetails]:
        select, edits = data.get("select"), data.get("edits")
        if not isinstance(edits, list) or (isinstance(select, dict) and "rule_name" in select):
            return []
        return [
            field_error(
                ("edits", index),
                "delete_rule without select.rule_name would delete every rule of every "
                'selected entity; set select.rule_name (use "*" if you mean it)',
            )
            for index, edit in enumerate(edits)
            if isinstance(edit, dict) and edit.get("op") == "delete_rule"
        ]


# -- planning --------------------------------------------------------------------------------
async def build_plan(
    job: JobDefinition[Spec], clients: dict[str, ConsoleClient], held: HeldReviews
) -> Plan:
    spec = job.spec
    # Before any request (a bad import is exit 2), off the loop: importing reads the disk and
    # runs the guest's module code, as long as that takes.
    functions = await run_in_daemon_thread(_load_functions_alone, spec.edits, job.folder)
    kind = SELECTABLE[spec.select.entity].name
    entities, missing = await _select(clients[ROLE], spec.select)
    operations: list[Operation] = []
    about_entities = [_note(kind, entity_id, FAILED, f"{kind} {entity_id!r} (in select.ids) "
                              f"does not exist in [{ROLE}]") for entity_id in missing]  # fmt: skip
    left_out = len(missing)
    # The edits (python ones are user code that may take its time) run on a worker thread, so
    # the event loop stays free for Ctrl-C; an interrupted plan abandons the thread.
    planned = await run_in_daemon_thread(_plan_entities, spec, entities, functions, held)
    for operation, entity_notes in planned:
        if operation is not None:
            operations.append(operation)
        about_entities.extend(entity_notes)
        left_out += operation is None and any(n.kind != NOT_IDEMPOTENT for n in entity_notes)
    rules_changed = sum(
        1 for op in operations for line in op.describe if line.startswith(RULE_LINES)
    )
    selected = len(entities) + len(missing)
    unchanged = selected - len(operations) - left_out
    selection = Selection(entities=spec.select.entity, selected=selected,
                          to_update=len(operations), rules_changed=rules_changed,
                          unchanged=unchanged, left_out=left_out)  # fmt: skip
    notes: list[PlanNote] = [selection, *about_entities]
    return Plan(job=job.name, kind=job.kind, job_file=str(job.path), job_digest=job.digest,
                operations=operations, notes=notes)  # fmt: skip


def _plan_entities(
    spec: Spec,
    entities: list[dict[str, Any]],
    functions: dict[int, RuleFunction],
    held: HeldReviews,
) -> list[tuple[Operation | None, list[Note]]]:
    return [_plan_entity(spec, entity, functions, held) for entity in entities]


def _plan_entity(
    spec: Spec, entity: dict[str, Any], functions: dict[int, RuleFunction], held: HeldReviews
) -> tuple[Operation | None, list[Note]]:
    """The entity's operation (None: unchanged or left out), and the notes about it."""
    kind, config = _kind_of(spec.select.entity)
    if spec.options.respect_review and _review_pending(entity):
        return None, [
            _note(
                kind,
                entity["id"],
                PENDING_REVIEW,
                "a review is already pending; left alone until it is decided",
            )
        ]
    version = entity.get("version")
    held_since = held.get((ROLE, kind, str(entity["id"])))
    if spec.options.respect_review and version is not None and held_since == version:
        # Nothing on it shows the review (a dynamic config), but its version has not moved since
        # an earlier run's change was held: sending again would open another review.
        message = (
            f"an earlier run's change is held for review (version {version} since); left "
            "alone until it is decided"
        )
        return None, [_note(kind, entity["id"], PENDING_REVIEW, message)]
    try:
        edited: Edited = edit_entity(
            entity, spec.edits, rule_name=spec.select.rule_name, functions=functions, config=config
        )
    except EditFailed as exc:
        log.error(
            "bulkops.plan.edit_failed",
            entity=entity["id"],
            kind=kind,
            edit=exc.index,
            error=str(exc),
        )
        if exc.traceback:  # debug: the log file has it; stderr only with --verbose
            log.debug("bulkops.plan.edit_traceback", entity=entity["id"], traceback=exc.traceback)
        where = "; the traceback is in the log" if exc.traceback else ""
        return None, [_note(kind, entity["id"], FAILED, f"{exc}{where}")]  # fmt: skip
    notes: list[Note] = []
    if not edited.idempotent:
        log.warning("bulkops.plan.not_idempotent", entity=entity["id"], kind=kind,
                    detail=edited.again)  # fmt: skip
        notes.append(Note(kind=NOT_IDEMPOTENT, subject=entity["id"], subject_kind=kind,
                          message=NOT_IDEMPOTENT_MESSAGE))  # fmt: skip
    return _operation(spec.select.entity, entity, edited.slots), notes


def _note(kind: str, entity_id: str, status: NoteKind, message: str) -> Note:
    """A note about one entity; ``fail`` makes the core count it as failed (exit 3)."""
    return Note(kind=status, subject=entity_id, subject_kind=kind, message=message,
                fail=status == FAILED)  # fmt: skip


def _kind_of(selection: str) -> tuple[str, bool]:
    """The ``Operation.kind`` of a ``select.entity``, and whether its rules carry return values."""
    kind = SELECTABLE[selection]
    return kind.name, kind is DYNAMIC_CONFIG


def _review_pending(entity: dict[str, Any]) -> bool:
    review = entity.get("activeReview")
    return isinstance(review, dict) and bool(review.get("reviewID"))


async def _select(
    client: ConsoleClient, select: SelectSpec
) -> tuple[list[dict[str, Any]], list[str]]:
    """The selected entities in server order, and the explicit ids that do not exist."""
    if select.ids and select.id_pattern is None and not select.tags:
        return await _read_each(client, SELECTABLE[select.entity], select.ids)
    listing = await client.list_all(SELECTABLE[select.entity].list_path())
    rows = [row for row in listing if isinstance(row, dict)]
    present = {row.get("id") for row in rows}
    missing = [entity_id for entity_id in dict.fromkeys(select.ids) if entity_id not in present]
    return [row for row in rows if _selected(row, select)], missing


async def _read_each(
    client: ConsoleClient, kind: EntityKind, ids: tuple[str, ...]
) -> tuple[list[dict[str, Any]], list[str]]:
    unique = list(dict.fromkeys(ids))
    found: dict[str, dict[str, Any] | None] = {}

    async def read(entity_id: str) -> None:
        found[entity_id] = await read_entity(client, kind.item_path(entity_id))

    await gather(functools.partial(read, entity_id) for entity_id in unique)
    return (
        [entity for i in unique if (entity := found[i]) is not None],
        [i for i in unique if found[i] is None],
    )


def _selected(entity: dict[str, Any], select: SelectSpec) -> bool:
    entity_id = str(entity.get("id", ""))
    if select.ids and entity_id not in select.ids:
        return False
    if select.id_pattern is not None and not fnmatch.fnmatchcase(entity_id, select.id_pattern):
        return False
    if select.tags:
        tags = entity.get("tags") or []
        return any(tag in tags for tag in select.tags)
    return True


def _operation(collection: str, entity: dict[str, Any], slots: list[Slot]) -> Operation | None:
    """The one PATCH that writes the entity's edited rules, or None when nothing changed."""
    kind, config = _kind_of(collection)
    before = list(entity.get("rules") or [])
    slots = [_carried(slot, before) for slot in slots]
    if config:
        slots = [Slot(slot.origin, _fill_return_value(slot.rule, _origin(slot, before)))
                 for slot in slots]  # fmt: skip
    after = [slot.rule for slot in slots]
    if normalize(after) == normalize(before):
        return None
    path = SELECTABLE[collection].item_path(str(entity["id"]))
    return Operation(
        id=f"{kind}:{entity['id']}",
        role=ROLE,
        kind=kind,
        entity_id=str(entity["id"]),
        action="update rules",
        method="PATCH",
        path=path,
        body={"rules": [request_rule(rule, config=config) for rule in after]},
        read_path=path,
        precondition=guard_of(entity, ("rules",)),
        expected={"rules": after},
        before={"rules": before},
        describe=describe_changes(before, slots),
    )


def _carried(slot: Slot, before: list[Rule]) -> Slot:
    """The slot's rule with the server's own fields of the rule it came from, where it lacks them."""
    if slot.origin is None:
        return slot
    origin = before[slot.origin]
    missing = {k: origin[k] for k in CARRIED_KEYS if slot.rule.get(k) is None and k in origin}
    return Slot(slot.origin, {**slot.rule, **missing}) if missing else slot


def request_rule(rule: Rule, *, config: bool) -> Rule:
    """A rule as a PATCH body carries it: the schema's keys only; nulls left out, except the
    fields a left-out value could leave as they were (``ALWAYS_SENT``)."""
    keys = CONFIG_RULE_KEYS if config else RULE_KEYS
    body = {key: rule[key] for key in keys if rule.get(key) is not None}
    for key, empty in (CONFIG_ALWAYS_SENT if config else ALWAYS_SENT).items():
        body.setdefault(key, empty)
    if "conditions" in body:
        body["conditions"] = [
            {key: c[key] for key in CONDITION_KEYS if c.get(key) is not None}
            for c in body["conditions"]
        ]
    return body


def _origin(slot: Slot, before: list[Rule]) -> Rule | None:
    return before[slot.origin] if slot.origin is not None else None


def _fill_return_value(rule: Rule, origin: Rule | None = None) -> Rule:
    """A dynamic-config rule with ``returnValue`` and ``returnValueJson5`` that agree.

    A new rule gets ``{}``; a rule whose ``returnValue`` a python edit changed gets fresh JSON5
    text. JSON5 that is not plain JSON (comments) cannot be parsed: it is kept while the value is
    the one its rule (``origin``) was read with, and replaced by the new value's JSON otherwise
    (its comments are lost, but a server that takes the text would else undo the edit).
    """
    value = rule.get("returnValue")
    text = rule.get("returnValueJson5")
    if text is None:
        value = value if isinstance(value, dict) else {}
        return {**rule, "returnValue": value, "returnValueJson5": orjson.dumps(value).decode()}
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        edited = origin is None or origin.get("returnValue") != value
        parsed = None if edited and isinstance(value, dict) else value
    if isinstance(value, dict) and parsed != value:
        return {**rule, "returnValueJson5": orjson.dumps(value).decode()}
    return rule


# -- python edits: finding the functions -----------------------------------------------------
def check(job: JobDefinition[Spec]) -> None:
    """What the schema cannot see: every python edit's function must import (exit 2 if not)."""
    try:
        _load_functions_alone(job.spec.edits, job.folder)
    except JobFileError as exc:
        raise JobFileError(f"{job.path}: {exc}") from None


#: One import of python edits at a time (the projects of a job over several plan at once, each
#: on a thread): each first forgets the guest package's modules, which must not happen while
#: another thread imports them.
_IMPORTING = threading.Lock()


def _load_functions_alone(edits: Sequence[Any], folder: Path) -> dict[int, RuleFunction]:
    with _IMPORTING:
        return load_functions(edits, folder)


def load_functions(edits: Sequence[Any], folder: Path) -> dict[int, RuleFunction]:
    """Import every python edit's function, from ``folder`` (the job file's) or the Python path.

    Modules from the folder are imported afresh, as guests: under a private package of their
    own (``_bulkops_guest_<hash>.edits``), so their names never shadow a module of Python or of
    bulkops (a ``json.py`` beside the job file is that package's ``json``, not ``json``).
    """
    references = [(i, e.function) for i, e in enumerate(edits) if isinstance(e, PythonEdit)]
    if not references:
        return {}
    package = _fresh_guest_package(folder)
    return {index: _load_function(index, ref, folder, package) for index, ref in references}


def _fresh_guest_package(folder: Path) -> str:
    """An empty package whose modules are the folder's files; any earlier import is forgotten."""
    name = f"{GUEST_PACKAGE}_{hashlib.sha256(str(folder).encode()).hexdigest()[:12]}"
    for key in [k for k in sys.modules if k == name or k.startswith(f"{name}.")]:
        del sys.modules[key]
    package = types.ModuleType(name, f"python edits beside the job files in {folder}")
    package.__path__ = [str(folder)]
    package.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    package.__spec__.submodule_search_locations = [str(folder)]
    sys.modules[name] = package
    importlib.invalidate_caches()
    return name


def _load_function(index: int, reference: str, folder: Path, package: str) -> RuleFunction:
    module_name, _, attribute = reference.partition(":")
    where = f"edits.{index}.function"
    try:
        module = _import(module_name, folder, package)
    except ModuleNotFoundError as exc:
        raise JobFileError(
            f"{where}: cannot import module {module_name!r} ({exc}); put {module_name}.py beside "
            "the job file or install it on the Python path"
        ) from None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # guest code at import: SystemExit too is the job file's fault
        detail = "".join(traceback.format_exception_only(exc)).strip()
        if isinstance(exc, SystemExit):
            detail = f"it called sys.exit({'' if exc.code is None else repr(exc.code)}) at import"
        raise JobFileError(f"{where}: importing {module_name!r} failed: {detail}") from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise JobFileError(
            f"{where}: module {module_name!r} ({getattr(module, '__file__', '?')}) has no "
            f"function {attribute!r}; define `def {attribute}(entity, rule):` there"
        )
    return cast(RuleFunction, function)  # called as one; whatever it does is checked then


def _import(module_name: str, folder: Path, package: str) -> Any:
    """The module from the job file's folder if it is there (as a guest), else the Python path's."""
    relative = Path(*module_name.split("."))
    for candidate in (folder / relative.with_suffix(".py"), folder / relative / "__init__.py"):
        if candidate.is_file():
            return importlib.import_module(f"{package}.{module_name}")
    return importlib.import_module(module_name)


# -- the readable diff -----------------------------------------------------------------------
def describe_changes(before: list[Rule], slots: list[Slot]) -> list[str]:
    """Lines like ``~ rule 'Internal'`` then indented field changes, per changed rule."""
    lines: list[str] = []
    by_origin = {slot.origin: slot.rule for slot in slots if slot.origin is not None}
    for index, old in enumerate(before):
        if index not in by_origin:
            lines.append(f"- rule {_name(old)} deleted")
        elif normalize(by_origin[index]) != normalize(old):
            lines.append(f"~ rule {_name(old)}")
            lines.extend(f"    {line}" for line in _rule_diff(old, by_origin[index]))
    for position, slot in enumerate(slots):
        if slot.origin is None:
            lines.append(f"+ rule {_name(slot.rule)} added at position {position + 1}")
            lines.extend(f"    {line}" for line in _rule_summary(slot.rule))
    order = [slot.origin for slot in slots if slot.origin is not None]
    if order != sorted(order):
        lines.append("~ rule order changed")
    return lines


def _name(rule: Rule) -> str:
    return repr(rule.get("name", "?"))


def _rule_diff(old: Rule, new: Rule) -> list[str]:
    lines = []
    keys = [k for k in dict.fromkeys([*old, *new])
            if k not in SERVER_ASSIGNED and k != "conditions"]  # fmt: skip
    for key in keys:
        if normalize(old.get(key)) != normalize(new.get(key)):
            lines.append(f"{key}: {_value(old.get(key))} -> {_value(new.get(key))}")
    old_conditions = [canonical(c) for c in old.get("conditions") or []]
    new_conditions = [canonical(c) for c in new.get("conditions") or []]
    for condition in old.get("conditions") or []:
        if canonical(condition) not in new_conditions:
            lines.append(f"- condition {format_condition(condition)}")
    for condition in new.get("conditions") or []:
        if canonical(condition) not in old_conditions:
            lines.append(f"+ condition {format_condition(condition)}")
    return lines


def _rule_summary(rule: Rule) -> list[str]:
    lines = [f"passPercentage: {_value(rule.get('passPercentage'))}"]
    lines.extend(f"+ condition {format_condition(c)}" for c in rule.get("conditions") or [])
    if rule.get("returnValue"):
        lines.append(f"returnValue: {_value(rule['returnValue'])}")
    return lines


def format_condition(condition: dict[str, Any]) -> str:
    """``email str_contains_any ["@example.com"]``, ``custom_field(age) gt 31``..."""
    text = str(condition.get("type", "?"))
    if condition.get("field"):
        text += f"({condition['field']})"
    if condition.get("customID"):
        text += f"[{condition['customID']}]"
    if condition.get("operator"):
        text += f" {condition['operator']}"
    if condition.get("targetValue") is not None:
        text += f" {_value(condition['targetValue'])}"
    return text


def _value(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = orjson.dumps(value).decode()
    return text if len(text) <= 200 else text[:197] + "..."


def render_plan(plan: Plan) -> list[str]:
    nothing = Selection(entities="entities", selected=0, to_update=0, rules_changed=0,
                        unchanged=0, left_out=0)  # fmt: skip
    selection = next((n for n in plan.notes if isinstance(n, Selection)), nothing)
    notes = [n for n in plan.notes if isinstance(n, Note)]
    lines = []
    repeats = [n for n in notes if n.kind == NOT_IDEMPOTENT]
    repeating = {(n.subject_kind, n.subject) for n in repeats}
    for op in plan.operations:
        version = op.precondition.get("version") if isinstance(op.precondition, dict) else None
        shown = "" if version is None else f" (version {version})"  # optional in every DTO
        lines.append(f"{op.kind} {op.entity_id!r}{shown}:")
        lines.extend(f"  {line}" for line in op.describe)
        if (op.kind, op.entity_id) in repeating:
            lines.append(f"  warning: {NOT_IDEMPOTENT_MESSAGE}")
    planned_ids = {(op.kind, op.entity_id) for op in plan.operations}
    for note in repeats:
        if (note.subject_kind, note.subject) not in planned_ids:
            lines.append(f"warning {note.subject_kind} {note.subject!r}: {note.message}")
    failed = [n for n in notes if n.kind == FAILED]
    pending = [n for n in notes if n.kind == PENDING_REVIEW]
    for note in pending:
        lines.append(f"skipped {note.subject_kind} {note.subject!r}: {note.message}")
    for note in failed:
        lines.append(f"FAILED {note.subject_kind} {note.subject!r}: {note.message}")
    lines.append(
        f"plan: {selection.selected} {selection.entities} selected; {len(plan.operations)} to "
        f"update ({selection.rules_changed} rule changes), {selection.unchanged} unchanged, "
        f"{len(pending)} awaiting review, {len(failed)} failed"
    )
    if repeats:
        lines.append(
            f"warning: the edits of {len(repeats)} {selection.entities} are "
            f"{NOT_IDEMPOTENT_MESSAGE} (once more per run); make them set values rather than "
            "change them relative to what they find, if that is not what you mean"
        )
    lines.extend(estimate_lines(plan))
    if failed:
        lines.append(
            "the failed entities are not in the plan, so apply will end with exit 3; fix the "
            "cause and plan again (`bulkops run --fresh` or `bulkops plan`) to include them"
        )
    return lines


# -- undo ------------------------------------------------------------------------------------
def undo_operation(op: Operation, after: dict[str, Any]) -> Operation | None:
    """Restore the rules as read at plan time, only if the entity still is as our write left it."""
    config = op.kind == DYNAMIC_CONFIG.name
    rules = list(op.before["rules"])
    guard = after if after.get("version") is not None else {"fields": op.expected}
    return Operation(
        id=f"undo:{op.id}",
        role=op.role,
        kind=op.kind,
        entity_id=op.entity_id,
        action="restore rules",
        method="PATCH",
        path=op.path,
        body={"rules": [request_rule(rule, config=config) for rule in rules]},
        read_path=op.read_path,
        precondition=guard,
        expected={"rules": rules},
        before={"rules": op.expected["rules"]},
        describe=[f"restore the {len(rules)} rule(s) read at plan time"],
    )


def _respect_review(job: JobDefinition[Spec]) -> bool:
    return job.spec.options.respect_review


#: The ``batch_rule_update`` kind. ``--sandbox``: the demo world's batch-edit playground (~300
#: gates) is its "source" project.
KIND = PlannedFunctions(
    Spec,
    build_plan_=build_plan,
    render_plan_=render_plan,
    respect_review_=_respect_review,
    undo_operation_=undo_operation,
    check_=check,
    sandbox_projects={ROLE: "source"},
)

__all__ = [
    "KIND",
    "Spec",
    "build_plan",
    "render_plan",
    "request_rule",
    "undo_operation",
]
