"""The one error tree of bulkops.

    BulkopsError
    ├── UserError                      bad input; exit 2, one clear paragraph, no traceback
    │   ├── JobFileError               TOML syntax, schema, unknown job kind
    │   ├── MissingKeyError            the env var named by api_key_env is unset or empty
    │   └── StateError                 state directory refuses the run (job file changed, no plan...)
    │       ├── StateBusy              another bulkops process holds the state directory's lock
    │       └── WrongProject           a saved plan meets a project it was not made for
    ├── CheckpointError                the journal is corrupt beyond a torn last record
    ├── Interrupted                    SIGINT/SIGTERM outside the task graph: exit 130, resumable
    │   └── StopRequested              a request not sent: the run is stopping; the task stays unfinished
    ├── Aborted                        out of the scheduler: a fatal error (its ``cause``) stopped the job
    ├── LocalIOError                   disk full, I/O error, permissions on state or output: exit 4
    ├── LedgerUnavailable              the quota ledger cannot be used: exit 4 before any mutation
    ├── Conflict                       the target changed since the plan; that operation is not sent
    ├── EditFailed                     the edits cannot be applied to one entity; it fails, the job goes on
    │   └── FunctionFailed             a ``python`` edit raised, or returned something that is not a rule
    ├── NotARule (also a TypeError)    a ``python`` edit returned a non-rule; FunctionFailed carries it
    └── ApiError                       anything the Console API (or the way to it) did wrong
        ├── TransportError             no usable HTTP answer: reset, timeout, truncated body   (retryable)
        │   ├── MalformedResponse      a 2xx whose body is not the JSON envelope we expect     (retryable)
        │   └── Unreachable            the first request of a run found no server at all        (fatal)
        ├── InconsistentListing        the rows read do not add up to the announced totalItems (retryable)
        └── StatusError                the server answered with a non-2xx status
            ├── AuthError              401/403: fatal, never retried; names the project
            ├── NotFound               404
            ├── ValidationFailed       400 with an ``errors`` list (or any other 400)
            │   └── NameInUse          400 "Name is already in use"
            ├── RateLimited            429                                                       (retryable)
            └── ServerError            5xx                                                       (retryable)

aiohttp exceptions are translated into this tree in exactly one place: ``bulkops.api.client``.
``retryable`` says whether a *read* may simply be sent again; whether a *mutation* may be is decided
by ``outcome_unknown`` (the request may have been applied even though we saw no answer).
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class BulkopsError(Exception):
    """Base of every error bulkops raises on purpose."""

    #: Anything that stops a command and is not the user's input is an abort: exit 4, resumable.
    exit_code = 4
    #: A fatal error stops the whole job (exit 4): no other task can succeed either.
    fatal = False


class UserError(BulkopsError):
    """The user gave us something we cannot work with; the message says how to fix it."""

    exit_code = 2


class JobFileError(UserError):
    """The job file cannot be read, parsed or validated."""


class MissingKeyError(UserError):
    """The environment variable that should hold a Console API key is unset or empty."""


class StateError(UserError):
    """The state directory cannot serve this command (changed job file, missing plan, ...)."""


class StateBusy(StateError):
    """Another bulkops process holds the state directory; one process per state at a time."""


class WrongProject(StateError):
    """A saved plan is applied to a project (or sandbox) other than the one it was made for."""


class LocalIOError(BulkopsError):
    """Writing the state or output directory failed (disk full, I/O error, permissions).

    Fatal to the run, resumable once fixed: everything acknowledged is in the journal.
    """

    exit_code = 4
    fatal = True

    @classmethod
    def from_os_error(cls, exc: OSError, path: Path | str | None = None) -> LocalIOError:
        where = exc.filename or path
        cause = exc.strerror or str(exc) or type(exc).__name__
        error = cls(
            f"cannot write {where or 'a local file'}: {cause}. Free space or fix the "
            "permissions, then run the same command again to resume."
        )
        error.__cause__ = exc
        return error


@contextmanager
def writing(path: Path | str) -> Iterator[None]:
    """Name ``path`` in any OSError raised while writing it (``os.write`` errors name no file)."""
    try:
        yield
    except OSError as exc:
        raise LocalIOError.from_os_error(exc, path) from exc


class LedgerUnavailable(BulkopsError):
    """The quota ledger cannot be reached or written: nothing is sent unmetered (exit 4)."""

    exit_code = 4
    fatal = True


class Interrupted(BulkopsError):
    """SIGINT or SIGTERM arrived while a phase outside the task graph was running."""

    exit_code = 130

    def __init__(
        self, message: str = "interrupted; nothing was sent. Run the same command again."
    ) -> None:
        super().__init__(message)


class StopRequested(Interrupted):
    """Raised instead of starting a request after the run was asked to stop.

    The task that hit it did not fail: it is left unfinished, and a resumed run does it again.
    """


class Aborted(BulkopsError):
    """Raised out of ``Scheduler.run`` when a fatal error stopped the job; ``cause`` is that error."""

    fatal = True

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class Conflict(BulkopsError):
    """The target changed since the plan; the operation was not sent."""


class EditFailed(BulkopsError):
    """The edits cannot be applied to one entity; that entity fails, the job goes on."""

    index: int | None = None
    traceback: str = ""


class NotARule(BulkopsError, TypeError):
    """What a python edit returned is neither a rule the API accepts nor None."""


class FunctionFailed(EditFailed):
    """A ``python`` edit raised (anything, SystemExit included), or returned something not a rule."""

    def __init__(self, index: int, function: str, error: BaseException) -> None:
        self.index = index
        self.function = function
        self.error = error
        returned = isinstance(error, NotARule)  # our own check: its traceback shows only us
        self.traceback = "" if returned else "".join(traceback.format_exception(error))
        detail = f"returned {error}" if returned else _raised(error)
        super().__init__(f"edits.{index} (python {function}) {detail}")


def _raised(error: BaseException) -> str:
    text = str(error)
    if isinstance(error, SystemExit):
        text = f"sys.exit({error.code!r})" if error.code is not None else "sys.exit()"
        return f"raised SystemExit ({text}); a python edit must return, not exit"
    return f"raised {type(error).__name__}: {text}" if text else f"raised {type(error).__name__}"


class CheckpointError(BulkopsError):
    """The journal is damaged somewhere other than its last record."""

    exit_code = 4
    fatal = True


class ApiError(BulkopsError):
    """Base of errors from talking to the Console API."""

    retryable = False
    #: True when a mutation may have been applied although no answer says so.
    outcome_unknown = False

    def __init__(self, message: str, *, project: str | None = None) -> None:
        super().__init__(message)
        self.project = project


class TransportError(ApiError):
    """No usable HTTP response: connection refused or reset, timeout, truncated body."""

    retryable = True

    def __init__(self, message: str, *, project: str | None = None, sent: bool = True) -> None:
        super().__init__(message, project=project)
        # A request that never left (connection refused) cannot have been applied.
        self.outcome_unknown = sent
        #: The cause in a few words (``Connection refused``), for messages that add their own context.
        self.reason = ""


class MalformedResponse(TransportError):
    """A success status whose body is not the JSON envelope the API documents."""


class Unreachable(TransportError):
    """No server answered the first request of a run (refused, unknown host, timeout): exit 4."""

    fatal = True


class InconsistentListing(ApiError):
    """The rows read do not add up to the ``totalItems`` the server announced."""

    retryable = True


class StatusError(ApiError):
    """The server answered with a non-2xx status."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        project: str | None = None,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, project=project)
        self.status = status
        self.body = body
        self.retry_after = retry_after


class AuthError(StatusError):
    """401/403: the key is wrong, inactive or lacks a scope. Fatal: retrying cannot help."""

    fatal = True


class NotFound(StatusError):
    """404: the entity does not exist."""


class ValidationFailed(StatusError):
    """400: the server rejected the request body or query."""

    @property
    def errors(self) -> list[dict[str, Any]]:
        errors = self.body.get("errors") if isinstance(self.body, dict) else None
        return errors if isinstance(errors, list) else []


class NameInUse(ValidationFailed):
    """400 "Name is already in use": a create (or rename) collided with an existing entity."""


class RateLimited(StatusError):
    """429: the project's quota is spent. The rejected attempt counted against it too."""

    retryable = True


class ServerError(StatusError):
    """5xx: the server failed. A mutation that got one may or may not have been applied."""

    retryable = True
    outcome_unknown = True
