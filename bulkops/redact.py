"""Keeping API keys out of every log line, checkpoint, output and error message.

Each client registers its key here; ``text`` and the structlog processor ``processor`` replace any
registered key, and anything shaped like a Console API key, with a fixed mask.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any

MASK = "console-***"
_KEY_SHAPE = re.compile(r"console-[A-Za-z0-9_\-]{6,}")
_secrets: set[str] = set()


def register(secret: str) -> None:
    if secret:
        _secrets.add(secret)


def text(value: str) -> str:
    for secret in _secrets:
        if secret in value:
            value = value.replace(secret, MASK)
    return _KEY_SHAPE.sub(MASK, value)


def deep(value: Any) -> Any:
    if isinstance(value, str):
        return text(value)
    if isinstance(value, dict):
        return {k: deep(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [deep(v) for v in value]
    return value


def processor(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
    """structlog processor: mask secrets in every field of every event."""
    return {key: deep(value) for key, value in event.items()}
