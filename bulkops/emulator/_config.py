"""Emulator configuration: one frozen dataclass, validated on construction.

Why a dataclass and not keyword soup: tests, the sandbox runner and the CLI all build the same
object, and a bad value (say a quota window spelled ``"100/10 s"``) should fail when the config is
made, naming the field, rather than on the first mutation deep inside a request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["OPTIONAL_KINDS", "EmulatorConfig", "QuotaWindow", "parse_window"]

_WINDOW_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*(s|min|h)\s*$")
_UNIT_SECONDS = {"s": 1.0, "min": 60.0, "h": 3600.0}
_CREATE_STATUS_CHOICES = ("spec", "200", "201")
_FULL_UPDATE_CHOICES = ("replace", "merge")
_OVERRIDE_KEY_CHOICES = ("name", "id", "both")
_OVERRIDE_GROUP_KEY_CHOICES = ("id", "name", "sent")
_LIST_ORDER_CHOICES = ("reversed", "kept")
_LISTED_IDS_CHOICES = ("sent", "omitted")
_PAGINATION_CHOICES = ("sent", "omitted", "unpaged")
_ID_LIST_SHAPE_CHOICES = ("object", "wrapped", "ids")
_EMPTY_OVERRIDES_CHOICES = ("lists", "null", "404")
_RULE_FIELDS_CHOICES = ("reset", "kept")
_SEGMENT_RULES_ANSWER_CHOICES = ("message", "segment")
_REVIEW_SHOWN_CHOICES = ("dto", "all")
_API_VERSION_CHOICES = ("checked", "required")
#: The newer configuration kinds a project (or an API version) may not serve.
OPTIONAL_KINDS = ("alerts", "release_pipelines", "roles", "prompts", "settings")


@dataclass(frozen=True)
class QuotaWindow:
    """``limit`` attempts per sliding ``seconds``; parsed from strings like ``"100/10s"``."""

    limit: int
    seconds: float
    text: str


def parse_window(text: str) -> QuotaWindow:
    """Parse ``"N/10s"``, ``"N/15min"`` or ``"N/1h"`` into a :class:`QuotaWindow`."""
    match = _WINDOW_RE.match(text)
    if match is None:
        raise ValueError(
            f"EmulatorConfig: bad quota window {text!r}; write it as '<attempts>/<n><unit>' "
            "with unit s, min or h, e.g. '100/10s' or '900/15min'"
        )
    limit, amount, unit = int(match[1]), int(match[2]), match[3]
    if limit < 1 or amount < 1:
        raise ValueError(f"EmulatorConfig: quota window {text!r} needs a positive count and span")
    return QuotaWindow(limit=limit, seconds=amount * _UNIT_SECONDS[unit], text=text.strip())


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"EmulatorConfig.{name} must be between 0 and 1, got {value!r}")


@dataclass(frozen=True)
class EmulatorConfig:
    """How the emulator behaves: latency, faults, quotas, page cap and create status codes.

    ``latency_ms`` (plus up to ``latency_jitter_ms``, seeded) is each request's round trip:
    handled half-way through it, answered once it has passed since the request came in, the
    emulator's own work inside it (not added to it).

    Fault rates are probabilities per request (0..1). ``drop_rate``, ``truncate_rate`` and
    ``fail_rate`` apply to reads and mutations; ``lost_answer_rate`` applies to mutations only (the
    change is applied, then the connection is dropped). Their sum must not exceed 1.

    ``create_status`` picks the success code of create endpoints: ``"spec"`` uses the code the
    OpenAPI spec documents per operation (201 for metric and metric-source creates), ``"200"`` or
    ``"201"`` force that code, to rehearse clients against spec-version drift.

    ``segment_mutation_windows`` is the separate quota that ``/segments/*`` mutations draw from.

    ``id_list_write_windows`` is the quota of ``PATCH`` and ``DELETE /segments/{id}/id_list``,
    which the spec says are "rate limited to 900 requests /15m or 12 requests /10s"; such a write
    is counted there and in the segments bucket (reference §4).

    ``id_list_read_windows`` is the quota of ``GET /segments/{id}/id_list`` (reads), which the
    spec says "is rate limited to 100" without a unit; the default reads it as 100 per minute,
    the harsher of the plausible units (per 10 s, per minute). Other reads are not limited.

    ``fault_paths`` limits the faults to requests whose path starts with one of these prefixes
    (empty: every request), to rehearse one broken endpoint on an otherwise healthy server.

    ``list_change_rate`` is the chance, per page of a paginated list answered before its last
    page, that the list changes before the next page is read: one entity of the collection that
    page came from is added (a copy of the page's first row under a new id or name) or deleted
    (one picked by the seed), as another user of the project would. ``list_change_kinds`` says
    which of ``"add"`` and ``"delete"`` the seed picks from; ``list_change_limit`` caps how many
    changes the emulator makes in all (None: no cap, the list keeps changing). It is drawn
    independently of the other faults (a page that meets one of those does not change its list),
    honours ``fault_paths``, and is logged as the ``list_change`` fault of the page's request.

    Readings of what the spec leaves open (docs/api-assumptions.md); each default is the harsher
    one, so tests catch what a real server could punish:

    * ``full_update``: ``"replace"`` (default) makes every ``POST /{kind}/{id}`` full update
      reset the optional fields its body omits; ``"merge"`` keeps them.
    * ``override_key``: how ``GET /experiments/{id}/overrides`` names the gate or segment of
      each ``overrides[]`` item: ``"name"`` (default, as the spec's GET examples do), ``"id"``
      (as the request DTO does) or ``"both"``.
    * ``override_group_key``: how the same answers give each ``groupID`` (of ``overrides[]``
      and ``userIDOverrides[]``), which requests may send as a group name or id: ``"id"``
      (default: the group's server-assigned id, though the spec's examples show names),
      ``"name"`` (the group's name), or ``"sent"`` (as the request gave it).
    * ``unserved_kinds``: which of ``OPTIONAL_KINDS`` (alerts, release_pipelines, roles,
      prompts, settings) every project answers as an API version without them would:
      ``unserved_status`` 404 (default, "Not Found") or 403 ("Forbidden resource") on each of
      their routes, after the key is checked. A project seeded from a snapshot whose manifest
      lists a kind as ``unavailable`` does not serve it either (404).
    * ``list_order``: whether answers keep the order of lists the API does not order. For now
      this covers experiment overrides (``overrides``, ``userIDOverrides`` and their ``ids``):
      ``"reversed"`` (default) answers them in reverse order, ``"kept"`` as stored.
    * ``listed_ids``: whether the list rows of target apps and teams carry their ``id``:
      ``"sent"`` (default) or ``"omitted"``, as both lists' spec examples show (``TargetAppDto``
      makes ``id`` optional). Single reads keep it.
    * ``pagination``: the ``pagination`` block of list answers, which the spec marks required
      but many of its examples omit: ``"sent"`` (default; the client checks ``totalItems``, so
      a list changing under it is caught), ``"omitted"`` (pages sliced by ``limit``, no block),
      or ``"unpaged"`` (every item on every page, ``page`` and ``limit`` ignored, no block, as
      the examples with ``itemsPerPage: 20000`` suggest a server may do).
    * ``id_list_shape``: the ``data`` of ``GET /segments/{id}/id_list``, whose schema joins a
      list envelope to an object: ``"object"`` (default, ``{name, count, ids}`` as the example
      shows), ``"wrapped"`` (that object in a one-item list) or ``"ids"`` (the page's ids).
    * ``empty_overrides``: what ``GET /{gates|holdouts|experiments|layers}/{id}/overrides``
      answers for an entity with none: ``"lists"`` (default, the DTO with empty lists),
      ``"null"`` (``data`` null) or ``"404"`` (the spec documents a 404 on these reads).
    * ``rule_fields``: what a full ``rules`` list (gate and dynamic-config ``PATCH``/``POST``,
      segment ``POST …/conditional``) does to a stored rule it matches by ``id``/``baseID``
      when its item leaves fields out: ``"reset"`` (default) takes the item whole
      (``environments`` null, ``returnValue`` ``{}``, no ``variants``, empty automated-rollout
      histories); ``"kept"`` keeps the stored values of what it leaves out.
    * ``segment_rules_answer``: the answer of ``POST /segments/{id}/conditional``, whose schema
      puts the segment in ``data`` while its example is the message alone: ``"message"``
      (default, no ``data``) or ``"segment"`` (the updated segment in ``data``).
    * ``api_version``: the ``STATSIG-API-VERSION`` header, "optional; in the future, this will
      be required" (reference §1): ``"checked"`` (default) refuses a value other than
      ``20240601`` with a 400 and lets a request without the header through; ``"required"``
      refuses a request without it too, as the docs say a future server will.
    * ``review_shown``: which entities held for review show ``activeReview``: ``"dto"``
      (default) only those whose DTO has the field (gates, experiments; a dynamic config held
      for review answers as it was, version unmoved), or ``"all"``.
    """

    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    fail_rate: float = 0.0
    drop_rate: float = 0.0
    truncate_rate: float = 0.0
    lost_answer_rate: float = 0.0
    fault_seed: int = 0
    fault_paths: tuple[str, ...] = ()
    mutation_windows: tuple[str, ...] = ("100/10s", "900/15min")
    retry_after: bool = False
    max_page_limit: int = 100
    create_status: str = "spec"
    segment_mutation_windows: tuple[str, ...] = ("100/10s", "900/15min")
    id_list_read_windows: tuple[str, ...] = ("100/1min",)
    id_list_write_windows: tuple[str, ...] = ("12/10s", "900/15min")
    full_update: str = "replace"
    override_key: str = "name"
    override_group_key: str = "id"
    list_order: str = "reversed"
    list_change_rate: float = 0.0
    list_change_kinds: tuple[str, ...] = ("add", "delete")
    list_change_limit: int | None = None
    unserved_kinds: tuple[str, ...] = ()
    unserved_status: int = 404
    listed_ids: str = "sent"
    pagination: str = "sent"
    id_list_shape: str = "object"
    empty_overrides: str = "lists"
    rule_fields: str = "reset"
    segment_rules_answer: str = "message"
    review_shown: str = "dto"
    api_version: str = "checked"
    _parsed: dict[str, tuple[QuotaWindow, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.latency_ms < 0 or self.latency_jitter_ms < 0:
            raise ValueError("EmulatorConfig.latency_ms and latency_jitter_ms must be >= 0")
        for name in (
            "fail_rate",
            "drop_rate",
            "truncate_rate",
            "lost_answer_rate",
            "list_change_rate",
        ):
            _check_rate(name, getattr(self, name))
        kinds = self.list_change_kinds
        if isinstance(kinds, str) or not kinds or not set(kinds) <= {"add", "delete"}:
            raise ValueError(
                "EmulatorConfig.list_change_kinds must be a non-empty sequence of 'add' and "
                f"'delete', got {kinds!r}"
            )
        if self.list_change_limit is not None and self.list_change_limit < 0:
            raise ValueError("EmulatorConfig.list_change_limit must be >= 0 or None")
        unserved = self.unserved_kinds
        if isinstance(unserved, str) or not set(unserved) <= set(OPTIONAL_KINDS):
            raise ValueError(
                f"EmulatorConfig.unserved_kinds must be a sequence of {OPTIONAL_KINDS}, "
                f"got {unserved!r}"
            )
        if self.unserved_status not in (403, 404):
            raise ValueError(
                f"EmulatorConfig.unserved_status must be 403 or 404, got {self.unserved_status!r}"
            )
        total = self.fail_rate + self.drop_rate + self.truncate_rate + self.lost_answer_rate
        if total > 1.0 + 1e-9:
            raise ValueError(
                f"EmulatorConfig: fault rates add up to {total:.3f}; their sum must be <= 1"
            )
        if self.max_page_limit < 1:
            raise ValueError("EmulatorConfig.max_page_limit must be >= 1")
        if self.create_status not in _CREATE_STATUS_CHOICES:
            raise ValueError(
                f"EmulatorConfig.create_status must be one of {_CREATE_STATUS_CHOICES}, "
                f"got {self.create_status!r}"
            )
        for name, choices in (
            ("full_update", _FULL_UPDATE_CHOICES),
            ("override_key", _OVERRIDE_KEY_CHOICES),
            ("override_group_key", _OVERRIDE_GROUP_KEY_CHOICES),
            ("list_order", _LIST_ORDER_CHOICES),
            ("listed_ids", _LISTED_IDS_CHOICES),
            ("pagination", _PAGINATION_CHOICES),
            ("id_list_shape", _ID_LIST_SHAPE_CHOICES),
            ("empty_overrides", _EMPTY_OVERRIDES_CHOICES),
            ("rule_fields", _RULE_FIELDS_CHOICES),
            ("segment_rules_answer", _SEGMENT_RULES_ANSWER_CHOICES),
            ("review_shown", _REVIEW_SHOWN_CHOICES),
            ("api_version", _API_VERSION_CHOICES),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(
                    f"EmulatorConfig.{name} must be one of {choices}, got {getattr(self, name)!r}"
                )
        # Accept a bare string by mistake? No: a str is iterable and would parse char by char.
        for name in (
            "mutation_windows",
            "segment_mutation_windows",
            "id_list_read_windows",
            "id_list_write_windows",
        ):
            value = getattr(self, name)
            if isinstance(value, str):
                raise ValueError(
                    f"EmulatorConfig.{name} must be a sequence of windows, e.g. ({value!r},)"
                )
            self._parsed[name] = tuple(parse_window(w) for w in value)

    @property
    def windows(self) -> tuple[QuotaWindow, ...]:
        """Parsed windows of the default mutation bucket."""
        return self._parsed["mutation_windows"]

    @property
    def segment_windows(self) -> tuple[QuotaWindow, ...]:
        """Parsed windows of the ``/segments/*`` mutation bucket."""
        return self._parsed["segment_mutation_windows"]

    @property
    def id_list_write_limits(self) -> tuple[QuotaWindow, ...]:
        """Parsed windows of the ``PATCH``/``DELETE /segments/{id}/id_list`` bucket."""
        return self._parsed["id_list_write_windows"]

    @property
    def id_list_windows(self) -> tuple[QuotaWindow, ...]:
        """Parsed windows of the ``GET /segments/{id}/id_list`` read bucket."""
        return self._parsed["id_list_read_windows"]

    def create_code(self, spec_code: int) -> int:
        """The success code for a create whose spec code is ``spec_code``."""
        if self.create_status == "spec":
            return spec_code
        return int(self.create_status)

    @property
    def replaces_on_full_update(self) -> bool:
        """Whether a full update resets the optional fields its body leaves out."""
        return self.full_update == "replace"
