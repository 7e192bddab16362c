"""The real sandbox gateway (temp SQLite ledger) driven by the real HTTP client, on 127.0.0.1.

No Kafka. Timeouts and deadlines are small so the whole file runs in seconds. Tests count what
reached the server (``charge_requests``) and what the ledger holds, not only what the client said.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
import types
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from orderflow.domain.payment import DECLINE_MESSAGES, Approved, Declined, idempotency_key_for
from orderflow.gateway import http as http_module
from orderflow.gateway.base import (
    CircuitOpenError,
    PaymentGateway,
    PermanentGatewayError,
    TransientGatewayError,
)
from orderflow.gateway.http import BreakerState, CircuitBreaker, HttpPaymentGateway
from orderflow.tools.sandbox.gateway import SandboxGateway
from tests.breaker_helpers import FakeClock, state_of
from tests.integration.gateway.sandbox_helpers import Admin, MakeClient, charge_request


def _http_client_is_a_payment_gateway(client: HttpPaymentGateway) -> PaymentGateway:
    return client  # mypy --strict checks that the client satisfies the protocol; no runtime test


@dataclass
class FakeTime:
    """The client's loop clock and backoff sleep, faked: a sleep is recorded and moves the clock.

    ``overshoot`` is extra time every sleep takes, as on a loaded loop. Network timeouts stay
    real (aiohttp's own), so tests using this answer at once or refuse the connection.
    """

    now: float = 1000.0
    overshoot: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def time(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay + self.overshoot
        await asyncio.sleep(0)


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    shim = types.SimpleNamespace(get_running_loop=lambda: fake, sleep=fake.sleep)
    monkeypatch.setattr(http_module, "asyncio", shim)
    return fake


# -- answers -------------------------------------------------------------------------------------


async def test_visa_is_approved_with_one_succeeded_charge(
    make_client: MakeClient, admin: Admin
) -> None:
    outcome = await make_client().charge(charge_request("o-visa"))

    assert isinstance(outcome, Approved)
    assert outcome.charge_id.startswith("ch_")
    rows = await admin.ledger("o-visa")
    assert [(r["id"], r["status"], r["amount"]) for r in rows] == [
        (outcome.charge_id, "succeeded", 1999)
    ]


@pytest.mark.parametrize(
    ("token", "code"),
    [
        ("tok_chargeDeclined", "card_declined"),
        ("tok_chargeDeclinedInsufficientFunds", "insufficient_funds"),
        ("tok_chargeDeclinedExpiredCard", "expired_card"),
        ("tok_nonsense", "invalid_token"),
    ],
)
async def test_decline_token_gives_its_code_and_is_never_retried(
    make_client: MakeClient, admin: Admin, sandbox: SandboxGateway, token: str, code: str
) -> None:
    # A threshold of 1: if a decline counted as a failure, the breaker would open.
    breaker = CircuitBreaker(failure_threshold=1)
    outcome = await make_client(breaker=breaker).charge(charge_request(f"o-{code}", token))

    assert isinstance(outcome, Declined)
    assert outcome.decline == DECLINE_MESSAGES[code]
    assert sandbox.charge_requests == 1
    rows = await admin.ledger(f"o-{code}")
    assert [(r["id"], r["status"], r["failure_code"]) for r in rows] == [
        (outcome.charge_id, "failed", code)
    ]
    assert state_of(breaker) is BreakerState.CLOSED


async def test_same_key_with_other_parameters_is_refused_and_nothing_stored(
    make_client: MakeClient, admin: Admin, sandbox: SandboxGateway
) -> None:
    client = make_client()
    first = await client.charge(charge_request("o-reuse", amount=1999))

    with pytest.raises(PermanentGatewayError) as refused:
        await client.charge(charge_request("o-reuse", amount=2999))

    assert refused.value.status == 400
    # The gateway's words go to our log only: the error's text may become public.
    assert "same parameters" not in str(refused.value)
    assert sandbox.url not in str(refused.value)
    assert sandbox.charge_requests == 2  # a 400 is not retried
    rows = await admin.ledger("o-reuse")
    assert isinstance(first, Approved)
    assert [(r["id"], r["amount"]) for r in rows] == [(first.charge_id, 1999)]


async def test_same_key_and_parameters_replay_the_first_response_exactly(
    sandbox: SandboxGateway, admin: Admin
) -> None:
    for order_id, token, status in [("o-raw-ok", "tok_visa", 200), ("o-raw-no", "tok_x", 402)]:
        body = {
            "amount": 500,
            "currency": "eur",
            "source": token,
            "metadata": {"order_id": order_id},
        }
        headers = {"Idempotency-Key": idempotency_key_for(order_id)}
        answers = []
        for _ in range(2):
            async with admin.session.post(
                f"{sandbox.url}/v1/charges", json=body, headers=headers
            ) as resp:
                answers.append(
                    (resp.status, await resp.text(), resp.headers.get("Idempotent-Replayed"))
                )

        (status1, text1, replayed1), (status2, text2, replayed2) = answers
        assert (status1, replayed1) == (status, None)
        assert (status2, text2, replayed2) == (status1, text1, "true")
    assert (await admin.stats())["charges"] == 2


async def test_charge_without_idempotency_key_or_valid_body_is_400_and_not_stored(
    sandbox: SandboxGateway, admin: Admin
) -> None:
    body = {"amount": 500, "currency": "eur", "source": "tok_visa", "metadata": {"order_id": "o"}}
    url = f"{sandbox.url}/v1/charges"
    async with admin.session.post(url, json=body) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["param"] == "Idempotency-Key"
    async with admin.session.post(
        url, json={**body, "amount": -5}, headers={"Idempotency-Key": "k"}
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["param"] == "amount"
    assert (await admin.stats())["charges"] == 0


async def test_charges_can_be_read_by_id_and_unknown_ids_are_404(
    make_client: MakeClient, admin: Admin, sandbox: SandboxGateway
) -> None:
    outcome = await make_client().charge(charge_request("o-get"))
    assert isinstance(outcome, Approved)

    async with admin.session.get(f"{sandbox.url}/v1/charges/{outcome.charge_id}") as resp:
        charge = await resp.json()
    assert (resp.status, charge["id"], charge["status"], charge["order_id"]) == (
        200,
        outcome.charge_id,
        "succeeded",
        "o-get",
    )
    async with admin.session.get(f"{sandbox.url}/v1/charges/ch_unknown") as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "resource_missing"


async def test_find_charge_reports_approved_declined_or_none(make_client: MakeClient) -> None:
    client = make_client()
    approved = await client.charge(charge_request("o-find-ok"))
    declined = await client.charge(charge_request("o-find-no", "tok_chargeDeclinedExpiredCard"))

    found_ok = await client.find_charge(idempotency_key_for("o-find-ok"))
    found_no = await client.find_charge(idempotency_key_for("o-find-no"))
    assert found_ok is not None and found_no is not None
    assert found_ok.outcome == approved and found_no.outcome == declined
    # What each charge was for, so the payment service can check it is the order's.
    request = charge_request("o-find-ok")
    assert (found_ok.amount, found_ok.currency, found_ok.order_id) == (
        request.amount,
        request.currency,
        "o-find-ok",
    )
    assert await client.find_charge(idempotency_key_for("o-never-seen")) is None


async def test_admin_faults_validate_report_and_reset(
    sandbox: SandboxGateway, admin: Admin
) -> None:
    url = f"{sandbox.url}/_admin/faults"
    async with admin.session.post(url, json={"error_rate": 2}) as resp:
        assert resp.status == 400
    await admin.set_faults(error_rate=0.25, latency_ms=3)
    async with admin.session.get(url) as resp:
        faults = await resp.json()
    assert (faults["error_rate"], faults["latency_ms"], faults["timeout_rate"]) == (0.25, 3, 0)
    await admin.clear_faults()
    async with admin.session.get(url) as resp:
        assert (await resp.json())["error_rate"] == 0


# -- faults and retries --------------------------------------------------------------------------


async def test_flaky_gateway_charges_every_order_exactly_once(
    make_client: MakeClient, admin: Admin, sandbox: SandboxGateway
) -> None:
    await admin.set_faults(error_rate=0.3)
    client = make_client()
    order_ids = [f"o-flaky-{n}" for n in range(40)]

    outcomes = await asyncio.gather(*(client.charge(charge_request(o)) for o in order_ids))

    assert all(isinstance(o, Approved) for o in outcomes)
    stats = await admin.stats()
    assert stats["per_order"] == {o: 1 for o in order_ids}
    assert stats["charges"] == stats["succeeded"] == 40
    assert stats["charge_requests"] > 40  # faults did fire, and retries answered them
    ledger_ids = {r["order_id"]: r["id"] for r in await admin.ledger()}
    charged = {o: c.charge_id for o, c in zip(order_ids, outcomes, strict=True)}
    assert charged == ledger_ids


async def test_dropped_response_after_charging_is_recovered_with_the_same_key(
    make_client: MakeClient, admin: Admin, sandbox: SandboxGateway
) -> None:
    await admin.set_faults(drop_response_rate=1.0)

    outcome = await make_client().charge(charge_request("o-drop"))

    assert sandbox.charge_requests == 2  # charged and dropped, then the replay answered
    rows = await admin.ledger("o-drop")
    assert isinstance(outcome, Approved)
    assert [r["id"] for r in rows] == [outcome.charge_id]


async def test_total_outage_retries_until_the_deadline_then_a_later_charge_succeeds(
    make_client: MakeClient, admin: Admin, sandbox: SandboxGateway, fake_time: FakeTime
) -> None:
    await admin.set_faults(error_rate=1.0)
    client = make_client(deadline=1.0, max_attempts=1000, backoff_base=0.1, backoff_cap=0.3)

    with pytest.raises(TransientGatewayError) as outage:
        await client.charge(charge_request("o-outage"))

    assert not isinstance(outage.value, CircuitOpenError)
    assert outage.value.status in (500, 503)
    assert "deadline of 1.0s passed" in str(outage.value)
    assert sum(fake_time.sleeps) < 1.0  # it never slept past its deadline
    assert sandbox.charge_requests == len(fake_time.sleeps) + 1 > 1
    assert (await admin.stats())["charges"] == 0

    await admin.clear_faults()
    outcome = await client.charge(charge_request("o-outage"))
    assert isinstance(outcome, Approved)
    assert [r["id"] for r in await admin.ledger("o-outage")] == [outcome.charge_id]


async def test_hanging_gateway_times_out_each_attempt_and_stops_at_the_deadline(
    make_client: MakeClient, admin: Admin, sandbox: SandboxGateway
) -> None:
    await admin.set_faults(timeout_rate=1.0)
    client = make_client(request_timeout=0.2, deadline=0.9)

    with pytest.raises(TransientGatewayError) as hung:
        await client.charge(charge_request("o-hang"))

    assert "deadline of 0.9s passed" in str(hung.value)
    assert "no answer in" in str(hung.value)
    assert sandbox.charge_requests >= 2  # a timed-out attempt is retried with the same key
    await admin.clear_faults()
    outcome = await client.charge(charge_request("o-hang"))
    assert isinstance(outcome, Approved)
    assert [r["id"] for r in await admin.ledger("o-hang")] == [outcome.charge_id]


async def test_unreachable_gateway_is_retried_until_the_deadline_then_transient(
    make_client: MakeClient, tmp_path: Path, fake_time: FakeTime
) -> None:
    closed = SandboxGateway(tmp_path / "gone.db")
    await closed.start()
    url = closed.url
    await closed.stop()  # nothing listens on that port now

    with pytest.raises(TransientGatewayError) as refused:
        await make_client(url, deadline=0.5, max_attempts=1000).charge(
            charge_request("o-unreachable")
        )
    assert "deadline of 0.5s passed" in str(refused.value)
    assert len(fake_time.sleeps) >= 1 and sum(fake_time.sleeps) < 0.5


async def test_circuit_opens_after_consecutive_failures_and_then_fails_fast(
    make_client: MakeClient, admin: Admin, sandbox: SandboxGateway
) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=30, clock=clock)
    client = make_client(breaker=breaker)
    await admin.set_faults(error_rate=1.0)

    with pytest.raises(TransientGatewayError) as first:
        await client.charge(charge_request("o-breaker-1"))
    # Requests went out for this charge, so it is not "not called at all".
    assert not isinstance(first.value, CircuitOpenError)
    assert sandbox.charge_requests == 3
    assert state_of(breaker) is BreakerState.OPEN

    with pytest.raises(CircuitOpenError):
        await client.charge(charge_request("o-breaker-2"))
    assert sandbox.charge_requests == 3  # nothing reached the server

    await admin.clear_faults()
    clock.now += 30  # cool-down over: one probe may go
    outcome = await client.charge(charge_request("o-breaker-2"))
    assert isinstance(outcome, Approved)
    assert state_of(breaker) is BreakerState.CLOSED
    assert (await admin.stats())["per_order"] == {"o-breaker-2": 1}


# -- ledger --------------------------------------------------------------------------------------


async def test_ledger_survives_a_restart_and_the_same_key_answers_the_same_charge(
    tmp_path: Path, make_client: MakeClient
) -> None:
    db = tmp_path / "restart.db"
    first = SandboxGateway(db)
    await first.start()
    try:
        before = await make_client(first.url).charge(charge_request("o-restart"))
    finally:
        await first.stop()

    second = SandboxGateway(db)
    await second.start()
    try:
        client = make_client(second.url)
        after = await client.charge(charge_request("o-restart"))
        found = await client.find_charge(idempotency_key_for("o-restart"))
        rows = await second.ledger.rows("o-restart")
    finally:
        await second.stop()

    assert isinstance(before, Approved)
    assert found is not None
    assert after == found.outcome == before
    assert [r.id for r in rows] == [before.charge_id]


async def test_concurrent_charges_with_one_key_make_one_charge(
    make_client: MakeClient, admin: Admin, sandbox: SandboxGateway
) -> None:
    await admin.set_faults(latency_ms=20)  # so the ten requests are in the server together
    client = make_client()

    outcomes = await asyncio.gather(*(client.charge(charge_request("o-race")) for _ in range(10)))

    assert sandbox.charge_requests == 10
    assert len(set(outcomes)) == 1
    rows = await admin.ledger("o-race")
    assert isinstance(outcomes[0], Approved)
    assert [r["id"] for r in rows] == [outcomes[0].charge_id]


# -- client against scripted servers -------------------------------------------------------------


@dataclass
class Script:
    """A server that answers from a list of (status, body, headers) and records each request."""

    answers: list[tuple[int, dict[str, Any], dict[str, str]]]
    seen: list[tuple[float, str | None]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(
            (asyncio.get_running_loop().time(), request.headers.get("Idempotency-Key"))
        )
        status, body, headers = self.answers[min(len(self.seen), len(self.answers)) - 1]
        return web.json_response(body, status=status, headers=headers)


@contextlib.asynccontextmanager
async def serve(handler: Callable[[web.Request], Awaitable[web.Response]]) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


CHARGED: tuple[int, dict[str, Any], dict[str, str]] = (
    200,
    {"id": "ch_scripted", "status": "succeeded"},
    {},
)


async def test_retry_after_is_honoured_and_the_key_is_kept(
    make_client: MakeClient, fake_time: FakeTime
) -> None:
    script = Script([(429, {"error": {"type": "rate_limit"}}, {"Retry-After": "0.4"}), CHARGED])
    async with serve(script.handle) as url:
        outcome = await make_client(url).charge(charge_request("o-429"))

    assert outcome == Approved("ch_scripted")
    assert fake_time.sleeps == [0.4]  # longer than any backoff delay (cap 0.1)
    (_, key1), (_, key2) = script.seen
    assert key1 == key2 == idempotency_key_for("o-429")


async def test_retry_after_beyond_the_deadline_gives_up_without_sleeping(
    make_client: MakeClient, fake_time: FakeTime
) -> None:
    script = Script([(503, {}, {"Retry-After": "30"})])
    async with serve(script.handle) as url:
        with pytest.raises(TransientGatewayError) as gave_up:
            await make_client(url, deadline=2.0).charge(charge_request("o-503"))

    assert fake_time.sleeps == []
    assert gave_up.value.status == 503
    assert "deadline of 2.0s passed after 1 attempt(s)" in str(gave_up.value)
    assert len(script.seen) == 1


async def test_backoff_sleep_overshooting_the_deadline_sends_nothing_more(
    make_client: MakeClient, fake_time: FakeTime
) -> None:
    # The sleep itself was within the deadline, but the loop woke up late, past it: another
    # attempt would get a zero or negative time limit, which aiohttp reads as "no limit".
    fake_time.overshoot = 5.0
    script = Script([(503, {}, {})])
    async with serve(script.handle) as url:
        with pytest.raises(TransientGatewayError) as late:
            await make_client(url, deadline=2.0).charge(charge_request("o-late"))

    assert len(fake_time.sleeps) == 1
    assert "deadline of 2.0s passed after 1 attempt(s)" in str(late.value)
    assert len(script.seen) == 1


async def test_max_attempts_caps_the_requests_of_one_charge(
    make_client: MakeClient, fake_time: FakeTime
) -> None:
    script = Script([(503, {}, {})])
    async with serve(script.handle) as url:
        with pytest.raises(TransientGatewayError) as gave_up:
            await make_client(url, deadline=60.0, max_attempts=4).charge(charge_request("o-max"))

    assert len(script.seen) == 4
    assert len(fake_time.sleeps) == 3
    assert "gave up after 4 attempt(s)" in str(gave_up.value)
    assert gave_up.value.status == 503


async def test_2xx_charge_answer_without_an_id_is_transient_never_approved(
    make_client: MakeClient,
) -> None:
    script = Script([(200, {"status": "succeeded"}, {})])
    async with serve(script.handle) as url:
        with pytest.raises(TransientGatewayError) as no_id:
            await make_client(url).charge(charge_request("o-no-id"))

    # The charge may exist: the caller must treat it as a lost answer (UNKNOWN), not a failure.
    assert not isinstance(no_id.value, PermanentGatewayError)
    assert "without an id" in str(no_id.value)
    assert no_id.value.status == 200


async def test_2xx_lookup_answer_without_data_or_id_is_transient(make_client: MakeClient) -> None:
    no_list = Script([(200, {"object": "list"}, {})])
    no_id = Script([(200, {"data": [{"status": "succeeded"}]}, {})])
    for script, message in ((no_list, "without data"), (no_id, "without an id")):
        async with serve(script.handle) as url:
            with pytest.raises(TransientGatewayError, match=message):
                await make_client(url).find_charge(idempotency_key_for("o-lookup"))


@pytest.mark.parametrize("body", [b"OK", b"[1, 2]", b""], ids=["text", "json-list", "empty"])
async def test_2xx_answer_without_a_json_object_is_retried_then_transient(
    make_client: MakeClient, fake_time: FakeTime, body: bytes
) -> None:
    seen: list[str] = []

    async def not_json(request: web.Request) -> web.Response:
        seen.append(request.headers["Idempotency-Key"])
        return web.Response(status=200, body=body)

    async with serve(not_json) as url:
        with pytest.raises(TransientGatewayError) as garbled:
            await make_client(url, max_attempts=3).charge(charge_request("o-garbled"))

    assert seen == [idempotency_key_for("o-garbled")] * 3
    assert "without JSON" in str(garbled.value)
    assert "gave up after 3 attempt(s)" in str(garbled.value)


async def test_409_conflicts_do_not_count_as_breaker_failures(
    make_client: MakeClient, fake_time: FakeTime
) -> None:
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=30, clock=FakeClock())
    conflict: tuple[int, dict[str, Any], dict[str, str]] = (
        409,
        {"error": {"type": "idempotency_error"}},
        {},
    )
    script = Script([conflict, conflict, conflict, CHARGED])
    async with serve(script.handle) as url:
        outcome = await make_client(url, breaker=breaker).charge(charge_request("o-409s"))

    # Three 409s in a row with a threshold of 2: had they counted, the breaker would be open.
    assert outcome == Approved("ch_scripted")
    assert len(script.seen) == 4
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0


async def test_cancelled_probe_releases_the_half_open_breaker(make_client: MakeClient) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=10, clock=clock)
    breaker.record_failure()
    clock.now += 10  # half-open: the next call is the one probe
    arrived = asyncio.Event()
    never = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        arrived.set()
        await never.wait()
        return web.json_response(CHARGED[1])

    async with serve(hang) as url:
        client = make_client(url, breaker=breaker, request_timeout=30.0, deadline=60.0)
        probe = asyncio.create_task(client.charge(charge_request("o-probe")))
        await asyncio.wait_for(arrived.wait(), timeout=10)
        assert not breaker.allow()  # the probe is out: nobody else may go
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        never.set()

    # Without the release the slot would stay taken and every call would fail fast forever.
    assert state_of(breaker) is BreakerState.HALF_OPEN
    script = Script([CHARGED])
    async with serve(script.handle) as url:
        outcome = await make_client(url, breaker=breaker).charge(charge_request("o-after"))
    assert outcome == Approved("ch_scripted")
    assert state_of(breaker) is BreakerState.CLOSED


async def test_conflict_is_retried_but_other_4xx_are_not(make_client: MakeClient) -> None:
    conflict = Script([(409, {"error": {"type": "idempotency_error"}}, {}), CHARGED])
    invalid = Script([(422, {"error": {"message": "bad currency"}}, {}), CHARGED])
    async with serve(conflict.handle) as url:
        assert await make_client(url).charge(charge_request("o-409")) == Approved("ch_scripted")
    async with serve(invalid.handle) as url:
        with pytest.raises(PermanentGatewayError) as refused:
            await make_client(url).charge(charge_request("o-422"))

    assert len(conflict.seen) == 2
    assert len(invalid.seen) == 1
    assert refused.value.status == 422
    assert "bad currency" not in str(refused.value) and url not in str(refused.value)
    assert "HTTP 422" in str(refused.value)


# -- the command -----------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_sandbox_command_prints_its_url_takes_its_settings_and_stops_cleanly_on_signal(
    tmp_path: Path, sig: signal.Signals
) -> None:
    code = (
        "import sys; from orderflow.tools.sandbox.gateway import main; sys.exit(main(sys.argv[1:]))"
    )
    db = tmp_path / "cli.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        "--port",
        "0",
        "--db",
        str(db),
        "--key-ttl",
        "20",
        "--strict",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=10)).decode()
        match = re.fullmatch(r"sandbox-gateway listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{match.group(1)}/_admin/stats") as resp:
                assert (await resp.json())["charges"] == 0
            async with session.get(f"{match.group(1)}/_admin/config") as resp:
                assert await resp.json() == {"key_ttl_s": 20, "strict": True}

        proc.send_signal(sig)
        assert await asyncio.wait_for(proc.wait(), timeout=10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert db.exists()
