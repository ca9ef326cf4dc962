"""Deterministic Statsig-looking ids (22 base62 characters, like ``4R5PV7mvYdW6NLCwK8ocoz``).

Ids are derived from a hash of their inputs rather than drawn at random so that a demo world built
twice from the same seed is byte-for-byte identical, which tests and benchmarks rely on.
"""

from __future__ import annotations

import hashlib

__all__ = ["stable_id", "unit_float"]

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def stable_id(*parts: object) -> str:
    """A 22-character base62 id that depends only on ``parts``."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=17).digest()
    number = int.from_bytes(digest, "big")
    chars = []
    for _ in range(22):
        number, rest = divmod(number, 62)
        chars.append(_ALPHABET[rest])
    return "".join(chars)


def unit_float(*parts: object) -> float:
    """A number in [0, 1) that depends only on ``parts`` (a seeded, order-free coin)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64
