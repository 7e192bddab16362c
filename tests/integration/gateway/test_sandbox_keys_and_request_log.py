"""The sandbox as a gateway that can be wronged: expiring keys, the request log, strict mode.

Real sandbox (temp SQLite file) on 127.0.0.1, raw HTTP or the real client; no Kafka. Key expiry
runs on an injected clock, so no test waits for a TTL.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from orderflow.domain.payment import Approved, idempotency_key_for
from orderflow.gateway.base import ChargeRequest
from orderflow.gateway.http import CircuitBreaker, HttpPaymentGateway
from orderflow.tools.sandbox.gateway import SandboxGateway
from tests.breaker_helpers import FakeClock


def _body(order_id: str, token: str = "tok_visa", amount: int = 500) -> dict[str, Any]:
    return {
        "amount": amount,
        "currency": "eur",
        "source": token,
        "metadata": {"order_id": order_id},
    }


T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T]], timeout: float = 10.0) -> T:
    """Await ``check`` until it gives something truthy; fail at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert loop.time() < deadline, f"nothing after {timeout}s"
        await asyncio.sleep(0.02)


def _now(read: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    async def check() -> T:
        return read()

    return check


class Raw:
    """Raw HTTP to one sandbox: charges, lookups and the admin endpoints."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def charge(
        self, order_id: str, token: str = "tok_visa", amount: int = 500, key: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Idempotency-Key": key or idempotency_key_for(order_id)}
        async with self.session.post(
            f"{self.url}/v1/charges", json=_body(order_id, token, amount), headers=headers
        ) as resp:
            return resp.status, await resp.json()

    async def lookup(self, order_id: str) -> list[dict[str, Any]]:
        params = {"idempotency_key": idempotency_key_for(order_id)}
        async with self.session.get(f"{self.url}/v1/charges", params=params) as resp:
            assert resp.status == 200
            data: list[dict[str, Any]] = (await resp.json())["data"]
            return data

    async def get(self, path: str, **params: str) -> Any:
        async with self.session.get(f"{self.url}{path}", params=params) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        async with self.session.post(f"{self.url}{path}", json=body) as resp:
            return resp.status, await resp.json()

    async def requests(self, **filters: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = (await self.get("/_admin/requests", **filters))["data"]
        return rows


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def sandbox(tmp_path: Path, clock: FakeClock) -> AsyncIterator[SandboxGateway]:
    gateway = SandboxGateway(tmp_path / "ledger.db", seed=7, key_ttl_s=60, clock=clock)
    await gateway.start()
    yield gateway
    await gateway.stop()


@pytest.fixture
async def raw(sandbox: SandboxGateway) -> AsyncIterator[Raw]:
    async with aiohttp.ClientSession() as session:
        yield Raw(session, sandbox.url)


# -- expiring keys -------------------------------------------------------------------------------


async def test_key_replays_within_its_ttl_and_makes_a_new_charge_after_it(
    raw: Raw, clock: FakeClock
) -> None:
    _, first = await raw.charge("o-ttl")
    clock.now += 59.9
    _, replay = await raw.charge("o-ttl")
    clock.now += 0.2  # 60.1 s after the key's first use
    _, second = await raw.charge("o-ttl")

    assert replay["id"] == first["id"]
    assert second["id"] != first["id"]
    ledger = (await raw.get("/_admin/ledger", order_id="o-ttl"))["data"]
    assert [r["id"] for r in ledger] == [first["id"], second["id"]]
    outcomes = [r["outcome"] for r in await raw.requests(order_id="o-ttl")]
    assert outcomes == ["created", "replayed", "expired_new"]


async def test_new_window_after_expiry_replays_its_own_charge(raw: Raw, clock: FakeClock) -> None:
    await raw.charge("o-window")
    clock.now += 61
    _, second = await raw.charge("o-window")
    clock.now += 30  # inside the second window (opened 30 s ago)
    _, again = await raw.charge("o-window")

    assert again["id"] == second["id"]


async def test_lookup_by_key_finds_the_newest_charge_even_after_expiry(
    raw: Raw, clock: FakeClock
) -> None:
    _, first = await raw.charge("o-newest")
    clock.now += 3600
    assert [c["id"] for c in await raw.lookup("o-newest")] == [first["id"]]
    _, second = await raw.charge("o-newest")
    assert [c["id"] for c in await raw.lookup("o-newest")] == [second["id"]]


async def test_expired_key_with_other_parameters_charges_anew_instead_of_refusing(
    raw: Raw, clock: FakeClock
) -> None:
    status, _ = await raw.charge("o-reuse", amount=500)
    refused, _ = await raw.charge("o-reuse", amount=700)
    clock.now += 61
    status_after, charge = await raw.charge("o-reuse", amount=700)

    assert (status, refused, status_after) == (200, 400, 200)
    assert charge["amount"] == 700


async def test_key_ttl_is_changed_at_runtime_through_admin_config(
    raw: Raw, clock: FakeClock, sandbox: SandboxGateway
) -> None:
    _, first = await raw.charge("o-config")
    status, config = await raw.post("/_admin/config", {"key_ttl_s": 5})
    assert (status, config) == (200, {"key_ttl_s": 5, "strict": False})
    clock.now += 6
    _, second = await raw.charge("o-config")

    assert second["id"] != first["id"]
    assert sandbox.key_ttl_s == 5
    for bad in ({"key_ttl_s": 0}, {"key_ttl_s": "5"}, {"strict": 1}, {"nope": 1}, [1]):
        assert (await raw.post("/_admin/config", bad))[0] == 400, bad
    assert (await raw.get("/_admin/config")) == {"key_ttl_s": 5, "strict": False}


async def test_concurrent_requests_on_an_expired_key_make_one_new_charge(
    raw: Raw, clock: FakeClock, sandbox: SandboxGateway
) -> None:
    await raw.charge("o-race-expired")
    clock.now += 61
    answers = await asyncio.gather(*(raw.charge("o-race-expired") for _ in range(8)))

    assert len({charge["id"] for _, charge in answers}) == 1
    assert len(await sandbox.ledger.rows("o-race-expired")) == 2


_OLD_SCHEMA = """
CREATE TABLE charges (
    id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE, params TEXT NOT NULL,
    order_id TEXT NOT NULL, amount INTEGER NOT NULL, currency TEXT NOT NULL, source TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('succeeded', 'failed')), failure_code TEXT,
    failure_message TEXT, http_status INTEGER NOT NULL, response_body TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE INDEX charges_order_id ON charges (order_id);
"""


async def test_ledger_of_the_old_schema_is_migrated_and_its_keys_can_expire(
    tmp_path: Path, clock: FakeClock
) -> None:
    db = tmp_path / "old.db"
    params = '{"amount":500,"currency":"eur","metadata":{"order_id":"o-old"},"source":"tok_visa"}'
    body = '{"id": "ch_old", "status": "succeeded"}'
    with sqlite3.connect(db) as old:
        old.executescript(_OLD_SCHEMA)
        old.execute(
            "INSERT INTO charges VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                "ch_old",
                idempotency_key_for("o-old"),
                params,
                "o-old",
                500,
                "eur",
                "tok_visa",
                "succeeded",
                None,
                None,
                200,
                body,
                int(clock.now),
            ),
        )
    gateway = SandboxGateway(db, key_ttl_s=60, clock=clock)
    await gateway.start()
    try:
        async with aiohttp.ClientSession() as session:
            raw = Raw(session, gateway.url)
            _, replay = await raw.charge("o-old")
            clock.now += 61
            _, fresh = await raw.charge("o-old")  # the UNIQUE key would refuse this row
        rows = await gateway.ledger.rows("o-old")
    finally:
        await gateway.stop()

    assert replay["id"] == "ch_old"
    assert [r.id for r in rows] == ["ch_old", fresh["id"]]
    with sqlite3.connect(db) as migrated:
        assert migrated.execute("PRAGMA user_version").fetchone() == (2,)


# -- the request log ------------------------------------------------------------------------------


async def test_every_v1_request_is_logged_with_its_outcome_order_and_charge(
    raw: Raw, sandbox: SandboxGateway
) -> None:
    _, charge = await raw.charge("o-log")
    await raw.charge("o-log")  # replayed
    await raw.charge("o-log", amount=999)  # same key, other parameters
    await raw.charge("o-log-no", "tok_chargeDeclined")
    await raw.lookup("o-log")
    await raw.lookup("o-never")
    await raw.get(f"/v1/charges/{charge['id']}")
    async with raw.session.post(f"{raw.url}/v1/charges", json=_body("o-log")) as resp:
        assert resp.status == 400  # no Idempotency-Key

    rows = await raw.requests()
    seen = [
        (r["kind"], r["order_id"], r["outcome"], r["http_status"], r["delivered"]) for r in rows
    ]
    assert seen == [
        ("charge", "o-log", "created", 200, True),
        ("charge", "o-log", "replayed", 200, True),
        ("charge", "o-log", "idempotency_error", 400, True),
        ("charge", "o-log-no", "declined", 402, True),
        ("lookup", "o-log", "found", 200, True),
        ("lookup", None, "not_found", 200, True),
        ("get", "o-log", "found", 200, True),
        ("charge", "o-log", "invalid", 400, True),
    ]
    assert [r["charge_id"] for r in rows[:3]] == [charge["id"]] * 3
    assert rows[0]["idempotency_key"] == idempotency_key_for("o-log")
    assert rows[0]["at"] <= rows[-1]["at"]
    by_key = await raw.requests(idempotency_key=idempotency_key_for("o-log-no"))
    assert [r["outcome"] for r in by_key] == ["declined"]
    assert len(await raw.requests(order_id="o-log")) == 6


async def test_faults_are_logged_and_a_dropped_response_is_not_delivered(
    raw: Raw, sandbox: SandboxGateway
) -> None:
    await raw.post("/_admin/faults", {"error_rate": 1.0})
    status, _ = await raw.charge("o-5xx")
    await raw.post("/_admin/faults", {"drop_response_rate": 1.0})
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await raw.charge("o-dropped")

    rows = await raw.requests()
    assert status in (500, 503)
    assert [(r["order_id"], r["outcome"], r["delivered"]) for r in rows] == [
        ("o-5xx", "fault_5xx", True),
        ("o-dropped", "dropped_response", False),
    ]
    assert rows[1]["charge_id"] is not None and rows[1]["http_status"] is None
    stats = await raw.get("/_admin/stats")
    assert stats["dropped_responses"] == 1


async def test_answer_to_a_client_that_timed_out_is_logged_as_not_delivered(
    raw: Raw, sandbox: SandboxGateway
) -> None:
    await raw.post("/_admin/faults", {"latency_ms": 600})
    timeout = aiohttp.ClientTimeout(total=0.2)
    async with aiohttp.ClientSession(timeout=timeout) as impatient:
        with pytest.raises(TimeoutError):
            await Raw(impatient, sandbox.url).charge("o-impatient")

    # The server finishes the charge after the client left; the log row comes when it ends.
    rows = await eventually(lambda: raw.requests(order_id="o-impatient"))
    assert [(r["outcome"], r["delivered"]) for r in rows] == [("created", False)]


async def test_hanging_request_cut_short_by_stop_is_logged_as_fault_hang(tmp_path: Path) -> None:
    gateway = SandboxGateway(tmp_path / "hang.db")
    await gateway.start()
    async with aiohttp.ClientSession() as session:
        raw = Raw(session, gateway.url)
        await raw.post("/_admin/faults", {"timeout_rate": 1.0})
        hanging = asyncio.create_task(raw.charge("o-hang"))
        await eventually(_now(lambda: gateway.charge_requests))
        await gateway.stop()
        with pytest.raises(aiohttp.ClientError):
            await hanging
    gateway = SandboxGateway(tmp_path / "hang.db")
    await gateway.start()
    try:
        rows = await gateway.ledger.requests()
    finally:
        await gateway.stop()
    assert [(r["order_id"], r["outcome"], r["delivered"]) for r in rows] == [
        ("o-hang", "fault_hang", False)
    ]


async def test_stats_count_requests_charges_and_lookups_per_order(
    raw: Raw, clock: FakeClock
) -> None:
    await raw.charge("o-a")
    await raw.charge("o-a")
    await raw.lookup("o-a")
    clock.now += 61
    await raw.charge("o-a")  # a second successful charge: the key had expired
    await raw.charge("o-b", "tok_chargeDeclined")

    stats = await raw.get("/_admin/stats")
    assert stats["charge_requests_per_order"] == {"o-a": 3, "o-b": 1}
    assert stats["succeeded_per_order"] == {"o-a": 2}
    assert stats["lookups_per_order"] == {"o-a": 1}
    assert stats["per_order"] == {"o-a": 2, "o-b": 1}
    assert (stats["charges"], stats["succeeded"], stats["failed"]) == (3, 2, 1)
    assert (stats["charge_requests"], stats["violations"], stats["dropped_responses"]) == (4, 0, 0)


async def test_request_log_keeps_up_with_many_concurrent_charges(
    sandbox: SandboxGateway,
) -> None:
    client = HttpPaymentGateway(
        sandbox.url, breaker=CircuitBreaker(failure_threshold=10_000), rng=random.Random(1)
    )
    try:
        orders = [f"o-many-{n}" for n in range(300)]
        await asyncio.gather(*(client.charge(_request(o)) for o in orders))
    finally:
        await client.close()
    await sandbox.flush()
    assert len(await sandbox.ledger.requests()) == 300


def _request(order_id: str) -> ChargeRequest:
    return ChargeRequest(idempotency_key_for(order_id), order_id, 500, "eur", "tok_visa")


# -- strict mode ------------------------------------------------------------------------------------


async def test_strict_mode_flags_a_charge_for_a_key_whose_answer_was_delivered(
    raw: Raw, sandbox: SandboxGateway
) -> None:
    await raw.post("/_admin/config", {"strict": True})
    _, first = await raw.charge("o-strict")
    status, again = await raw.charge("o-strict")  # the service already knew
    await raw.charge("o-strict-no", "tok_chargeDeclined")
    await raw.charge("o-strict-no", "tok_chargeDeclined")  # a decline is an answer too

    assert (status, again["id"]) == (200, first["id"])  # still answered like a real gateway
    violations = (await raw.get("/_admin/violations"))["data"]
    assert [(v["order_id"], v["outcome"]) for v in violations] == [
        ("o-strict", "replayed"),
        ("o-strict-no", "replayed"),
    ]
    assert first["id"] in violations[0]["violation"]
    assert (await raw.get("/_admin/stats"))["violations"] == 2


async def test_strict_mode_allows_a_retry_after_a_dropped_answer_and_flags_the_next(
    raw: Raw,
) -> None:
    await raw.post("/_admin/config", {"strict": True})
    await raw.post("/_admin/faults", {"drop_response_rate": 1.0})
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await raw.charge("o-lost")
    await raw.post("/_admin/faults", {"error_rate": 1.0})
    await raw.charge("o-lost")  # a 5xx is no answer about the charge
    await raw.post("/_admin/faults", {})
    await raw.charge("o-lost")  # the retry that hears the answer: legitimate
    await raw.charge("o-lost")  # asking again after hearing it: a violation

    rows = await raw.requests(order_id="o-lost")
    assert [(r["outcome"], r["violation"] is not None) for r in rows] == [
        ("dropped_response", False),
        ("fault_5xx", False),
        ("replayed", False),
        ("replayed", True),
    ]


async def test_strict_mode_counts_a_delivered_lookup_as_knowing_the_answer(raw: Raw) -> None:
    await raw.post("/_admin/config", {"strict": True})
    await raw.post("/_admin/faults", {"drop_response_rate": 1.0})
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await raw.charge("o-looked-up")
    await raw.post("/_admin/faults", {})
    assert len(await raw.lookup("o-looked-up")) == 1
    await raw.charge("o-looked-up")

    assert [v["order_id"] for v in (await raw.get("/_admin/violations"))["data"]] == ["o-looked-up"]


async def test_without_strict_mode_repeated_charges_are_not_violations(raw: Raw) -> None:
    await raw.charge("o-lenient")
    await raw.charge("o-lenient")
    assert (await raw.get("/_admin/violations"))["data"] == []


async def test_strict_mode_remembers_delivered_answers_across_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "strict.db"
    for _ in range(2):
        gateway = SandboxGateway(db, strict=True)
        await gateway.start()
        try:
            async with aiohttp.ClientSession() as session:
                await Raw(session, gateway.url).charge("o-restarted")
        finally:
            await gateway.stop()
    gateway = SandboxGateway(db)
    await gateway.start()
    try:
        violations = await gateway.ledger.requests(violations_only=True)
    finally:
        await gateway.stop()
    assert [v["order_id"] for v in violations] == ["o-restarted"]


async def test_client_charge_through_a_strict_sandbox_is_approved_once(
    sandbox: SandboxGateway,
) -> None:
    sandbox.config = sandbox.config.updated({"strict": True})
    client = HttpPaymentGateway(sandbox.url)
    try:
        outcome = await client.charge(_request("o-client"))
        found = await client.find_charge(idempotency_key_for("o-client"))
    finally:
        await client.close()
    assert isinstance(outcome, Approved)
    assert found is not None and found.outcome == outcome
    await sandbox.flush()
    assert await sandbox.ledger.requests(violations_only=True) == []
