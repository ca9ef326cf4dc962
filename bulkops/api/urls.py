"""Base URLs: what makes one usable, in words a person can act on (job files and ``--base-url``)."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import quote, unquote, urlsplit


def url_problem(value: str) -> str:
    """Why ``value`` is not a usable base URL of the Console API, or "" when it is one."""
    if not value.strip():
        return "it is empty; give a URL such as https://statsigapi.net"
    if not value.startswith(("http://", "https://")):
        return "it must start with http:// or https://"
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        return "it contains whitespace or control characters"
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. an unclosed [ of an IPv6 address
        return "its host is not a host name or an IP address"
    if not parts.hostname:
        return "it has no host after the //"
    if parts.username is not None or parts.password is not None:
        return "it carries credentials (user:password@); keys come from api_key_env, never URLs"
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        return f"its port {parts.netloc.rpartition(':')[2]} is not a number from 1 to 65535"
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        return "it must not carry a query (?...) or a fragment (#...)"
    if parts.path.rstrip("/").lower().endswith("/console/v1"):
        return (
            "it ends in the API's path /console/v1, which bulkops adds to every request; give "
            f"the server alone, e.g. {value[: value.lower().rfind('/console/v1')]}"
        )
    if parts.scheme == "http" and _public_host(parts.hostname):
        return (
            f"http:// would send the Console API key unencrypted across the network to "
            f"{parts.hostname}; use https:// (http:// is for an emulator or a proxy on this "
            "machine or a private network)"
        )
    return ""


#: Hosts of Statsig's own API: never spoken to in plain text.
_STATSIG_DOMAINS = ("statsigapi.net", "statsig.com")


def _public_host(host: str) -> bool:
    """Is ``host`` surely on the internet: Statsig's own, or a public IP address?

    A name is otherwise given the benefit of the doubt (``emulator``, ``mock.internal``,
    ``host.docker.internal``, a CI service's name): whether it is private is the network's
    business, and refusing a private emulator's URL would stop a rehearsal for nothing.
    """
    name = host.strip(".").lower()
    if any(name == d or name.endswith("." + d) for d in _STATSIG_DOMAINS):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return address.is_global


def api_path(*segments: str) -> str:
    """``/console/v1/`` + the segments, each percent-encoded (a name may hold ``/``, spaces, ...)."""
    return "/console/v1/" + "/".join(_encode_segment(str(segment)) for segment in segments)


def _encode_segment(segment: str) -> str:
    encoded = quote(segment, safe="")
    # "." and ".." are dot-segments that URL normalisation would resolve away; encode the dots.
    return encoded.replace(".", "%2E") if segment in (".", "..") else encoded


def listed_item_path(list_path: str, field: str, value: str) -> str:
    """A read path for an entity the API serves only in a list (no GET of one item).

    ``LIST#FIELD=VALUE`` names the row of LIST whose FIELD equals VALUE. The fragment is never
    sent (``read_entity`` reads the list and picks the row), so the path stays a plain string
    in plans and journals.
    """
    return f"{list_path}#{field}={quote(value, safe='')}"


def split_listed_item_path(path: str) -> tuple[str, str, str] | None:
    """(list path, field, value) of a ``listed_item_path``; None for an ordinary path."""
    list_path, sep, fragment = path.partition("#")
    if not sep or fragment.startswith(_GROUPS_OF):
        return None
    field, _, value = fragment.partition("=")
    return list_path, field, unquote(value)


_GROUPS_OF = "group-names-of="


def group_names_path(path: str, experiment_path: str) -> str:
    """A read path for experiment overrides whose ``groupID`` values read as group names.

    ``PATH#group-names-of=EXPERIMENT`` reads PATH, then the experiment at EXPERIMENT, and turns
    each ``groupID`` that is the id of one of its groups into that group's name (a server may
    answer ids where names were sent; docs/api-assumptions.md #6). The fragment is never sent.
    """
    return f"{path}#{_GROUPS_OF}{quote(experiment_path, safe='')}"


def split_group_names_path(path: str) -> tuple[str, str] | None:
    """(overrides path, experiment path) of a ``group_names_path``; None for any other path."""
    base, sep, fragment = path.partition("#")
    if not sep or not fragment.startswith(_GROUPS_OF):
        return None
    return base, unquote(fragment[len(_GROUPS_OF) :])


# -- quota ledger URLs (checked by job files too, so they live here, away from the ledger) --
_PASSWORD = re.compile(r"^([a-z]+://[^/@:]*):[^/@]*@", re.IGNORECASE)


def redacted(url: str) -> str:
    """``url`` with any password replaced by ``***`` (``redis://user:***@host``)."""
    return _PASSWORD.sub(r"\1:***@", url)


def ledger_url_problem(url: str) -> str:
    """Why ``url`` does not name a quota ledger, or "" when it does."""
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        if not path.startswith("/") or path == "/":
            return "a sqlite ledger is sqlite:///ABSOLUTE/PATH, e.g. sqlite:///var/lib/bulkops/quota.sqlite"
        return ""
    if not url.startswith(("redis://", "rediss://")):
        return "it must start with redis://, rediss:// (TLS) or sqlite:///"
    if any(c.isspace() or ord(c) < 32 for c in url):
        return "it contains whitespace or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "its host or port cannot be read; write redis://HOST:PORT/DB"
    if not parts.hostname:
        return "it has no host after the //; write redis://HOST:PORT/DB"
    if port is not None and not 1 <= port <= 65535:
        return "its port is not a number from 1 to 65535"
    db = parts.path.strip("/")
    if db and not db.isdigit():
        return f"its database {db!r} is not a number; write redis://HOST:PORT/0"
    return ""
