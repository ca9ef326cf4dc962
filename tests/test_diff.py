"""``bulkops diff OLD NEW``: two snapshot directories compared, through the real CLI.

Snapshots are written here in the format ``export_project`` writes (``bulkops.output.snapshot``):
one file per entity, details beside it, a manifest listing each file with its sha256.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from bulkops.cli import main
from bulkops.output.publish import safe_file_stem
from bulkops.output.snapshot import dumps, sha256

GATE = {
    "id": "checkout_v2",
    "name": "checkout_v2",
    "description": "New checkout",
    "isEnabled": True,
    "rules": [
        {"id": "r1", "name": "employees", "passPercentage": 100, "conditions": []},
        {"id": "r2", "name": "rollout", "passPercentage": 10, "conditions": []},
    ],
    "tags": ["checkout"],
    "lastModifiedTime": 1_700_000_000_000,
    "lastModifierName": "CONSOLE API",
    "version": 3,
    "createdTime": 1_600_000_000_000,
    "creatorName": "Ada",
}
SEGMENT = {"id": "beta", "name": "beta", "type": "id_list", "version": 1}
OVERRIDES = {"passingUserIDs": ["qa_1", "owner_1"], "failingUserIDs": []}


def gate(**fields: Any) -> dict[str, Any]:
    return {**copy.deepcopy(GATE), **fields}


def write_snapshot(
    root: Path,
    entities: dict[str, dict[str, Any]],
    details: dict[str, dict[tuple[str, str], Any]] | None = None,
    **manifest: Any,
) -> Path:
    """Write a project snapshot as export_project does; ``manifest`` overrides its fields."""
    listed: dict[str, list[dict[str, str]]] = {}
    for kind, items in entities.items():
        for identifier, body in items.items():
            file = f"{kind}/{safe_file_stem(identifier)}.json"
            listed.setdefault(kind, []).append(_put(root, file, body) | {"id": identifier})
    listed_details: dict[str, list[dict[str, str]]] = {}
    for kind, items in (details or {}).items():
        for (identifier, detail), body in items.items():
            file = f"{kind}/{safe_file_stem(identifier)}.{detail}.json"
            entry = _put(root, file, body) | {"id": identifier, "detail": detail}
            listed_details.setdefault(kind, []).append(entry)
    document = {
        "complete": True,
        "kind": "export_project",
        "job": "snap",
        "run_id": "run-1",
        "started_at": "2024-05-01T00:00:00Z",
        "published_at": "2024-05-01T00:01:00Z",
        "project": {"id": "proj_1", "name": "Prod"},
        "totals": {kind: len(items) for kind, items in entities.items()},
        "entities": listed,
        "details": listed_details,
        **manifest,
    }
    (root / "manifest.json").write_bytes(dumps(document))
    return root


def _put(root: Path, file: str, body: Any) -> dict[str, str]:
    data = dumps(body)
    (root / file).parent.mkdir(parents=True, exist_ok=True)
    (root / file).write_bytes(data)
    return {"file": file, "sha256": sha256(data)}


def write_org(root: Path, projects: dict[str, dict[str, dict[str, Any]]]) -> Path:
    """An org snapshot: one project snapshot per name, under ``<root>/<name>/``."""
    for name, entities in projects.items():
        write_snapshot(root / name, entities, project={"id": f"id_{name}", "name": name})
    listing = [{"name": name, "dir": name, "complete": True} for name in projects]
    (root / "manifest.json").write_bytes(dumps({"complete": True, "projects": listing}))
    return root


def diff(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    code = main(["diff", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def json_diff(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, Any]:
    code, out, _ = diff(capsys, *args, "--json")
    return code, orjson.loads(out)


def assert_readable(text: str) -> None:
    for repr_mark in ("{'", "['", "None", "Traceback", "True", "False"):
        assert repr_mark not in text, text


def test_identical_snapshots_exit_0_and_say_so(tmp_path, capsys):
    """Two snapshots of the same data differ in nothing: exit 0, a 'no differences' line."""
    entities = {"gates": {"checkout_v2": gate()}, "segments": {"beta": SEGMENT}}
    details = {"gates": {("checkout_v2", "overrides"): OVERRIDES}}
    old = write_snapshot(tmp_path / "a", entities, details)
    new = write_snapshot(tmp_path / "b", entities, details, published_at="2024-05-02T00:00:00Z")
    code, out, err = diff(capsys, old, new)
    assert code == 0, err
    assert "no differences (2 entities in 2 kinds)" in out
    assert "project Prod (proj_1), exported 2024-05-02T00:00:00Z" in out
    assert json_diff(capsys, old, new) == (0, {"added": {}, "removed": {}, "changed": {}})


def test_added_removed_and_changed_entities_are_listed_per_kind(tmp_path, capsys):
    """An id on one side only is added or removed; a changed field reads path: old → new."""
    old = write_snapshot(
        tmp_path / "a", {"gates": {"checkout_v2": gate(), "old_gate": gate(id="old_gate")}}
    )
    changed = gate(description="Checkout, v2")
    changed["rules"][1]["passPercentage"] = 50
    new = write_snapshot(
        tmp_path / "b", {"gates": {"checkout_v2": changed, "new_gate": gate(id="new_gate")}}
    )
    code, out, err = diff(capsys, old, new)
    assert code == 1, err
    lines = out.splitlines()
    assert "gates: 1 added, 1 removed, 1 changed, 0 unchanged" in lines
    assert "  added    gates/new_gate" in lines
    assert "  removed  gates/old_gate" in lines
    assert (
        '  changed  gates/checkout_v2 description:            "New checkout" → "Checkout, v2"'
        in lines
    )
    assert "  changed  gates/checkout_v2 rules.1.passPercentage: 10 → 50" in lines
    assert "total: 1 added, 1 removed, 1 changed, 0 unchanged (3 entities in 1 kind)" in lines
    assert_readable(out)


def test_json_output_has_exactly_the_documented_shape(tmp_path, capsys):
    """--json prints added and removed ids and changed paths per kind, kinds in their fixed order."""
    old = write_snapshot(
        tmp_path / "a",
        {"segments": {"beta": SEGMENT, "gone": SEGMENT}, "gates": {"checkout_v2": gate()}},
    )
    changed = gate(isEnabled=False, tags=["checkout", "q3"])
    new = write_snapshot(
        tmp_path / "b",
        {
            "segments": {"beta": {**SEGMENT, "description": "Beta"}},
            "gates": {"checkout_v2": changed, "b": gate(), "a": gate()},
        },
    )
    code, document = json_diff(capsys, old, new)
    assert code == 1
    assert document == {
        "added": {"gates": ["a", "b"]},
        "removed": {"segments": ["gone"]},
        "changed": {
            "gates": {"checkout_v2": ["isEnabled", "tags"]},
            "segments": {"beta": ["description"]},
        },
    }
    assert list(document["changed"]) == ["gates", "segments"]


def test_server_set_fields_alone_do_not_make_an_entity_changed(tmp_path, capsys):
    """A new version and modification time only: exit 0 and counted unchanged; --all shows them."""
    old = write_snapshot(tmp_path / "a", {"gates": {"checkout_v2": gate()}})
    touched = gate(version=4, lastModifiedTime=1_700_000_999_000, lastModifierName="Bo")
    new = write_snapshot(tmp_path / "b", {"gates": {"checkout_v2": touched}})
    code, out, _ = diff(capsys, old, new)
    assert code == 0
    assert "no differences (1 entity in 1 kind)" in out
    assert "1 entity differs only in fields the server sets" in out
    assert "--all shows them" in out
    code, out, _ = diff(capsys, old, new, "--all")
    assert code == 1
    assert "  changed  gates/checkout_v2 version:          3 → 4" in out.splitlines()
    assert '  changed  gates/checkout_v2 lastModifierName: "CONSOLE API" → "Bo"' in out
    code, document = json_diff(capsys, old, new, "--all")
    assert document["changed"] == {
        "gates": {"checkout_v2": ["lastModifiedTime", "lastModifierName", "version"]}
    }


def test_a_real_change_beside_server_fields_shows_only_the_real_one(tmp_path, capsys):
    """Without --all the server's fields are left out of a changed entity's paths."""
    old = write_snapshot(tmp_path / "a", {"gates": {"checkout_v2": gate()}})
    new = write_snapshot(
        tmp_path / "b", {"gates": {"checkout_v2": gate(version=9, isEnabled=False)}}
    )
    assert json_diff(capsys, old, new) == (
        1,
        {"added": {}, "removed": {}, "changed": {"gates": {"checkout_v2": ["isEnabled"]}}},
    )


def test_details_are_compared_as_entity_dot_detail(tmp_path, capsys):
    """Changed overrides read gates/x.overrides; an id list compares as a set of ids."""
    entities = {"gates": {"checkout_v2": gate()}, "segments": {"beta": SEGMENT}}
    ids = [f"user_{n}" for n in range(10)]
    old = write_snapshot(
        tmp_path / "a",
        entities,
        {
            "gates": {("checkout_v2", "overrides"): OVERRIDES},
            "segments": {("beta", "id_list"): ids},
        },
    )
    overrides = {**OVERRIDES, "failingUserIDs": ["bot_7"]}
    new_ids = [*reversed(ids[2:]), "user_10", "user_11"]
    new = write_snapshot(
        tmp_path / "b",
        entities,
        {
            "gates": {("checkout_v2", "overrides"): overrides},
            "segments": {("beta", "id_list"): new_ids},
        },
    )
    code, out, _ = diff(capsys, old, new)
    assert code == 1
    lines = out.splitlines()
    assert '  changed  gates/checkout_v2.overrides failingUserIDs: [] → ["bot_7"]' in lines
    assert (
        "  changed  segments/beta.id_list: 10 ids → 10 ids (+2: user_10, user_11; −2: user_0, user_1)"
        in lines
    )
    assert "gates: 1 changed, 0 unchanged" in lines
    code, document = json_diff(capsys, old, new)
    assert document["changed"] == {
        "gates": {"checkout_v2.overrides": ["failingUserIDs"]},
        "segments": {"beta.id_list": [""]},
    }


def test_an_id_list_in_another_order_is_the_same(tmp_path, capsys):
    """Reordered ids are no difference: a segment's id list is a set."""
    entities = {"segments": {"beta": SEGMENT}}
    old = write_snapshot(tmp_path / "a", entities, {"segments": {("beta", "id_list"): ["a", "b"]}})
    new = write_snapshot(tmp_path / "b", entities, {"segments": {("beta", "id_list"): ["b", "a"]}})
    assert diff(capsys, old, new)[0] == 0


def test_a_detail_on_one_side_only_is_a_change_of_the_whole_detail(tmp_path, capsys):
    """Overrides that appeared read (absent) → their value; an added entity's details are not listed."""
    old = write_snapshot(tmp_path / "a", {"gates": {"checkout_v2": gate()}})
    new = write_snapshot(
        tmp_path / "b",
        {"gates": {"checkout_v2": gate(), "fresh": gate()}},
        {"gates": {("checkout_v2", "overrides"): OVERRIDES, ("fresh", "overrides"): OVERRIDES}},
    )
    code, out, _ = diff(capsys, old, new)
    assert code == 1
    assert (
        '  changed  gates/checkout_v2.overrides: (absent) → {"failingUserIDs": [], '
        '"passingUserIDs": ["qa_1", "owner_1"…'
    ) in out.splitlines()
    assert "fresh.overrides" not in out
    assert "  added    gates/fresh" in out


def test_a_longer_list_is_one_change_saying_what_was_inserted(tmp_path, capsys):
    """A rule inserted in a long list is one line, N items → N+1 items, not a change per index."""
    rules = [{"name": f"rule {n}", "passPercentage": n, "conditions": []} for n in range(3)]
    old = write_snapshot(tmp_path / "a", {"gates": {"g": gate(rules=rules)}})
    inserted = {"name": "new", "passPercentage": 5, "conditions": []}
    new = write_snapshot(
        tmp_path / "b", {"gates": {"g": gate(rules=[*rules[:1], inserted, *rules[1:]])}}
    )
    code, out, _ = diff(capsys, old, new)
    assert code == 1
    assert (
        '  changed  gates/g rules: 3 items → 4 items (item 1 inserted: {"conditions": [], '
        '"name": "new", "passPercentage": 5})'
    ) in out.splitlines()
    assert json_diff(capsys, old, new)[1]["changed"] == {"gates": {"g": ["rules"]}}


def test_values_print_as_json_and_long_ones_are_cut(tmp_path, capsys):
    """null, booleans and strings print as JSON; a long value ends in … at 60 characters."""
    old = write_snapshot(tmp_path / "a", {"gates": {"g": gate(description=None, isEnabled=1)}})
    new = write_snapshot(
        tmp_path / "b", {"gates": {"g": gate(description="x" * 200, isEnabled=True)}}
    )
    code, out, _ = diff(capsys, old, new)
    assert code == 1
    line = next(x for x in out.splitlines() if "description" in x)
    assert line.endswith(' null → "' + "x" * 58 + "…")
    assert "gates/g isEnabled:   1 → true" in out


def test_unicode_and_awkward_ids_and_keys(tmp_path, capsys):
    """Unicode ids print as UTF-8; an id with a space is quoted; a dotted key is bracketed."""
    entities = {
        "gates": {"Café☕": gate(), "with space": gate(), "a/b": gate()},
        "dynamic_configs": {"cfg": {"id": "cfg", "defaultValue": {"a.b": 1, "ü": [1]}}},
    }
    old = write_snapshot(tmp_path / "a", entities)
    changed = copy.deepcopy(entities)
    for identifier in ("Café☕", "with space", "a/b"):
        changed["gates"][identifier]["name"] = "Ünïcode ✓"
    changed["dynamic_configs"]["cfg"]["defaultValue"] = {"a.b": 2, "ü": [2]}
    new = write_snapshot(tmp_path / "b", changed)
    code, out, _ = diff(capsys, old, new)
    assert code == 1
    lines = out.splitlines()
    assert '  changed  gates/Café☕ name: "checkout_v2" → "Ünïcode ✓"' in lines
    assert '  changed  gates/"with space" name: "checkout_v2" → "Ünïcode ✓"' in lines
    assert '  changed  gates/a/b name: "checkout_v2" → "Ünïcode ✓"' in lines
    assert '  changed  dynamic_configs/cfg defaultValue["a.b"]: 1 → 2' in lines
    assert "  changed  dynamic_configs/cfg defaultValue.ü.0:    1 → 2" in lines
    # Kinds in their fixed order: gates before dynamic_configs, whatever the manifest says.
    assert out.index("gates:") < out.index("dynamic_configs:")
    document = json_diff(capsys, old, new)[1]
    assert document["changed"]["gates"] == {
        "Café☕": ["name"],
        "a/b": ["name"],
        "with space": ["name"],
    }
    assert document["changed"]["dynamic_configs"] == {
        "cfg": ['defaultValue["a.b"]', "defaultValue.ü.0"]
    }


def test_unprintable_characters_never_reach_the_terminal_raw(tmp_path, capsys):
    """Control and bidi characters in ids, keys and values print as JSON escapes."""
    entities = {"gates": {"rtl\u202eevil": gate(), "tab\there": gate()}}
    old = write_snapshot(tmp_path / "a", entities)
    changed = copy.deepcopy(entities)
    changed["gates"]["rtl\u202eevil"]["description"] = "line\nbreak\x1b[31m"
    changed["gates"]["tab\there"]["x\u202ey"] = 1
    new = write_snapshot(tmp_path / "b", changed)
    code, out, _ = diff(capsys, old, new)
    assert code == 1
    lines = out.splitlines()
    assert (
        '  changed  gates/"rtl\\u202eevil" description: "New checkout" → "line\\nbreak\\u001b[31m"'
        in lines
    )
    assert '  changed  gates/"tab\\there" ["x\\u202ey"]: (absent) → 1' in lines
    assert all(c.isprintable() for line in lines for c in line)


def test_files_whose_hashes_agree_are_not_opened(tmp_path, capsys):
    """An entity listed with the same sha256 on both sides is the same: its file is never read."""
    entities = {"gates": {f"g{n}": gate(id=f"g{n}") for n in range(5)}}
    old = write_snapshot(tmp_path / "a", entities)
    new = write_snapshot(tmp_path / "b", entities)
    for root in (old, new):
        for file in (root / "gates").iterdir():
            file.write_bytes(b"not json, and not what the manifest hashed")
    code, out, err = diff(capsys, old, new)
    assert (code, err) == (0, "")
    assert "no differences (5 entities in 1 kind)" in out


def test_org_snapshots_compare_project_by_project(tmp_path, capsys):
    """Projects match by name; ids carry the project; a project on one side is added or removed."""
    old = write_org(
        tmp_path / "a",
        {"prod": {"gates": {"x": gate()}}, "legacy": {"gates": {"y": gate(), "z": gate()}}},
    )
    new = write_org(
        tmp_path / "b",
        {"prod": {"gates": {"x": gate(isEnabled=False)}}, "staging": {"gates": {"x": gate()}}},
    )
    code, out, _ = diff(capsys, old, new)
    assert code == 1
    lines = out.splitlines()
    assert "projects: 1 added, 1 removed" in lines
    assert any(line.split() == ["added", "staging", "(1", "entity)"] for line in lines)
    assert any(line.split() == ["removed", "legacy", "(2", "entities)"] for line in lines)
    assert "prod/gates: 1 changed, 0 unchanged" in lines
    assert "  changed  prod/gates/x isEnabled: true → false" in lines
    assert json_diff(capsys, old, new)[1] == {
        "added": {"projects": ["staging"]},
        "removed": {"projects": ["legacy"]},
        "changed": {"gates": {"prod/x": ["isEnabled"]}},
    }


def test_an_org_snapshot_is_not_compared_with_a_project_snapshot(tmp_path, capsys):
    """Mixing the two layouts is exit 2, saying which side is which."""
    old = write_org(tmp_path / "a", {"prod": {"gates": {"x": gate()}}})
    new = write_snapshot(tmp_path / "b", {"gates": {"x": gate()}})
    code, out, err = diff(capsys, old, new)
    assert (code, out) == (2, "")
    assert f"OLD {old} holds several projects and NEW {new} one" in err
    assert f"one project's folder (e.g. {old / 'NAME'})" in err


def _damage_sha(root: Path) -> str:
    file = next((root / "gates").iterdir())
    file.write_bytes(file.read_bytes().replace(b'"isEnabled": true', b'"isEnabled": false'))
    return f"gates/{file.name}"


def _remove_file(root: Path) -> str:
    file = next((root / "gates").iterdir())
    file.unlink()
    return f"gates/{file.name} is listed in manifest.json but missing"


def _incomplete(root: Path) -> str:
    manifest = orjson.loads((root / "manifest.json").read_bytes())
    (root / "manifest.json").write_bytes(dumps({**manifest, "complete": False}))
    return "not a complete snapshot: its manifest.json says complete: false"


def _no_manifest(root: Path) -> str:
    (root / "manifest.json").unlink()
    return "has no manifest.json, so it is not a snapshot"


def _bad_manifest_json(root: Path) -> str:
    (root / "manifest.json").write_bytes(b'{"complete": tr')
    return "manifest.json is not valid JSON"


def _metrics_manifest(root: Path) -> str:
    (root / "manifest.json").write_bytes(dumps({"complete": True, "metric_sources": []}))
    return 'not a project snapshot: its manifest.json is a manifest without a "kind"'


def _escaping_file(root: Path) -> str:
    manifest = orjson.loads((root / "manifest.json").read_bytes())
    manifest["entities"]["gates"][0]["file"] = "../../etc/passwd"
    (root / "manifest.json").write_bytes(dumps(manifest))
    return (
        "entities.gates.0.file: expected a path relative to the snapshot, inside it, "
        'got "../../etc/passwd"'
    )


def _bad_sha_field(root: Path) -> str:
    manifest = orjson.loads((root / "manifest.json").read_bytes())
    manifest["entities"]["gates"][0]["sha256"] = "abc"
    (root / "manifest.json").write_bytes(dumps(manifest))
    return 'entities.gates.0.sha256: expected 64 lowercase hex digits, got "abc"'


@pytest.mark.parametrize(
    "damage",
    [
        _damage_sha,
        _remove_file,
        _incomplete,
        _no_manifest,
        _bad_manifest_json,
        _metrics_manifest,
        _escaping_file,
        _bad_sha_field,
    ],
)
def test_a_snapshot_that_is_not_complete_and_intact_is_exit_2(tmp_path, capsys, damage):
    """A damaged, unfinished or foreign snapshot on the NEW side is exit 2 naming what is wrong."""
    old = write_snapshot(tmp_path / "a", {"gates": {"checkout_v2": gate()}})
    new = write_snapshot(tmp_path / "b", {"gates": {"checkout_v2": gate(description="changed")}})
    # NEW differs from OLD, so its entity file is read (and its hash checked).
    says = damage(new)
    code, out, err = diff(capsys, old, new)
    assert (code, out) == (2, "")
    assert err.startswith(f"bulkops: error: NEW {new}")
    assert says in err
    if damage is _damage_sha:
        assert "does not match its sha256 in manifest.json" in err
    assert_readable(err)


def test_a_file_or_a_missing_path_is_exit_2(tmp_path, capsys):
    """OLD that is a file, or does not exist, is exit 2 saying what to give instead."""
    new = write_snapshot(tmp_path / "b", {"gates": {"x": gate()}})
    file = tmp_path / "notes.txt"
    file.write_text("hello")
    code, _, err = diff(capsys, file, new)
    assert code == 2
    assert f"OLD {file} is a file, not a snapshot directory" in err
    code, _, err = diff(capsys, tmp_path / "nowhere", new)
    assert code == 2
    assert "does not exist" in err


def test_one_argument_is_a_usage_error(capsys, tmp_path):
    """`bulkops diff OLD` without NEW is exit 2 naming the missing argument."""
    with pytest.raises(SystemExit) as exit_info:
        main(["diff", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "the following arguments are required: NEW" in capsys.readouterr().err


def test_the_diff_command_as_a_real_process(tmp_path):
    """The installed entry point prints UTF-8 and exits 1 on a difference, in a real process."""
    old = write_snapshot(tmp_path / "a", {"gates": {"Café": gate()}})
    new = write_snapshot(tmp_path / "b", {"gates": {"Café": gate(description="Kaffee ☕")}})
    result = subprocess.run(
        [sys.executable, "-m", "bulkops.cli", "diff", str(old), str(new)],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert (
        '  changed  gates/Café description: "New checkout" → "Kaffee ☕"' in result.stdout.decode()
    )
    assert result.stderr == b""
