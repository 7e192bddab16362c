"""Order ids for Idempotency-Keys: scoped per client, unguessable, and kept for a retention.

``order_id_for_key`` is ``"ord_" + HMAC-SHA256(secret, client_id NUL key)`` (32 hex): two clients
with the same key name two orders, and nobody without the cluster secret can compute an id from
a key. After the retention a key may name a new order: generation ``g > 0`` of a key is the first
id derived from generation 0's id and ``g`` whose partition equals generation 0's, so every
generation of a key lives on one partition and its single writer decides them all.

Deciding, for a PlaceOrder written at time ``at``, which generation it names (``choose_slot``)
uses only the command and the stored orders: the order service deciding and a GET resolving a
202's ``Location`` later reach the same answer, and a command read again decides the same way.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = [
    "MAX_GENERATIONS",
    "Slot",
    "choose_slot",
    "generation_id",
    "key_chain",
    "order_id_for_key",
]

# A key reused once a day for 30 years; a chain longer than this is refused (a bug or an abuse).
MAX_GENERATIONS = 11_000
# Candidates tried per generation before giving up: each lands on the right partition with
# probability 1/partitions, so 64 * partitions tries fail with probability ~ e^-64.
_TRIES_PER_PARTITION = 64

T = TypeVar("T")


def _mac(secret: bytes, message: str) -> str:
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()[:32]


def order_id_for_key(secret: bytes, client_id: str, idempotency_key: str) -> str:
    """Generation 0: the order id a client's Idempotency-Key names."""
    return "ord_" + _mac(secret, f"{client_id}\0{idempotency_key}")


def generation_id(
    secret: bytes,
    gen0_id: str,
    generation: int,
    partition_of: Callable[[str], int],
    partitions: int,
) -> str:
    """Generation ``generation`` of the key whose generation 0 is ``gen0_id``: same partition.

    Derived from generation 0's id (itself a MAC of the client and key), so the raw key need not
    travel in the command.
    """
    if generation == 0:
        return gen0_id
    target = partition_of(gen0_id)
    for i in range(_TRIES_PER_PARTITION * max(1, partitions)):
        candidate = "ord_" + _mac(secret, f"{gen0_id}\0{generation}\0{i}")
        if partition_of(candidate) == target:
            return candidate
    raise ValueError(f"no id on partition {target} for generation {generation} of {gen0_id}")


def key_chain(
    secret: bytes, gen0_id: str, partition_of: Callable[[str], int], partitions: int
) -> Callable[[int], str]:
    """The ids of a key's generations, computed on demand (and remembered)."""
    cache: dict[int, str] = {}

    def nth(generation: int) -> str:
        if generation not in cache:
            cache[generation] = generation_id(secret, gen0_id, generation, partition_of, partitions)
        return cache[generation]

    return nth


@dataclass(frozen=True)
class Slot(Generic[T]):
    """The generation a command names: its id, and the live order there (None: an empty slot)."""

    generation: int
    order_id: str
    existing: T | None


def choose_slot(
    chain: Callable[[int], str],
    lookup: Callable[[str], T | None],
    created_at: Callable[[T], float],
    at: float,
    retention_s: float,
) -> Slot[T]:
    """Walk the generations of a key for a command written at ``at`` (seconds).

    A live order (created less than ``retention_s`` before ``at``, or after it: clocks of the
    workers that accepted two commands may disagree) is the one the key names: a replay or a
    conflict. An expired one passes to the next generation; an empty slot is where a new order
    goes.
    """
    for generation in range(MAX_GENERATIONS):
        order_id = chain(generation)
        existing = lookup(order_id)
        if existing is None:
            return Slot(generation, order_id, None)
        if at - created_at(existing) < retention_s:
            return Slot(generation, order_id, existing)
    raise ValueError("idempotency key used for too many generations")
