"""``bulkops quota`` and the fail-closed rule, through the command line."""

from __future__ import annotations

import socket
from pathlib import Path

import anyio
import orjson
import pytest

from bulkops.api.ledger import Waiter, default_ledger_path, open_ledger, project_key
from bulkops.cli import main
from bulkops.emulator import EmulatorThread
from tests.support.batch import KEY, KEY_ENV, build_world, config, job_file, mutations

REPRS = ("None", "[]", "{", "'", "Waiter(", "ProjectQuota")


def fill(project: str) -> None:
    """Three reservations under 20/4s, a learned 5/10s, and one high-priority job waiting."""

    async def work() -> None:
        ledger = open_ledger(f"sqlite://{default_ledger_path()}")
        for _ in range(3):
            await ledger.reserve(project, [(20, 4.0)], Waiter("w1", "nightly"), publish=[(5, 10.0)])
        await ledger.reserve(project, [(1, 60.0)], Waiter("w2", "hotfix", "high"))
        await ledger.aclose()

    anyio.run(work)


def test_an_empty_ledger_says_so_and_exits_0(capsys) -> None:
    """Nothing reserved yet: one clear sentence (and an empty JSON list), exit 0."""
    assert main(["quota"]) == 0
    out = capsys.readouterr().out
    assert "No projects: the ledger file does not exist yet" in out
    assert str(default_ledger_path()) in out

    async def create() -> None:
        ledger = open_ledger(f"sqlite://{default_ledger_path()}")
        await ledger.check()
        await ledger.aclose()

    anyio.run(create)
    assert main(["quota"]) == 0
    out = capsys.readouterr().out
    assert "No projects: no job reserved a mutation on this ledger in the last hour." in out
    assert main(["quota", "--all", "--json"]) == 0
    body = orjson.loads(capsys.readouterr().out)
    assert body == {"ledger": f"sqlite://{default_ledger_path()}", "projects": []}


def test_the_report_shows_windows_reservations_learned_limits_and_waiters(capsys) -> None:
    """Each project: its windows with what is reserved, learned limits, waiting jobs; no reprs."""
    fill("proj-1")
    assert main(["quota"]) == 0
    out = capsys.readouterr().out
    for text in ("Project proj-1:", "20/4s", "3 reserved", "1/1min", "5/10s", "for 1 h more",
                 "hotfix", "high priority", "waiting 0.0 s", "since "):  # fmt: skip
        assert text in out, out
    assert not any(r in out for r in REPRS), out
    assert main(["quota", "--json"]) == 0
    [project] = orjson.loads(capsys.readouterr().out)["projects"]
    assert project["project"] == "proj-1"
    assert [(w["window"], w["reserved"]) for w in project["windows"]] == [
        ("20/4s", 3),
        ("1/1min", 3),
    ]
    assert [(w["limit"], w["seconds"]) for w in project["learned"]] == [(5, 10.0)]
    [waiting] = project["waiting"]
    assert (waiting["job"], waiting["priority"]) == ("hotfix", "high")
    assert waiting["waiting_since"].endswith("Z")


def test_project_key_env_reads_the_project_s_identity(tmp_path, monkeypatch, capsys) -> None:
    """--project-key-env shows the project the key opens, keyed as the applies key it."""
    monkeypatch.setenv(KEY_ENV, KEY)
    world = build_world()
    with EmulatorThread(world, config()) as emulator:
        url = emulator.base_url
        job = job_file(tmp_path / "job")
        assert main(["run", str(job), "--base-url", url, "--state", str(tmp_path / "s")]) == 0
        capsys.readouterr()
        assert main(["quota", "--project-key-env", KEY_ENV, "--base-url", url]) == 0
        out = capsys.readouterr().out
        assert main(["quota", "--project-key-env", KEY_ENV, "--base-url", url, "--json"]) == 0
        [project] = orjson.loads(capsys.readouterr().out)["projects"]
    assert project["project"] == project_key(world.project("target").id, url)
    assert f"(key in ${KEY_ENV})" in out
    assert f"{mutations(world)} reserved" in out
    assert KEY not in out


def test_quota_refuses_sandbox_and_a_bare_base_url(capsys) -> None:
    """--sandbox makes no sense for quota, and --base-url needs --project-key-env: exit 2."""
    assert main(["quota", "--sandbox"]) == 2
    assert "makes no sense" in capsys.readouterr().err
    assert main(["quota", "--base-url", "http://127.0.0.1:1"]) == 2
    assert "--project-key-env" in capsys.readouterr().err


# -- fail closed -----------------------------------------------------------------------------
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("where", ["redis", "sqlite"])
def test_an_unreachable_ledger_stops_an_apply_before_its_first_mutation(
    tmp_path, monkeypatch, capsys, where: str
) -> None:
    """A dead Redis or an unwritable BULKOPS_HOME: exit 4 naming the ledger, nothing sent."""
    monkeypatch.setenv(KEY_ENV, KEY)
    if where == "redis":
        url = f"redis://:hunter2@127.0.0.1:{closed_port()}/0"
        monkeypatch.setenv("BULKOPS_QUOTA_URL", url)
        named = url.replace("hunter2", "***")
    else:
        (tmp_path / "home").write_text("a file, not a folder")
        monkeypatch.setenv("BULKOPS_HOME", str(tmp_path / "home"))
        named = str(tmp_path / "home" / "quota.sqlite")
    world = build_world()
    with EmulatorThread(world, config()) as emulator:
        job = job_file(tmp_path / "job")
        code = main(
            ["run", str(job), "--base-url", emulator.base_url, "--state", str(tmp_path / "s")]
        )
    err = capsys.readouterr().err
    assert code == 4, err
    assert named in err
    assert "hunter2" not in err
    assert "Nothing was sent" in err
    assert mutations(world) == 0


def test_a_plan_reads_only_and_needs_no_ledger(tmp_path, monkeypatch) -> None:
    """`bulkops plan` sends no mutation, so a dead ledger does not stop it."""
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv("BULKOPS_QUOTA_URL", f"redis://127.0.0.1:{closed_port()}/0")
    with EmulatorThread(build_world(), config()) as emulator:
        job = job_file(tmp_path / "job")
        assert (
            main(
                ["plan", str(job), "--base-url", emulator.base_url, "--state", str(tmp_path / "s")]
            )
            == 0
        )


def test_a_bad_ledger_url_in_the_job_file_is_a_job_file_error(tmp_path, capsys) -> None:
    """[limits] ledger = "http://..." is refused by validate (exit 2), naming the field."""
    job = job_file(tmp_path / "job")
    job.write_text(job.read_text() + 'ledger = "http://nowhere"\npriority = "high"\n')
    assert main(["validate", str(job)]) == 2
    err = capsys.readouterr().err
    assert "limits.ledger" in err
    assert "redis://" in err
    Path(job).write_text(job.read_text().replace("http://nowhere", "redis://ops:6379/0"))
    assert main(["validate", str(job)]) == 0


def test_a_sandbox_run_keeps_its_reservations_out_of_the_shared_ledger(
    tmp_path, monkeypatch
) -> None:
    """--sandbox projects live in one process, so their mutations reserve in the run's own ledger."""
    monkeypatch.setenv("BULKOPS_QUOTA_URL", f"redis://127.0.0.1:{closed_port()}/0")
    job = job_file(tmp_path / "job")
    state = tmp_path / "s"
    assert main(["run", str(job), "--sandbox", "--state", str(state)]) == 0
    assert (state / "sandbox-quota.sqlite").is_file()
    assert not default_ledger_path().exists()


def test_a_reader_closing_the_pipe_ends_quota_quietly(tmp_path) -> None:
    """`bulkops quota | head -1`: exit 141 (SIGPIPE's), no error message, no traceback."""
    import os
    import subprocess
    import sys

    fill("p1")
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    done = subprocess.run(
        [sys.executable, "-m", "bulkops.cli", "quota"], stdout=write, stderr=subprocess.PIPE,
        timeout=60, check=False,
    )  # fmt: skip
    os.close(write)
    assert done.returncode == 141, done.stderr
    assert done.stderr == b""
