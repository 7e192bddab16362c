"""Webhooks, decided (``orderflow.domain.webhooks``): signatures, events of an order's changes,
the retries of each delivery, the bounds of an order's record, and which URLs may be endpoints.

Pure: the clock is a number each test passes in.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orderflow.domain.backoff import Backoff
from orderflow.domain.webhooks import (
    MAX_ATTEMPTS_KEPT,
    MAX_DELIVERIES_KEPT,
    Attempt,
    Delivery,
    DeliveryState,
    Endpoint,
    OrderWebhooks,
    RetryPolicy,
    due_deliveries,
    endpoint_secret,
    endpoint_url_problem,
    event_id_for,
    record_attempt,
    record_change,
    resend,
    sign,
    verify,
)

KEY = b"k" * 32
SECRET = endpoint_secret(KEY, "we_1")
BODY = b'{"id":"evt_1","type":"order.paid"}'
T = 1_714_564_800  # when a signature is made (unix seconds)
NOW = 1000.0  # the webhook clock of the record tests
ENDPOINTS = (
    Endpoint("we_1", "client-a", "https://a.example.com/hook", "2024-05-01T12:00:00.000Z"),
    Endpoint("we_2", "client-a", "https://b.example.com/hook", "2024-05-01T12:00:00.000Z"),
)
# 10 s, 20 s, 40 s, 40 s... and nothing later than 100 s after the change (or the resend).
POLICY = RetryPolicy(period=100.0, backoff=Backoff(base=10.0, cap=40.0))
LONG_POLICY = RetryPolicy(period=1e9, backoff=Backoff(base=10.0, cap=40.0))


def changed(
    record: OrderWebhooks | None,
    status: str = "PENDING",
    version: str = "v1",
    endpoints: tuple[Endpoint, ...] = ENDPOINTS[:1],
    now: float = NOW,
) -> OrderWebhooks:
    updated = record_change(
        record, "ord-1", {"order_id": "ord-1", "status": status}, version, endpoints, now, "t"
    )
    assert updated is not None
    return updated


def attempted(
    record: OrderWebhooks,
    number: int,
    at: float,
    status: int,
    policy: RetryPolicy = POLICY,
    index: int = 0,
) -> OrderWebhooks:
    """``record`` with attempt ``number`` of its delivery ``index`` counted (it must change it)."""
    delivery = record.deliveries[index]
    updated = record_attempt(
        record, delivery.event_id, delivery.endpoint_id, Attempt(number, at, status, "", 5), policy
    )
    assert updated is not None
    return updated


def only(record: OrderWebhooks) -> Delivery:
    (delivery,) = record.deliveries
    return delivery


# -- signatures -------------------------------------------------------------------------------


def test_a_signed_body_verifies_with_the_endpoint_secret_within_the_tolerance() -> None:
    header = sign(SECRET, T, BODY)

    assert header.startswith(f"t={T},v1=")
    assert verify(SECRET, header, BODY, now=T + 299)
    assert verify(SECRET, header, BODY, now=T - 299)


def test_verify_refuses_a_tampered_body() -> None:
    header = sign(SECRET, T, BODY)

    assert not verify(SECRET, header, BODY.replace(b"paid", b"void"), now=T)
    assert not verify(SECRET, header, BODY + b" ", now=T)


def test_verify_refuses_a_signature_made_with_another_secret() -> None:
    other = endpoint_secret(KEY, "we_2")
    assert other != SECRET

    assert not verify(other, sign(SECRET, T, BODY), BODY, now=T)
    assert not verify(SECRET, sign(endpoint_secret(b"x" * 32, "we_1"), T, BODY), BODY, now=T)


@pytest.mark.parametrize("offset", [301, -301, 86_400])
def test_verify_refuses_a_timestamp_outside_the_tolerance_as_a_replay(offset: int) -> None:
    assert not verify(SECRET, sign(SECRET, T, BODY), BODY, now=T + offset)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        "v1=00",  # no timestamp
        f"t={T}",  # no signature
        f"t=abc,v1={'0' * 64}",
        f"t=-{T},v1={'0' * 64}",
        f"t={'9' * 13},v1={'0' * 64}",
    ],
)
def test_verify_refuses_a_malformed_header(header: str) -> None:
    assert not verify(SECRET, header, BODY, now=T)


def test_verify_refuses_a_header_with_two_timestamps() -> None:
    signature = sign(SECRET, T, BODY).partition(",")[2]

    assert not verify(SECRET, f"t={T},t={T},{signature}", BODY, now=T)
    assert not verify(SECRET, f"t={T},t={T + 1},{signature}", BODY, now=T)


def test_verify_accepts_any_one_matching_v1_among_several() -> None:
    header = sign(SECRET, T, BODY)
    rotated = header.replace("v1=", f"v1={'0' * 64},v1=")

    assert verify(SECRET, rotated, BODY, now=T)


# -- events of an order's changes -------------------------------------------------------------


def test_a_change_makes_one_pending_delivery_per_endpoint_due_now() -> None:
    record = changed(None, endpoints=ENDPOINTS)

    assert [d.endpoint_id for d in record.deliveries] == ["we_1", "we_2"]
    event_id = event_id_for("ord-1", "v1")
    for delivery in record.deliveries:
        assert delivery.event_id == event_id
        assert delivery.state is DeliveryState.PENDING
        assert delivery.next_at == NOW
        assert delivery.attempt_count == 0
    assert record.next_due() == NOW
    assert due_deliveries(record, NOW) == list(record.deliveries)
    assert due_deliveries(record, NOW - 1) == []


def test_the_same_version_again_is_a_redelivery_and_makes_no_event() -> None:
    record = changed(None)

    assert (
        record_change(record, "ord-1", {"status": "PENDING"}, "v1", ENDPOINTS, NOW + 5, "t") is None
    )


def test_each_event_takes_the_next_sequence_and_names_a_status_change() -> None:
    first = changed(None, status="PENDING", version="v1")
    paid = changed(first, status="PAID", version="v2")
    updated = changed(paid, status="PAID", version="v3")

    bodies = [json.loads(d.body) for d in updated.deliveries]
    assert [b["sequence"] for b in bodies] == [1, 2, 3]
    assert [b["type"] for b in bodies] == ["order.pending", "order.paid", "order.updated"]
    assert updated.sequence == 3
    assert [b["id"] for b in bodies] == [event_id_for("ord-1", v) for v in ("v1", "v2", "v3")]


def test_the_event_id_is_the_same_for_every_redelivery_and_differs_by_version() -> None:
    assert event_id_for("ord-1", "v1") == event_id_for("ord-1", "v1")
    assert event_id_for("ord-1", "v1") != event_id_for("ord-1", "v2")
    assert event_id_for("ord-1", "v1") != event_id_for("ord-2", "v1")


# -- attempts and retries ---------------------------------------------------------------------


def test_a_2xx_answer_delivers_it() -> None:
    record = attempted(changed(None), 1, NOW, 204)

    assert only(record).state is DeliveryState.DELIVERED
    assert only(record).attempt_count == 1
    assert not record.pending
    assert record.next_due() is None


def test_a_failure_retries_after_the_doubling_backoff() -> None:
    record = attempted(changed(None), 1, NOW, 503)
    assert only(record).state is DeliveryState.PENDING
    assert only(record).next_at == NOW + 10

    record = attempted(record, 2, NOW + 10, 0)  # no answer at all (a timeout)
    assert only(record).next_at == NOW + 10 + 20

    record = attempted(record, 3, NOW + 30, 301)  # a redirect is not a delivery
    assert only(record).next_at == NOW + 30 + 40
    assert only(record).attempt_count == 3


def test_a_failure_whose_retry_would_fall_past_the_period_fails_the_delivery() -> None:
    record = changed(None)
    for number, at in ((1, NOW), (2, NOW + 10), (3, NOW + 30)):
        record = attempted(record, number, at, 500)
    assert only(record).next_at == NOW + 70  # within the 100 s

    record = attempted(record, 4, NOW + 70, 500)  # the next would be at +110

    assert only(record).state is DeliveryState.FAILED
    assert only(record).attempt_count == 4
    assert due_deliveries(record, NOW + 10_000) == []


def test_an_attempt_number_already_counted_changes_nothing() -> None:
    record = attempted(changed(None), 1, NOW, 500)
    delivery = only(record)

    for number in (1, 0):
        again = Attempt(number, NOW + 1, 200, "", 5)
        assert record_attempt(record, delivery.event_id, "we_1", again, POLICY) is None


@pytest.mark.parametrize("status", [200, 500])
def test_an_attempt_of_a_delivery_no_longer_pending_changes_nothing(status: int) -> None:
    delivered = attempted(changed(None), 1, NOW, 200)
    record = changed(None)
    failed = replace(record, deliveries=(replace(only(record), state=DeliveryState.FAILED),))

    for record in (delivered, failed):
        late = Attempt(2, NOW + 1, status, "", 5)
        assert record_attempt(record, only(record).event_id, "we_1", late, POLICY) is None


def test_an_attempt_of_an_unknown_delivery_changes_nothing() -> None:
    record = changed(None)
    attempt = Attempt(1, NOW, 200, "", 5)

    assert record_attempt(record, "evt_unknown", "we_1", attempt, POLICY) is None
    assert record_attempt(record, only(record).event_id, "we_9", attempt, POLICY) is None


def test_only_the_last_attempts_are_kept_and_the_count_is_whole() -> None:
    record = changed(None)
    for number in range(1, MAX_ATTEMPTS_KEPT + 6):
        record = attempted(record, number, NOW + number * 100, 500, LONG_POLICY)

    delivery = only(record)
    assert delivery.attempt_count == MAX_ATTEMPTS_KEPT + 5
    assert len(delivery.attempts) == MAX_ATTEMPTS_KEPT
    assert [a.number for a in delivery.attempts] == list(range(6, MAX_ATTEMPTS_KEPT + 6))
    assert delivery.state is DeliveryState.PENDING


def test_resending_a_failed_delivery_makes_it_due_now_and_restarts_the_period() -> None:
    record = changed(None)
    for number, at in ((1, NOW), (2, NOW + 10), (3, NOW + 30), (4, NOW + 70)):
        record = attempted(record, number, at, 500)
    assert only(record).state is DeliveryState.FAILED
    later = NOW + 5000

    again = resend(record, only(record).event_id, later)

    assert again is not None
    delivery = only(again)
    assert delivery.state is DeliveryState.PENDING
    assert delivery.next_at == later
    assert delivery.resent_at == later
    assert due_deliveries(again, later) == [delivery]
    assert delivery.attempt_count == 4  # the count goes on
    # The period runs from the resend and the backoff starts over: retries at +10, +30, +70
    # are within it, one at +110 is not.
    again = attempted(again, 5, later, 500)
    assert only(again).state is DeliveryState.PENDING
    assert only(again).next_at == later + 10
    again = attempted(attempted(again, 6, later + 10, 500), 7, later + 30, 500)
    assert only(again).next_at == later + 70
    again = attempted(again, 8, later + 70, 500)
    assert only(again).state is DeliveryState.FAILED


def test_resend_of_one_event_leaves_the_others_and_of_none_changes_nothing() -> None:
    record = changed(changed(None, version="v1"), version="v2", status="PAID")
    record = attempted(attempted(record, 1, NOW, 200), 1, NOW, 200, index=1)

    again = resend(record, record.deliveries[1].event_id, NOW + 60)

    assert again is not None
    states = [d.state for d in again.deliveries]
    assert states == [DeliveryState.DELIVERED, DeliveryState.PENDING]
    assert resend(record, "evt_unknown", NOW + 60) is None
    everything = resend(record, None, NOW + 60)
    assert everything is not None
    assert all(d.state is DeliveryState.PENDING for d in everything.deliveries)


# -- bounds of an order's record --------------------------------------------------------------


def _deliveries(count: int, state: DeliveryState) -> tuple[Delivery, ...]:
    return tuple(
        Delivery(f"evt_{state}_{i}", "we_1", "https://a.example.com/hook", "{}", NOW, state=state)
        for i in range(count)
    )


def test_the_deliveries_kept_are_bounded_dropping_the_oldest_delivered_first() -> None:
    pending = _deliveries(MAX_DELIVERIES_KEPT // 2, DeliveryState.PENDING)
    delivered = _deliveries(MAX_DELIVERIES_KEPT - len(pending), DeliveryState.DELIVERED)
    full = OrderWebhooks("ord-1", deliveries=pending + delivered, sequence=MAX_DELIVERIES_KEPT)

    record = changed(full, version="new", endpoints=ENDPOINTS)

    assert len(record.deliveries) == MAX_DELIVERIES_KEPT
    kept = {d.key for d in record.deliveries}
    assert {d.key for d in pending} <= kept  # every PENDING one kept
    assert {d.key for d in delivered[:2]}.isdisjoint(kept)  # the two oldest DELIVERED gone
    assert {d.key for d in delivered[2:]} <= kept
    assert [d.endpoint_id for d in record.deliveries[-2:]] == ["we_1", "we_2"]


def test_without_delivered_ones_the_oldest_deliveries_go() -> None:
    full = OrderWebhooks("ord-1", deliveries=_deliveries(MAX_DELIVERIES_KEPT, DeliveryState.FAILED))

    record = changed(full, version="new")

    assert len(record.deliveries) == MAX_DELIVERIES_KEPT
    assert record.deliveries[0].key == full.deliveries[1].key
    assert record.deliveries[-1].event_id == event_id_for("ord-1", "new")


# -- which URLs may be endpoints --------------------------------------------------------------

PRIVATE = [
    "https://127.0.0.1/hook",
    "http://127.0.0.1:8080/hook",
    "https://10.1.2.3/hook",
    "https://192.168.1.1/hook",
    "https://172.16.0.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "https://[::1]/hook",
    "https://[::ffff:10.0.0.1]/hook",
    "https://[fe80::1]/hook",
    "https://0.0.0.0/hook",
    "https://localhost/hook",
    "https://LOCALHOST./hook",
    "https://api.localhost/hook",
    "http://metadata.google.internal/hook",
    "https://printer.local/hook",
]
ALWAYS_REFUSED = [
    "https://user:pw@hooks.example.com/hook",
    "https://user@hooks.example.com/hook",
    "ftp://hooks.example.com/hook",
    "hooks.example.com/hook",
    "https://hooks.example.com/hook#frag",
    "https://hooks.example.com/a hook",
    "https://hooks.example.com/\thook",
    "https://hooks.exämple.com/hook",
    "https:///hook",
    "https://hooks.example.com:0/hook",
    "https://hooks.example.com:99999/hook",
    "https://hooks_example.com/hook",
    "https://hooks.example.com/" + "a" * 2048,
]


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/orderflow",
        "https://hooks.example.com:8443/orderflow?tenant=7",
        "http://hooks.example.com/orderflow",
        "https://93.184.216.34/hook",
        "https://[2606:4700:4700::1111]/hook",
        "https://xn--bcher-kva.example/hook",
    ],
)
def test_a_public_http_url_is_a_valid_endpoint(url: str) -> None:
    assert endpoint_url_problem(url, allow_private=False) is None


@pytest.mark.parametrize("url", PRIVATE)
def test_a_private_address_or_local_name_is_refused_unless_allowed(url: str) -> None:
    assert endpoint_url_problem(url, allow_private=False) is not None
    assert endpoint_url_problem(url, allow_private=True) is None


@pytest.mark.parametrize("url", ALWAYS_REFUSED)
def test_a_malformed_url_is_refused_even_when_private_addresses_are_allowed(url: str) -> None:
    assert endpoint_url_problem(url, allow_private=True) is not None
    assert endpoint_url_problem(url, allow_private=False) is not None


def test_the_refusals_say_why() -> None:
    assert "credentials" in (endpoint_url_problem(ALWAYS_REFUSED[0], False) or "")
    assert "http" in (endpoint_url_problem("ftp://hooks.example.com/", False) or "")
    assert "fragment" in (endpoint_url_problem("https://h.example.com/#x", False) or "")
    assert "longer than" in (endpoint_url_problem(ALWAYS_REFUSED[-1], False) or "")
    assert "local" in (endpoint_url_problem("https://localhost/", False) or "")
    assert "private" in (endpoint_url_problem("https://10.0.0.1/", False) or "")


# -- any sequence of attempts and resends -----------------------------------------------------

Step = tuple[str, int, float]  # ("attempt", status, clock advance) or ("resend", 0, advance)
STEPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("attempt"),
            st.sampled_from([0, 200, 204, 301, 404, 429, 500, 503]),
            st.floats(min_value=0, max_value=200),
        ),
        st.tuples(st.just("resend"), st.just(0), st.floats(min_value=0, max_value=200)),
        st.tuples(st.just("stale"), st.sampled_from([200, 500]), st.just(0.0)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(STEPS)
def test_a_delivery_keeps_its_invariants_through_any_attempts_and_resends(
    steps: list[Step],
) -> None:
    record = changed(None)
    now = NOW
    for kind, status, advance in steps:
        now += advance
        before = only(record)
        if kind == "resend":
            updated = resend(record, before.event_id, now)
        else:
            # "stale": an outcome recorded already (a redelivered attempts record)
            number = before.attempt_count + (1 if kind == "attempt" else 0)
            attempt = Attempt(number, now, status, "", 1)
            updated = record_attempt(record, before.event_id, "we_1", attempt, POLICY)
        record = updated or record
        after = only(record)

        assert after.state in set(DeliveryState)
        assert after.attempt_count >= before.attempt_count
        assert len(after.attempts) <= MAX_ATTEMPTS_KEPT
        if kind != "resend" and before.state is not DeliveryState.PENDING:
            assert after == before  # DELIVERED and FAILED stay so until resent
        if kind == "stale":
            assert updated is None
        if after.state is DeliveryState.PENDING:
            start = after.resent_at if after.resent_at is not None else after.created_at
            assert after.next_at <= start + POLICY.period


T = 1_714_564_800


@pytest.mark.parametrize("stamp", ["\u00b2", "\u2460", "1\u00b9"])
def test_verify_refuses_a_timestamp_of_digits_int_cannot_read(stamp: str) -> None:
    # str.isdigit() is True for superscripts and circled digits; int() refuses them
    assert verify(SECRET, f"t={stamp},v1={'0' * 64}", BODY, now=T) is False


def test_verify_refuses_a_non_ascii_signature() -> None:
    # hmac.compare_digest(str, str) raises TypeError on non-ASCII text
    assert verify(SECRET, f"t={T},v1=\u00e9", BODY, now=T) is False


@pytest.mark.parametrize("url", ["https://[64:ff9b::a00:1]/h", "https://[2002:a00:1::]/h"])
def test_ipv4_inside_nat64_or_6to4_is_judged_as_ipv4(url: str) -> None:
    assert endpoint_url_problem(url, allow_private=False) is not None


def test_the_same_resend_applied_twice_changes_nothing_the_second_time() -> None:
    record = record_change(None, "o1", {"status": "PAID"}, "v1", [ENDPOINTS[0]], 100.0, "t")
    assert record is not None
    delivered = record_attempt(
        record,
        record.deliveries[0].event_id,
        ENDPOINTS[0].endpoint_id,
        Attempt(1, 101.0, 200, "", 3),
        POLICY,
    )
    assert delivered is not None
    again = resend(delivered, None, 200.0)
    assert again is not None and again.deliveries[0].state is DeliveryState.PENDING
    done = record_attempt(
        again,
        again.deliveries[0].event_id,
        ENDPOINTS[0].endpoint_id,
        Attempt(2, 201.0, 200, "", 3),
        POLICY,
    )
    assert done is not None
    assert resend(done, None, 200.0) is None  # the same request, redelivered
    assert resend(done, None, 300.0) is not None  # a new one


def test_after_a_resend_the_backoff_starts_again_from_its_first_delay() -> None:
    record = record_change(None, "o1", {"status": "PAID"}, "v1", [ENDPOINTS[0]], 0.0, "t")
    assert record is not None
    event_id, endpoint_id = record.deliveries[0].event_id, ENDPOINTS[0].endpoint_id
    at = 0.0
    for number in range(1, 4):  # 3 failures: the next wait would be 40 s
        at += 1.0
        updated = record_attempt(
            record, event_id, endpoint_id, Attempt(number, at, 503, "", 1), POLICY
        )
        assert updated is not None
        record = updated
    again = resend(record, None, 500.0)
    assert again is not None
    failed = record_attempt(again, event_id, endpoint_id, Attempt(4, 501.0, 503, "", 1), POLICY)

    assert failed is not None
    assert failed.deliveries[0].next_at == 501.0 + 10.0  # the first delay, not the fourth


@pytest.mark.parametrize("host", ["127.1", "2130706433", "0x7f000001", "10.1"])
def test_a_host_written_as_a_number_is_refused(host: str) -> None:
    assert endpoint_url_problem(f"https://{host}/h", allow_private=False) is not None
    assert endpoint_url_problem(f"https://{host}/h", allow_private=True) is not None
