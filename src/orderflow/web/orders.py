"""``POST /orders`` and ``GET /orders/{order_id}``: validate, route to the owner, answer in JSON.

POST does not write a table (only agents can): it sends a PlaceOrder command keyed by the order
id and waits, in process, until the order service has stored the order. The request is served by
the worker that owns the order's partition, so that wait is an in-memory signal, and an
``Idempotency-Key`` is checked against the order the single writer actually stored (201, or 422).

When nobody can confirm the order now (a rebalance, a recovery, the owner down or frozen), any
worker still accepts it: the PlaceOrder is sent with acks=all and the answer is 202 with the
order's ``Location``. The single writer decides later, exactly as it would have: the same key
names the same order, a different body under a used key changes nothing (the same POST again
answers 422 once the owner has read it). GETs wait for a moving partition's new owner, and the
owner answers 404 only once it has read every command of the order's partition (``caught_up``).

Every request needs an API key (web/auth.py); an order belongs to the client that placed it and
is 404 for any other. An Idempotency-Key names an order of its client for the retention, then a
new generation on the same partition (domain/idempotency.py): the owner decides which, from the
command's own time. A durable 202 cannot know the generation: its ``Location`` is
``/orders/{generation 0}?placed_at={ms}``, which the owner resolves with the same decision.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp.web import RequestPayloadError

from orderflow.config import Settings
from orderflow.domain.events import PlaceOrder, rfc3339
from orderflow.domain.idempotency import order_id_for_key
from orderflow.domain.order import Order
from orderflow.domain.responses import order_to_public, public_version
from orderflow.domain.tokens import token_digest
from orderflow.domain.validation import OrderRequest, Problem, validate_order_request
from orderflow.keychains import KeyChains
from orderflow.ports import CommandSender, HttpRequest, OrderReader, OwnerRouting
from orderflow.watch import OrderWatch
from orderflow.web.auth import FORWARDED_HEADER, Authenticator, Caller
from orderflow.web.routing import Forwarding, NotReady, Owner
from orderflow.wire import encode_event

__all__ = [
    "FORWARD_POST_TIMEOUT_S",
    "MAX_BODY_BYTES",
    "MAX_WAIT_S",
    "UNAUTHORIZED",
    "ApiResponse",
    "LongPolls",
    "OrderApi",
    "command_time",
    "content_type_refusal",
    "is_order_id",
    "key_problems",
    "order_id_for_key",
    "problems_response",
    "send_confirmed",
    "unavailable",
]

log = logging.getLogger(__name__)

# (order id, timeout) -> whether this worker has read every command of the order's partition
CaughtUp = Callable[[str, float], Awaitable[bool]]

MAX_BODY_BYTES = 64 * 1024
MAX_WAIT_S = 30.0
# A forwarded POST that takes longer than this is accepted here instead (the owner may be frozen;
# the command is idempotent, so the owner's own send, if it happens, changes nothing).
FORWARD_POST_TIMEOUT_S = 3.0
_FORWARD_MARGIN_S = 2.0  # a forwarded GET's timeout beyond the owner's own wait budget
_OWNER_RETRY_S = 0.5  # a GET whose owner is away asks the routing again after this
_CATCH_UP_MIN_S = 1.0  # time given to learn a command partition's end before a 404
_MAX_KEY_LENGTH = 255
_ORDER_ID_LENGTH = len("ord_") + 32
# The codings aiohttp decodes before we read the body (it passes any other one through raw).
_DECODED_ENCODINGS = frozenset({"", "identity", "gzip", "deflate"})


class _DuplicateKey(Exception):
    """A JSON object names one member twice."""


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            raise _DuplicateKey(name)
        seen.add(name)
    return dict(pairs)


def _duplicate_key(raw: bytes) -> str | None:
    """A member named twice in one object of ``raw`` (already parsed as valid JSON), or None.

    orjson keeps the last one silently; a proxy or a log reader that keeps the first would see
    another order than the one placed, so such a body is refused (RFC 8259: names SHOULD be
    unique). A second parse, of at most MAX_BODY_BYTES.
    """
    try:
        json.loads(raw, object_pairs_hook=_unique_members)
    except _DuplicateKey as twice:
        return str(twice.args[0])
    return None


_MAX_PLACED_AT_MS = 10**14
_VERSION = re.compile(r"[0-9a-f]{16}")
_TOO_LARGE = Problem("$", "too_large", f"the body exceeds {MAX_BODY_BYTES} bytes")


def command_time() -> tuple[str, float]:
    """A command's time: RFC 3339 (ms) and the same instant in seconds."""
    ms = int(time.time() * 1000)
    return rfc3339(ms / 1000), ms / 1000


def content_type_refusal(request: HttpRequest) -> ApiResponse | None:
    """415 unless the body is declared JSON (parameters such as charset allowed)."""
    declared = request.headers.get("Content-Type", "")
    if declared.split(";", 1)[0].strip().lower() == "application/json":
        return None
    return problems_response(
        415,
        "unsupported_media_type",
        [Problem("Content-Type", "unsupported", "must be application/json")],
    )


def key_problems(key: str | None) -> list[Problem]:
    """What is wrong with an ``Idempotency-Key`` header's value (None: not sent)."""
    if key is not None and not (0 < len(key) <= _MAX_KEY_LENGTH and key.isprintable()):
        return [
            Problem(
                "Idempotency-Key",
                "format",
                f"must be 1 to {_MAX_KEY_LENGTH} printable characters",
            )
        ]
    return []


def is_order_id(text: str) -> bool:
    """Whether ``text`` can be an order's id (anything else is a 404 without asking anyone)."""
    return text.startswith("ord_") and len(text) == _ORDER_ID_LENGTH


def _validated(body: Any, key: str | None) -> OrderRequest | ApiResponse:
    """The order request, or the 400 listing every problem of the body and Idempotency-Key."""
    problems = key_problems(key)
    validated = validate_order_request(body)
    if isinstance(validated, list):
        problems.extend(validated)
    if problems:
        return problems_response(400, "invalid_request", problems)
    assert isinstance(validated, OrderRequest)
    return validated


def _fingerprint(request: OrderRequest, token_key: bytes = b"") -> str:
    """The body's hash, stored with the order (kept forever) to tell a replay from a conflict.

    The token enters it only through a keyed hash: a plain hash of a low-entropy token could be
    found back by trying candidates. Without a key the token is left out (a reused key with
    only another token is then a replay of the first order, charged with the first token).
    """
    canonical = {
        "customer_id": request.customer_id,
        "currency": request.currency,
        "items": [[i.sku, i.quantity, i.unit_amount] for i in request.items],
        "token": token_digest(request.payment_token, token_key) if token_key else None,
    }
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ApiResponse:
    """What a view answers: status, a JSON-able body, extra headers."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # a forwarded answer, passed through untouched
    content_type: str = "application/json"


def _not_durable(order_id: str, keyed: bool) -> ApiResponse:
    """503 for a PlaceOrder the broker did not confirm: the order may or may not exist."""
    if keyed:
        return unavailable(
            "the order could not be stored durably in time; retry with the same Idempotency-Key"
        )
    # Without a key a blind retry could be a second order: name it so the client can check.
    body = {
        "error": "unavailable",
        "order_id": order_id,
        "message": "the order could not be confirmed as stored; it may still be placed: "
        "GET the Location (until it answers 200 or 404) before placing it again, "
        "or send an Idempotency-Key to make retries safe",
    }
    return ApiResponse(503, body, {"Retry-After": "1", "Location": f"/orders/{order_id}"})


def _location(order_id: str, placed_at: float | None) -> str:
    """Where a placed order is followed: a keyed command's order is resolved by its owner."""
    if placed_at is None:
        return f"/orders/{order_id}"
    return f"/orders/{order_id}?placed_at={round(placed_at * 1000)}"


def _accepted(order_id: str, placed_at: float | None) -> ApiResponse:
    """202: the PlaceOrder is durable in Kafka; its owner has not stored (or decided) it yet.

    For a keyed POST ``order_id`` is the key's generation-0 id: the order itself after the
    key's retention may have another; the ``Location`` always leads to it.
    """
    again = (
        (
            "; the same POST again answers 201 once it is stored, or 422 if this "
            "Idempotency-Key was first used for another body"
        )
        if placed_at is not None
        else ""
    )
    body = {
        "order_id": order_id,
        "status": "ACCEPTED",
        "message": f"accepted durably; not stored yet: GET the Location to follow it{again}",
    }
    return ApiResponse(202, body, {"Location": _location(order_id, placed_at), "Retry-After": "1"})


async def send_confirmed(
    topic: CommandSender, key: bytes, value: bytes | None, wait_s: float, what: str
) -> bool:
    """Send one record and wait for the broker's ack (acks=all) within ``wait_s``; False (logged)
    when it is not known to be durable. The producer's future is shielded: a timeout must not
    cancel it (it may still be delivered)."""
    try:
        async with asyncio.timeout(wait_s):
            delivery = await topic.send(key=key, value=value)  # type: ignore[arg-type]
            await asyncio.shield(delivery)
        return True
    except Exception as exc:  # KafkaError, a timeout: not known to be durable
        log.warning("%s not confirmed by the broker: %r", what, exc)
        return False


def problems_response(status: int, error: str, problems: list[Problem]) -> ApiResponse:
    listed = [{"field": p.field, "code": p.code, "message": p.message} for p in problems]
    return ApiResponse(status, {"error": error, "problems": listed})


def unavailable(reason: str) -> ApiResponse:
    return ApiResponse(503, {"error": "unavailable", "message": reason}, {"Retry-After": "1"})


def _found(order: Order, placed_at: float | None) -> ApiResponse:
    """200 with the order; resolved from a 202's Location, it names its own URL too."""
    headers = {} if placed_at is None else {"Content-Location": f"/orders/{order.order_id}"}
    return ApiResponse(200, order_to_public(order), headers)


class LongPolls:
    """The long-polls (waiting GETs) a worker holds: at most ``max_total``, ``max_per_peer`` each.

    The peer is the TCP peer address, never a header a client could forge.
    """

    def __init__(self, max_total: int, max_per_peer: int) -> None:
        self.max_total = max_total
        self.max_per_peer = max_per_peer
        self.held: Counter[str] = Counter()

    def try_acquire(self, peer: str) -> bool:
        if self.held.total() >= self.max_total or self.held[peer] >= self.max_per_peer:
            return False
        self.held[peer] += 1
        return True

    def release(self, peer: str) -> None:
        self.held[peer] -= 1
        if self.held[peer] <= 0:
            del self.held[peer]


class Placements:
    """Orders this worker answered for before they were stored, so that a GET never says 404.

    ``unconfirmed``: the broker had not acknowledged the PlaceOrder when the POST gave up (503),
    but the producer keeps trying; ``accepted``: it is in Kafka, the order service has not stored
    it yet (202). Entries are dropped once the order is stored, its send failed for good, or after
    ``keep_s`` (a partition that moved away leaves its entries to expire).
    """

    def __init__(self, keep_s: float = 600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.keep_s = keep_s
        self.clock = clock
        self._states: dict[str, tuple[str, float]] = {}

    def unconfirmed(self, order_id: str, delivery: asyncio.Future[Any]) -> None:
        self._set(order_id, "unconfirmed")

        def resolved(future: asyncio.Future[Any]) -> None:
            if future.cancelled() or future.exception() is not None:
                self.forget(order_id)  # never reached Kafka: a 404 is the truth now
            elif order_id in self._states:
                self._set(order_id, "accepted")

        delivery.add_done_callback(resolved)

    def accepted(self, order_id: str) -> None:
        self._set(order_id, "accepted")

    def state(self, order_id: str) -> str | None:
        entry = self._states.get(order_id)
        if entry is None or self.clock() - entry[1] > self.keep_s:
            self._states.pop(order_id, None)
            return None
        return entry[0]

    def forget(self, order_id: str) -> None:
        self._states.pop(order_id, None)

    def _set(self, order_id: str, state: str) -> None:
        now = self.clock()
        if len(self._states) > 10_000:  # bound the memory: drop the expired ones
            self._states = {k: v for k, v in self._states.items() if now - v[1] <= self.keep_s}
        self._states[order_id] = (state, now)


UNAUTHORIZED = ApiResponse(
    401,
    {
        "error": "unauthorized",
        "message": "a valid API key is required: Authorization: Bearer <key>",
    },
    {"WWW-Authenticate": 'Bearer realm="orderflow"'},
)

_TOO_MANY_LONG_POLLS = ApiResponse(
    429,
    {
        "error": "too_many_long_polls",
        "message": "too many long-polls (GET ?wait=) in progress; retry later or without wait",
    },
    {"Retry-After": "1"},
)


class OrderApi:
    """The HTTP behaviour of orders, kept apart from Faust's View classes."""

    def __init__(
        self,
        orders: OrderReader,
        commands: CommandSender,
        watch: OrderWatch,
        routing: OwnerRouting,
        post_wait_s: float,
        long_polls: LongPolls | None = None,
        caught_up: CaughtUp | None = None,
        move_wait_s: float = Settings.move_wait_s,
        store_wait_s: float | None = None,
        token_hash_key: bytes = b"",
        body_read_timeout_s: float = Settings.body_read_timeout_s,
        auth: Authenticator | None = None,
        chains: KeyChains | None = None,
    ) -> None:
        self.orders = orders
        self.body_read_timeout_s = body_read_timeout_s
        self.token_hash_key = token_hash_key
        self.commands = commands
        self.watch = watch
        self.routing = routing
        self.post_wait_s = post_wait_s
        self.long_polls = long_polls or LongPolls(
            Settings.max_long_polls, Settings.max_long_polls_per_client
        )
        self.placements = Placements()
        self.caught_up = caught_up
        self.move_wait_s = move_wait_s
        self.store_wait_s = post_wait_s if store_wait_s is None else store_wait_s
        self.auth = auth or Authenticator.disabled()
        self.chains = chains or KeyChains(
            self.auth.secret, Settings.partitions, Settings.idempotency_retention_s
        )

    async def create(self, request: HttpRequest) -> ApiResponse:
        read = await self.caller_and_body(request, optional_body=False)
        if isinstance(read, ApiResponse):
            return read
        caller, body = read
        key = request.headers.get("Idempotency-Key")
        validated = _validated(body, key)
        if isinstance(validated, ApiResponse):
            return validated
        return await self._route_post(request, validated, key, caller)

    async def _route_post(
        self, request: HttpRequest, validated: OrderRequest, key: str | None, caller: Caller
    ) -> ApiResponse:
        """Place the order here, forward it to its owner, or accept it durably without one."""
        keyed = key is not None
        # The same key of the same client names the same order (generation 0 of the key: the
        # owner picks the live generation); without a key, a fresh id (local if we can).
        order_id = self.chains.gen0(caller.client_id, key) if key is not None else None
        try:
            if order_id is None:
                order_id = self._local_order_id()
            owner = self.routing.owner(order_id)
            if not owner.is_local:
                return await self.forward(
                    owner,
                    request,
                    body_bytes=request["raw_body"],
                    timeout=FORWARD_POST_TIMEOUT_S,
                    caller=caller,
                )
            return await self._place(order_id, validated, keyed, caller)
        except NotReady as exc:
            # Nobody can confirm the order now (rebalance, recovery, owner down or stopping):
            # the command is accepted durably here, and its owner decides when it reads it.
            log.info("accepting %s without its owner: %s", order_id or "a new order", exc)
            return await self._accept(
                order_id or "ord_" + uuid.uuid4().hex, validated, keyed, caller
            )

    def _local_order_id(self) -> str:
        """A fresh order id whose partition this worker owns, so the POST needs no extra hop."""
        for _ in range(256):
            order_id = "ord_" + uuid.uuid4().hex
            if self.routing.owner(order_id).is_local:
                return order_id
        raise NotReady("this worker owns no partition")

    def _command(
        self,
        order_id: str,
        request: OrderRequest,
        request_id: str,
        caller: Caller,
        keyed: bool,
        occurred_at: str,
    ) -> bytes:
        command = PlaceOrder(
            order_id,
            request_id,
            self._fingerprint(request),
            request.customer_id,
            request.currency,
            request.items,
            request.payment_token,
            occurred_at,
            caller.client_id,
            keyed,
        )
        return encode_event(command)

    def _fingerprint(self, request: OrderRequest) -> str:
        return _fingerprint(request, self.token_hash_key)

    async def _accept(
        self, order_id: str, request: OrderRequest, keyed: bool, caller: Caller
    ) -> ApiResponse:
        """202 once Kafka holds the PlaceOrder (acks=all); the owner decides when it reads it."""
        text, at = command_time()
        command = self._command(order_id, request, str(uuid.uuid4()), caller, keyed, text)
        if not await self._send_durably(order_id, command):
            return _not_durable(order_id, keyed)
        return self._accepted(order_id, at if keyed else None)

    def _accepted(self, order_id: str, placed_at: float | None) -> ApiResponse:
        self.placements.accepted(order_id)  # a GET here says 202 until it is stored
        return _accepted(order_id, placed_at)

    def _stored(self, order_id: str, placed_at: float | None) -> Order | None:
        """The order ``order_id`` names, or (``placed_at``: a keyed command's time) the order of
        the key's generation that command names."""
        if placed_at is None:
            return self.orders.get(order_id)
        return self.chains.slot(order_id, self.orders.get, placed_at).existing

    async def _place(
        self, order_id: str, request: OrderRequest, keyed: bool, caller: Caller
    ) -> ApiResponse:
        fingerprint = self._fingerprint(request)
        text, at = command_time()
        placed_at = at if keyed else None
        existing = self._stored(order_id, placed_at)
        request_id = str(uuid.uuid4())
        command = self._command(order_id, request, request_id, caller, keyed, text)
        if existing is None:
            loop = asyncio.get_running_loop()
            # The store wait counts from arrival: a slow acknowledgement (a broker failover)
            # uses it up, so the client gets its 202 at the ack, not a store wait later.
            store_deadline = loop.time() + min(self.store_wait_s, self.post_wait_s)
            if not await self._send_durably(order_id, command):
                return _not_durable(order_id, keyed)

            def decided(order: Order | None) -> bool:
                # Stored, or no longer ours to store (a move wakes every waiter).
                return order is not None or not self.routing.owns(order_id)

            # Durable already: the client waits for the store only briefly (202 after that).
            wait = max(0.0, store_deadline - loop.time())
            existing = await self.watch.wait_for(
                order_id, lambda: self._stored(order_id, placed_at), decided, wait
            )
            if existing is None:
                # Durable, not stored yet (a slow agent, a move): a retry with the same key
                # cannot make a second order, and without a key the client must not retry.
                return self._accepted(order_id, placed_at)
        if existing.fingerprint != fingerprint:
            return problems_response(
                422,
                "idempotency_key_reused",
                [
                    Problem(
                        "Idempotency-Key",
                        "reused",
                        "was already used for a different request; nothing was changed",
                    )
                ],
            )
        headers = {"Location": f"/orders/{existing.order_id}"}
        if existing.request_id != request_id:
            headers["Idempotent-Replayed"] = "true"
        return ApiResponse(201, order_to_public(existing), headers)

    async def _send_durably(self, order_id: str, command: bytes) -> bool:
        """Send the PlaceOrder command and wait for the broker's ack (acks=all), within the
        POST wait: no 2xx may be given for an order that could still be lost with this process.
        """
        delivery: asyncio.Future[Any] | None = None
        try:
            async with asyncio.timeout(self.post_wait_s):
                delivery = await self.commands.send(key=order_id.encode(), value=command)
                # shield: a timeout must not cancel the producer's own future (it may still
                # be delivered; the client is told to check).
                await asyncio.shield(delivery)
            return True
        except Exception as exc:  # KafkaError, a timeout: not known to be durable either way
            log.warning("PlaceOrder for %s not confirmed by the broker: %r", order_id, exc)
            # A send cancelled before it returned its future never reached the producer.
            if delivery is not None and not delivery.done():
                self.placements.unconfirmed(order_id, delivery)
            return False

    async def get(self, request: HttpRequest, order_id: str) -> ApiResponse:
        caller = self.auth.caller(request)
        if caller is None:
            return UNAUTHORIZED
        problems: list[Problem] = []
        if not is_order_id(order_id):
            return ApiResponse(404, {"error": "not_found", "order_id": order_id})
        placed_at: float | None = None
        raw_placed_at = request.query.get("placed_at")
        if raw_placed_at is not None:
            if raw_placed_at.isdigit() and 0 < int(raw_placed_at) < _MAX_PLACED_AT_MS:
                placed_at = int(raw_placed_at) / 1000
            else:
                problems.append(
                    Problem("placed_at", "format", "must be the value a 202's Location gave")
                )
        after = request.query.get("after")
        if after is not None and not _VERSION.fullmatch(after):
            problems.append(Problem("after", "format", "must be an order version (16 hex digits)"))
        wait = 0.0
        raw_wait = request.query.get("wait")
        if raw_wait is not None:
            try:
                wait = float(raw_wait)
                if not 0 <= wait <= MAX_WAIT_S:
                    raise ValueError
            except ValueError:
                problems.append(
                    Problem("wait", "range", f"must be a number from 0 to {MAX_WAIT_S:g}")
                )
        if problems:
            return problems_response(400, "invalid_request", problems)
        if wait <= 0:
            return await self._get(request, order_id, wait, caller, placed_at, after)
        # Counted where the client's connection arrives; a worker's (signed) forward was
        # counted there.
        peer = str(getattr(request, "remote", "") or "")
        counted = not caller.forwarded
        if counted and not self.long_polls.try_acquire(peer):
            return _TOO_MANY_LONG_POLLS
        try:
            return await self._get(request, order_id, wait, caller, placed_at, after)
        finally:
            if counted:
                self.long_polls.release(peer)

    def visible(self, order: Order | None, caller: Caller) -> Order | None:
        """Another client's order (or, with auth, one from before API keys) is unknown: 404."""
        if order is None or not self.auth.enabled or order.client_id == caller.client_id:
            return order
        return None

    async def _get(
        self,
        request: HttpRequest,
        order_id: str,
        wait: float,
        caller: Caller,
        placed_at: float | None,
        after: str | None = None,
    ) -> ApiResponse:
        """The order, once terminal or after ``wait`` seconds (``after``: once its public view is
        no longer the version named, terminal or not: a change stream's next step)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        # A partition on the move is waited for (its new owner, or the owner's recovery) up to
        # the move budget, or the long-poll's own wait when longer: not an immediate 503.
        move_deadline = started + max(wait, self.move_wait_s)
        remote = await self._get_from_owner(
            request, order_id, started + wait, move_deadline, caller
        )
        if remote is not None:
            return remote

        def done(order: Order | None) -> bool:
            if after is not None:
                return order is not None and public_version(order_to_public(order)) != after
            return order is not None and order.status.is_terminal

        def settled(order: Order | None) -> bool:
            # A partition move (the watch wakes every waiter) ends the wait too.
            return done(order) or not self.routing.owns(order_id)

        def lookup() -> Order | None:
            return self.visible(self._stored(order_id, placed_at), caller)

        order = await self.watch.wait_for(
            order_id,
            lookup,
            settled,
            max(0.0, started + wait - loop.time()),
        )
        if not done(order) and not self.routing.owns(order_id):
            # The partition moved during the wait: the local store no longer tells the truth
            # (a 404 here would make a client place an existing order again).
            return unavailable("the order's partition moved during the wait; retry")
        if order is None:
            found = await self._not_stored(
                order_id, max(0.0, move_deadline - loop.time()), lookup, placed_at
            )
            if isinstance(found, ApiResponse):
                return found
            order = found
        self.placements.forget(order_id)
        return _found(order, placed_at)

    async def _get_from_owner(
        self,
        request: HttpRequest,
        order_id: str,
        wait_deadline: float,
        move_deadline: float,
        caller: Caller,
    ) -> ApiResponse | None:
        """The owner's answer (forwarded), a 503, or None once this worker owns the order."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                owner = self.routing.owner(order_id)
                if owner.is_local:
                    return None
                remaining_wait = max(0.0, wait_deadline - loop.time())
                return await self.forward(
                    owner,
                    request,
                    body_bytes=None,
                    long_poll=remaining_wait > 0,
                    timeout=max(remaining_wait, self.move_wait_s) + _FORWARD_MARGIN_S,
                    caller=caller,
                )
            except NotReady as exc:
                remaining = move_deadline - loop.time()
                if remaining <= 0 or caller.forwarded:
                    # (a forwarded request: the worker that forwarded it does the waiting)
                    return unavailable(str(exc))
                if not self.routing.is_ready():
                    await self.routing.wait_ready(remaining)
                else:  # the owner is away: the group moves its partitions after a while
                    await asyncio.sleep(min(_OWNER_RETRY_S, remaining))

    async def _not_stored(
        self,
        order_id: str,
        budget: float,
        lookup: Callable[[], Order | None],
        placed_at: float | None,
    ) -> Order | ApiResponse:
        """The order, read meanwhile; else 404 only when it is truly unknown: this worker has
        read every command written to the order's partition before now (a POST accepted by
        another worker during a move may still be on its way), and no POST it answered may
        still be stored."""
        state = self.placements.state(order_id)
        if state == "unconfirmed":
            body = {
                "error": "unavailable",
                "order_id": order_id,
                "message": "the order is not confirmed yet; ask again",
            }
            return ApiResponse(503, body, {"Retry-After": "1"})
        if self.caught_up is not None:
            caught_up = await self.caught_up(order_id, max(budget, _CATCH_UP_MIN_S))
            order = lookup() if self.routing.owns(order_id) else None
            if order is not None:  # read meanwhile
                self.placements.forget(order_id)
                return order
            if not caught_up or not self.routing.owns(order_id):
                body = {
                    "error": "unavailable",
                    "order_id": order_id,
                    "message": "the order's owner has not read every placed order yet; ask again",
                }
                return ApiResponse(503, body, {"Retry-After": "1"})
        if state == "accepted":
            body = {
                "order_id": order_id,
                "status": "ACCEPTED",
                "message": "accepted; not stored yet: ask again",
            }
            headers = {"Location": _location(order_id, placed_at), "Retry-After": "1"}
            return ApiResponse(202, body, headers)
        return ApiResponse(404, {"error": "not_found", "order_id": order_id})

    async def not_stored(self, order_id: str, caller: Caller) -> Order | ApiResponse:
        """For a change of an order not stored here (a cancel right after its POST's 202): the
        order once the owner has read it meanwhile, else what ``GET /orders/{id}`` answers."""

        def lookup() -> Order | None:
            return self.visible(self.orders.get(order_id), caller)

        return await self._not_stored(order_id, self.move_wait_s, lookup, None)

    async def forward(
        self,
        owner: Owner,
        request: HttpRequest,
        body_bytes: bytes | None,
        timeout: float,
        caller: Caller,
        long_poll: bool = False,
    ) -> ApiResponse:
        if caller.forwarded:
            # The sender thought we own the key; we think not: assignments are moving.
            raise NotReady("partition ownership is changing")
        if self.routing.is_suspect(owner):
            raise NotReady(f"the owner at {owner.url} did not answer a moment ago")

        def sign(path_qs: str, body: bytes) -> dict[str, str]:
            return self.auth.forward_headers(caller, request.method, path_qs, body)

        how = Forwarding(timeout, body_bytes, long_poll, sign)
        status, payload, content_type, headers = await self.routing.forward(owner, request, how)
        return ApiResponse(status, None, headers, raw=payload, content_type=content_type)

    async def caller_and_body(
        self, request: HttpRequest, *, optional_body: bool
    ) -> tuple[Caller, Any] | ApiResponse:
        """The caller and the decoded body of a request that changes something; or the 401/4xx
        that refuses them. A worker's signed forward is checked once its body is read (the
        signature covers it); anyone else first."""
        forwarded = bool(request.headers.get(FORWARDED_HEADER))
        caller = None if forwarded else self.auth.caller(request)
        if caller is None and not forwarded:
            return UNAUTHORIZED
        body, refused = await self.read_body(request, optional=optional_body)
        if caller is None:
            caller = self.auth.caller(request, request.get("raw_body", b""))
            if caller is None:
                return UNAUTHORIZED
        if refused is not None:
            return refused
        return caller, body

    async def at_owner(
        self, request: HttpRequest, order_id: str, caller: Caller
    ) -> ApiResponse | None:
        """The answer of the order's owner to ``request`` (forwarded with its body), or None when
        this worker is the owner. Raises ``NotReady`` while the partition moves."""
        owner = self.routing.owner(order_id)
        if owner.is_local:
            return None
        return await self.forward(
            owner,
            request,
            body_bytes=request.get("raw_body", b""),
            timeout=FORWARD_POST_TIMEOUT_S,
            caller=caller,
        )

    async def read_body(
        self, request: HttpRequest, *, optional: bool = False
    ) -> tuple[Any, ApiResponse | None]:
        """The whole body (decoded), or the JSON 4xx that refuses it; never a bare 500.

        ``optional``: an empty body is None. A body not declared JSON is refused (415).
        """
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in _DECODED_ENCODINGS:
            return None, problems_response(
                415,
                "invalid_request",
                [Problem("Content-Encoding", "unsupported", "supported: gzip, deflate, identity")],
            )
        length = request.content_length
        if length is not None and length > MAX_BODY_BYTES:
            return None, problems_response(413, "invalid_request", [_TOO_LARGE])
        raw = await self._read_raw(request, encoding)
        if isinstance(raw, ApiResponse):
            return None, raw
        request["raw_body"] = raw
        if optional and not raw:
            return None, None
        refused = content_type_refusal(request)  # (a body, optional or not, is declared JSON)
        if refused is not None:
            return None, refused
        return _parse_json(raw)

    async def _read_raw(self, request: HttpRequest, encoding: str) -> bytes | ApiResponse:
        """The body's bytes (at most MAX_BODY_BYTES), or the 4xx when they cannot be read."""
        # read(n) returns what has arrived so far: read until the end (chunked bodies have no
        # Content-Length), and never more than one byte past the limit.
        chunks: list[bytes] = []
        size = 0
        try:
            # A client trickling its body must not hold this handler (and its memory) for ever.
            async with asyncio.timeout(self.body_read_timeout_s):
                while size <= MAX_BODY_BYTES:
                    chunk = await request.content.read(MAX_BODY_BYTES + 1 - size)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
        except RequestPayloadError as exc:  # bad gzip/deflate data, a broken chunked encoding
            where = "Content-Encoding" if encoding not in ("", "identity") else "$"
            return problems_response(
                400,
                "invalid_request",
                [Problem(where, "undecodable", f"the body could not be read: {exc}")],
            )
        except TimeoutError:
            slow = problems_response(
                408,
                "invalid_request",
                [
                    Problem(
                        "$",
                        "timeout",
                        f"the body did not arrive within {self.body_read_timeout_s:g} s",
                    )
                ],
            )
            # The rest of the body may still come: the connection cannot be reused.
            return ApiResponse(slow.status, slow.body, {"Connection": "close"})
        if size > MAX_BODY_BYTES:  # 413 Content Too Large (RFC 9110), with our JSON body
            return problems_response(413, "invalid_request", [_TOO_LARGE])
        return b"".join(chunks)


def _parse_json(raw: bytes) -> tuple[Any, ApiResponse | None]:
    """The JSON value of a body, or the 400 that refuses it (not JSON, too deep, a name twice)."""
    try:
        body = orjson.loads(raw)  # also refuses bytes that are not UTF-8
    except orjson.JSONDecodeError:
        return None, problems_response(
            400,
            "invalid_request",
            [Problem("$", "invalid_json", "the body is not valid JSON (UTF-8)")],
        )
    try:
        twice = _duplicate_key(raw)
    except RecursionError:  # orjson takes 1024 levels, the stdlib parse about 1000
        return None, problems_response(
            400,
            "invalid_request",
            [Problem("$", "too_deep", "the body nests arrays or objects too deeply")],
        )
    if twice is not None:
        return None, problems_response(
            400,
            "invalid_request",
            [Problem("$", "duplicate_key", f"the member {twice!r} appears twice in one object")],
        )
    return body, None
