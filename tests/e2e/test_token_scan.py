"""Payment tokens are secrets: after a run, no raw token is anywhere it should not be.

A worker and the sandbox gateway on a broker of this test's own (so every record it scans is from
this run) place orders with distinctive tokens: approved, declined, invalid, and one whose gateway
calls fail until the payment is UNKNOWN and is settled by the reconciler afterwards (it needs the
token until then). A poison ``order.created`` (a key that is not its order id) is dead-lettered.
Then everything the run left behind is scanned for the raw tokens:

- every topic's records, keys and headers. Allowed: the values on the command topic and
  ``order.created`` (the charge needs the token; they expire with ``retention.ms``) and on the
  dead-letter topic (kept byte for byte for ``dlq redrive``, with its own retention);
- the table changelogs: the LATEST value per key (what compaction keeps);
- the worker's whole log, the ``trace``, ``replay`` (plain and ``--dry-run``) and ``dlq`` outputs,
  the API's answers, the sandbox's admin endpoints (ledger, requests, stats).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from orderflow.domain.events import OrderCreated, rfc3339
from orderflow.domain.validation import LineItem
from orderflow.tools.localkafka import KafkaCluster
from orderflow.topics import (
    DEAD_LETTERS,
    ORDER_COMMANDS,
    ORDER_CREATED,
    PAYMENT_COMPLETED,
    TOKEN_TOPICS,
    changelog_topic,
)
from orderflow.wire import encode_event
from tests.harness import http_json, key_order_id, poll_until, start_sandbox, start_worker
from tests.kafka_helpers import Record, read_topic
from tests.orders_client import get_terminal, order_body, place, set_faults

APPROVED = "tok_visa"
DECLINED = "tok_chargeDeclined"
INVALID = "tok_scanNoSuchCard7Qx"  # the sandbox declines it: invalid_token
SETTLED_LATER = "tok_chargeDeclinedExpiredCard"  # UNKNOWN first, then declined expired_card
POISON = "tok_scanPoisonZ9w"  # only ever in a dead-lettered order.created
TOKENS = (APPROVED, DECLINED, INVALID, SETTLED_LATER, POISON)

# Topics whose VALUES may carry a token (within their retention); never their keys or headers.
_VALUES_ALLOWED = {ORDER_COMMANDS, ORDER_CREATED, DEAD_LETTERS}
_CHANGELOGS = {changelog_topic("OrderDB"), changelog_topic("PaymentDB")}

_RETENTION_S = 86400  # ORDERFLOW_TOKEN_TOPIC_RETENTION for this run (the default is 7 days)
_DLQ_RETENTION_S = 2 * 86400  # ORDERFLOW_DEAD_LETTER_RETENTION (the default is 30 days)
_FAST = {
    "ORDERFLOW_GATEWAY_TIMEOUT": "1",
    "ORDERFLOW_GATEWAY_DEADLINE": "3",
    "ORDERFLOW_STALL_AFTER": "3",
    "ORDERFLOW_TOKEN_TOPIC_RETENTION": str(_RETENTION_S),
    "ORDERFLOW_DEAD_LETTER_RETENTION": str(_DLQ_RETENTION_S),
}


def _leaks(where: str, text: str | bytes | None) -> list[str]:
    if text is None:
        return []
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    # Whole tokens only: tok_chargeDeclined is also the start of tok_chargeDeclinedExpiredCard.
    return [
        f"{where}: {token}"
        for token in TOKENS
        if re.search(re.escape(token) + r"(?![A-Za-z0-9_\-])", text)
    ]


def _all_topics(bootstrap: str) -> list[str]:
    async def names() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            return sorted(await admin.list_topics())
        finally:
            await admin.close()

    return [t for t in asyncio.run(names()) if not t.startswith("__")]


def _retention_ms(bootstrap: str, topics: list[str]) -> dict[str, str]:
    """Each topic's retention.ms as the broker reports it."""

    async def describe() -> dict[str, str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            answers = await admin.describe_configs(
                [
                    ConfigResource(ConfigResourceType.TOPIC, t, {"retention.ms": None})
                    for t in topics
                ]
            )
        finally:
            await admin.close()
        found: dict[str, str] = {}
        for answer in answers:
            for _error, _message, _type, name, entries in answer.resources:
                for key, value, *_ in entries:
                    if key == "retention.ms":
                        found[name] = value
        return found

    return asyncio.run(describe())


def _scan_topic(topic: str, records: Iterable[Record]) -> list[str]:
    found: list[str] = []
    latest: dict[bytes | None, Record] = {}
    for r in records:
        where = f"{topic}:{r.partition}:{r.offset}"
        found += _leaks(f"{where} key", r.key)
        for name, value in r.headers:
            found += _leaks(f"{where} header {name}", value)
        if topic in _CHANGELOGS:
            latest[r.key] = r
        elif topic not in _VALUES_ALLOWED:
            found += _leaks(f"{where} value", r.value)
    for r in latest.values():  # what compaction keeps of a changelog
        found += _leaks(f"{topic}:{r.partition}:{r.offset} latest value of {r.key!r}", r.value)
    return found


def _cli(bootstrap: str, gateway: str, *args: str) -> str:
    """Run an ``orderflow`` command; stdout and stderr together (both are shown to people)."""
    done = subprocess.run(
        [sys.executable, "-m", "orderflow", *args],
        capture_output=True,
        timeout=180,
        env={
            "PATH": "/usr/bin:/bin",
            "ORDERFLOW_KAFKA_BOOTSTRAP": bootstrap,
            "ORDERFLOW_GATEWAY_URL": gateway,
        },
    )
    out = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
    assert done.returncode == 0, f"orderflow {' '.join(args)} failed:\n{out[-3000:]}"
    return out


def _send_poison(bootstrap: str) -> str:
    """An order.created whose key is not its order id: the payment service dead-letters it."""
    order_id = f"ord_{uuid.uuid4().hex}"
    event = OrderCreated(
        order_id, "c-1", "EUR", 500, (LineItem("SKU-1", 1, 500),), POISON, rfc3339(0)
    )

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(ORDER_CREATED, encode_event(event), key=b"wrong-key")
        finally:
            await producer.stop()

    asyncio.run(send())
    return order_id


def _payment_statuses(bootstrap: str, order_id: str) -> list[str]:
    return [
        orjson.loads(r.value or b"{}").get("status")
        for r in read_topic(bootstrap, changelog_topic("PaymentDB"))
        if r.key == order_id.encode()
    ]


def test_no_raw_payment_token_outside_the_topics_that_need_it(
    own_broker: KafkaCluster, tmp_path: Path
) -> None:
    bootstrap = own_broker.bootstrap
    sandbox = start_sandbox(tmp_path)
    gateway = sandbox.meta["url"]
    worker = start_worker(tmp_path, bootstrap, gateway, name="scan", extra=_FAST)
    answers: list[Any] = []
    order_ids: dict[str, str] = {}
    try:
        base = worker.meta["url"]
        keys = {token: f"scan-{uuid.uuid4()}" for token in (APPROVED, DECLINED, INVALID)}
        for token, key in keys.items():
            answers.append(placed := place(base, order_body(token), key))
            order_ids[token] = placed["order_id"]
        for order_id in order_ids.values():
            answers.append(get_terminal(base, order_id))

        # Every gateway call fails: the charge goes UNKNOWN; once the gateway is back, the
        # reconciler's lookup finds nothing and charges with the token PaymentDB kept.
        key = f"scan-{uuid.uuid4()}"
        order_ids[SETTLED_LATER] = later = key_order_id(key)
        set_faults(gateway, error_rate=1.0)
        try:
            answers.append(place(base, order_body(SETTLED_LATER), key))
            poll_until(
                lambda: "UNKNOWN" in _payment_statuses(bootstrap, later),
                60,
                0.3,
                "the payment to go UNKNOWN",
            )
        finally:
            set_faults(gateway)
        final = get_terminal(base, later)
        answers.append(final)
        assert final["status"] == "PAYMENT_FAILED", final
        assert final["payment"]["decline_code"] == "expired_card", final
        # Placed again with the same key: the replayed answer must not show the token either.
        answers.append(place(base, order_body(APPROVED), keys[APPROVED]))

        poison = _send_poison(bootstrap)
        poll_until(lambda: read_topic(bootstrap, DEAD_LETTERS), 60, 0.3, "the dead letter")
        for answer in [http_json("GET", f"{base}/orders/{o}")[1] for o in order_ids.values()]:
            answers.append(answer)
    finally:
        worker.stop()
        sandbox_answers = [
            http_json("GET", f"{gateway}/_admin/{what}")[1]
            for what in ("ledger", "requests", "stats", "violations")
        ]
        sandbox.stop()

    leaks: list[str] = []
    topics = _all_topics(bootstrap)
    assert {ORDER_COMMANDS, ORDER_CREATED, DEAD_LETTERS, *_CHANGELOGS} <= set(topics), topics
    # The topics that carry tokens were created with the configured retention; the others not.
    retention = _retention_ms(bootstrap, [*TOKEN_TOPICS, PAYMENT_COMPLETED])
    assert {t: retention[t] for t in TOKEN_TOPICS} == {
        t: str((_DLQ_RETENTION_S if t == DEAD_LETTERS else _RETENTION_S) * 1000)
        for t in TOKEN_TOPICS
    }, retention
    assert retention[PAYMENT_COMPLETED] != str(_RETENTION_S * 1000), retention
    records = {topic: read_topic(bootstrap, topic) for topic in topics}
    # The scan can see a token: the command topic holds every one placed through the API.
    assert len(_scan_topic("(as any topic)", records[ORDER_COMMANDS])) == 4
    for topic in topics:
        leaks += _scan_topic(topic, records[topic])
    leaks += _leaks("worker log", worker.log_path.read_bytes())
    for i, answer in enumerate(answers):
        leaks += _leaks(f"API answer {i}", orjson.dumps(answer))
    for i, answer in enumerate(sandbox_answers):
        leaks += _leaks(f"sandbox admin answer {i}", orjson.dumps(answer))
    # Masked, not just absent: an investigation can still tell the tokens apart.
    shown = _cli(bootstrap, gateway, "trace", order_ids[APPROVED], "--format", "table")
    assert "token=tok_…isa" in shown, shown
    for fmt in ("json", "table"):
        for order_id in [*order_ids.values(), poison]:
            leaks += _leaks(
                f"trace {order_id} ({fmt})",
                _cli(bootstrap, gateway, "trace", order_id, "--format", fmt),
            )
        for extra in ([], ["--dry-run"], ["--topic", DEAD_LETTERS]):
            leaks += _leaks(
                f"replay {extra} ({fmt})",
                _cli(bootstrap, gateway, "replay", "--since", "1h", "--format", fmt, *extra),
            )
        leaks += _leaks(
            f"dlq list ({fmt})", _cli(bootstrap, gateway, "dlq", "list", "--format", fmt)
        )
        leaks += _leaks(
            f"dlq show ({fmt})",
            _cli(bootstrap, gateway, "dlq", "show", "--order-id", poison, "--format", fmt),
        )
        leaks += _leaks(
            f"dlq redrive --dry-run ({fmt})",
            _cli(bootstrap, gateway, "dlq", "redrive", "--all", "--dry-run", "--format", fmt),
        )
    assert not leaks, f"{len(leaks)} raw payment token(s) found:\n" + "\n".join(leaks)
