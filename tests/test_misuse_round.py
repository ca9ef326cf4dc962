"""A careless new user's round, from the README: each misuse that misbehaved, pinned once fixed.

Every case runs what a user runs (``bulkops.cli.main``, or the part of it at fault) and checks the
exit code and the words a person needs, with no traceback and no Python repr.
"""

from __future__ import annotations

import os
import resource
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bulkops.cli import main
from bulkops.emulator import EmulatorThread
from bulkops.output.summary import summary_lines
from tests.support.batch import KEY, KEY_ENV, build_world, config, mutations


def test_task_states_that_read_alike_are_counted_once() -> None:
    """Running and waiting tasks of a stopped run are both "cut short": one count, not two."""
    tasks = {"done": 15, "pending": 20, "running": 16, "waiting for children": 5}
    run = {"job": "x", "status": "aborted", "exit_code": 4, "summary": {"tasks": tasks}}
    line = next(line for line in summary_lines(run) if line.startswith("  tasks:"))
    assert line == "  tasks: 15 done, 20 not started, 21 cut short"


BATCH = (
    'job = "batch_rule_update"\nname = "edit"\n{projects}[select]\nentity = "gates"\n'
    'id_pattern = "checkout_*"\nrule_name = "Internal"\n[[edits]]\nop = "set_pass_percentage"\n'
    "value = 50\n"
)
ONE_TARGET = '[target]\napi_key_env = "MISUSE_KEY"\n'
TWO_TARGETS = (
    '[[targets]]\nname = "eu"\napi_key_env = "MISUSE_EU"\n'
    '[[targets]]\nname = "us"\napi_key_env = "MISUSE_US"\n'
)


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``bulkops ARGS`` in process: its exit code and all it printed, checked for noise."""
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own refusals
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    text = out + err
    for noise in ("Traceback", "{'", "['", "None", "PosixPath", "object at 0x"):
        assert noise not in text, (noise, text)
    return code, text


@pytest.mark.parametrize("projects", [ONE_TARGET, TWO_TARGETS], ids=["one", "several"])
def test_the_apply_a_sandbox_plan_suggests_works_when_pasted(
    projects: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plan's "apply it with: ..." line (and status's) carries --sandbox, so pasting it
    applies the plan."""
    job = tmp_path / "edit.toml"
    job.write_text(BATCH.format(projects=projects))
    code, text = run_cli(["plan", str(job), "--sandbox"], capsys)
    assert code == 0, text
    suggested = text.split("with: bulkops ", 1)[1].splitlines()[0]
    assert suggested.endswith(" --sandbox"), suggested
    code, status = run_cli(["status", str(job)], capsys)
    assert code == 0, status
    if projects == ONE_TARGET:  # (a fleet's status lists its members' runs instead)
        assert f"apply the plan with: bulkops {suggested} (or the --sandbox-from" in status
    code, text = run_cli(shlex.split(suggested), capsys)
    assert code == 0, text


@pytest.mark.parametrize(
    ("command", "says"),
    [
        ("apply", "has no plan to apply yet; make one with `bulkops plan"),
        ("undo", "has applied nothing yet, so there is nothing to undo"),
        ("status", "has not run yet; start it with `bulkops run"),
    ],
)
def test_a_job_file_with_no_run_yet_says_which_command_comes_first(
    command: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given a job file that never ran, apply, undo and status name the command to run first,
    not "check --state" (no --state was given)."""
    job = tmp_path / "edit.toml"
    job.write_text(BATCH.format(projects=ONE_TARGET))
    code, text = run_cli([command, str(job)], capsys)
    assert code == 2
    assert says in text, text
    assert "--state" not in text, text


def test_apply_refuses_the_plan_of_another_job_file_that_shares_the_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A copy of a job file keeps its name and so its state directory: applying the original
    must not apply the plan made from the copy."""
    original, copy = tmp_path / "edit.toml", tmp_path / "edit-copy.toml"
    original.write_text(BATCH.format(projects=ONE_TARGET))
    copy.write_text(BATCH.format(projects=ONE_TARGET).replace("value = 50", "value = 0"))
    assert run_cli(["plan", str(copy), "--sandbox"], capsys)[0] == 0
    code, text = run_cli(["apply", str(original), "--sandbox"], capsys)
    assert code == 2
    assert "is of another job file" in text
    assert str(copy) in text
    assert "both name their job 'edit'" in text
    code, text = run_cli(["apply", str(copy), "--sandbox"], capsys)
    assert code == 0, text  # the copy's own plan still applies


@pytest.mark.parametrize("projects", [ONE_TARGET, TWO_TARGETS], ids=["one", "several"])
def test_plan_and_run_refuse_to_replace_another_job_files_plan_not_yet_applied(
    projects: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plan under review, made from one job file, is not replaced quietly by planning a copy
    that shares its name (and so its state directory); the same file planned again, edited,
    replaces it, as revising a review does; --fresh discards it on purpose. For several
    projects, the fleet's own record is kept too, so the original's apply still finds it."""
    original, copy = tmp_path / "edit.toml", tmp_path / "edit-copy.toml"
    original.write_text(BATCH.format(projects=projects))
    copy.write_text(BATCH.format(projects=projects).replace("value = 50", "value = 0"))
    assert run_cli(["plan", str(original), "--sandbox"], capsys)[0] == 0
    kept = sorted((tmp_path / ".bulkops" / "edit").rglob("*.json"))
    before = {path: path.read_bytes() for path in kept}
    for command in ("plan", "run"):
        code, text = run_cli([command, str(copy), "--sandbox"], capsys)
        assert code == 2, text
        assert f"holds a plan made from {original}" in text
        assert f"bulkops apply {original} --sandbox" in text
        assert {path: path.read_bytes() for path in kept} == before
    original.write_text(BATCH.format(projects=projects).replace("value = 50", "value = 40"))
    assert run_cli(["plan", str(original), "--sandbox"], capsys)[0] == 0
    assert run_cli(["plan", str(copy), "--sandbox", "--fresh"], capsys)[0] == 0
    code, text = run_cli(["apply", str(copy), "--sandbox"], capsys)
    assert code == 0, text


def test_a_plan_edited_after_it_was_made_is_not_applied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """apply refuses a plan.json changed since `bulkops plan` wrote and printed it; the plan as
    written still applies."""
    job = tmp_path / "edit.toml"
    job.write_text(BATCH.format(projects=ONE_TARGET))
    assert run_cli(["plan", str(job), "--sandbox"], capsys)[0] == 0
    plan = tmp_path / ".bulkops" / "edit" / "plan.json"
    written = plan.read_bytes()
    edited = written.replace(b'"passPercentage": 50', b'"passPercentage": 7', 1)
    assert edited != written
    plan.write_bytes(edited)
    code, text = run_cli(["apply", str(job), "--sandbox"], capsys)
    assert code == 2
    assert f"{plan} changed since `bulkops plan` wrote it" in text
    assert "Plan again" in text
    plan.write_bytes(written)
    code, text = run_cli(["apply", str(job), "--sandbox"], capsys)
    assert code == 0, text


EXPORT = (
    'job = "export_metrics"\n[source]\napi_key_env = "MISUSE_KEY"\nbase_url = "{url}"\n'
    '[output]\ndir = "out"\n'
)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://statsigapi.net", "http:// would send the Console API key unencrypted"),
        ("http://8.8.8.8:8080", "use https://"),
        ("https://statsigapi.net/console/v1", "give the server alone, e.g. https://statsigapi.net"),
        ("https://statsigapi.net/console/v1/", "ends in the API's path /console/v1"),
    ],
)
def test_a_base_url_that_leaks_the_key_or_doubles_the_path_is_a_job_file_error(
    url: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """base_url refuses plain http:// to Statsig or a public address and the API's own /console/v1 path, in
    the job file and in --base-url, before anything is sent (exit 2)."""
    job = tmp_path / "export.toml"
    job.write_text(EXPORT.format(url=url))
    code, text = run_cli(["validate", str(job)], capsys)
    assert code == 2
    assert "source.base_url" in text
    assert says in text
    job.write_text(EXPORT.format(url="https://statsigapi.net"))
    code, text = run_cli(["run", str(job), "--base-url", url], capsys)
    assert code == 2
    assert says in text


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8787", "http://localhost:8787", "http://[::1]:8787",
     "http://emulator:8787", "http://192.168.1.20:8787", "https://proxy.example.com/statsig",
     "http://emulator.internal:8787", "http://host.docker.internal:8787"],
)  # fmt: skip
def test_an_emulator_on_this_machine_or_a_private_network_is_still_a_base_url(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Plain http:// stays allowed where an emulator may be served (loopback, a private address,
    any name but Statsig's own), and so does a path prefix other than the API's."""
    job = tmp_path / "export.toml"
    job.write_text(EXPORT.format(url=url))
    code, text = run_cli(["validate", str(job)], capsys)
    assert code == 0, text


def test_a_disk_too_full_for_the_lock_file_names_the_lock_file(tmp_path: Path) -> None:
    """When not even the state directory's lock can be written, the one message names that file
    (an os.pwrite error names none) and the exit is 4."""
    job = tmp_path / "export.toml"
    job.write_text(EXPORT.format(url="https://statsigapi.net"))
    state = tmp_path / "state"

    def tiny_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # only empty files

    done = subprocess.run(
        [sys.executable, "-m", "bulkops.cli", "run", str(job), "--sandbox", "--state", str(state)],
        capture_output=True, preexec_fn=tiny_disk, cwd=tmp_path, timeout=120, env=os.environ,
    )  # fmt: skip
    err = done.stderr.decode()
    assert done.returncode == 4, err
    assert f"cannot write {state / 'lock'}: File too large" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["run", "--sandbx", "job.toml"], "bulkops run: error: unrecognized arguments: --sandbx; "
         "did you mean --sandbox?"),
        (["plan", "job.toml", "--concurency", "8"], "did you mean --concurrency?"),
        (["quota", "--jsno"], "bulkops quota: error: unrecognized arguments: --jsno; did you "
         "mean --json?"),
        (["diff", "a", "b", "--xyz"], "`bulkops diff -h` lists the options"),
    ],
)  # fmt: skip
def test_an_unknown_option_is_refused_by_its_command_with_the_one_it_meant(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelt option gets the command's own usage and the likeliest option, exit 2."""
    code, text = run_cli(args, capsys)
    assert code == 2
    assert says in text
    assert f"usage: bulkops {args[0]}" in text


@pytest.mark.parametrize(
    ("key", "path", "says"),
    [
        ("console-SECRETxyz123", "", "rejected the key in $MISUSE_KEY"),
        (KEY, "/not-the-api", "Check --base-url (now {url}/not-the-api)"),
    ],
)
def test_quota_of_a_project_it_cannot_read_speaks_of_its_own_options(
    key: str,
    path: str,
    says: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`quota --project-key-env VAR --base-url URL` names $VAR and --base-url when the key is
    refused or the URL is no Console API, never "[VAR] in the job file" (quota reads none)."""
    monkeypatch.setenv("MISUSE_KEY", key)
    with EmulatorThread(build_world(), config()) as emulator:
        url = emulator.base_url
        args = ["quota", "--project-key-env", "MISUSE_KEY", "--base-url", url + path]
        code, text = run_cli(args, capsys)
    assert code == 4
    assert says.format(url=url) in text
    assert "job file" not in text
    assert "api_key_env" not in text
    assert "SECRETxyz123" not in text


def test_bulkops_home_that_is_a_file_is_named_by_quota_and_by_a_job_that_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """BULKOPS_HOME naming a file is said as such (not "File exists", not "no job has written
    yet"): exit 4 before any mutation, and `quota` says the same instead of an empty ledger."""
    home = tmp_path / "home-file"
    home.write_text("not a folder\n")
    monkeypatch.setenv("BULKOPS_HOME", str(home))
    monkeypatch.setenv(KEY_ENV, KEY)
    says = f"{home} is a file, not a folder (BULKOPS_HOME is {home})"
    code, text = run_cli(["quota"], capsys)
    assert code == 4
    assert says in text
    world = build_world()
    job = tmp_path / "edit.toml"
    job.write_text(BATCH.format(projects=f'[target]\napi_key_env = "{KEY_ENV}"\n'))
    with EmulatorThread(world, config()) as emulator:
        code, text = run_cli(["run", str(job), "--base-url", emulator.base_url], capsys)
    assert code == 4
    assert says in text
    assert "Nothing was sent" in text
    assert mutations(world) == 0


@pytest.mark.parametrize(("given", "read"), [("100/10 s", "100/10s"), ("100/10m", "100/10min")])
def test_emulator_windows_are_read_as_job_files_read_them(given: str, read: str) -> None:
    """A window job files accept (a space, the unit m) is accepted by `emulator --mutation-rate`
    too, instead of parsed there and then refused by the emulator."""
    from bulkops.cli import build_parser
    from bulkops.emulator import EmulatorConfig

    args = build_parser().parse_args(["emulator", "--mutation-rate", given])
    assert args.mutation_rate == [read]
    EmulatorConfig(mutation_windows=tuple(args.mutation_rate))  # refuses what it cannot read
