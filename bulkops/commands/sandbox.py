"""Sandbox start-up: the built-in emulator with its demo world, for ``--sandbox`` rehearsals.

The only module of the package, tests aside, that imports the emulator.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import structlog

from bulkops import human
from bulkops.errors import UserError
from bulkops.output.snapshot import OrgSnapshot, open_snapshot

log = structlog.get_logger("bulkops.run")


@asynccontextmanager
async def sandbox_projects(
    demo_names: Mapping[str, str], seeded: Mapping[str, Path] | None = None
) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """Serve a fresh sandbox; yield its base URL and, per role, the key of that role's project.

    Without ``seeded``: the demo world, each role on the demo project ``demo_names`` gives it
    (e.g. a batch edit's ``target`` rehearses on the demo ``source``). With it
    (``--sandbox-from``): each role in ``seeded`` on a copy of its snapshot, every other role on
    an empty project of its own.
    """
    from bulkops.emulator import EmulatorConfig, build_demo_world, running_emulator

    # Reading a snapshot is file I/O: off the event loop.
    world = (
        await anyio.to_thread.run_sync(_seeded_world, demo_names, seeded)
        if seeded
        else build_demo_world()
    )
    names = {role: role for role in demo_names} if seeded else dict(demo_names)
    async with running_emulator(world, EmulatorConfig()) as base_url:
        log.info("bulkops.sandbox.started", base_url=base_url, seeded=sorted(seeded or ()))
        yield base_url, {role: world.projects[name].console_key for role, name in names.items()}


@asynccontextmanager
async def sandbox_fleet(
    templates: Mapping[str, str], seeded: Mapping[str, Path] | None = None
) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """One sandbox for a job over several projects; yield its base URL and each project's key.

    Every key of ``templates`` (a role, or the name of one of ``[[sources]]``/``[[targets]]``)
    gets a project of its own: a copy of the demo project it names (``source`` or ``target``),
    seeded from its name so projects differ; with ``seeded``, a copy of its snapshot, or a
    new, empty project when it has none.
    """
    from bulkops.emulator import EmulatorConfig, running_emulator

    if seeded:
        world = await anyio.to_thread.run_sync(_seeded_world, templates, seeded)
    else:
        world = await anyio.to_thread.run_sync(_demo_copies, templates)
    async with running_emulator(world, EmulatorConfig()) as base_url:
        log.info("bulkops.sandbox.started", base_url=base_url, projects=sorted(templates))
        yield base_url, {key: world.projects[key].console_key for key in templates}


def _demo_copies(templates: Mapping[str, str]) -> Any:
    from bulkops.emulator import Project, World, build_demo_world

    world = World()
    for key, template in templates.items():
        project = build_demo_world(seed=f"demo-{key}").project(template)
        # The demo project under this name, with a key and an id of its own (as a new one has).
        fresh = Project(key, f"console-sandbox-{key}")
        project.name, project.console_key, project.id = fresh.name, fresh.console_key, fresh.id
        project.api_user_id, project.read_only_keys = fresh.api_user_id, frozenset()
        documents = project.collection("settings")
        stored = documents.get("project")
        if (
            isinstance(stored, dict) and stored.get("name") == template
        ):  # its own name, not the demo's
            documents.put("project", {**stored, "name": key})
        world.add_project(project)
    return world


def _seeded_world(roles: Mapping[str, str], seeded: Mapping[str, Path]) -> Any:
    from bulkops.emulator import Project, SeedNotes, World, project_from_snapshot, seed_directory

    world = World()
    for role in roles:
        if role in seeded:
            option = f"--sandbox-from {role}={human.path(seeded[role])}"
            opened = check_snapshot(option, seeded[role])
            if isinstance(opened, OrgSnapshot):
                one = next(iter(opened.projects.values()))
                raise UserError(
                    f"{option}: {human.path(opened.root)} is an org snapshot (of projects "
                    f"{', '.join(opened.projects)}), not one project's; seed it from one "
                    f"project's folder, e.g. --sandbox-from {role}={human.path(one.root)}."
                )
            notes = SeedNotes()
            try:
                project = project_from_snapshot(seeded[role], name=role, notes=notes)
            except ValueError as exc:
                raise UserError(f"{option}: {exc}.") from None
            for line in _noted(notes):
                log.warning("bulkops.sandbox.seeded_as_is", role=role, message=line)
        else:  # a new project: nothing in it but the unit id types every project starts with
            project = Project(role, f"console-sandbox-empty-{role}")
            seed_directory(project, units=("userID", "stableID"), tags=(), teams=(), apps=())
        world.add_project(project)
    return world


def serve_emulator(
    *,
    host: str,
    port: int,
    seed: str,
    scale: int,
    mutation_rate: Sequence[str] | None,
    snapshots: Sequence[str] = (),
    **faults: Any,
) -> int:
    """``bulkops emulator``: serve a demo world, or the ``--from [NAME=]SNAP`` snapshots, until
    Ctrl-C (latency, faults, quotas as given)."""
    from bulkops.emulator import EmulatorConfig, serve_forever, world_from_snapshots

    windows: dict[str, Any] = {"mutation_windows": tuple(mutation_rate)} if mutation_rate else {}
    try:
        config = EmulatorConfig(**faults, **windows)
    except ValueError as exc:  # the CLI checked each flag; what is left is how they combine
        raise UserError(f"{str(exc).removeprefix('EmulatorConfig: ')}.") from None
    world = None
    if snapshots:
        notes: dict[str, Any] = {}
        try:
            sources = [source for text in snapshots for source in _snapshot_sources(text)]
            world = world_from_snapshots(sources, notes=notes)
        except ValueError as exc:
            raise UserError(f"--from: {exc}.") from None
        for name, noted in notes.items():
            for line in _noted(noted):
                human.say(f"bulkops: warning: project {name}: {line}", err=True)
    try:
        serve_forever(host, port, seed, scale, config, world=world)
    except OSError as exc:
        raise UserError(_cannot_serve(host, port, exc)) from None
    return 0


def _cannot_serve(host: str, port: int, exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return (
            f"cannot serve on {host}: no such address on this machine ({exc.strerror}); use "
            "--host 127.0.0.1, or an address this machine has."
        )
    reason = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
    return (
        f"cannot serve on {host}:{port}: {reason}. Pick another --port (or stop what is using "
        "it), or --port 0 for any free port."
    )


def check_snapshot(option: str, path: Path) -> Any:
    """The snapshot at ``path`` (a ``ProjectSnapshot`` or an ``OrgSnapshot``), its manifest
    checked; a usage error naming ``option`` (``--from prod=snap``) if it is none: missing, a
    file, of another job, unfinished, or damaged. Entity files are checked when seeded."""
    try:
        return open_snapshot(path, "snapshot")
    except UserError as exc:
        raise UserError(f"{option}: {exc}") from None


def _snapshot_sources(text: str) -> list[tuple[str | None, Path]]:
    """``--from [NAME=]SNAP``: a value that is an existing folder is SNAP whole (its name may
    hold ``=``); otherwise what precedes the first ``=`` is the project name. An org snapshot
    (an export of ``[[sources]]``) serves each of its projects under the name the index gives."""
    name: str | None = None
    path = Path(text)
    if "=" in text and not path.is_dir():
        given, _, rest = text.partition("=")
        if not given.strip():
            raise UserError(
                f"--from {text}: the project name before = is empty; write NAME=SNAP (or just "
                "SNAP)."
            )
        name, path = given.strip(), Path(rest)
    opened = check_snapshot(f"--from {text}", path)
    if not isinstance(opened, OrgSnapshot):
        return [(name, path)]
    if name is not None:
        one = next(iter(opened.projects))
        raise UserError(
            f"--from {text}: {human.path(path)} is an org snapshot, whose projects are served "
            f"under their own names ({', '.join(opened.projects)}); give --from "
            f"{human.path(path)} for all of them, or NAME=FOLDER for one, e.g. --from "
            f"{name}={human.path(opened.projects[one].root)}."
        )
    return [(project, snapshot.root) for project, snapshot in opened.projects.items()]


def _noted(notes: Any) -> list[str]:
    """What a lenient seeding tolerated (``SeedNotes``), one sentence each."""
    lines = []
    if notes.edited:
        files = human.listing(notes.edited, limit=5)
        lines.append(
            f"{human.plural(len(notes.edited), 'file')} changed since the export (not matching "
            f"their sha256 in manifest.json), seeded as they are now: {files}"
        )
    if notes.skipped:
        lines.append(
            "left out, as this bulkops does not know them (a newer one wrote the snapshot): "
            + ", ".join(f"{what} ({human.plural(n, 'file')})" for what, n in notes.skipped.items())
        )
    return lines
