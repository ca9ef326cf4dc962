"""Misuses of the command line a careless user tries: each is one clear message and the right exit.

Every case runs the real CLI entry point (``bulkops.cli.main``) and asserts the exit code, words of
the message, and that no traceback and no Python repr reach the user.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bulkops.cli import main

EXPORT = 'job = "export_metrics"\n[source]\napi_key_env = "MISUSE_KEY"\n[output]\ndir = "{out}"\n'
BATCH = (
    'job = "batch_rule_update"\n[target]\napi_key_env = "MISUSE_KEY"\n[select]\n'
    'entity = "gates"\n[[edits]]\nop = "set_pass_percentage"\nvalue = 5\n'
)


@dataclass(frozen=True)
class Misuse:
    id: str
    args: tuple[str, ...]
    code: int
    says: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    job: str = EXPORT


CASES = [
    Misuse("sandbox-and-base-url", ("run", "{job}", "--sandbox", "--base-url", "http://x"), 2,
           ("--sandbox and --base-url cannot be used together",)),
    Misuse("empty-base-url", ("run", "{job}", "--base-url", ""), 2, ("is empty",)),
    Misuse("blank-base-url", ("run", "{job}", "--base-url", "  "), 2, ("is empty",)),
    Misuse("base-url-without-scheme", ("run", "{job}", "--base-url", "statsigapi.net"), 2,
           ("must start with http:// or https://",)),
    Misuse("base-url-ftp", ("run", "{job}", "--base-url", "ftp://statsigapi.net"), 2,
           ("must start with http:// or https://",)),
    Misuse("base-url-port-too-big", ("run", "{job}", "--base-url", "http://h:99999"), 2,
           ("is not a number from 1 to 65535",)),
    Misuse("base-url-port-not-a-number", ("run", "{job}", "--base-url", "http://h:abc"), 2,
           ("is not a number from 1 to 65535",)),
    Misuse("base-url-port-zero", ("run", "{job}", "--base-url", "http://h:0"), 2,
           ("is not a number from 1 to 65535",)),
    Misuse("base-url-no-host", ("run", "{job}", "--base-url", "http://"), 2, ("has no host",)),
    Misuse("base-url-with-query", ("run", "{job}", "--base-url", "https://h/?x=1"), 2,
           ("query",)),
    Misuse("base-url-with-credentials", ("run", "{job}", "--base-url", "https://u:pw@h"), 2,
           ("carries credentials",)),
    Misuse("concurrency-zero", ("run", "{job}", "--concurrency", "0"), 2, ("at least 1",)),
    Misuse("concurrency-negative", ("run", "{job}", "--concurrency", "-3"), 2, ("at least 1",)),
    Misuse("concurrency-too-big", ("run", "{job}", "--concurrency", "300"), 2,
           ("more than 256",)),
    Misuse("concurrency-not-a-number", ("run", "{job}", "--concurrency", "8x"), 2,
           ("not a whole number",)),
    Misuse("plan-on-a-reading-job", ("plan", "{job}", "--sandbox"), 2, ("have no plan",)),
    Misuse("again-on-a-reading-job", ("run", "{job}", "--again", "--sandbox"), 2,
           ("--again is for jobs that write",)),
    Misuse("key-unset", ("run", "{job}"), 2, ("MISUSE_KEY", "is not set", "--sandbox")),
    Misuse("key-blank", ("run", "{job}"), 2, ("MISUSE_KEY", "set but empty"),
           env={"MISUSE_KEY": "   "}),
    Misuse("key-with-a-newline-inside", ("run", "{job}"), 2, ("MISUSE_KEY", "control character"),
           env={"MISUSE_KEY": "console-abc\ndef"}),
    Misuse("key-with-a-tab-inside", ("run", "{job}"), 2, ("MISUSE_KEY", "control character"),
           env={"MISUSE_KEY": "console-abc\tdef"}),
    Misuse("key-with-an-escape", ("run", "{job}"), 2, ("MISUSE_KEY", "control character"),
           env={"MISUSE_KEY": "console-\x1b[2Jabc"}),
    Misuse("output-dir-under-a-file", ("run", "{job}", "--sandbox"), 2,
           ("output.dir", "cannot write to the output directory"),
           job=EXPORT.replace("{out}", "a-file/out")),
    Misuse("output-dir-is-a-file", ("run", "{job}", "--sandbox"), 2,
           ("output.dir", "not a directory"), job=EXPORT.replace("{out}", "a-file")),
    Misuse("state-is-a-file", ("run", "{job}", "--sandbox", "--state", "{tmp}/a-file"), 2,
           ("cannot use", "--state")),
    Misuse("apply-without-a-plan", ("apply", "--state", "{tmp}/nothing-here"), 2,
           ("holds no bulkops run",)),
    Misuse("undo-without-a-plan", ("undo", "--state", "{tmp}/nothing-here"), 2,
           ("holds no bulkops run",)),
    Misuse("status-of-nothing", ("status", "--state", "{tmp}/nothing-here"), 2,
           ("holds no bulkops run",)),
    Misuse("apply-in-an-empty-folder", ("apply",), 2, ("no run found",)),
    Misuse("job-file-nested-too-deep", ("validate", "{job}"), 2, ("nested too deeply",),
           job="x = " + "[" * 2000 + "]" * 2000 + "\n"),
    Misuse("job-file-missing", ("run", "{tmp}/missing.toml"), 2, ("does not exist",)),
    Misuse("job-file-is-a-directory", ("validate", "{tmp}"), 2, ("is a directory",)),
    Misuse("same-key-variable-for-source-and-target", ("validate", "{job}"), 2,
           ("same project", "target.api_key_env"),
           job='job = "clone_experiments"\n[source]\napi_key_env = "K"\n[target]\n'
               'api_key_env = "K"\n'),
    Misuse("batch-again-with-bad-url", ("run", "{job}", "--again", "--base-url", "http://h:x"), 2,
           ("is not a number from 1 to 65535",), job=BATCH),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_misuse_gets_one_clear_message(case: Misuse, tmp_path, monkeypatch, capsys) -> None:
    """The misuse exits with its code, says what is wrong, and shows no traceback or repr."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MISUSE_KEY", raising=False)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "a-file").write_text("not a directory\n")
    job = tmp_path / "job.toml"
    job.write_text(case.job.replace("{out}", "out"))
    args = [a.replace("{job}", str(job)).replace("{tmp}", str(tmp_path)) for a in case.args]
    try:
        code = main(args)
    except SystemExit as exc:  # argparse rejects bad flag values itself, with exit 2
        code = exc.code
    out, err = capsys.readouterr()
    assert code == case.code, err
    for words in case.says:
        assert words in err, (words, err)
    for noise in ("Traceback", "{'", "['", "None", "Error:"):
        assert noise not in out + err, (noise, err)


@pytest.mark.slow
def test_a_full_disk_mid_run_exits_4_with_one_message_and_the_rerun_completes(tmp_path) -> None:
    """Every write past a size limit fails (EFBIG, as a full disk does): one message, exit 4,
    nothing published; with space again the same command resumes and publishes."""
    job = tmp_path / "job.toml"
    job.write_text(EXPORT.replace("{out}", "out"))
    args = [sys.executable, "-m", "bulkops.cli", "run", str(job), "--sandbox", "--state",
            str(tmp_path / "state")]  # fmt: skip

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    full = subprocess.run(args, capture_output=True, preexec_fn=small_disk, cwd=tmp_path,
                          timeout=120, env=os.environ)  # fmt: skip
    err = full.stderr.decode()
    assert full.returncode == 4, err
    assert "cannot write" in err
    assert "File too large" in err
    assert "Traceback" not in err
    assert "ExceptionGroup" not in err
    assert "{'" not in err
    assert err.count("cannot write") <= 2  # one message (and its line in the summary)
    assert not (tmp_path / "out" / "manifest.json").exists()
    again = subprocess.run(args, capture_output=True, cwd=tmp_path, timeout=120, env=os.environ)
    assert again.returncode == 0, again.stderr.decode()
    assert (tmp_path / "out" / "manifest.json").exists()


def test_the_readme_exit_codes_are_the_ones_the_cli_uses() -> None:
    """The README's exit-code table names 0, 2, 3, 4 and 130, the codes the CLI returns."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for code in ("**0**", "**2**", "**3**", "**4**", "**130**"):
        assert code in readme
