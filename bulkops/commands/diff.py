"""``bulkops diff OLD NEW [--json] [--all]``: what changed between two project snapshots.

Exit 0 when there is no difference, 1 when there is, 2 on bad usage or a directory that is not a
complete, intact snapshot (as diff(1) does). The snapshot format is ``bulkops.output.snapshot``.

What is compared, and how it reads:

* **Entities** are matched by kind and id. An id on one side only is *added* or *removed*; one on
  both sides whose files hash the same in both manifests is the same, and its files are not
  opened. Otherwise both files are read (one pair at a time: memory stays flat however big the
  snapshot), checked against their ``sha256`` and compared.
* **Changed fields** are dotted paths from the entity's root, list items by index
  (``rules.0.passPercentage: 10 → 50``). A key that would make the path ambiguous (a dot,
  whitespace, brackets, all digits, empty) is written ``["a.b"]``. A key present on one side only
  reads ``(absent)`` on the other; ``null`` is a value, not an absence.
* **Lists of equal length** are compared item by item. **Lists whose length changed** are one
  change at the list's path: both lists in full when they are short, else ``3 items → 4 items``
  with what the difference is after the common head and tail are set aside (``item 2 inserted: …``,
  ``item 0 removed: …``, ``items 1–2 replaced by 3 items``). Comparing by index across an insertion
  would report every later item as changed, which is noise and reads as if they all had been
  edited; the head/tail rendering says what happened in one line and needs no guessing of which
  item is which.
* **Details** are compared as ``gates/checkout_v2.overrides`` (the same way as entities) and
  ``segments/beta.id_list``: an id list is a set of ids, so its order and repeats do not count; it
  reads ``120 ids → 123 ids (+5: a, b, c and 2 more; −2: x, y)``. A detail on one side only is a
  change of the whole detail (path ``""`` in JSON). The details of an added or removed entity are
  part of that entity and not listed again.
* **Fields only the server changes** at an entity's top level (``lastModifiedTime``,
  ``lastModifier*``, ``version``, ``createdTime``, ``creator*``) are left out: an entity whose
  only differences are those is not changed (the totals count them). With ``--all`` they count
  like any other field, and so does the exit status.
* Numbers compare by value (``10`` is ``10.0``); ``true`` is not ``1``.
* **Values** print as JSON (``"a"``, ``10``, ``null``, ``["x", "y"]``), cut at 60 characters
  with ``…``; ids print as they are unless they hold whitespace or unprintable characters, then
  as a JSON string.
* **Order**: kinds in ``snapshot.KINDS`` order (others after, alphabetically), ids sorted, an
  entity's details right after it, fields in key order.
* **Org snapshots** (issue 10) are compared project by project, matched by name; ids are
  prefixed with the project (``prod/gates/x``; in JSON ``"gates": ["prod/x"]``), and a project on
  one side only is added or removed as a whole (JSON kind ``projects``). An org snapshot is never
  compared with a single project's.
* **Kinds not compared**: a kind a snapshot's manifest lists as ``unavailable`` (an optional
  kind the project did not serve when it was exported) is not compared at all, whatever the
  other side holds: its entities are neither added nor removed, and the listing says
  ``alerts: not compared (unavailable in NEW: 404: ...)``. It is not a difference (exit status).
* ``--json`` prints ``{"added": {kind: [id]}, "removed": {kind: [id]}, "changed": {kind: {id:
  [path, ...]}}}``, kinds with nothing to report left out; and ``"not_compared": {kind:
  reason}`` when some kind was not compared.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson

from bulkops import human
from bulkops.output.snapshot import (
    Entry,
    OrgSnapshot,
    ProjectSnapshot,
    SnapshotError,
    kind_order,
    open_snapshot,
)

EXIT_SAME, EXIT_DIFFERENT = 0, 1
#: Widest rendering of one value, in characters.
VALUE_WIDTH = 60
ABSENT = "(absent)"
#: Top-level fields the server sets on every write; ``creator*`` and ``lastModifier*`` too.
SERVER_SET = frozenset({"lastModifiedTime", "version", "createdTime"})
SERVER_SET_PREFIXES = ("creator", "lastModifier")
ID_LIST = "id_list"


class _Missing:
    def __repr__(self) -> str:
        return ABSENT


MISSING: Any = _Missing()


# -- comparing two JSON documents ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """One difference, already rendered for people (the documents themselves are not kept)."""

    path: str
    old: str
    new: str
    note: str = ""
    server_set: bool = False


def diff_documents(old: Any, new: Any, *, server_fields: bool = True) -> list[Change]:
    """The changes from ``old`` to ``new``; with ``server_fields`` (an entity, not a detail),
    changes of top-level fields the server sets are flagged ``server_set``."""
    changes: list[Change] = []
    _walk(old, new, (), changes)
    if not server_fields:
        return [Change(c.path, c.old, c.new, c.note) for c in changes]
    return changes


def diff_id_lists(old: Any, new: Any) -> list[Change]:
    """An id list compared as a set: at most one change, with what came and what went."""
    if not (isinstance(old, list) and isinstance(new, list)):
        return diff_documents(old, new)
    before, after = {_id_key(i) for i in old}, {_id_key(i) for i in new}
    came, went = sorted(after - before), sorted(before - after)
    if not came and not went:
        return []
    parts = [
        f"{sign}{human.count(len(ids))}: {human.listing([label(i) for i in ids], limit=3)}"
        for sign, ids in (("+", came), ("−", went))
        if ids
    ]
    return [
        Change(
            "", human.plural(len(before), "id"), human.plural(len(after), "id"), "; ".join(parts)
        )
    ]


def _walk(old: Any, new: Any, path: tuple[str | int, ...], out: list[Change]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(old.keys() | new.keys()):
            _walk(old.get(key, MISSING), new.get(key, MISSING), (*path, key), out)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            _walk(a, b, (*path, index), out)
    elif not _equal(old, new):
        server_set = len(path) >= 1 and _server_set(path[0])
        if isinstance(old, list) and isinstance(new, list):
            out.append(_list_change(dotted(path), old, new, server_set))
        else:
            out.append(Change(dotted(path), render(old), render(new), server_set=server_set))


def _list_change(path: str, old: list[Any], new: list[Any], server_set: bool) -> Change:
    if _fits(old) and _fits(new):
        return Change(path, render(old), render(new), server_set=server_set)
    head = 0
    while head < min(len(old), len(new)) and _equal(old[head], new[head]):
        head += 1
    tail = 0
    while tail < min(len(old), len(new)) - head and _equal(old[-1 - tail], new[-1 - tail]):
        tail += 1
    went, came = old[head : len(old) - tail], new[head : len(new) - tail]
    if not went:
        note = f"{_items(head, len(came))} inserted" + (
            f": {render(came[0])}" if len(came) == 1 else ""
        )
    elif not came:
        note = f"{_items(head, len(went))} removed" + (
            f": {render(went[0])}" if len(went) == 1 else ""
        )
    else:
        note = f"{_items(head, len(went))} replaced by {human.plural(len(came), 'item')}"
    return Change(
        path, human.plural(len(old), "item"), human.plural(len(new), "item"), note, server_set
    )


def _items(start: int, n: int) -> str:
    return f"item {start}" if n == 1 else f"items {start}–{start + n - 1}"


def _server_set(key: str | int) -> bool:
    return isinstance(key, str) and (key in SERVER_SET or key.startswith(SERVER_SET_PREFIXES))


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value, booleans only equal booleans."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _id_key(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


# -- text for people -------------------------------------------------------------------------


def render(value: Any) -> str:
    """A value as JSON, cut to ``VALUE_WIDTH`` characters."""
    if value is MISSING:
        return ABSENT
    text = _json(value)
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 1] + "…"


def _fits(value: Any) -> bool:
    return len(_json(value)) <= VALUE_WIDTH


def _json(value: Any) -> str:
    """Compact JSON, UTF-8 kept readable but every unprintable character escaped (a terminal
    must not be steered by a value: no control or bidi characters reach it raw)."""
    text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def dotted(path: Iterable[str | int]) -> str:
    """``rules.0.passPercentage``; a key that would read ambiguously is written ``["a.b"]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f".{part}" if text else str(part)
        elif _plain_key(part):
            text += f".{part}" if text else part
        else:
            text += f"[{_json(part)}]"
    return text


def _plain_key(key: str) -> bool:
    return (
        key != ""
        and not key.isdigit()
        and key.isprintable()
        and not any(c.isspace() or c in '.[]"' for c in key)
    )


def label(identifier: str) -> str:
    """An id as people read it: as it is, or quoted when it holds spaces or unprintables."""
    if identifier and identifier.isprintable() and not any(c.isspace() for c in identifier):
        return identifier
    return _json(identifier)


# -- comparing two snapshots -----------------------------------------------------------------


@dataclass
class Target:
    """A changed entity, or a changed detail of one, with its changes."""

    id: str
    detail: str | None
    changes: list[Change]

    @property
    def key(self) -> str:
        """How ``--json`` names it: ``checkout_v2`` or ``checkout_v2.overrides``."""
        return self.id if self.detail is None else f"{self.id}.{self.detail}"


@dataclass
class Section:
    """What differs in one kind of one project."""

    project: str | None
    kind: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[Target] = field(default_factory=list)
    #: Entities on both sides: changed (in themselves or a detail), the same, or changed only in
    #: fields the server sets (not shown without ``--all``).
    changed_entities: int = 0
    unchanged: int = 0
    server_only: int = 0

    @property
    def differs(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def name(self, identifier: str, detail: str | None = None) -> str:
        prefix = f"{self.project}/" if self.project is not None else ""
        suffix = f".{detail}" if detail else ""
        return f"{prefix}{self.kind}/{label(identifier)}{suffix}"

    def json_id(self, identifier: str) -> str:
        return f"{self.project}/{identifier}" if self.project is not None else identifier


@dataclass
class Report:
    old: ProjectSnapshot | OrgSnapshot
    new: ProjectSnapshot | OrgSnapshot
    sections: list[Section] = field(default_factory=list)
    #: Org snapshots: (name, entity count) of projects on one side only.
    projects_added: list[tuple[str, int]] = field(default_factory=list)
    projects_removed: list[tuple[str, int]] = field(default_factory=list)
    #: (project or None, kind, why) of kinds unavailable on a side, so not compared.
    not_compared: list[tuple[str | None, str, str]] = field(default_factory=list)

    @property
    def differs(self) -> bool:
        return bool(
            self.projects_added or self.projects_removed or any(s.differs for s in self.sections)
        )


def compare(
    old: ProjectSnapshot | OrgSnapshot, new: ProjectSnapshot | OrgSnapshot, *, everything: bool
) -> Report:
    report = Report(old, new)
    if isinstance(old, ProjectSnapshot) and isinstance(new, ProjectSnapshot):
        old.check_files()
        new.check_files()
        report.sections.extend(_compare_projects(old, new, None, everything, report))
        return report
    if not (isinstance(old, OrgSnapshot) and isinstance(new, OrgSnapshot)):
        org, single = (old, new) if isinstance(old, OrgSnapshot) else (new, old)
        raise SnapshotError(
            f"{org.label} holds several projects and {single.label} one: compare an org snapshot "
            f"with an org snapshot, or one project's folder (e.g. {org.root / 'NAME'}) with a "
            "project snapshot."
        )
    for name in sorted(old.projects.keys() | new.projects.keys()):
        before, after = old.projects.get(name), new.projects.get(name)
        if before is None:
            assert after is not None
            report.projects_added.append((name, after.count()))
        elif after is None:
            report.projects_removed.append((name, before.count()))
        else:
            before.check_files()
            after.check_files()
            report.sections.extend(_compare_projects(before, after, name, everything, report))
    return report


def _compare_projects(
    old: ProjectSnapshot,
    new: ProjectSnapshot,
    project: str | None,
    everything: bool,
    report: Report,
) -> Iterator[Section]:
    kinds = old.entities.keys() | new.entities.keys() | old.details.keys() | new.details.keys()
    skipped = _unavailable(old, new)
    for kind in kind_order(kinds | skipped.keys()):
        if kind in skipped:
            report.not_compared.append((project, kind, skipped[kind]))
        else:
            yield _compare_kind(old, new, Section(project, kind), everything)


def _unavailable(old: ProjectSnapshot, new: ProjectSnapshot) -> dict[str, str]:
    """Kind → why it is not compared: a side's manifest lists it as ``unavailable``."""
    why: dict[str, list[str]] = {}
    for role, snapshot in (("OLD", old), ("NEW", new)):
        listed = snapshot.manifest.get("unavailable")
        for kind, reason in (listed if isinstance(listed, dict) else {}).items():
            said = reason if isinstance(reason, str) and reason else "not served"
            why.setdefault(str(kind), []).append(f"unavailable in {role}: {said}")
    return {kind: "; ".join(reasons) for kind, reasons in why.items()}


def _compare_kind(
    old: ProjectSnapshot, new: ProjectSnapshot, section: Section, everything: bool
) -> Section:
    kind = section.kind
    before, after = old.entities.get(kind, {}), new.entities.get(kind, {})
    details: dict[str, set[str]] = {}
    for key in (*old.details.get(kind, {}), *new.details.get(kind, {})):
        details.setdefault(key[0], set()).add(key[1])
    for identifier in sorted(before.keys() | after.keys() | details.keys()):
        a, b = before.get(identifier), after.get(identifier)
        if (a is None) != (b is None):  # added or removed, its details with it
            (section.added if a is None else section.removed).append(identifier)
            continue
        pairs = [
            (
                name,
                old.details.get(kind, {}).get((identifier, name)),
                new.details.get(kind, {}).get((identifier, name)),
            )
            for name in sorted(details.get(identifier, ()))
        ]
        targets, server_only = _compare_entity(old, new, identifier, a, b, pairs, everything)
        section.changed.extend(targets)
        if a is None:  # details without an entity on either side: reported, not counted
            continue
        if targets:
            section.changed_entities += 1
        else:
            section.unchanged += 1
            section.server_only += server_only
    return section


def _compare_entity(
    old: ProjectSnapshot,
    new: ProjectSnapshot,
    identifier: str,
    a: Entry | None,
    b: Entry | None,
    pairs: list[tuple[str, Entry | None, Entry | None]],
    everything: bool,
) -> tuple[list[Target], bool]:
    """The changed targets of one entity present on both sides, and whether it differed only in
    fields the server sets."""
    targets: list[Target] = []
    server_only = False
    documents = [(None, a, b), *pairs] if a is not None else pairs
    for detail, x, y in documents:
        changes = _compare_files(old, new, x, y, detail)
        shown = [c for c in changes if everything or not c.server_set]
        if shown:
            targets.append(Target(identifier, detail, shown))
        elif changes:
            server_only = True
    return targets, server_only


def _compare_files(
    old: ProjectSnapshot,
    new: ProjectSnapshot,
    x: Entry | None,
    y: Entry | None,
    detail: str | None,
) -> list[Change]:
    if x is not None and y is not None and x.sha256 == y.sha256:
        return []
    before = old.read(x) if x is not None else MISSING
    after = new.read(y) if y is not None else MISSING
    if before is MISSING or after is MISSING:
        return [Change("", _summary(before, detail), _summary(after, detail))]
    if detail == ID_LIST:
        return diff_id_lists(before, after)
    return diff_documents(before, after, server_fields=detail is None)


def _summary(value: Any, detail: str | None) -> str:
    if detail == ID_LIST and isinstance(value, list):
        return human.plural(len(value), "id")
    return render(value)


# -- the command -----------------------------------------------------------------------------


def run_diff(
    old: Path, new: Path, *, as_json: bool, everything: bool, out: TextIO | None = None
) -> int:
    """Compare two snapshots, print the differences; 0 when the same, 1 when they differ."""
    out = out or sys.stdout
    report = compare(open_snapshot(old, "OLD"), open_snapshot(new, "NEW"), everything=everything)
    text = json_text(report) if as_json else "\n".join(human_lines(report)) + "\n"
    try:
        out.write(text)
        out.flush()
    except BrokenPipeError:  # `bulkops diff a b | head`: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
    return EXIT_DIFFERENT if report.differs else EXIT_SAME


def json_text(report: Report) -> str:
    added: dict[str, list[str]] = {}
    removed: dict[str, list[str]] = {}
    changed: dict[str, dict[str, list[str]]] = {}
    if report.projects_added:
        added["projects"] = [name for name, _ in report.projects_added]
    if report.projects_removed:
        removed["projects"] = [name for name, _ in report.projects_removed]
    for kind in kind_order(s.kind for s in report.sections):
        for section in (s for s in report.sections if s.kind == kind):
            if section.added:
                added.setdefault(kind, []).extend(map(section.json_id, section.added))
            if section.removed:
                removed.setdefault(kind, []).extend(map(section.json_id, section.removed))
            for target in section.changed:
                paths = changed.setdefault(kind, {})
                paths[section.json_id(target.key)] = [c.path for c in target.changes]
    document: dict[str, Any] = {"added": added, "removed": removed, "changed": changed}
    if report.not_compared:
        document["not_compared"] = {
            kind if project is None else f"{project}/{kind}": why
            for project, kind, why in report.not_compared
        }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"


def human_lines(report: Report) -> list[str]:
    lines = [_describe("old", report.old), _describe("new", report.new), ""]
    if report.projects_added or report.projects_removed:
        lines.append(
            f"projects: {len(report.projects_added)} added, {len(report.projects_removed)} removed"
        )
        rows = [
            ("added", name, f"({human.plural(n, 'entity', 'entities')})")
            for name, n in report.projects_added
        ]
        rows += [
            ("removed", name, f"({human.plural(n, 'entity', 'entities')})")
            for name, n in report.projects_removed
        ]
        lines.extend(human.table(rows))
    for section in report.sections:
        if section.differs:
            lines.extend(_section_lines(section))
    for project, kind, why in report.not_compared:
        where = kind if project is None else f"{project}/{kind}"
        lines.append(f"{where}: not compared ({why})")
    lines.extend(_totals(report))
    return lines


def _describe(role: str, snapshot: ProjectSnapshot | OrgSnapshot) -> str:
    when = snapshot.manifest.get("published_at")
    exported = f", exported {when}" if isinstance(when, str) and when else ""
    if isinstance(snapshot, OrgSnapshot):
        what = f"{human.plural(len(snapshot.projects), 'project')}"
    else:
        project = snapshot.project
        name, pid = project.get("name"), project.get("id")
        what = f"project {name if isinstance(name, str) and name else '(unnamed)'}"
        if isinstance(pid, str) and pid:
            what += f" ({pid})"
    return f"{role}: {human.path(snapshot.root)}  {what}{exported}"


def _section_lines(section: Section) -> list[str]:
    where = f"{section.project}/{section.kind}" if section.project is not None else section.kind
    counts = [
        f"{human.count(n)} {what}"
        for n, what in (
            (len(section.added), "added"),
            (len(section.removed), "removed"),
            (section.changed_entities, "changed"),
        )
        if n
    ]
    counts.append(f"{human.count(section.unchanged)} unchanged")
    lines = [f"{where}: {', '.join(counts)}"]
    lines += [f"  added    {section.name(i)}" for i in section.added]
    lines += [f"  removed  {section.name(i)}" for i in section.removed]
    for target in section.changed:
        name = section.name(target.id, target.detail)
        heads = [f"{name} {c.path}:" if c.path else f"{name}:" for c in target.changes]
        width = max(len(h) for h in heads)
        for head, change in zip(heads, target.changes, strict=True):
            note = f" ({change.note})" if change.note else ""
            lines.append(f"  changed  {head.ljust(width)} {change.old} → {change.new}{note}")
    return lines


def _totals(report: Report) -> list[str]:
    sections = report.sections
    added = sum(len(s.added) for s in sections)
    removed = sum(len(s.removed) for s in sections)
    changed = sum(s.changed_entities for s in sections)
    same = sum(s.unchanged for s in sections)
    server_only = sum(s.server_only for s in sections)
    kinds = len({s.kind for s in sections})
    entities = human.plural(added + removed + changed + same, "entity", "entities")
    scope = f"{entities} in {human.plural(kinds, 'kind')}"
    if report.differs:
        line = f"total: {human.count(added)} added, {human.count(removed)} removed, "
        line += f"{human.count(changed)} changed, {human.count(same)} unchanged ({scope})"
        if report.projects_added or report.projects_removed:
            line += f"; projects: {len(report.projects_added)} added, "
            line += f"{len(report.projects_removed)} removed"
    else:
        line = f"no differences ({scope})"
    shown = bool(report.projects_added or report.projects_removed or report.not_compared)
    shown = shown or any(s.differs for s in sections)
    lines = ["", line] if shown else [line]
    if server_only:
        lines.append(
            f"{human.plural(server_only, 'entity', 'entities')} "
            f"{'differs' if server_only == 1 else 'differ'} only in fields the server sets "
            "(lastModifiedTime, version, ...): counted as unchanged; --all shows them"
        )
    return lines
