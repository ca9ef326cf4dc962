"""The ``bulkops`` command line. Thin: parse, dispatch, turn user errors into one clear paragraph.

Exit codes: 0 complete; 2 bad usage or invalid job file; 3 finished but some items failed;
4 aborted by a fatal error (resumable); 130 interrupted (resumable).
"""

from __future__ import annotations

import argparse
import difflib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bulkops import __version__, human, redact
from bulkops.errors import BulkopsError, UserError

if TYPE_CHECKING:  # the CLI imports what a command needs only once it runs, to start fast
    from bulkops.commands.session import RunOptions

EXIT_USAGE = 2
#: The range ``[limits] concurrency`` accepts in a job file; ``--concurrency`` takes the same.
MIN_CONCURRENCY, MAX_CONCURRENCY = 1, 256


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bulkops",
        description="Bulk operations and migrations on the Statsig Console API.",
    )
    parser.add_argument("--version", action="version", version=f"bulkops {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run (or resume) a job")
    run.add_argument("job_file", metavar="JOB.toml")
    _add_run_options(run)

    plan = commands.add_parser("plan", help="read the projects and write a reviewable plan")
    plan.add_argument("job_file", metavar="JOB.toml")
    _add_run_options(plan)

    apply = commands.add_parser("apply", help="apply the saved plan exactly")
    _add_saved_run_options(apply)

    undo = commands.add_parser("undo", help="restore what apply changed")
    _add_saved_run_options(undo)

    status = commands.add_parser("status", help="what a run did and what is left")
    _add_state_of_job(status)
    status.add_argument("--state", type=Path, metavar="DIR", help="the run's state directory")
    status.add_argument("--json", action="store_true", help="print JSON")

    diff = commands.add_parser(
        "diff",
        help="compare two project snapshots (exit 0 same, 1 different, 2 trouble)",
        description="Compare two snapshot directories written by export_project: the entities "
        "added, removed and changed, per kind. Exit 0 when they are the same, 1 when they differ, "
        "2 on bad usage or a directory that is not a complete snapshot.",
    )
    diff.add_argument("old", metavar="OLD", type=Path, help="the earlier snapshot directory")
    diff.add_argument("new", metavar="NEW", type=Path, help="the later snapshot directory")
    diff.add_argument("--json", action="store_true", help="print JSON")
    diff.add_argument(
        "--all", action="store_true", help="also compare fields only the server sets (versions...)"
    )

    quota = commands.add_parser(
        "quota",
        help="what the shared quota ledger holds: windows, reservations, learned limits, waiters",
        description="Show, per project on the quota ledger ($BULKOPS_QUOTA_URL, else the local "
        "SQLite file), the windows jobs used, what is reserved in each now, the limits learned "
        "from 429s and the jobs waiting for a slot.",
    )
    which = quota.add_mutually_exclusive_group()
    which.add_argument(
        "--project-key-env",
        metavar="VAR",
        help="only the project whose Console API key is in $VAR (read with GET /console/v1/project)",
    )
    which.add_argument("--all", action="store_true", help="every project on the ledger (default)")
    quota.add_argument("--base-url", metavar="URL", help="where the --project-key-env project is")
    quota.add_argument(
        "--ledger",
        metavar="URL",
        help="the ledger to read (redis://HOST:PORT/DB or sqlite:///PATH)",
    )
    quota.add_argument("--json", action="store_true", help="print JSON")
    quota.add_argument("--sandbox", action="store_true", help=argparse.SUPPRESS)

    validate = commands.add_parser("validate", help="check a job file without touching the network")
    validate.add_argument("job_file", metavar="JOB.toml")

    emulator = commands.add_parser("emulator", help="serve the Console API emulator")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=_port, default=8787, help="0 picks a free port")
    emulator.add_argument("--seed", default="demo", help="demo data seed")
    emulator.add_argument("--scale", type=_positive_int, default=1, help="multiply demo data size")
    emulator.add_argument(
        "--latency-ms",
        type=_milliseconds,
        default=0.0,
        metavar="MS",
        help="each request's round trip (default 0)",
    )
    emulator.add_argument(
        "--fail-rate",
        type=_probability,
        default=0.0,
        metavar="P",
        help="probability of a 5xx answer",
    )
    emulator.add_argument(
        "--drop-rate",
        type=_probability,
        default=0.0,
        metavar="P",
        help="probability of dropping the connection",
    )
    emulator.add_argument(
        "--truncate-rate",
        type=_probability,
        default=0.0,
        metavar="P",
        help="probability of a truncated body",
    )
    emulator.add_argument("--fault-seed", type=int, default=0)
    emulator.add_argument(
        "--mutation-rate",
        nargs="+",
        type=_rate_window,
        default=None,
        metavar="WINDOW",
        help="mutation quota windows, e.g. 100/10s 900/15min",
    )
    emulator.add_argument("--retry-after", action="store_true", help="send Retry-After on 429")
    emulator.add_argument(
        "--from",
        dest="snapshots",
        action="append",
        default=[],
        metavar="[NAME=]SNAP",
        help="serve an export_project snapshot as project NAME (default: its project's name), "
        "or every project of an org export under its own name, instead of the demo data; "
        "repeatable",
    )
    return parser


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state", type=Path, metavar="DIR", help="state directory (default .bulkops/<job name>)"
    )
    parser.add_argument("--fresh", action="store_true", help="discard an unfinished run's state")
    parser.add_argument(
        "--again",
        action="store_true",
        help="plan again although the last run applied edits that are not idempotent",
    )
    _add_connection_options(parser)


def _add_state_of_job(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "job_file",
        nargs="?",
        metavar="JOB.toml",
        help="the job whose run this is (its state directory is the default one); or --state",
    )


def _add_saved_run_options(parser: argparse.ArgumentParser) -> None:
    _add_state_of_job(parser)
    parser.add_argument(
        "--state",
        type=Path,
        metavar="DIR",
        help="state directory of the planned run (default: the job file's, or the one under "
        "./.bulkops)",
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite entities that changed since the plan"
    )
    _add_connection_options(parser)


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    """Where and how hard to talk to the API, and how to log: shared by every command that runs."""
    parser.add_argument("--base-url", metavar="URL", help="override every project's base URL")
    parser.add_argument(
        "--concurrency",
        type=_concurrency,
        metavar="N",
        help=f"requests in flight per project, {MIN_CONCURRENCY} to {MAX_CONCURRENCY}",
    )
    parser.add_argument("--log-format", choices=("console", "json"), default="console")
    parser.add_argument(
        "--sandbox", action="store_true", help="run against the built-in emulator with demo data"
    )
    parser.add_argument(
        "--sandbox-from",
        action="append",
        default=[],
        metavar="[ROLE=]SNAP",
        help="like --sandbox, with ROLE's project (default: source, else target) seeded from a "
        "snapshot directory made by export_project; repeatable",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug events")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _concurrency(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_CONCURRENCY:
        raise argparse.ArgumentTypeError(
            f"{text!r} is more than {MAX_CONCURRENCY}, the most a job file allows"
        )
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port; use 1 to 65535 (0: any free)")
    return value


def _milliseconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of milliseconds") from None
    if not 0.0 <= value < 600_000:
        raise argparse.ArgumentTypeError(f"{text!r} must be from 0 to 600000 milliseconds")
    return value


def _rate_window(text: str) -> str:
    """A window as job files write them, with the same checks (count >= 1, 1 s to 24 h)."""
    from bulkops.api.windows import RateWindow

    try:
        window = RateWindow.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return str(window)  # "100/10 s", "100/10m" as the emulator reads them: "100/10s", "100/10min"


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1")
    return value


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The arguments, or argparse's exit 2; an unknown option is refused by its command's own
    parser (its usage, not the top level's) with the option it most likely meant."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if not unknown:
        return args
    command = parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            command = action.choices[args.command]
    known = [option for action in command._actions for option in action.option_strings]
    first = next((arg for arg in unknown if arg.startswith("-")), unknown[0])
    close = difflib.get_close_matches(first.partition("=")[0], known, n=1, cutoff=0.6)
    meant = (
        f"; did you mean {close[0]}?"
        if close
        else f"; `bulkops {args.command} -h` lists the options"
    )
    command.error(f"unrecognized arguments: {' '.join(unknown)}{meant}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if args.command != "validate":  # validate logs nothing: it need not import structlog
        from bulkops import logs

        logs.configure(
            stderr_format=getattr(args, "log_format", "console"),
            verbose=getattr(args, "verbose", False),
        )
    try:
        try:
            return _dispatch(args)
        except BaseExceptionGroup as group:  # a task group's: show its most telling error alone
            from bulkops.engine.concurrency import most_telling

            raise most_telling(group) from None
    except UserError as exc:
        human.say(f"bulkops: error: {redact.text(str(exc))}", err=True)
        return EXIT_USAGE
    except BulkopsError as exc:
        human.say(f"bulkops: {redact.text(str(exc))}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        human.say("bulkops: interrupted", err=True)
        return 130
    except BrokenPipeError:  # `bulkops quota | head`: the reader has all it wanted
        _silence_stdout()
        return 141  # 128 + SIGPIPE, as a shell reports a command its pipe's reader closed
    except OSError as exc:  # disk full, permissions...: the run is resumable once fixed
        where = f" ({exc.filename})" if exc.filename else ""
        human.say(
            f"bulkops: I/O error{where}: {exc.strerror or exc}. Fix it and run the same "
            "command again to resume.",
            err=True,
        )
        return 4


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the flush at exit does not meet the closed pipe again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "validate":
        return _validate(args)
    if args.command in ("run", "plan"):
        return _run(args)
    if args.command in ("apply", "undo"):
        return _apply(args)
    if args.command == "status":
        from bulkops.commands.status import show_status

        return show_status(_saved_state(args), as_json=args.json)
    if args.command == "emulator":
        return _emulator(args)
    if args.command == "diff":
        return _diff(args)
    if args.command == "quota":
        return _quota(args)
    raise AssertionError(args.command)


def _validate(args: argparse.Namespace) -> int:
    from bulkops.jobs import load

    job = load(args.job_file)
    role = job.spec.many_role
    projects = ", ".join(
        [
            *(
                f"[{role}] key from ${spec.api_key_env} at {spec.base_url}"
                for role, spec in job.spec.projects().items()
            ),
            *(
                f"[[{role}s]] {spec.name!r} key from ${spec.api_key_env} at {spec.base_url}"
                for spec in job.spec.many()
            ),
        ]
    )
    human.say(f"{job.path}: valid {job.kind} job {job.name!r}; {projects}")
    return 0


def _options(args: argparse.Namespace) -> RunOptions:
    from bulkops.commands.session import RunOptions

    if getattr(args, "sandbox_from", None):
        if args.base_url is not None:
            raise UserError(
                "--sandbox-from and --base-url cannot be used together: --sandbox-from starts "
                "its own emulator."
            )
        args.sandbox = True
    base_url = _base_url_option(args)
    return RunOptions(
        state_dir=args.state,
        fresh=getattr(args, "fresh", False),
        base_url=base_url,
        concurrency=args.concurrency,
        sandbox=args.sandbox,
        command=args.command,
        force=getattr(args, "force", False),
        again=getattr(args, "again", False),
        sandbox_from=_sandbox_from(args),
    )


def _sandbox_from(args: argparse.Namespace) -> tuple[tuple[str | None, Path], ...]:
    """``--sandbox-from [ROLE=]SNAP`` values: an existing folder is SNAP whole (it may hold
    ``=``); otherwise what precedes the first ``=`` is the role."""
    pairs: list[tuple[str | None, Path]] = []
    for text in getattr(args, "sandbox_from", None) or []:
        role: str | None = None
        snapshot = Path(text)
        if "=" in text and not snapshot.is_dir():
            role, _, rest = text.partition("=")
            role, snapshot = role.strip() or None, Path(rest)
        from bulkops.commands.sandbox import check_snapshot

        check_snapshot(f"--sandbox-from {text}", snapshot)  # before any state is touched
        pairs.append((role, snapshot.resolve()))
    return tuple(pairs)


def _base_url_option(args: argparse.Namespace) -> str | None:
    """``--base-url``, checked: never empty, never with ``--sandbox``, a parseable URL."""
    if args.base_url is None:
        return None
    if args.sandbox:
        raise UserError(
            "--sandbox and --base-url cannot be used together: --sandbox starts its own emulator. "
            "Drop --base-url to rehearse on the sandbox, or drop --sandbox to use that URL."
        )
    from bulkops.api.urls import url_problem

    problem = url_problem(args.base_url)
    if problem:
        raise UserError(f"--base-url {args.base_url!r}: {problem}")
    return str(args.base_url).rstrip("/")


def _run(args: argparse.Namespace) -> int:
    import anyio

    from bulkops.commands.run import run_job
    from bulkops.commands.signals import guarded
    from bulkops.jobs import is_planned, load

    job = load(args.job_file)
    options = _options(args)
    if job.members():  # several projects: each runs as a job of its own, all at once
        from bulkops.commands import fleet

        if args.command == "plan" and not is_planned(job.kind):
            raise UserError(f"{job.kind} jobs only read; they have no plan. Use `bulkops run`.")
        command = fleet.plan_fleet if args.command == "plan" else fleet.run_fleet
        return anyio.run(guarded, command, job, options)
    if is_planned(job.kind):
        from bulkops.commands import planned  # a reading job's run need not import it

        command = planned.plan_command if args.command == "plan" else planned.run_planned
        return anyio.run(guarded, command, job, options)
    if args.command == "plan":
        raise UserError(f"{job.kind} jobs only read; they have no plan. Use `bulkops run`.")
    if options.again:
        raise UserError(f"--again is for jobs that write; {job.kind} jobs only read.")
    return anyio.run(guarded, run_job, job, options)


def _apply(args: argparse.Namespace) -> int:
    import anyio

    from bulkops.commands import planned
    from bulkops.commands.fleet import is_fleet_state, saved_fleet
    from bulkops.commands.signals import guarded
    from bulkops.commands.status import find_state_dir

    command = planned.apply_command if args.command == "apply" else planned.undo_command
    args.state = _saved_state(args)
    options = _options(args)
    state = find_state_dir(args.state)
    if is_fleet_state(state):  # a job over several projects: each project's plan, at once
        return anyio.run(guarded, saved_fleet, state, options)
    return anyio.run(guarded, command, options)


def _saved_state(args: argparse.Namespace) -> Path | None:
    """The state directory ``apply``/``undo``/``status`` work on: ``--state``, or the default
    one of the job file given, or None (then the one under ./.bulkops, if there is one)."""
    if args.job_file is None:
        return args.state  # type: ignore[no-any-return]
    if args.state is not None:
        raise UserError(
            f"give the job file or --state, not both: {args.job_file} and --state {args.state}"
        )
    from bulkops.commands.session import default_state_of
    from bulkops.jobs import load_spec

    job = load_spec(args.job_file)
    state = default_state_of(job)
    _check_run_of(args.command, job.path, job.name, job.digest, state)
    return state


def _check_run_of(command: str, job_file: Path, name: str, digest: str, state: Path) -> None:
    """The run in ``state`` (the job file's default state directory) is that job's: refuse,
    saying what to do, when there is none yet, or when it is another job's that shares the
    directory (two job files of one ``name``), which ``apply``/``undo`` must not act on."""
    from bulkops.engine.state import StateDir

    run = StateDir(state).read_run()
    if run is None:
        missing = {
            "apply": f"has no plan to apply yet; make one with `bulkops plan {job_file}`",
            "undo": "has applied nothing yet, so there is nothing to undo; plan and apply it "
            f"first (`bulkops plan {job_file}`)",
        }.get(command, f"has not run yet; start it with `bulkops run {job_file}`")
        raise UserError(f"job {name!r} {missing} ({state} holds no run).")
    planned_from = Path(str(run.get("job_file") or job_file)).resolve()
    if command == "status" or planned_from == job_file.resolve():
        return
    if run.get("job_digest") == digest:
        return  # the same job file, moved or copied: its run is this job's
    shared = (
        f"both name their job {name!r}, so they share that state directory. Give each job file "
        "its own `name`"
        if run.get("job") == name
        else "give each job its own state directory"
    )
    raise UserError(
        f"the run in {state} is of another job file, {planned_from}, not {job_file}: {shared}, "
        f"or {command} that run by its state: `bulkops {command} --state {state}`."
    )


def _diff(args: argparse.Namespace) -> int:
    from bulkops.commands.diff import run_diff

    return run_diff(args.old, args.new, as_json=args.json, everything=args.all)


def _quota(args: argparse.Namespace) -> int:
    if args.sandbox:
        raise UserError(
            "quota --sandbox makes no sense: a sandbox is a fresh emulator of its own, so no other "
            "process shares its quota. Give --project-key-env VAR (with --base-url for an "
            "emulator), or --all."
        )
    if args.base_url is not None and args.project_key_env is None:
        raise UserError(
            "quota --base-url says where the --project-key-env project is; give "
            "--project-key-env VAR too, or drop --base-url to show every project."
        )
    import anyio

    from bulkops.commands.quota import show_quota

    return anyio.run(
        lambda: show_quota(
            project_key_env=args.project_key_env,
            base_url=args.base_url.rstrip("/") if args.base_url else None,
            ledger=args.ledger,
            as_json=args.json,
        )
    )


def _emulator(args: argparse.Namespace) -> int:
    from bulkops.commands.sandbox import serve_emulator

    return serve_emulator(
        host=args.host,
        port=args.port,
        seed=args.seed,
        scale=args.scale,
        latency_ms=args.latency_ms,
        fail_rate=args.fail_rate,
        drop_rate=args.drop_rate,
        truncate_rate=args.truncate_rate,
        fault_seed=args.fault_seed,
        retry_after=args.retry_after,
        mutation_rate=args.mutation_rate,
        snapshots=args.snapshots,
    )


def entry() -> None:
    """The ``bulkops`` executable: ``main`` with SIGTERM treated as Ctrl-C from the first
    instruction (so a signal during start-up is exit 130 too), and no signal cutting the exit
    short (a second Ctrl-C while an interrupted command winds down must not turn 130 into a kill)."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        code = main()
    except KeyboardInterrupt:  # before main could handle it: while importing, parsing
        human.say("bulkops: interrupted before anything started", err=True)
        code = 130
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    sys.exit(code)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    entry()
