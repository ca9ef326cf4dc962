"""Job files are strict: no coercion in any kind or field, and every refusal is written for people."""

from __future__ import annotations

import pytest

from bulkops.cli import main
from tests.support.commands import cli

#: What must never reach a person: our internals, the validator's own words, Python reprs.
NOISE = ("Traceback", "pydantic", "type=", "Input should", "Value error", "errors.pydantic.dev",
         "[A-Za-z", "^", "None", "{'")  # fmt: skip

EXPORT = """job = "export_metrics"
[source]
api_key_env = "KEY"
{source}
[output]
dir = "out"
{output}
[limits]
{limits}
"""
CLONE = """job = "clone_experiments"
[source]
api_key_env = "KEY"
[target]
api_key_env = "TARGET_KEY"
{target}
[select]
{select}
[options]
{options}
"""
BATCH = """job = "batch_rule_update"
[target]
api_key_env = "KEY"
[select]
entity = "gates"
{select}
{edits}
[options]
{options}
"""


def export(source: str = "", output: str = "", limits: str = "") -> str:
    return EXPORT.format(source=source, output=output, limits=limits)


def clone(target: str = "", select: str = "", options: str = "") -> str:
    return CLONE.format(target=target, select=select, options=options)


def batch(edits: str = '[[edits]]\nop = "set_pass_percentage"\nvalue = 5', select: str = "",
          options: str = "") -> str:  # fmt: skip
    return BATCH.format(select=select, edits=edits, options=options)


def edit(body: str) -> str:
    return batch(edits=f"[[edits]]\n{body}")


CASES = [
    # export_metrics: limits and projects (the tables every kind shares)
    (export(limits='concurrency = "8"'),
     'limits.concurrency: expected an integer from 1 to 256, got "8" (a string)'),
    (export(limits="concurrency = true"),
     "limits.concurrency: expected an integer from 1 to 256, got true (a boolean)"),
    (export(limits="concurrency = 8.0"),
     "limits.concurrency: expected an integer from 1 to 256, got 8.0 (a number with a decimal point)"),
    (export(limits="concurrency = 0"),
     "limits.concurrency: expected an integer from 1 to 256, got 0 (an integer)"),
    (export(limits="concurrency = 1000"), "limits.concurrency: expected an integer from 1 to 256"),
    (export(limits='mutation_rate = ["0/10s"]'),
     'limits.mutation_rate.0: the count of "0/10s" is 0; a window (COUNT/DURATION) needs a count '
     "of at least 1"),
    (export(limits='mutation_rate = ["100/0.5s"]'),
     'limits.mutation_rate.0: the duration of "100/0.5s" is 0.5s; a window (COUNT/DURATION) needs '
     "a duration from 1s to 24h"),
    (export(limits='mutation_rate = ["100/25h"]'), 'the duration of "100/25h" is 25h'),
    (export(limits='mutation_rate = ["100/10 parsecs"]'),
     'limits.mutation_rate.0: expected a rate window written as COUNT/DURATION'),
    (export(limits="mutation_rate = [100]"),
     'limits.mutation_rate.0: expected a rate window such as "100/10s", got 100 (an integer)'),
    (export(limits='read_rate = "5/s"'),
     'limits.read_rate: expected a list of rate windows, e.g. ["5/s"], got "5/s" (a string)'),
    (export(limits="mutation_rate = []"), "limits.mutation_rate: needs at least one window"),
    (export(limits="burst = 3"), "limits.burst: unknown key; remove it or check its spelling"),
    (export(source='base_url = "http://host:99999"'),
     'source.base_url: expected an http:// or https:// URL, got "http://host:99999" (a string): '
     "its port 99999 is not a number from 1 to 65535"),
    (export(source='base_url = "http://host:abc"'),
     "source.base_url: expected an http:// or https:// URL, got \"http://host:abc\" (a string): "
     "its port abc is not a number from 1 to 65535"),
    (export(source='base_url = "ftp://host"'), "it must start with http:// or https://"),
    (export(source='base_url = "http://host?x=1"'), "must not carry a query"),
    (export(source='base_url = "https://user:pw@host"'), "carries credentials"),
    (export(source='base_url = "http://"'), "it has no host after the //"),
    (export(source="base_url = 8787"),
     "source.base_url: expected an http:// or https:// URL, got 8787 (an integer)"),
    (export().replace('"KEY"', '"MY-KEY"'),
     "source.api_key_env: expected an environment variable name (letters, digits and _, not "
     'starting with a digit), got "MY-KEY" (a string)'),
    (export().replace('"KEY"', "42"), "source.api_key_env: expected an environment variable name"),
    (export().replace('dir = "out"', "dir = 7"),
     "output.dir: expected a directory path (not blank, no control characters), got 7 (an integer)"),
    (export().replace('dir = "out"', 'dir = ""'),
     'output.dir: expected a directory path (not blank, no control characters), got ""'),
    (export().replace('dir = "out"', 'dir = "a\\u0000b"'),
     "output.dir: expected a directory path (not blank, no control characters)"),
    ('name = "my job"\n' + export(),
     "name: expected a name of up to 100 letters, digits, '.', '_' and '-', starting with a letter "
     "or digit, got \"my job\" (a string)"),
    ("name = 1979-05-27\n" + export(),
     "name: expected a name of up to 100 letters, digits, '.', '_' and '-', "
     "starting with a letter or digit, got 1979-05-27 (a date)"),
    ('name = ".."\n' + export(), "name: expected a name of up to 100 letters"),
    (f'name = "{"x" * 101}"\n' + export(), "name: expected a name of up to 100 letters"),
    ('limits = 5\n' + export().replace("[limits]", ""),
     "limits: expected a table, got 5 (an integer)"),
    # clone_experiments
    (clone(options='respect_review = "yes"'),
     'options.respect_review: expected true or false, got "yes" (a string)'),
    (clone(options="respect_review = 1"),
     "options.respect_review: expected true or false, got 1 (an integer)"),
    (clone(options='on_conflict = "overwrite"'),
     'options.on_conflict: expected one of "skip", "update", "fail", got "overwrite"'),
    (clone(select='status = ["running"]'),
     'select.status.0: expected one of "active", "setup", "decision_made"'),
    (clone(select='status = "active"'),
     'select.status: expected a list, got "active" (a string)'),
    (clone(select="ids = [1, 2]"), "select.ids.0: expected a string, got 1 (an integer)"),
    (clone(select='tags = [true]'), "select.tags.0: expected a string, got true (a boolean)"),
    (clone(target='base_url = "http://[::1:80"'),
     "target.base_url: expected an http:// or https:// URL"),
    # batch_rule_update
    (batch().replace('entity = "gates"', 'entity = "gate"'),
     'select.entity: expected one of "gates", "dynamic_configs", got "gate"'),
    (batch(select='ids = "checkout_1"'),
     'select.ids: expected a list, got "checkout_1" (a string)'),
    (batch(select='rule_name = ""'), 'select.rule_name: expected a non-empty string, got ""'),
    (batch(options='respect_review = "true"'),
     'options.respect_review: expected true or false, got "true" (a string)'),
    ("edits = []\n" + batch(edits=""), "edits: expected at least 1 item(s), got none"),
    ("edits = [1]\n" + batch(edits=""), "edits.0: expected a table, got 1 (an integer)"),
    (edit('op = "set_pass_percentage"\nvalue = true'),
     "edits.0.value: expected a number from 0 to 100, got true (a boolean)"),
    (edit('op = "set_pass_percentage"\nvalue = "50"'),
     'edits.0.value: expected a number from 0 to 100, got "50" (a string)'),
    (edit('op = "set_pass_percentage"\nvalue = 12.345'),
     "edits.0.value: expected a number from 0 to 100 with at most two decimals, got 12.345"),
    (edit('op = "set_pass_percentage"\nvalue = nan'),
     "edits.0.value: expected a number from 0 to 100, got nan (a number)"),
    (edit('op = "set_pas_percentage"\nvalue = 5'),
     'edits.0.op: expected one of "add_condition", "set_pass_percentage", "remove_condition", '
     '"replace_target_value", "add_rule", "delete_rule", "python", got "set_pas_percentage"'),
    (edit("value = 5"), "edits.0.op: required key is missing"),
    (edit('op = "add_condition"\ncondition = "email"'),
     'edits.0.condition: expected a table, got "email" (a string)'),
    (edit('op = "add_condition"\ncondition = { type = "email", operator = "any", '
          "targetValue = true }"),
     "edits.0.condition.targetValue: expected a string, a number, or a list of strings or of "
     "numbers, got true (a boolean)"),
    (edit('op = "add_condition"\ncondition = { type = "email", operator = "any", '
          'targetValue = ["a", 1] }'),
     'edits.0.condition.targetValue: expected a string, a number, or a list of strings or of '
     'numbers, got ["a",1] (a list)'),
    (edit('op = "add_condition"\ncondition = { type = "email", operator = 1, targetValue = "a" }'),
     "edits.0.condition.operator: expected a string, got 1 (an integer)"),
    (edit('op = "add_condition"\ncondition = { type = "e-mail", targetValue = "a" }'),
     'edits.0.condition.type: expected one of "app_version", "browser_name"'),
    (edit('op = "replace_target_value"\nmatch = { type = "email" }\nfrom = true\nto = "b"'),
     "edits.0.from: expected a string or a number, got true (a boolean)"),
    (edit('op = "add_rule"\nrule = { name = "R", passPercentage = "10", conditions = [] }'),
     'edits.0.rule.passPercentage: expected a number from 0 to 100, got "10" (a string)'),
    (edit('op = "add_rule"\nrule = { name = "R", passPercentage = 10, conditions = [], '
          'environments = "prod" }'),
     'edits.0.rule.environments: expected a list, got "prod" (a string)'),
    (edit('op = "add_rule"\nposition = "middle"\nrule = { name = "R", passPercentage = 10, '
          "conditions = [] }"),
     'edits.0.position: expected one of "first", "last", got "middle"'),
    (edit('op = "python"\nfunction = "edits.fix"'),
     'edits.0.function: expected a function reference written as "module:function"'),
    (edit('op = "python"\nfunction = 3'), "edits.0.function: expected a string, got 3 (an integer)"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), CASES, ids=[str(i) for i in range(len(CASES))])
def test_a_bad_job_file_is_refused_with_a_message_for_people(
    tmp_path, capsys, text: str, message: str
) -> None:
    """Exit 2, the field named with what was given and what is expected, and no validator noise."""
    path = tmp_path / "job.toml"
    path.write_text(text)
    code = main(["validate", str(path)])
    out, err = capsys.readouterr()
    assert code == 2, out
    assert message in err
    assert err.startswith(f"bulkops: error: {path}: the job file has ")
    noise = [word for word in NOISE if word in err]
    assert not noise, (noise, err)


def test_the_table_has_at_least_30_files_of_every_kind() -> None:
    """The table covers the three kinds, at least 30 bad files in all."""
    kinds = {text.split('"')[1] for text, _ in CASES if text.startswith("job")}
    assert len(CASES) >= 30
    assert kinds == {
        "export_metrics",
        "clone_experiments",
        "batch_rule_update",
    }


def test_every_error_of_a_file_is_reported_at_once(tmp_path, capsys) -> None:
    """Several bad fields give one line each, in one message."""
    path = tmp_path / "job.toml"
    path.write_text(export(source='base_url = "http://h:0"', limits='concurrency = "8"\nx = 1'))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "has 3 invalid field(s)" in err
    assert "source.base_url:" in err
    assert "limits.concurrency:" in err
    assert "limits.x:" in err


def test_good_values_of_the_same_fields_pass(tmp_path, capsys) -> None:
    """The strict checks refuse only what is wrong: ports, windows, lists and numbers as written."""
    texts = [
        export(source='base_url = "http://localhost:8787/"',
               limits='concurrency = 256\nmutation_rate = ["1/1s", "5/24h"]\nread_rate = []'),
        clone(select='status = ["setup"]\nids = ["a*"]', options='on_conflict = "update"'),
        batch(edits='[[edits]]\nop = "set_pass_percentage"\nvalue = 12.5\n[[edits]]\n'
                    'op = "add_condition"\ncondition = { type = "custom_field", field = "age", '
                    'operator = "gt", targetValue = 31.5 }'),
    ]  # fmt: skip
    for text in texts:
        path = tmp_path / "job.toml"
        path.write_text(text)
        assert main(["validate", str(path)]) == 0, capsys.readouterr().err
    assert "at http://localhost:8787\n" in capsys.readouterr().out  # the trailing / dropped


def test_a_byte_order_mark_is_accepted(tmp_path, capsys) -> None:
    """A job file saved by an editor that writes a UTF-8 BOM reads like any other."""
    path = tmp_path / "job.toml"
    path.write_bytes(b"\xef\xbb\xbf" + export().encode())
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err


def test_the_real_cli_refuses_a_coerced_value_with_exit_2(tmp_path) -> None:
    """Through `python -m bulkops.cli validate`, a string integer is exit 2 with one plain line."""
    path = tmp_path / "job.toml"
    path.write_text(export(limits='concurrency = "8"'))
    process = cli("validate", str(path))
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert b'limits.concurrency: expected an integer from 1 to 256, got "8" (a string)' in err
    assert b"Traceback" not in err
    assert b"pydantic" not in err
