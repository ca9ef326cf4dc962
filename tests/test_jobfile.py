"""Job files: every kind of bad input ends in one clear message naming what is wrong, exit 2."""

from __future__ import annotations

import pytest

from bulkops.cli import main


def write(tmp_path, text: str, name: str = "job.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = """
job = "export_metrics"
name = "nightly-metrics"
[source]
api_key_env = "STATSIG_CONSOLE_API_KEY"
[output]
dir = "exports/nightly"
[limits]
concurrency = 8
mutation_rate = ["100/10s", "900/15min"]
"""


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_accepts_a_good_job_file(tmp_path, capsys) -> None:
    """validate accepts a good job file and says its kind, name and the variable its key comes from."""
    code, out, err = run_cli(capsys, "validate", str(write(tmp_path, GOOD)))
    assert code == 0, err
    assert "valid export_metrics job 'nightly-metrics'" in out
    assert "STATSIG_CONSOLE_API_KEY" in out


def test_toml_syntax_error_names_file_line_and_column(tmp_path, capsys) -> None:
    """A TOML syntax error exits 2 naming the file, line and column."""
    path = write(tmp_path, 'job = "export_metrics"\n[source\napi_key_env = "X"\n')
    code, _, err = run_cli(capsys, "validate", str(path))
    assert code == 2
    assert str(path) in err
    assert "line 2, column" in err
    assert "TOML syntax error" in err
    assert "Traceback" not in err


def test_schema_errors_name_every_bad_field_with_its_path(tmp_path, capsys) -> None:
    """Every invalid field is reported at once, each by its dotted path."""
    path = write(
        tmp_path,
        """
job = "export_metrics"
[source]
api_key_env = "has space"
colour = "blue"
[limits]
concurrency = 0
mutation_rate = ["100/10 parsecs"]
""",
    )
    code, _, err = run_cli(capsys, "validate", str(path))
    assert code == 2
    assert "source.api_key_env" in err
    assert "source.colour: unknown key" in err
    assert "limits.concurrency" in err
    assert "limits.mutation_rate" in err
    assert "100/10s" in err
    assert "output: required key is missing" in err


def test_unknown_job_kind_lists_the_known_ones(tmp_path, capsys) -> None:
    """An unknown job kind exits 2 and lists the kinds there are."""
    code, _, err = run_cli(capsys, "validate", str(write(tmp_path, 'job = "export_everything"\n')))
    assert code == 2
    assert "unknown job kind 'export_everything'" in err
    assert "export_metrics" in err


def test_missing_job_key_and_missing_file(tmp_path, capsys) -> None:
    """A file without `job`, and a file that does not exist, each exit 2 saying so."""
    code, _, err = run_cli(capsys, "validate", str(write(tmp_path, 'name = "x"\n')))
    assert code == 2
    assert "`job`" in err
    code, _, err = run_cli(capsys, "validate", str(tmp_path / "nope.toml"))
    assert code == 2
    assert "does not exist" in err


def test_run_names_the_missing_key_variable(tmp_path, capsys, monkeypatch) -> None:
    """run with the key variable unset exits 2 naming it and --sandbox, and starts nothing."""
    monkeypatch.delenv("STATSIG_CONSOLE_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "run", str(write(tmp_path, GOOD)))
    assert code == 2
    assert "STATSIG_CONSOLE_API_KEY" in err
    assert "--sandbox" in err
    assert not (tmp_path / ".bulkops").exists()  # nothing started


def test_bad_usage_exits_2(capsys) -> None:
    """Missing or out-of-range arguments exit 2."""
    with pytest.raises(SystemExit) as exit_info:
        main(["run"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "x.toml", "--concurrency", "0"])
    assert exit_info.value.code == 2


def test_emulator_bad_options_are_user_errors(capsys) -> None:
    """A bad emulator --mutation-rate is refused by the argument parser (exit 2) with the right
    form and no traceback."""
    with pytest.raises(SystemExit) as refused:
        run_cli(capsys, "emulator", "--mutation-rate", "100/10parsecs")
    err = capsys.readouterr().err
    assert refused.value.code == 2
    assert "100/10s" in err
    assert "Traceback" not in err


def test_an_unusable_state_directory_is_a_user_error(tmp_path, capsys, monkeypatch) -> None:
    """A --state that is a file exits 2 naming --state, without a traceback."""
    monkeypatch.setenv("STATSIG_CONSOLE_API_KEY", "console-x")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, _, err = run_cli(capsys, "run", str(write(tmp_path, GOOD)), "--state", str(blocker))
    assert code == 2
    assert "--state" in err
    assert "Traceback" not in err


def test_rate_windows_get_messages_that_show_the_right_form(tmp_path, capsys) -> None:
    """Each malformed limits.mutation_rate exits 2 with a message showing the right form."""
    base = 'job = "export_metrics"\n[source]\napi_key_env = "K"\n[output]\ndir = "o"\n[limits]\n'
    for bad, hint in (
        ('mutation_rate = ["5/.s"]', "COUNT/DURATION"),
        ("mutation_rate = []", "at least one window"),
        ('mutation_rate = "100/10s"', "list of rate windows"),
    ):
        code, _, err = run_cli(capsys, "validate", str(write(tmp_path, base + bad)))
        assert code == 2, (bad, err)
        assert "limits.mutation_rate" in err, (bad, err)
        assert hint in err, (bad, err)


def test_a_job_key_that_is_not_a_string_is_named_as_such(tmp_path, capsys) -> None:
    """A `job` that is not a string exits 2 saying it must be one."""
    code, _, err = run_cli(capsys, "validate", str(write(tmp_path, "job = 3\n")))
    assert code == 2
    assert "`job` must be a string" in err
