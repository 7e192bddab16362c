"""Idempotency-Key ids: scoped per client, unguessable, every generation on one partition."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from orderflow.domain.idempotency import choose_slot, generation_id, key_chain, order_id_for_key

SECRET = b"s" * 32
RETENTION = 100.0


def partition_of(partitions: int):  # type: ignore[no-untyped-def]
    def of(order_id: str) -> int:
        return int.from_bytes(hashlib.sha256(order_id.encode()).digest()[:4], "big") % partitions

    return of


def test_two_clients_with_the_same_key_name_two_orders() -> None:
    a = order_id_for_key(SECRET, "client-a", "key-1")
    assert a != order_id_for_key(SECRET, "client-b", "key-1")
    assert a == order_id_for_key(SECRET, "client-a", "key-1")
    assert a.startswith("ord_") and len(a) == 36


def test_an_outsider_without_the_secret_cannot_compute_the_id() -> None:
    assert order_id_for_key(SECRET, "c", "k") != order_id_for_key(b"t" * 32, "c", "k")
    # The old scheme (uuid5 of the key alone) is gone: the client id and secret both count.
    assert order_id_for_key(SECRET, "", "k") != order_id_for_key(SECRET, "c", "k")


@settings(max_examples=200)
@given(st.text(min_size=1, max_size=40), st.integers(1, 64), st.integers(0, 30))
def test_every_generation_lives_on_generation_zeros_partition(
    key: str, partitions: int, generation: int
) -> None:
    of = partition_of(partitions)
    gen0 = order_id_for_key(SECRET, "c", key)
    nth = generation_id(SECRET, gen0, generation, of, partitions)
    assert of(nth) == of(gen0)
    assert nth.startswith("ord_") and len(nth) == 36
    if generation:
        assert nth != gen0


@settings(max_examples=100)
@given(st.integers(1, 16), st.integers(2, 20))
def test_generations_are_distinct(partitions: int, count: int) -> None:
    of = partition_of(partitions)
    chain = key_chain(SECRET, order_id_for_key(SECRET, "c", "k"), of, partitions)
    assert len({chain(g) for g in range(count)}) == count


# A chain of stored orders: generation -> created_at (None: empty slot from there on).
chains = st.lists(st.floats(0, 1000, allow_nan=False), max_size=8)


@settings(max_examples=300)
@given(chains, st.floats(0, 1200, allow_nan=False))
def test_choose_slot_takes_the_first_live_order_or_the_first_empty_slot(
    created: list[float], at: float
) -> None:
    of = partition_of(8)
    chain = key_chain(SECRET, order_id_for_key(SECRET, "c", "k"), of, 8)
    table = {chain(g): t for g, t in enumerate(created)}
    slot = choose_slot(chain, table.get, lambda t: t, at, RETENTION)
    assert of(slot.order_id) == of(chain(0))
    # Every generation before the chosen one had expired at `at`.
    assert all(at - created[g] >= RETENTION for g in range(slot.generation))
    if slot.existing is None:
        assert slot.generation == len(created)
    else:
        assert at - slot.existing < RETENTION
        assert slot.order_id == chain(slot.generation)


@settings(max_examples=200)
@given(chains, st.floats(0, 1200, allow_nan=False))
def test_a_placed_order_is_found_again_by_the_same_command(created: list[float], at: float) -> None:
    """Deciding again (a redelivered command, a GET resolving a 202) names the same order."""
    of = partition_of(8)
    chain = key_chain(SECRET, order_id_for_key(SECRET, "c", "k"), of, 8)
    table = {chain(g): t for g, t in enumerate(created)}
    first = choose_slot(chain, table.get, lambda t: t, at, RETENTION)
    if first.existing is None:
        table[first.order_id] = at  # the order service stores the new order, created at `at`
    again = choose_slot(chain, table.get, lambda t: t, at, RETENTION)
    assert again.order_id == first.order_id and again.existing is not None


def test_within_retention_the_same_order_after_it_a_new_one() -> None:
    of = partition_of(8)
    chain = key_chain(SECRET, order_id_for_key(SECRET, "c", "k"), of, 8)
    table = {chain(0): 0.0}
    assert choose_slot(chain, table.get, lambda t: t, 99.0, RETENTION).order_id == chain(0)
    later = choose_slot(chain, table.get, lambda t: t, 100.0, RETENTION)
    assert later.order_id == chain(1) and later.existing is None
