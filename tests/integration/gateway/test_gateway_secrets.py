"""Gateway credentials and replies stay private (issue 9 §1, §2 ``/_admin``).

The client sends ``ORDERFLOW_GATEWAY_API_KEY`` as a bearer token; the sandbox, given a key,
answers 401 without it; a refused request's reply goes to our WARNING log only; the sandbox's
``/_admin`` needs a token when it listens beyond loopback.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from orderflow.domain.payment import Approved, idempotency_key_for
from orderflow.gateway.base import ChargeRequest, PermanentGatewayError
from orderflow.gateway.http import HttpPaymentGateway
from orderflow.tools.sandbox.gateway import SandboxGateway

KEY = "sk_test_0123456789abcdef"


def _request(order_id: str) -> ChargeRequest:
    return ChargeRequest(idempotency_key_for(order_id), order_id, 500, "EUR", "tok_visa")


@pytest.fixture
async def keyed_sandbox(tmp_path: Path) -> AsyncIterator[SandboxGateway]:
    gateway = SandboxGateway(tmp_path / "ledger.db", api_key=KEY)
    await gateway.start("127.0.0.1", 0)
    try:
        yield gateway
    finally:
        await gateway.stop()


async def test_the_client_sends_the_api_key_as_a_bearer_token(
    keyed_sandbox: SandboxGateway,
) -> None:
    client = HttpPaymentGateway(keyed_sandbox.url, api_key=KEY, deadline=5)
    try:
        assert isinstance(await client.charge(_request("o-auth")), Approved)
        found = await client.find_charge(idempotency_key_for("o-auth"))
        assert found is not None and isinstance(found.outcome, Approved)
    finally:
        await client.close()


@pytest.mark.parametrize("sent", [None, "Bearer wrong", f"Basic {KEY}", KEY])
async def test_the_keyed_sandbox_answers_401_to_charges_and_lookups_without_the_key(
    keyed_sandbox: SandboxGateway, sent: str | None
) -> None:
    headers = (
        {"Idempotency-Key": "k-401"}
        if sent is None
        else {"Idempotency-Key": "k-401", "Authorization": sent}
    )
    body = {
        "amount": 500,
        "currency": "EUR",
        "source": "tok_visa",
        "metadata": {"order_id": "o-401"},
    }
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{keyed_sandbox.url}/v1/charges", json=body, headers=headers
        ) as resp:
            assert resp.status == 401
            assert KEY not in await resp.text()
        async with session.get(
            f"{keyed_sandbox.url}/v1/charges", params={"idempotency_key": "k-401"}, headers=headers
        ) as resp:
            assert resp.status == 401
    assert await keyed_sandbox.ledger.rows() == []  # nothing charged


async def test_a_client_without_the_key_is_refused_permanently_and_the_key_is_in_no_error(
    keyed_sandbox: SandboxGateway,
) -> None:
    client = HttpPaymentGateway(keyed_sandbox.url, api_key="sk_test_wrong", deadline=5)
    try:
        with pytest.raises(PermanentGatewayError) as refused:
            await client.charge(_request("o-wrong"))
    finally:
        await client.close()
    assert refused.value.status == 401
    assert "sk_test_wrong" not in str(refused.value) and KEY not in str(refused.value)
    assert "sk_test_wrong" not in repr(client)


async def test_a_refused_request_logs_status_and_a_short_excerpt_at_warning_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reply = {"error": {"message": "bad currency for Bearer sk_live_echoed " + "x" * 500}}

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(reply, status=422)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    client = HttpPaymentGateway(url, api_key=KEY, deadline=5)
    try:
        with caplog.at_level(logging.DEBUG), pytest.raises(PermanentGatewayError) as refused:
            await client.charge(_request("o-422"))
    finally:
        await client.close()
        await runner.cleanup()
    assert str(refused.value) == "POST /v1/charges: HTTP 422"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("HTTP 422" in w and "bad currency" in w for w in warnings), warnings
    assert all(len(w) < 300 and "sk_live_echoed" not in w for w in warnings), warnings
    assert not any(KEY in r.getMessage() for r in caplog.records)


async def test_admin_is_open_on_loopback(keyed_sandbox: SandboxGateway) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{keyed_sandbox.url}/_admin/stats") as resp,
    ):
        assert resp.status == 200


async def test_the_sandbox_refuses_a_non_loopback_address_without_an_admin_token(
    tmp_path: Path,
) -> None:
    gateway = SandboxGateway(tmp_path / "ledger.db")
    with pytest.raises(ValueError, match="admin token"):
        await gateway.start("0.0.0.0", 0)
    assert not gateway.ledger.is_open


async def test_admin_needs_the_token_beyond_loopback(tmp_path: Path) -> None:
    gateway = SandboxGateway(tmp_path / "ledger.db", admin_token="adm-secret")
    await gateway.start("0.0.0.0", 0)
    try:
        base = f"http://127.0.0.1:{gateway.port}"
        async with aiohttp.ClientSession() as session:
            for headers in ({}, {"Authorization": "Bearer nope"}):
                async with session.get(f"{base}/_admin/ledger", headers=headers) as resp:
                    assert resp.status == 401
                async with session.post(
                    f"{base}/_admin/faults", json={"error_rate": 1}, headers=headers
                ) as resp:
                    assert resp.status == 401
            good = {"Authorization": "Bearer adm-secret"}
            async with session.get(f"{base}/_admin/stats", headers=good) as resp:
                assert resp.status == 200
    finally:
        await gateway.stop()
    assert gateway.faults.error_rate == 0


async def test_the_embedded_sandbox_is_called_with_a_key_of_its_own(tmp_path: Path) -> None:
    from orderflow.app import GatewayHolder
    from orderflow.config import Settings

    settings = Settings.from_env(
        {"ORDERFLOW_GATEWAY": "sandbox", "ORDERFLOW_SANDBOX_DB": str(tmp_path / "ledger.db")}
    )
    holder = GatewayHolder(settings)
    try:
        gateway = await holder.get()
        assert isinstance(await gateway.charge(_request("o-embedded")), Approved)
        url = f"{holder._sandbox.url}/v1/charges"
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, params={"idempotency_key": idempotency_key_for("o-embedded")}) as resp,
        ):
            assert resp.status == 401  # a key was set, and only the client has it
    finally:
        await holder.close()


def test_the_sandbox_command_refuses_a_non_loopback_host_without_an_admin_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from orderflow.tools.sandbox.gateway import main

    monkeypatch.delenv("ORDERFLOW_SANDBOX_ADMIN_TOKEN", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["--host", "0.0.0.0", "--port", "0", "--db", str(tmp_path / "l.db")])
    assert exited.value.code == 2
    assert "ORDERFLOW_SANDBOX_ADMIN_TOKEN" in capsys.readouterr().err
    assert not (tmp_path / "l.db").exists()


async def test_a_redirecting_gateway_is_not_followed_with_the_key_and_the_token() -> None:
    # Regression: aiohttp follows redirects by default, sending the charge (card token, and the
    # session's Authorization header) wherever the reply points.
    hits: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        if request.path.startswith("/v1/"):
            raise web.HTTPTemporaryRedirect("/elsewhere")
        return web.json_response({"id": "ch_1", "status": "succeeded"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    client = HttpPaymentGateway(
        f"http://127.0.0.1:{runner.addresses[0][1]}", api_key=KEY, deadline=5, max_attempts=1
    )
    try:
        with pytest.raises(PermanentGatewayError, match="HTTP 307"):
            await client.charge(_request("o-307"))
    finally:
        await client.close()
        await runner.cleanup()
    assert hits == ["/v1/charges"]
