"""Sending a request to the worker that owns an order's partition.

Faust's ``table_route`` forwards only a GET's method and headers and drops the owner's response
headers (``Location``, ``Retry-After``); orders need the body forwarded for POST and those headers
back, so we route with Faust's router (``faust_glue.owner_url``) and forward ourselves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from orderflow.config import Settings
from orderflow.faust_glue import owner_url
from orderflow.tracing import client_trace_configs
from orderflow.web.auth import CLIENT_HEADER, FORWARDED_HEADER

__all__ = ["FORWARDED_HEADER", "SUSPECT_S", "Forwarding", "NotReady", "Owner", "OwnerLookup"]

# (path and query string, body) -> the headers that authenticate a forward (web/auth.py)
Signer = Callable[[str, bytes], dict[str, str]]

_KEPT_RESPONSE_HEADERS = (
    "Location",
    "Retry-After",
    "Idempotent-Replayed",
    "Content-Location",
    "WWW-Authenticate",
)
# The body we forward is the one we read, already decoded by aiohttp: its Content-Encoding
# must not travel with it (the owner would try to decode it again).
# The client's API key goes no further than the worker it reached (the owner believes the
# signature), and forwarding headers are always this worker's own.
_DROPPED_REQUEST_HEADERS = {
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "content-encoding",
    "authorization",
    FORWARDED_HEADER.lower(),
    CLIENT_HEADER.lower(),
}
# Connections to the owners for forwarded POSTs and plain GETs; long-polls have their own pool.
_REQUEST_POOL_SIZE = 100
# An owner that did not answer (refused, reset, timed out) is not asked again for this long:
# requests meanwhile go the way they go without an owner (POSTs are accepted here, GETs wait
# for the group to move its partitions) instead of each paying a timeout.
SUSPECT_S = 2.0


class NotReady(Exception):
    """This worker cannot answer yet (no assignment, recovering, rebalancing): HTTP 503."""


@dataclass(frozen=True)
class Owner:
    """Where a key's partition lives: here, or at ``url``."""

    is_local: bool
    url: URL


def _ident(url: URL) -> tuple[str, int]:
    return (url.host or "", int(url.port or 80))


@dataclass(frozen=True)
class Forwarding:
    """How one request is replayed at its owner (``OwnerLookup.forward``)."""

    timeout: float  # the whole exchange, seconds
    body: bytes | None = None  # the body this worker read (already decoded); None for a GET
    long_poll: bool = False  # sent from the long-poll pool, so polls never starve the others
    sign: Signer | None = None  # the headers that authenticate the forward (web/auth.py)


class OwnerLookup:
    """Finds the owner of an order id and forwards requests to it."""

    def __init__(
        self,
        app: Any,
        table_name: str,
        max_long_polls: int = Settings.max_long_polls,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.monotonic = monotonic
        # When the worker last stopped being ready (it starts unready: nothing recovered yet).
        self.unready_since: float | None = monotonic()
        self.table_name = table_name
        self.max_long_polls = max_long_polls
        # Two client sessions: forwarded long-polls, each holding a connection up to 30 s, must
        # never take the connections that forwarded POSTs need (they would starve into 503s).
        self._sessions: dict[bool, aiohttp.ClientSession] = {}
        self._closed = False  # the worker is stopping: no new forwarding
        # False from the moment partitions move until Faust has recovered the tables of the new
        # assignment (its rebalancing/in_recovery flags leave a gap between the two, where a
        # newly owned order would wrongly look unknown: a 404 instead of a 503).
        self.settled = False
        self._suspects: dict[tuple[str, int], float] = {}  # owner -> not asked until

    def mark_moving(self) -> None:
        self.settled = False
        if self.unready_since is None:
            self.unready_since = self.monotonic()

    def mark_settled(self) -> None:
        self.settled = True
        self.unready_since = None

    def unready_for(self) -> float:
        """Seconds since partitions began to move without settling again (0 when settled)."""
        since = self.unready_since
        return 0.0 if since is None else self.monotonic() - since

    def is_ready(self) -> bool:
        app = self.app
        return bool(self.settled and not app.rebalancing and not app.in_recovery)

    async def wait_ready(self, timeout: float, poll_s: float = 0.05) -> bool:
        """Wait up to ``timeout`` for this worker to be ready (partitions settled)."""
        deadline = self.monotonic() + timeout
        while not self.is_ready():
            remaining = deadline - self.monotonic()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(poll_s, remaining))
        return True

    def is_suspect(self, owner: Owner) -> bool:
        """True while ``owner`` recently failed to answer a forwarded request."""
        until = self._suspects.get(_ident(owner.url))
        if until is None:
            return False
        if self.monotonic() >= until:
            del self._suspects[_ident(owner.url)]
            return False
        return True

    def owner(self, order_id: str) -> Owner:
        if not self.is_ready():
            raise NotReady("recovering or rebalancing")
        try:
            url = URL(owner_url(self.app, self.table_name, order_id.encode()))
        except Exception as exc:  # KeyError before the first assignment, and friends
            raise NotReady(f"no owner known for the key yet ({exc!r})") from None
        local = _ident(url) == _ident(URL(str(self.app.conf.canonical_url)))
        return Owner(local, url)

    def owns(self, order_id: str) -> bool:
        """True when this worker is, right now, the owner of the order's partition."""
        try:
            return self.owner(order_id).is_local
        except NotReady:
            return False

    def _session(self, long_poll: bool) -> aiohttp.ClientSession:
        if self._closed:
            raise NotReady("the worker is stopping")
        session = self._sessions.get(long_poll)
        if session is None or session.closed:
            limit = self.max_long_polls if long_poll else _REQUEST_POOL_SIZE
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=limit), trace_configs=client_trace_configs()
            )
            self._sessions[long_poll] = session
        return session

    async def close(self) -> None:
        """Close the forwarding sessions (at shutdown); later forwards answer 503."""
        self._closed = True
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()

    async def forward(
        self, owner: Owner, request: Any, how: Forwarding
    ) -> tuple[int, bytes, str, dict[str, str]]:
        """Replay the request at the owner; returns (status, body, content type, headers)."""
        url = owner.url.with_path(request.path).with_query(request.query)
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in _DROPPED_REQUEST_HEADERS
        }
        if how.sign is not None:
            headers.update(how.sign(url.raw_path_qs, how.body or b""))
        session = self._session(how.long_poll)
        try:
            async with session.request(
                request.method,
                url,
                headers=headers,
                data=how.body,
                timeout=aiohttp.ClientTimeout(total=how.timeout),
            ) as response:
                payload = await response.read()
                kept = {
                    h: response.headers[h] for h in _KEPT_RESPONSE_HEADERS if h in response.headers
                }
                return response.status, payload, response.content_type, kept
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._suspects[_ident(owner.url)] = self.monotonic() + SUSPECT_S
            raise NotReady(f"the owner at {owner.url} did not answer ({exc!r})") from None
        except RuntimeError as exc:  # "Session is closed": the worker began to stop meanwhile
            raise NotReady(f"the worker is stopping ({exc})") from None
