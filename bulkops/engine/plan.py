"""Plans: the reviewable list of mutations a job will send, each with its precondition and after-image.

A plan is data (``<state>/plan.json``): ``bulkops plan`` writes it, ``bulkops apply`` executes exactly
it, tests diff it. Each ``Operation`` says what the target looked like when planned (``precondition``)
and what it must look like after (``expected``), which is what makes exactly-once possible without
idempotency keys: a resumed or retried operation first reads the target and sends only if the target
still matches the precondition (see ``bulkops.engine.apply``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

import orjson

from bulkops.errors import StateError
from bulkops.output.files import write_json_atomic, write_json_atomic_async

#: Entities an earlier run's change is held for review on: (role, kind, entity id) → the version
#: the entity had when held. While it shows that version, the change is still pending.
HeldReviews = Mapping[tuple[str, str, str], Any]

PLAN_FORMAT = 3  # 3: typed notes (kind, subject, subject_kind, message, fail)

NoteKind = Literal[
    "failed",  # the item cannot be planned (an edit raised, an id does not exist): exit 3
    "pending_review",  # a review is pending on the entity: left alone
    "not_idempotent",  # the edit would change its own result again if run again
    "cannot_carry",  # something of the source the target cannot take (a missing team, ...)
    "differs",  # the target has the entity with other content: reused as it is
    "conflict",  # on_conflict = "fail" and the target differs: the experiment fails
    "not_setup_in_source",  # an experiment active in the source, created in setup
    "cannot_update",  # fields the API cannot update differ in the target
    "undo",  # an undo plan: which plan it restores
]
NOTE_KINDS = frozenset(get_args(NoteKind))


@dataclass(frozen=True, kw_only=True)
class Note:
    """Something a plan says about one item besides its operations: for the review and report."""

    kind: NoteKind
    #: What it is about: an experiment (clone), an entity id (batch edit), the plan (undo).
    subject: str
    #: What kind of thing ``subject`` is: "experiment", "gate", "dynamic_config", "plan".
    subject_kind: str = ""
    message: str = ""
    #: The item failed at plan time: it counts as a failed item (exit 3).
    fail: bool = False


@dataclass(frozen=True, kw_only=True)
class Selection:
    """What a batch edit selected and what became of it: the plan's first note."""

    kind: Literal["selection"] = field(default="selection", init=False)
    entities: str  # "gates", "dynamic_configs"
    selected: int
    to_update: int
    rules_changed: int
    unchanged: int
    left_out: int
    fail: bool = field(default=False, init=False)

    @property
    def subject(self) -> str:
        return (
            f"{self.selected} {self.entities} selected: {self.to_update} to update, "
            f"{self.unchanged} unchanged, {self.left_out} left out"
        )


PlanNote = Note | Selection


def note_from_json(data: Any) -> PlanNote:
    """One note of a saved plan; ValueError says what is wrong with it."""
    if not isinstance(data, dict):
        raise ValueError("a note is not an object")
    fields = dict(data)
    try:
        if fields.get("kind") == "selection":
            del fields["kind"], fields["fail"]
            return Selection(**fields)
        if fields.get("kind") not in NOTE_KINDS:
            raise ValueError(f"unknown note kind {fields.get('kind')!r}")
        return Note(**fields)
    except (TypeError, KeyError) as exc:
        raise ValueError(f"a note does not have the fields of its kind ({exc})") from None


@dataclass
class Operation:
    """One mutation. ``id`` is deterministic: the same job over the same data plans the same ids."""

    id: str
    role: str  # which project of the job file: "target", "source"
    kind: str  # entity kind: "gate", "experiment", "tag", ...
    entity_id: str
    action: str  # create | update | ...: for people and summaries
    method: str
    path: str  # already URL-encoded, from api_path()
    body: Any
    #: Where to read the entity back: GET path; its ``data`` is compared below.
    read_path: str
    #: "absent" (must 404), or {"version": v, "lastModifiedTime": t}, or {"fields": {...}}.
    precondition: Any
    #: Fields the entity must show after the mutation, compared after normalising (see compare.py).
    expected: dict[str, Any]
    deps: list[str] = field(default_factory=list)
    #: What the entity looked like when planned (kept for undo and for the readable diff).
    before: Any = None
    #: Short human lines for the plan's readable summary (diff lines, notes).
    describe: list[str] = field(default_factory=list)
    #: Experiment (or other unit) this operation belongs to, for per-item failure reports.
    group: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Operation:
        return cls(**data)


_OPERATION_FIELDS = fields(Operation)


@dataclass
class Plan:
    job: str
    kind: str
    job_file: str
    job_digest: str
    operations: list[Operation]
    #: Entities looked at and left alone, things that cannot be carried, etc.: for the report.
    notes: list[PlanNote] = field(default_factory=list)
    #: Per-role estimate of the time the mutation windows allow, filled by the planner.
    estimate: dict[str, Any] = field(default_factory=dict)
    #: Per role, the project the plan was read from: ``{"id", "name", "base_url", "sandbox"}``.
    #: Apply and undo refuse a key that opens any other project.
    projects: dict[str, dict[str, Any]] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    format: int = PLAN_FORMAT

    def to_json(self) -> dict[str, Any]:
        """The plan as ``plan.json`` holds it. An operation's fields are plain JSON values, so
        each becomes a dict of them as they are: ``asdict`` would deep-copy every body and
        before-image first, only for orjson to read the copies once."""
        data: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        data["operations"] = [
            {f.name: getattr(op, f.name) for f in _OPERATION_FIELDS} for op in self.operations
        ]
        data["notes"] = [asdict(note) for note in self.notes]
        return data

    def save(self, path: Path) -> None:
        write_json_atomic(path, self.to_json())

    async def save_async(self, path: Path) -> None:
        await write_json_atomic_async(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> Plan:
        try:
            data = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            raise StateError(
                f"no plan at {path}; run `bulkops plan JOB.toml --state {path.parent}` first."
            ) from None
        except orjson.JSONDecodeError:
            raise StateError(f"{path} is not valid JSON; run `bulkops plan` again.") from None
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            raise StateError(f"{path} was written by another bulkops version; plan again.")
        try:
            data["operations"] = [Operation.from_dict(op) for op in data["operations"]]
            data["notes"] = [note_from_json(note) for note in data.get("notes", [])]
            return cls(**data)
        except (TypeError, ValueError, KeyError) as exc:
            raise StateError(
                f"{path} is not a plan bulkops can read ({exc}); plan again."
            ) from None

    def mutation_count(self) -> int:
        return len(self.operations)


def estimate_lines(plan: Plan) -> list[str]:
    """Readable lines for ``plan.estimate``: mutations per project and the time the windows allow,
    e.g. ``[target] 1,200 mutations: at least 18 min under 100/10s, 900/15min``."""
    from bulkops.human import duration, plural

    lines = []
    for role, estimate in plan.estimate.items():
        seconds = estimate["minimum_seconds"]
        wait = f"at least {duration(seconds)}" if seconds else "no waiting (fits the first window)"
        windows = ", ".join(estimate["windows"]) or "no mutation limits"
        if estimate.get("windows") and "windows_stated" in estimate:
            # Whether the governor trusts them (api/governor.py, ``mutation_cap``).
            windows += (
                " (stated in the job file: trusted until a 429)"
                if estimate["windows_stated"]
                else " (the documented defaults, taken as a guess)"
            )
        lines.append(
            f"[{role}] {plural(estimate['mutations'], 'mutation')}: {wait} under {windows}"
        )
    return lines
