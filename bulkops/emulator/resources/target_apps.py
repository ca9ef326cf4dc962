"""Target apps: ``/console/v1/target_app`` (list, create, bulk assign) and ``/target_app/{id}``.

The spec leaves the id of a target app undocumented (``TargetAppDto {id?, name}``; examples use
name-like values such as ``"my_app"``). By default (``Project.target_app_ids="assigned"``, the
harsher reading, docs/api-assumptions.md #7) the server assigns it: a 22-character id of the
project's own, so the same app name has a different id in each project and a client copying
references between projects must map them by name. With ``"derived"`` the id comes from the
name like other entities': lower-case, whitespace and characters outside ``[a-z0-9_.-]`` become
``_`` (``"iOS App"`` → ``"ios_app"``), the same in every project. Either way renaming an app
(``PATCH /target_app/{id}``) keeps its id. Entities' ``targetApps`` hold these ids;
``GET /target_app/{id}`` also accepts the display name. With
``EmulatorConfig.listed_ids="omitted"`` the list's rows carry no ``id``, as the spec's example.

Create and the bulk assign (``PATCH /target_app``) add the apps to the listed gates, dynamic
configs and experiments (a union: nothing is removed), each such entity taking a version bump.
Unknown entities give the spec's 404 ``"Gates with IDs [...] do not exist"``, checked before
anything changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._context import Call, Reply
from .._envelopes import message_only, paged, single
from .._errors import name_in_use, not_found
from .._ids import stable_id
from .._routing import Router
from .._store import Collection, Entity, Project
from .._validation import ListOf, Obj, Str, validate
from ._common import listed_rows
from ._entities import DYNAMIC_CONFIGS, EXPERIMENTS, GATES, Kind, derive_id, touch

__all__ = ["CREATE_SCHEMA", "app_ids", "create_target_app", "register", "target_apps"]

BASE = "/console/v1/target_app"
_ASSIGNABLE: tuple[tuple[str, Kind, str], ...] = (
    ("gates", GATES, "Gates"),
    ("dynamicConfigs", DYNAMIC_CONFIGS, "Dynamic configs"),
    ("experiments", EXPERIMENTS, "Experiments"),
)
_ID_LISTS = {key: ListOf(Str()) for key, _, _ in _ASSIGNABLE}

CREATE_SCHEMA = Obj(
    fields={"name": Str(min_len=1, max_len=100), "description": Str(max_len=1000), **_ID_LISTS},
    required=("name", "description"),
)
UPDATE_SCHEMA = Obj(fields={"name": Str(min_len=1, max_len=100), "description": Str()})
BULK_SCHEMA = Obj(fields={"targetApps": ListOf(Str()), **_ID_LISTS}, required=("targetApps",))


def target_apps(project: Project) -> Collection:
    """Target apps keyed by their name-derived id."""
    return project.collection("target_apps")


def _missing(ids: list[str], coll: Collection) -> list[str]:
    return [i for i in ids if i not in coll]


def _check_entities(project: Project, fields: dict[str, Any]) -> None:
    for key, kind, label in _ASSIGNABLE:
        missing = _missing(fields.get(key, []), kind.coll(project))
        if missing:
            raise not_found(f"{label} with IDs [{', '.join(missing)}] do not exist")


def _assign(project: Project, fields: dict[str, Any], app_ids: list[str], now_ms: int) -> None:
    for key, kind, _ in _ASSIGNABLE:
        coll = kind.coll(project)
        for entity_id in dict.fromkeys(fields.get(key, [])):
            old = coll.get(entity_id)
            assert old is not None
            current = old.get("targetApps") or []
            current = [current] if isinstance(current, str) else list(current)
            added = [a for a in app_ids if a not in current]
            if added:
                new = {**old, "targetApps": current + added}
                coll.replace(entity_id, touch(project, new, now_ms))


def create_target_app(project: Project, fields: dict[str, Any], now_ms: int = 0) -> Entity:
    """Create an app from validated fields and assign it where asked (handler and seeder)."""
    if project.target_app_ids == "derived":
        app_id = derive_id(fields["name"], strict=True)
    else:
        app_id = stable_id("target_app", project.id, fields["name"])
    coll = target_apps(project)
    if app_id in coll or any(a["name"] == fields["name"] for a in coll.values()):
        raise name_in_use()
    _check_entities(project, fields)
    app = {"id": app_id, "name": fields["name"], "description": fields.get("description", "")}
    coll.add(app_id, app)
    _assign(project, fields, [app_id], now_ms)
    return app


def app_ids(project: Project, names: Iterable[str]) -> list[str]:
    """The ids of the apps named ``names`` (seeders reference apps by name)."""
    by_name = {a["name"]: a["id"] for a in target_apps(project).values()}
    return [by_name[name] for name in names]


def _get(project: Project, key: str, *, by_name: bool = False) -> Entity:
    coll = target_apps(project)
    found = coll.get(key)
    if found is None and by_name:
        found = next((a for a in coll.values() if a["name"] == key), None)
    if found is None:
        raise not_found()
    return found


async def list_apps(call: Call) -> Reply:
    apps = list(target_apps(call.project).values())
    return paged(call, "Target apps listed successfully.", listed_rows(call, apps))


async def create(call: Call) -> Reply:
    fields = validate(CREATE_SCHEMA, call.json_body())
    app = create_target_app(call.project, fields, call.now_ms)
    return single("Target app created successfully.", app, call.config.create_code(200))


async def read(call: Call) -> Reply:
    found = _get(call.project, call.params["id"], by_name=True)
    return single("Target app read successfully.", found)


async def update(call: Call) -> Reply:
    old = _get(call.project, call.params["id"])
    fields = validate(UPDATE_SCHEMA, call.json_body())
    name = fields.get("name", old["name"])
    others = [a for a in target_apps(call.project).values() if a["id"] != old["id"]]
    if any(a["name"] == name for a in others):
        raise name_in_use()
    target_apps(call.project).replace(old["id"], {**old, **fields})
    return message_only("Target apps updated successfully.")


async def delete(call: Call) -> Reply:
    old = _get(call.project, call.params["id"])
    target_apps(call.project).remove(old["id"])
    return message_only("Target app deleted successfully")


async def bulk_assign(call: Call) -> Reply:
    fields = validate(BULK_SCHEMA, call.json_body())
    app_ids = list(dict.fromkeys(fields["targetApps"]))
    missing = _missing(app_ids, target_apps(call.project))
    if missing:
        raise not_found(f"Target apps with IDs [{', '.join(missing)}] do not exist")
    _check_entities(call.project, fields)
    _assign(call.project, fields, app_ids, call.now_ms)
    return message_only("Target apps updated successfully.")


def register(router: Router) -> None:
    router.add("GET", BASE, list_apps)
    router.add("POST", BASE, create)
    router.add("PATCH", BASE, bulk_assign)
    router.add("GET", f"{BASE}/{{id}}", read)
    router.add("PATCH", f"{BASE}/{{id}}", update)
    router.add("DELETE", f"{BASE}/{{id}}", delete)
