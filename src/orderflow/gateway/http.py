"""The HTTP payment gateway client: timeouts, retries with the same idempotency key, a breaker.

Every attempt of one charge carries the same ``Idempotency-Key``, so a retry after a lost answer
returns the charge the gateway already made instead of making a second one. Transient failures
(timeout, connection error, disconnect, 5xx, 409, 429) are retried with exponential backoff and
full jitter under one total deadline; other 4xx are permanent and never retried. A circuit breaker
stops calling a gateway that keeps failing. An optional ``before_request`` hook runs before every
attempt and may refuse it by raising (the worker's fence: work whose partition moved, or that a
frozen process resumed, must send nothing more; its first attempt may already be in flight).

The retry loop is our own (~40 lines) rather than a library's: it has to combine a total deadline,
``Retry-After``, the breaker and our error tree, which a generic retry decorator would need as
much code to express.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import aiohttp

from orderflow.domain.backoff import Backoff
from orderflow.domain.payment import Approved, ChargeOutcome, Declined, GatewayCharge, decline_for
from orderflow.domain.refund import GatewayRefund, RefundDeclined, Refunded, RefundOutcome
from orderflow.domain.tokens import mask_text
from orderflow.gateway.base import (
    ChargeRequest,
    CircuitOpenError,
    PermanentGatewayError,
    RefundRequest,
    TransientGatewayError,
)
from orderflow.tracing import client_trace_configs

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "HttpPaymentGateway",
]

log = logging.getLogger(__name__)


class BreakerState(enum.Enum):
    """Where a circuit breaker stands."""

    CLOSED = "closed"  # calls go through
    OPEN = "open"  # calls fail fast until the cool-down has passed
    HALF_OPEN = "half-open"  # one probe call may go through; its result decides


class CircuitBreaker:
    """Opens after N consecutive transient failures; after a cool-down, lets one probe through.

    Callers ask ``allow()`` before each call and report exactly one of ``record_success()``,
    ``record_failure()`` or ``release()`` (no verdict, e.g. cancelled) afterwards.
    """

    def __init__(
        self,
        failure_threshold: int = 10,
        cooldown_s: float = 5.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        if cooldown_s < 0:
            raise ValueError("cooldown_s must be >= 0")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    def _refresh(self) -> None:
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.cooldown_s:
            self._state = BreakerState.HALF_OPEN
            self._probing = False

    @property
    def state(self) -> BreakerState:
        self._refresh()
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def allow(self) -> bool:
        """May a call go out now? In half-open, True once: that call is the probe."""
        self._refresh()
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN or self._probing:
            return False
        self._probing = True
        return True

    def record_success(self) -> None:
        """The gateway answered (approvals, declines and 4xx all count): close."""
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._probing = False

    def record_failure(self) -> None:
        """A transient failure: a failed probe reopens; the threshold-th in a row opens."""
        self._refresh()
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN or (
            self._state is BreakerState.CLOSED and self._failures >= self.failure_threshold
        ):
            self._state = BreakerState.OPEN
            self._opened_at = self._clock()
        self._probing = False

    def release(self) -> None:
        """The call ended without a verdict: free the probe slot, change nothing else."""
        self._probing = False


@dataclass(frozen=True)
class _Reply:
    status: int
    body: Mapping[str, object]
    retry_after: float | None


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds; the HTTP-date form is ignored (our gateways don't send it)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, seconds) if seconds == seconds else None  # NaN is no advice


def _is_transient(status: int) -> bool:
    # 409: a request with the same key is still in flight (Stripe); 429: rate limited.
    return status in (409, 429) or status >= 500


def _error_field(body: Mapping[str, object], name: str) -> str | None:
    error = body.get("error")
    value = error.get(name) if isinstance(error, dict) else None
    return value if isinstance(value, str) else None


class HttpPaymentGateway:
    """``PaymentGateway`` over HTTP to a Stripe-like gateway, on one ``aiohttp.ClientSession``."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 2.0,
        request_timeout: float = 5.0,
        deadline: float = 15.0,
        max_attempts: int = 8,
        breaker: CircuitBreaker | None = None,
        backoff_base: float = 0.1,
        backoff_cap: float = 2.0,
        rng: random.Random | None = None,
        before_request: Callable[[], None] | None = None,
        api_key: str = "",
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if min(connect_timeout, request_timeout, deadline) <= 0:
            raise ValueError("timeouts and the deadline must be > 0")
        self.base_url = base_url.rstrip("/")
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.deadline = deadline
        self.max_attempts = max_attempts
        self.breaker = breaker or CircuitBreaker()
        # Full jitter: the retries of many workers that failed together do not stay in step.
        self.backoff = Backoff(backoff_base, backoff_cap, jitter=1.0)
        self._rng = rng or random.Random()
        # Called right before every HTTP attempt (first, retries, lookups); what it raises
        # propagates unchanged and the attempt is not sent.
        self.before_request = before_request
        self._session: aiohttp.ClientSession | None = None
        # Sent on every request; never logged nor put in an error (only the session holds it).
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def __repr__(self) -> str:
        return f"<HttpPaymentGateway {self.base_url}>"

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop the session will belong to.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                raise_for_status=False, headers=self._auth, trace_configs=client_trace_configs()
            )
        return self._session

    async def close(self) -> None:
        """Close the session and its pooled connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def charge(self, request: ChargeRequest) -> ChargeOutcome:
        """Charge once per idempotency key: ``Approved``/``Declined``, or a ``GatewayError``."""
        body = {
            "amount": request.amount,
            "currency": request.currency,
            "source": request.payment_token,
            "metadata": {"order_id": request.order_id},
        }
        reply = await self._exchange(
            "POST",
            "/v1/charges",
            request.idempotency_key,
            json_body=body,
            headers={"Idempotency-Key": request.idempotency_key},
        )
        if reply.status == 402:
            code = _error_field(reply.body, "code") or "card_declined"
            decline = decline_for(code, _error_field(reply.body, "message"))
            return Declined(decline, _error_field(reply.body, "charge"))
        charge_id = reply.body.get("id")
        if not isinstance(charge_id, str):
            # The charge may exist; the caller treats this like a lost answer and asks again.
            raise TransientGatewayError("charge answer without an id", status=reply.status)
        return Approved(charge_id)

    async def find_charge(self, idempotency_key: str) -> GatewayCharge | None:
        """The charge recorded for the key, with what it was for, or None when the gateway has none.

        Amount, currency and order reference come back as reported (None when missing): the
        payment service checks them before it trusts the charge.
        """
        listed = await self._find("charge", "/v1/charges", idempotency_key)
        if listed is None:
            return None
        charge_id, charge = listed
        status = charge.get("status")
        outcome: ChargeOutcome
        if status == "succeeded":
            outcome = Approved(charge_id)
        elif status == "failed":
            code, message = charge.get("failure_code"), charge.get("failure_message")
            outcome = Declined(
                decline_for(
                    code if isinstance(code, str) else "card_declined",
                    message if isinstance(message, str) else None,
                ),
                charge_id,
            )
        else:
            raise TransientGatewayError(f"charge {charge_id} is {status!r}, not settled")
        return GatewayCharge(
            outcome,
            _int_field(charge, "amount"),
            _str_field(charge, "currency"),
            _order_reference(charge),
        )

    async def refund(self, request: RefundRequest) -> RefundOutcome:
        """Refund once per idempotency key: ``Refunded``/``RefundDeclined``, or a ``GatewayError``.

        A refusal (HTTP 402 with a code: nothing left to refund, more than is left) is an answer,
        like a decline; it never moved money.
        """
        body = {
            "charge": request.charge_id,
            "amount": request.amount,
            "metadata": {"order_id": request.order_id, "refund_id": request.refund_id},
        }
        reply = await self._exchange(
            "POST",
            "/v1/refunds",
            request.idempotency_key,
            json_body=body,
            headers={"Idempotency-Key": request.idempotency_key},
        )
        if reply.status == 402:
            return RefundDeclined(decline_for(_error_field(reply.body, "code") or "card_declined"))
        refund_id = reply.body.get("id")
        if not isinstance(refund_id, str) or reply.body.get("status") != "succeeded":
            # The refund may exist; the caller treats this like a lost answer and asks again.
            raise TransientGatewayError(
                "refund answer without a settled refund", status=reply.status
            )
        return Refunded(refund_id)

    async def find_refund(self, idempotency_key: str) -> GatewayRefund | None:
        """The refund recorded for the key, or None when the gateway has none."""
        listed = await self._find("refund", "/v1/refunds", idempotency_key)
        if listed is None:
            return None
        refund_id, found = listed
        status = found.get("status")
        outcome: RefundOutcome
        if status == "succeeded":
            outcome = Refunded(refund_id)
        elif status == "failed":
            code = found.get("failure_reason")
            outcome = RefundDeclined(
                decline_for(code if isinstance(code, str) else "card_declined")
            )
        else:
            raise TransientGatewayError(f"refund {refund_id} is {status!r}, not settled")
        return GatewayRefund(outcome, _int_field(found, "amount"), _str_field(found, "charge"))

    async def _find(
        self, what: str, path: str, idempotency_key: str
    ) -> tuple[str, Mapping[str, object]] | None:
        """The id and object the gateway lists for the key, or None when it lists none."""
        reply = await self._exchange(
            "GET", path, idempotency_key, params={"idempotency_key": idempotency_key}
        )
        data = reply.body.get("data")
        if not isinstance(data, list):
            raise TransientGatewayError(f"{what} list without data", status=reply.status)
        if not data:
            return None
        found = data[0]
        found_id = found.get("id") if isinstance(found, dict) else None
        if not isinstance(found_id, str):
            raise TransientGatewayError(f"{what} without an id", status=reply.status)
        return found_id, found

    async def _attempt(
        self,
        method: str,
        url: str,
        limit: float,
        json_body: object,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
    ) -> _Reply:
        """One HTTP exchange; transport failures become ``TransientGatewayError``.

        Error messages name the path, not the URL: they travel further than the log.
        """
        path = url[len(self.base_url) :] or "/"
        client_timeout = aiohttp.ClientTimeout(
            total=limit, connect=min(self.connect_timeout, limit)
        )
        try:
            async with self._client().request(
                method,
                url,
                json=json_body,
                params=params,
                headers=headers,
                timeout=client_timeout,
                allow_redirects=False,  # key and token stay with it
            ) as resp:
                raw = await resp.read()
                retry_after = _retry_after(resp.headers.get("Retry-After"))
                status = resp.status
        except aiohttp.InvalidURL as exc:
            raise PermanentGatewayError("invalid gateway URL") from exc
        except TimeoutError as exc:
            raise TransientGatewayError(f"{method} {path}: no answer in {limit:.3g}s") from exc
        except aiohttp.ClientError as exc:
            raise TransientGatewayError(f"{method} {path}: {type(exc).__name__}") from exc
        return _reply(f"{method} {path}", status, raw, retry_after)

    async def _exchange(
        self,
        method: str,
        path: str,
        idempotency_key: str,
        *,
        json_body: object = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> _Reply:
        """Send until an answer that is not transient, or raise when the deadline passes."""
        if not self.breaker.allow():
            raise CircuitOpenError(f"circuit open: {method} {path} not sent")
        loop = asyncio.get_running_loop()
        deadline_at = loop.time() + self.deadline
        url = self.base_url + path
        delays = self.backoff.delays(self._rng)
        sent = 0
        what = f"{method} {path} (key {idempotency_key})"
        self._clear_to_send(what, 1)
        while True:  # the breaker and the hook have allowed this attempt
            sent += 1
            limit = min(self.request_timeout, deadline_at - loop.time())
            outcome = await self._reported(
                self._attempt(method, url, limit, json_body, params, headers), f"{method} {path}"
            )
            if isinstance(outcome, _Reply):
                return outcome
            last = outcome.error
            # Never sooner than the gateway's Retry-After, when it sent one.
            delay = max(outcome.retry_after or 0.0, next(delays))
            stop = self._stop_before_sleep(sent, loop.time() + delay, deadline_at)
            if stop is None:
                log.debug(
                    "retrying %s %s (key %s) in %.3fs: %s",
                    method,
                    path,
                    idempotency_key,
                    delay,
                    last,
                )
                await asyncio.sleep(delay)
                # The hook before the breaker: a worker fenced while it slept (frozen, revoked)
                # sends nothing and says so, even when failures opened the breaker meanwhile.
                self._clear_to_send(what, sent + 1, holds_slot=False)
                stop = self._stop_after_sleep(loop.time(), deadline_at)
            if stop is not None:
                raise TransientGatewayError(
                    f"{stop} after {sent} attempt(s): {last}", status=last.status
                ) from last

    def _clear_to_send(self, what: str, attempt: int, *, holds_slot: bool = True) -> None:
        """Run the ``before_request`` hook; what it raises propagates and nothing is sent.

        ``holds_slot``: the breaker has already allowed this attempt (it may hold the half-open
        probe slot, freed on a refusal); a retry is asked before the breaker is.
        """
        if self.before_request is None:
            return
        try:
            self.before_request()
        except BaseException as exc:
            # Never sent: neither a success nor a failure; free a half-open probe slot.
            if holds_slot:
                self.breaker.release()
            log.info("%s not sent, attempt %d refused: %s", what, attempt, exc)
            raise

    async def _reported(self, attempt: Awaitable[_Reply], what: str) -> _Reply | _Retry:
        """Await one attempt and tell the breaker: the final reply, or why to try again."""
        try:
            reply = await attempt
        except TransientGatewayError as exc:
            self.breaker.record_failure()
            return _Retry(exc)
        except PermanentGatewayError:
            self.breaker.record_success()  # the gateway is up; the request is wrong
            raise
        except BaseException:
            self.breaker.release()
            raise
        if not _is_transient(reply.status):
            self.breaker.record_success()
            return reply
        if reply.status == 409:
            self.breaker.release()  # a concurrent twin, not a sick gateway
        else:
            self.breaker.record_failure()
        error = TransientGatewayError(f"{what}: HTTP {reply.status}", status=reply.status)
        return _Retry(error, reply.retry_after)

    def _stop_before_sleep(self, sent: int, wake_at: float, deadline_at: float) -> str | None:
        """Why not to retry after ``sent`` attempts, waking at ``wake_at``; None: sleep, retry."""
        if sent >= self.max_attempts:
            return "gave up"
        if wake_at >= deadline_at:
            # Never sleep past the deadline (nor a Retry-After beyond it): answer now.
            return f"deadline of {self.deadline}s passed"
        return None

    def _stop_after_sleep(self, now: float, deadline_at: float) -> str | None:
        """Why not to send the retry after all; None: send it."""
        if now >= deadline_at:  # the sleep overshot; aiohttp reads 0 as no limit
            return f"deadline of {self.deadline}s passed"
        if not self.breaker.allow():
            # Not CircuitOpenError: an earlier attempt reached the gateway and may have charged.
            return "circuit opened"
        return None


@dataclass(frozen=True)
class _Retry:
    """A transient failure: why, and how long the gateway asked us to wait (``Retry-After``)."""

    error: TransientGatewayError
    retry_after: float | None = None


def _reply(what: str, status: int, raw: bytes, retry_after: float | None) -> _Reply:
    """The gateway's answer to ``what`` (method and path): a refusal raises, a body is parsed."""
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    if not _is_transient(status) and not (200 <= status < 300 or status == 402):
        # The gateway's words stay in our log: the error may reach a decline message, an
        # event, a table; its body may echo what we sent.
        log.warning(
            "gateway refused %s: HTTP %d: %s",
            what,
            status,
            _excerpt(_error_field(body, "message") or raw),
        )
        raise PermanentGatewayError(f"{what}: HTTP {status}", status=status)
    if status < 300 and not body:
        raise TransientGatewayError(f"{what}: HTTP {status} without JSON", status=status)
    return _Reply(status, body, retry_after)


_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")
_BEARER = re.compile(r"(?i)(bearer\s+|api[_-]?key[\"'=:\s]+|sk_)\S*")


def _excerpt(text: str | bytes, limit: int = 120) -> str:
    """A short, printable, one-line excerpt of a gateway's reply, for our log only."""
    if isinstance(text, bytes):
        text = text[: limit * 4].decode(errors="replace")
    text = _BEARER.sub(lambda m: m.group(1) + "[redacted]", text)
    text = _UNPRINTABLE.sub(" ", text).strip()
    # A reply may echo the card token ("No such token: 'tok_…'"): masked, before the cut.
    text = mask_text(text)
    return text[:limit] + ("..." if len(text) > limit else "")


def _int_field(body: Mapping[str, object], name: str) -> int | None:
    value = body.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str_field(body: Mapping[str, object], name: str) -> str | None:
    value = body.get(name)
    return value if isinstance(value, str) else None


def _order_reference(charge: Mapping[str, object]) -> str | None:
    """The order a charge was for: ``order_id``, or Stripe-style ``metadata.order_id``."""
    direct = _str_field(charge, "order_id")
    if direct is not None:
        return direct
    metadata = charge.get("metadata")
    return _str_field(metadata, "order_id") if isinstance(metadata, Mapping) else None
