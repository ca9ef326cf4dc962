"""Keeping API keys out of every log line, checkpoint, output and error message.

Each client registers its key here (so do the sandbox's demo projects, through their clients);
``text`` and the structlog processor ``processor`` replace every registered key with a fixed mask.
Only secrets in use are masked: an entity id that merely looks like a key (``console-looking-id``)
is shown as it is, since hiding it would make error messages useless.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

MASK = "console-***"
_secrets: set[str] = set()


def register(secret: str) -> None:
    if secret:
        _secrets.add(secret)


def forget_all() -> None:
    """Forget every registered secret (the test suite starts each test from none)."""
    _secrets.clear()


def text(value: str) -> str:
    # Longest first: a key that contains another registered key is masked whole.
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in value:
            value = value.replace(secret, MASK)
    return value


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
