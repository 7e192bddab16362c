"""An open-loop load generator: orders posted at a fixed rate, whatever the answers take.

Each order is an ``Intent``: a token (approving or declining), an Idempotency-Key and a mode:
posted once, retried after success with the same key (sequentially or concurrently), or its key
reused with another body (the service must answer 422: a 202 there means "accepted, not decided
yet", and the client asks again after its ``Retry-After``). The client is careful: 5xx, 429 and
connection errors are retried with the same key and backoff, up to a bound. Every answer and
every connection error is counted, and every POST attempt is kept as a compact ``Attempt`` (when,
how long, how it ended, which order) for the availability figures (tests/chaos/availability.py).

The client reaches the workers the way production clients do, through a load balancer with
health checks (nginx's ``max_fails``, Envoy's outlier detection and active health checks): a
worker whose connection fails (refused, reset, closed without an answer), or whose liveness
endpoint ``/health`` does not answer within ``probe_timeout_s`` (a frozen process: the kernel
still accepts its connections), is taken out of rotation and put back when its ``/ready``
answers 200; each check runs every ``probe_s``. The attempt that failed is counted as failed; its
retry goes to another worker. The rig takes a worker out of rotation
itself before it stops one on purpose (a rolling restart, a removal), as a deployment drains a
backend before it stops it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import aiohttp

from orderflow.domain.payment import Approved
from orderflow.tools.sandbox.rules import sandbox_decision
from tests.harness import auth_headers

__all__ = ["Attempt", "Intent", "LoadGenerator", "LoadSettings", "make_intents"]

# Weighted: mostly approvals, every decline code, and an unknown token (invalid_token).
_TOKENS = (
    ("tok_visa", 70),
    ("tok_chargeDeclined", 10),
    ("tok_chargeDeclinedInsufficientFunds", 8),
    ("tok_chargeDeclinedExpiredCard", 7),
    ("tok_chaos_unknown", 5),
)
# no_key: posted once without an Idempotency-Key (a retry would be a second order), so a 202 or
# a 201 is the only answer that counts and an error is never retried.
_MODES = (("single", 81), ("seq_retry", 6), ("concurrent", 6), ("reuse_key", 4), ("no_key", 3))
# What a "single" order's client does once it is accepted: nothing, cancel it (racing its
# charge), or, once it is PAID, refund part of it, then (every other one) the rest.
_FOLLOW_UPS = (("none", 84), ("cancel", 8), ("refund", 8))


def expected_status(token: str) -> str:
    return "PAID" if isinstance(sandbox_decision(token), Approved) else "PAYMENT_FAILED"


class Attempt(NamedTuple):
    """One POST attempt (a tuple: tens of thousands of them stay small)."""

    start: float  # time.monotonic() when it was sent
    duration: float  # seconds until its answer or its error
    outcome: int | str  # the HTTP status, or the error's class name ("TimeoutError", ...)
    order: int  # the index of its Intent
    first: bool  # the order's first attempt
    order_first: float  # time.monotonic() of the order's first attempt


@dataclass
class Intent:
    """One order the client wants placed, and what it heard back."""

    index: int
    key: str
    body: dict[str, Any]
    token: str
    mode: str
    order_id: str | None = None  # from the first 2xx answer
    accepted_status: int | None = None
    replay_ids: list[str] = field(default_factory=list)  # order ids of the retries' 2xx answers
    replay_statuses: list[int] = field(default_factory=list)
    reuse_status: int | None = None  # the answer to the same key with another body
    gave_up: bool = False
    final_status: int | None = None  # the answer the client kept (-1: none, 0: gave up)
    first_attempt_at: float | None = None  # time.monotonic() of its first POST attempt
    follow_up: str = "none"  # "cancel" | "refund" (see _FOLLOW_UPS)
    cancel_status: int | None = None  # the decided answer to its cancel (0: gave up)
    # Refund key -> (amount asked, the decided answers, the refund ids they named).
    refunds: dict[str, tuple[int, list[int], set[str]]] = field(default_factory=dict)
    # Every answer its cancel and refund requests got, in order ("+12.3s refunds 202", "+13.0s
    # TimeoutError"): how a change was decided, for the result file's examples.
    change_trail: list[str] = field(default_factory=list)
    durable: set[str] = field(default_factory=set)  # refund keys answered 202 at least once

    @property
    def expected(self) -> str:
        return expected_status(self.token)

    @property
    def amount(self) -> int:
        return sum(int(i["quantity"]) * int(i["unit_amount"]) for i in self.body["items"])

    @property
    def refunds_accepted(self) -> int:
        """The money the client's refunds were accepted for: all must come back. Accepted: a
        refund answered 201/200, or one the client gave up on after a 202 (in Kafka, so it is
        decided, and the load asks only for refunds the order can give)."""
        return sum(a for key, (a, _, _) in self.refunds.items() if self._heard(key) == "accepted")

    def refunded_possible(self) -> set[int]:
        """The money that may have come back: the accepted refunds', plus any subset of those
        the client gave up on without ever hearing that Kafka had them (a 503 or a timeout may
        still have been written)."""
        sums = {self.refunds_accepted}
        for key, (amount, _, _) in self.refunds.items():
            if self._heard(key) == "unsure":
                sums |= {total + amount for total in sums}
        return sums

    def _heard(self, key: str) -> str:
        """What the client knows of refund ``key``: "accepted" (201/200, or given up on after a
        202), "unsure" (given up on after only 503s and timeouts) or "refused"."""
        last = self.refunds[key][1][-1:]
        if last in ([201], [200]):
            return "accepted"
        if last == [0]:
            return "accepted" if key in self.durable else "unsure"
        return "refused"


def _weighted(rng: random.Random, table: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([v for v, _ in table], weights=[w for _, w in table])[0]


def make_intents(count: int, seed: int) -> list[Intent]:
    rng = random.Random(f"load-{seed}")
    intents = []
    for i in range(count):
        token = _weighted(rng, _TOKENS)
        body = {
            "customer_id": f"c-{rng.randint(1, 500)}",
            "currency": rng.choice(("EUR", "EUR", "USD", "GBP")),
            "items": [
                {
                    "sku": f"SKU-{rng.randint(1, 50)}",
                    "quantity": rng.randint(1, 5),
                    "unit_amount": rng.randint(100, 20000),
                }
                for _ in range(rng.randint(1, 3))
            ],
            "payment": {"token": token},
        }
        key = f"chaos-{seed}-{i}-{rng.getrandbits(32):08x}"
        mode = _weighted(rng, _MODES)
        follow_up = _weighted(rng, _FOLLOW_UPS) if mode == "single" else "none"
        intents.append(Intent(i, key, body, token, mode, follow_up=follow_up))
    return intents


@dataclass(frozen=True)
class LoadSettings:
    """How hard and how patiently the client posts."""

    rate: float = 20.0  # orders per second, open loop
    request_timeout_s: float = 12.0  # longer than the worker's POST wait
    give_up_s: float = 120.0  # a careful client stops retrying one order after this
    backoff_max_s: float = 2.0
    probe_s: float = 0.25  # how often the balancer checks each worker
    probe_timeout_s: float = 1.0  # a worker that does not answer its check this fast is out


class LoadGenerator:
    """Posts the intents at the set rate to random workers and counts every answer."""

    def __init__(
        self,
        intents: list[Intent],
        settings: LoadSettings,
        urls: Callable[[], list[str]],
        seed: int,
        log: Callable[[str], None],
    ) -> None:
        self.intents = intents
        self.settings = settings
        self.urls = urls
        self.log = log
        self.rng = random.Random(f"client-{seed}")
        self.statuses: Counter[str] = Counter()
        # 5xx answers that are not "503 with Retry-After": the service promises none.
        self.bare_5xx: list[dict[str, Any]] = []
        self.attempts: list[Attempt] = []
        # time.time() - time.monotonic(): turns an attempt's monotonic time into wall-clock time.
        self.wall_offset = time.time() - time.monotonic()
        self.sent = 0
        self.in_flight = 0
        self.started_at = 0.0
        self.finished_at = 0.0
        # The balancer's passive health check: workers out of rotation since a failed connection.
        self.ejected: set[str] = set()
        self.ejections = 0

    @property
    def accepted(self) -> int:
        return sum(1 for i in self.intents if i.order_id is not None)

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=256)
        # The test client's API key on every request (the workers read the run's keys file).
        async with aiohttp.ClientSession(connector=connector, headers=auth_headers()) as session:
            self.started_at = time.monotonic()
            self.wall_offset = time.time() - self.started_at
            tasks = []
            prober = asyncio.create_task(self._probe_ejected(session))
            for intent in self.intents:
                # Open loop: order i leaves at i / rate, however slow the answers are.
                delay = self.started_at + intent.index / self.settings.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(self._run_intent(session, intent)))
                self.sent += 1
            try:
                await asyncio.gather(*tasks)
            finally:
                prober.cancel()
            self.finished_at = time.monotonic()

    def _pick_url(self) -> str:
        """A worker in rotation (every worker, when the health check has ejected them all)."""
        urls = self.urls()
        healthy = [u for u in urls if u not in self.ejected]
        return self.rng.choice(healthy or urls)

    def _eject(self, url: str, why: str = "connection failed") -> None:
        if url not in self.ejected:
            self.ejected.add(url)
            self.ejections += 1
            self.log(f"balancer: {url} out of rotation ({why})")

    async def _probe_ejected(self, session: aiohttp.ClientSession) -> None:
        """Check every worker each ``probe_s``, all at once (one frozen worker must not delay
        the check of the others)."""
        while True:
            await asyncio.sleep(self.settings.probe_s)
            await asyncio.gather(*(self._probe(session, url) for url in self.urls()))

    async def _probe(self, session: aiohttp.ClientSession, url: str) -> None:
        """In rotation: ``/health`` must answer; out of it: back once ``/ready`` is 200."""
        timeout = aiohttp.ClientTimeout(total=self.settings.probe_timeout_s)
        path = "/ready" if url in self.ejected else "/health"
        try:
            async with session.get(f"{url}{path}", timeout=timeout) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            if url not in self.ejected:
                self._eject(url, f"no answer to its health check: {type(exc).__name__}")
            return
        if url in self.ejected and status == 200:
            self.ejected.discard(url)
            self.log(f"balancer: {url} back in rotation")

    async def _run_intent(self, session: aiohttp.ClientSession, intent: Intent) -> None:
        self.in_flight += 1
        try:
            if intent.mode == "concurrent":
                answers = await asyncio.gather(
                    self._post(session, intent, intent.key, intent.body),
                    self._post(session, intent, intent.key, intent.body),
                )
                first, *rest = answers
                self._accept(intent, *first)
                for status, body in rest:
                    self._replay(intent, status, body)
                return
            if intent.mode == "no_key":
                status, body = await self._post(session, intent, None, intent.body, retry=False)
                self._accept(intent, status, body)
                return
            status, body = await self._post(session, intent, intent.key, intent.body)
            self._accept(intent, status, body)
            if intent.order_id is None:
                return
            if intent.follow_up == "cancel":
                await asyncio.sleep(self.rng.random() * 0.3)  # before, during or after the charge
                intent.cancel_status, _ = await self._change(
                    session, intent, f"/orders/{intent.order_id}/cancel", None, None
                )
            elif intent.follow_up == "refund":
                await self._refund_when_paid(session, intent)
            if intent.mode == "seq_retry":
                self._replay(intent, *await self._post(session, intent, intent.key, intent.body))
            elif intent.mode == "reuse_key":
                other = {**intent.body, "customer_id": intent.body["customer_id"] + "-other"}
                intent.reuse_status, _ = await self._post(
                    session, intent, intent.key, other, until_decided=True
                )
        finally:
            self.in_flight -= 1

    def _accept(self, intent: Intent, status: int, body: Any) -> None:
        intent.final_status = status
        if 200 <= status < 300 and isinstance(body, dict) and "order_id" in body:
            intent.order_id = str(body["order_id"])
            intent.accepted_status = status
        elif status == 0:
            intent.gave_up = True

    def _replay(self, intent: Intent, status: int, body: Any) -> None:
        intent.replay_statuses.append(status)
        if 200 <= status < 300 and isinstance(body, dict) and "order_id" in body:
            intent.replay_ids.append(str(body["order_id"]))
            if intent.order_id is None:  # the concurrent twin may have been the first
                self._accept(intent, status, body)

    async def _post(
        self,
        session: aiohttp.ClientSession,
        intent: Intent,
        key: str | None,
        body: dict[str, Any],
        retry: bool = True,
        until_decided: bool = False,
    ) -> tuple[int, Any]:
        """POST until an answer that is not 5xx/429 (same key); ``(0, None)`` when giving up.

        ``until_decided``: a 202 (accepted, not decided yet) is asked again after its
        ``Retry-After``, until the service answers 201 or 4xx.
        """
        deadline = time.monotonic() + self.settings.give_up_s
        backoff = 0.2
        timeout = aiohttp.ClientTimeout(total=self.settings.request_timeout_s)
        while True:
            url = self._pick_url()
            retry_after = None
            sent = time.monotonic()
            first = intent.first_attempt_at is None
            if intent.first_attempt_at is None:
                intent.first_attempt_at = sent
            order_first = intent.first_attempt_at
            outcome: int | str
            answer: Any = None
            try:
                headers = {} if key is None else {"Idempotency-Key": key}
                async with session.post(
                    f"{url}/orders", json=body, timeout=timeout, headers=headers
                ) as response:
                    status = response.status
                    retry_after = response.headers.get("Retry-After")
                    text = await response.text()
                outcome = status
                self.statuses[f"POST {status}"] += 1
                answer = _json_or_text(text)
                if status >= 500 and not (status == 503 and retry_after):
                    self.bare_5xx.append(
                        {"url": url, "key": key, "status": status, "body": text[:300]}
                    )
                    self.log(f"bare {status} from {url} for {key}: {text[:200]}")
            except TimeoutError:
                outcome = "TimeoutError"
                self.statuses["POST timeout"] += 1
            except aiohttp.ClientError as exc:
                outcome = type(exc).__name__
                self.statuses[f"POST {outcome}"] += 1
                if isinstance(exc, aiohttp.ClientConnectionError):  # refused, reset, closed
                    self._eject(url)
            self.attempts.append(
                Attempt(sent, time.monotonic() - sent, outcome, intent.index, first, order_first)
            )
            if until_decided and outcome == 202 and time.monotonic() < deadline:
                await asyncio.sleep(float(retry_after or 1))
                continue
            if isinstance(outcome, int) and ((outcome < 500 and outcome != 429) or not retry):
                return outcome, answer
            if not retry:
                return -1, None  # no answer at all (timeout, connection error)
            if time.monotonic() > deadline:
                self.statuses["POST gave up"] += 1
                return 0, None
            await asyncio.sleep(backoff * (0.5 + self.rng.random()))
            backoff = min(backoff * 2, self.settings.backoff_max_s)

    async def _refund_when_paid(self, session: aiohttp.ClientSession, intent: Intent) -> None:
        """Once the order is PAID: refund a third (asked twice with one key: one refund), then,
        for every other order, the rest (REFUNDED)."""
        if await self._final_status(session, str(intent.order_id)) != "PAID":
            return
        parts = [("r1", intent.amount // 3 or 1)]
        if intent.index % 2 == 0:
            parts.append(("r2", intent.amount - parts[0][1]))
        for suffix, amount in parts:
            key = f"{intent.key}-{suffix}"
            answers: list[int] = []
            ids: set[str] = set()
            for _ in range(2 if suffix == "r1" else 1):
                status, body = await self._change(
                    session, intent, f"/orders/{intent.order_id}/refunds", {"amount": amount}, key
                )
                answers.append(status)
                if isinstance(body, dict) and isinstance(body.get("refund"), dict):
                    ids.add(str(body["refund"].get("refund_id")))
            intent.refunds[key] = (amount, answers, ids)

    async def _final_status(self, session: aiohttp.ClientSession, order_id: str) -> str | None:
        """Long-poll the order until it is no longer PENDING (None: gave up)."""
        deadline = time.monotonic() + self.settings.give_up_s
        timeout = aiohttp.ClientTimeout(total=self.settings.request_timeout_s + 12)
        while time.monotonic() < deadline:
            try:
                url = self._pick_url()
                async with session.get(
                    f"{url}/orders/{order_id}?wait=10", timeout=timeout
                ) as response:
                    body = _json_or_text(await response.text())
                if isinstance(body, dict) and body.get("status") not in (None, "PENDING"):
                    return str(body["status"])
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.5)
        return None

    async def _change(
        self,
        session: aiohttp.ClientSession,
        intent: Intent,
        path: str,
        body: dict[str, Any] | None,
        key: str | None,
    ) -> tuple[int, Any]:
        """POST a cancel or a refund until decided (2xx but 202, or 4xx): the same request
        again is safe; ``(0, None)`` when giving up."""
        deadline = time.monotonic() + self.settings.give_up_s
        timeout = aiohttp.ClientTimeout(total=self.settings.request_timeout_s)
        headers = {} if key is None else {"Idempotency-Key": key}
        backoff = 0.2
        while time.monotonic() < deadline:
            url = self._pick_url()
            try:
                async with session.post(
                    f"{url}{path}", json=body, timeout=timeout, headers=headers
                ) as response:
                    status, text = response.status, await response.text()
                kind = path.rsplit("/", 1)[-1]
                self.statuses[f"{kind} {status}"] += 1
                self._trail(intent, f"{kind} {key or ''} {status}")
                if status >= 500 and status != 503:
                    self.bare_5xx.append({"url": url, "key": key, "status": status, "body": text})
                if status == 202 and key is not None:
                    intent.durable.add(key)
                if status not in (202, 429, 503) and status < 500:
                    return status, _json_or_text(text)
            except (aiohttp.ClientError, TimeoutError) as exc:
                self._trail(intent, f"{path.rsplit('/', 1)[-1]} {key or ''} {type(exc).__name__}")
            await asyncio.sleep(backoff * (0.5 + self.rng.random()))
            backoff = min(backoff * 2, self.settings.backoff_max_s)
        self._trail(intent, "gave up")
        return 0, None

    def _trail(self, intent: Intent, what: str) -> None:
        intent.change_trail.append(f"+{time.monotonic() - self.started_at:.1f}s {what}")

    def progress(self) -> str:
        top = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
        return (
            f"load: sent {self.sent}/{len(self.intents)}, accepted {self.accepted}, "
            f"in flight {self.in_flight} | {top}"
        )


def _json_or_text(text: str) -> Any:
    import json

    try:
        return json.loads(text)
    except ValueError:
        return text
