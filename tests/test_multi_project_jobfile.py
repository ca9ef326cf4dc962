"""Job files naming several projects (``[[sources]]``, ``[[targets]]``): every misuse is a clear
job-file error (exit 2), and the single-project forms read as before."""

from __future__ import annotations

import pytest

from bulkops.cli import main
from bulkops.errors import JobFileError
from bulkops.jobs import load

EXPORT = 'job = "export_metrics"\n[output]\ndir = "out"\n'
BATCH = (
    'job = "batch_rule_update"\n[select]\nentity = "gates"\n'
    '[[edits]]\nop = "set_pass_percentage"\nvalue = 5\n'
)
CLONE = 'job = "clone_experiments"\n[source]\napi_key_env = "SRC"\n'


def project(table: str, name: str | None, env: str, url: str = "") -> str:
    lines = [f"[[{table}]]"]
    if name is not None:
        lines.append(f'name = "{name}"')
    lines.append(f'api_key_env = "{env}"')
    if url:
        lines.append(f'base_url = "{url}"')
    return "\n".join(lines) + "\n"


MISUSES = [
    (EXPORT + '[source]\napi_key_env = "A"\n' + project("sources", "eu", "EU"),
     'sources: both [source] and [[sources]] are given'),
    ("sources = []\n" + EXPORT, "sources: needs at least one project"),
    (EXPORT, "source: required: add [source] for one project, or [[sources]] for several"),
    (EXPORT + project("sources", "eu", "EU") + project("sources", "EU", "US"),
     'sources: entry 1 is named "EU", like entry 0 ("eu"); names are compared ignoring case'),
    (EXPORT + project("sources", None, "EU"), "sources.0.name: required key is missing"),
    (EXPORT + project("sources", "../eu", "EU"),
     "sources.0.name: expected a name of up to 100 letters, digits"),
    (EXPORT + project("sources", ".hidden", "EU"), "sources.0.name: expected a name"),
    (EXPORT + project("sources", "eu", "EU") + project("sources", "us", "EU"),
     '"eu" and "us" both take their key from $EU at https://statsigapi.net, so they are the '
     "same project"),
    (EXPORT + '[sources]\nname = "eu"\napi_key_env = "EU"\n',
     "sources: expected a list of projects: write [[sources]] (double brackets)"),
    (EXPORT + project("sources", "eu", "EU") + project("targets", "us", "US"),
     "targets: export_metrics jobs have no [[targets]]; they take [source] (one project) or "
     "[[sources]] (several)"),
    (EXPORT + project("sources", "eu", "1BAD"), "sources.0.api_key_env: expected an environment"),
    (EXPORT + project("sources", "eu", "EU", url="ftp://x"), "sources.0.base_url: expected an"),
    (BATCH + project("sources", "eu", "EU"),
     "sources: batch_rule_update jobs have no [[sources]]; they take [target] (one project) "
     "or [[targets]] (several)"),
    (BATCH + '[target]\napi_key_env = "T"\n' + project("targets", "eu", "EU"),
     "targets: both [target] and [[targets]] are given"),
    (CLONE + project("sources", "eu", "EU") + '[target]\napi_key_env = "T"\n',
     "sources: clone_experiments jobs have no [[sources]]; they take [source] and [target] (one "
     "project) or [[targets]] (several)"),
    ("targets = []\n" + CLONE, "targets: needs at least one project"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), MISUSES)
def test_each_misuse_is_a_job_file_error_naming_the_field(tmp_path, capsys, text, message) -> None:
    """Every misuse of the project tables exits 2 with a message naming the field and the fix."""
    path = tmp_path / "job.toml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert "None" not in err


def test_a_target_with_the_sources_variable_is_refused(tmp_path) -> None:
    """A clone target taking its key from the source's variable is refused, naming the target."""
    path = tmp_path / "job.toml"
    path.write_text(
        CLONE.replace("SRC", "EU") + project("targets", "us", "US") + project("targets", "eu", "EU")
    )
    with pytest.raises(JobFileError, match=r"\[source\] and target 'eu' of \[\[targets\]\]"):
        load(str(path))


def test_members_are_single_project_jobs_with_their_own_folders(tmp_path) -> None:
    """Each named project becomes the same job with [source] set to it and its own output folder."""
    path = tmp_path / "job.toml"
    path.write_text(
        EXPORT + project("sources", "eu", "EU") + project("sources", "us", "US", "http://h:1")
    )
    job = load(str(path))
    members = job.members()
    assert list(members) == ["eu", "us"]
    us = members["us"].spec
    assert us.projects()["source"].api_key_env == "US"
    assert us.projects()["source"].base_url == "http://h:1"
    assert us.many() == ()
    assert us.output.dir == "out/us"  # type: ignore[attr-defined]
    assert members["us"].name == job.name
    assert members["us"].digest == job.digest


def test_the_single_forms_have_no_members(tmp_path) -> None:
    """A job with [source] or [target] is one project, as before: no members, its roles kept."""
    path = tmp_path / "job.toml"
    path.write_text(BATCH + '[target]\napi_key_env = "T"\n')
    job = load(str(path))
    assert job.members() == {}
    assert list(job.spec.projects()) == ["target"]


def test_validate_lists_every_named_project(tmp_path, capsys) -> None:
    """`bulkops validate` names each project of the list with its variable and URL."""
    path = tmp_path / "job.toml"
    path.write_text(CLONE + project("targets", "eu", "EU") + project("targets", "us", "US"))
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "[source] key from $SRC" in out
    assert "[[targets]] 'eu' key from $EU" in out
    assert "[[targets]] 'us' key from $US" in out


def test_a_missing_key_names_the_project_of_the_list(tmp_path, capsys, monkeypatch) -> None:
    """An unset key variable of one target is exit 2 naming that entry of [[targets]], not [target]."""
    monkeypatch.setenv("EU", "console-eu")
    monkeypatch.delenv("US", raising=False)
    path = tmp_path / "job.toml"
    path.write_text(BATCH + project("targets", "eu", "EU") + project("targets", "us", "US"))
    assert main(["plan", str(path), "--state", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "US (api_key_env of [[targets]] 'us' in" in err
    assert not (tmp_path / "s" / "projects").exists()
