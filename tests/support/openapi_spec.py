"""Helpers to check requests and responses against the official Console API OpenAPI spec.

Not a test module. The spec lives beside the repository (``../shared/spec``); tests that need it
call :func:`spec_or_skip` so a checkout without it skips them with a clear reason instead of
failing. ``$ref``s are inlined once per schema (the spec has no reference cycles), and the spec's
``openapi: 3.0.x`` version selects openapi-schema-validator's OAS 3.0 validators (``nullable``,
``format: double``...).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import orjson
import pytest
from openapi_schema_validator import (
    OAS30ReadValidator,
    OAS30WriteValidator,
    OAS31Validator,
)

SPEC_PATH = Path(__file__).resolve().parents[3] / "shared/spec/statsig-console-api.openapi.json"
# The 2025-03-12 live download keeps operations the current spec dropped (dynamic-config rules).
SPEC_2025_03_PATH = SPEC_PATH.with_name("statsig-console-api.openapi.2025-03-12.json")

# The pattern every inline error response in the spec follows; used for statuses an operation
# does not document (the emulator's 400s on some creates, 403, 404 on metric sources, 429...).
GENERIC_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": {"type": "integer"},
        "message": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "property": {"type": "string"},
                    "errorMessage": {"type": "string"},
                },
                "required": ["property", "errorMessage"],
            },
        },
    },
    "required": ["status", "message"],
}


class SpecMismatch(AssertionError):
    """A request or response does not conform to the spec."""


class OpenApiSpec:
    """The loaded spec: operation lookup by concrete path, schema validation helpers."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.version: str = document["openapi"]
        major_minor = tuple(int(x) for x in self.version.split(".")[:2])
        self._oas30 = major_minor < (3, 1)
        self._templates = [
            (template, template.strip("/").split("/")) for template in document["paths"]
        ]

    # -- lookup ------------------------------------------------------------------------------

    def match_path(self, path: str) -> str:
        """The spec path template for a concrete raw path (most literal match wins)."""
        raw = path.split("?", 1)[0]
        segments = [unquote(s) for s in raw.strip("/").split("/")]
        best: tuple[tuple[bool, ...], str] | None = None
        for template, parts in self._templates:
            if len(parts) != len(segments):
                continue
            if all(p.startswith("{") or p == s for p, s in zip(parts, segments, strict=True)):
                rank = tuple(not p.startswith("{") for p in parts)
                if best is None or rank > best[0]:
                    best = (rank, template)
        if best is None:
            raise SpecMismatch(f"No spec path matches {path!r}")
        return best[1]

    def operation(self, method: str, path: str) -> dict[str, Any]:
        template = self.match_path(path)
        op = self.document["paths"][template].get(method.lower())
        if op is None:
            raise SpecMismatch(f"Spec has no {method.upper()} {template}")
        return op

    def documented_statuses(self, method: str, path: str) -> list[str]:
        return list(self.operation(method, path).get("responses", {}))

    def response_schema(self, method: str, path: str, status: int) -> dict[str, Any] | None:
        """The resolved JSON schema for ``status``; None if the spec does not document it."""
        responses = self.operation(method, path).get("responses", {})
        entry = responses.get(str(status))
        if entry is None:
            return None
        schema = entry.get("content", {}).get("application/json", {}).get("schema")
        return self.resolve(schema) if schema is not None else {}

    def request_schema(self, method: str, path: str) -> dict[str, Any] | None:
        body = self.operation(method, path).get("requestBody")
        if body is None:
            return None
        return self.resolve(body["content"]["application/json"]["schema"])

    # -- $ref resolution ---------------------------------------------------------------------

    def resolve(self, node: Any) -> Any:
        """A copy of ``node`` with every ``$ref`` inlined."""
        return self._resolve(node, ())

    def _resolve(self, node: Any, stack: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [self._resolve(v, stack) for v in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str):
            if ref in stack:
                raise SpecMismatch(f"Cyclic $ref {ref}")
            target = self._pointer(ref)
            merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            return self._resolve(merged, (*stack, ref))
        return {k: self._resolve(v, stack) for k, v in node.items()}

    def _pointer(self, ref: str) -> Any:
        if not ref.startswith("#/"):
            raise SpecMismatch(f"External $ref not supported: {ref}")
        node: Any = self.document
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    # -- validation --------------------------------------------------------------------------

    def _validator(self, schema: dict[str, Any], *, reading: bool) -> Any:
        if not self._oas30:
            return OAS31Validator(schema)
        return (OAS30ReadValidator if reading else OAS30WriteValidator)(schema)

    def _check(self, schema: dict[str, Any], value: Any, what: str, *, reading: bool) -> None:
        errors = sorted(
            self._validator(schema, reading=reading).iter_errors(value), key=lambda e: e.path
        )
        if errors:
            details = "\n".join(
                f"  at {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}"
                for e in errors[:10]
            )
            raise SpecMismatch(f"{what} does not match the spec:\n{details}")

    def validate_response(
        self,
        method: str,
        path: str,
        status: int,
        body: Any,
        *,
        allow_undocumented: bool = False,
    ) -> bool:
        """Validate a response body; True if the status is documented for the operation.

        An undocumented status fails unless ``allow_undocumented``, in which case the body must
        still have the spec's generic error shape (``{status, message[, errors]}``).
        """
        if isinstance(body, bytes | str):
            body = orjson.loads(body)
        schema = self.response_schema(method, path, status)
        what = f"{method.upper()} {path} -> {status}"
        if schema is None:
            if not allow_undocumented:
                documented = self.documented_statuses(method, path)
                raise SpecMismatch(f"{what}: status not documented (spec has {documented})")
            self._check(GENERIC_ERROR_SCHEMA, body, what, reading=True)
            if body.get("status") != status:
                raise SpecMismatch(f"{what}: body status {body.get('status')} != {status}")
            return False
        self._check(schema, body, what, reading=True)
        return True

    def validate_request_body(self, method: str, path: str, body: Any) -> None:
        """Validate a request body against the operation's requestBody schema."""
        schema = self.request_schema(method, path)
        if schema is None:
            raise SpecMismatch(f"{method.upper()} {path}: spec declares no request body")
        self._check(schema, body, f"request body of {method.upper()} {path}", reading=False)


@functools.cache
def _load(path: Path) -> OpenApiSpec:
    return OpenApiSpec(orjson.loads(path.read_bytes()))


def spec_or_skip() -> OpenApiSpec:
    """The loaded spec, or skip the calling test when the file is absent."""
    if not SPEC_PATH.is_file():
        pytest.skip(
            f"OpenAPI spec not found at {SPEC_PATH}; conformance tests need ../shared/spec "
            "beside the repo"
        )
    return _load(SPEC_PATH)


def spec_2025_03_or_skip() -> OpenApiSpec:
    """The 2025-03-12 spec (for operations only it documents), or skip when it is absent."""
    if not SPEC_2025_03_PATH.is_file():
        pytest.skip(f"OpenAPI spec not found at {SPEC_2025_03_PATH}")
    return _load(SPEC_2025_03_PATH)
