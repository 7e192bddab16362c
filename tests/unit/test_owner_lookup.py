"""The owner lookup: which worker owns an order's partition, and when none can be named yet.

Faust's router (``app.router.key_store``) names the owner's URL; the lookup compares it with this
worker's ``canonical_url`` and refuses (NotReady, a 503 or a durable 202 for clients) while the
partitions move or the tables recover.
"""

from __future__ import annotations

import pytest
from yarl import URL

from orderflow.web.routing import SUSPECT_S, Forwarding, NotReady, Owner, OwnerLookup

_HERE = "http://127.0.0.1:6066"
_THERE = "http://127.0.0.1:6067"


class _Router:
    """Faust's router over a table: the URL of each key's owner (``KeyError``: none yet)."""

    def __init__(self, owners: dict[bytes, str]) -> None:
        self.owners = owners
        self.asked: list[tuple[str, bytes]] = []

    def key_store(self, table_name: str, key: bytes) -> URL:
        self.asked.append((table_name, key))
        return URL(self.owners[key])


class _Conf:
    canonical_url = URL(_HERE)


class _App:
    """The parts of the Faust app the lookup reads."""

    def __init__(self, owners: dict[bytes, str]) -> None:
        self.router = _Router(owners)
        self.conf = _Conf()
        self.rebalancing = False
        self.in_recovery = False


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _lookup(owners: dict[bytes, str]) -> tuple[OwnerLookup, _App, _Clock]:
    app, clock = _App(owners), _Clock()
    lookup = OwnerLookup(app, "OrderDB", monotonic=clock)
    lookup.mark_settled()
    return lookup, app, clock


def test_an_order_of_a_partition_held_here_is_local() -> None:
    # The router's URL may carry a trailing slash: host and port decide.
    lookup, app, _ = _lookup({b"o1": _HERE + "/"})
    assert lookup.owner("o1") == Owner(is_local=True, url=URL(_HERE + "/"))
    assert lookup.owns("o1")
    assert app.router.asked == [("OrderDB", b"o1"), ("OrderDB", b"o1")]


def test_an_order_of_another_workers_partition_is_routed_to_it() -> None:
    lookup, _, _ = _lookup({b"o2": _THERE})
    owner = lookup.owner("o2")
    assert (owner.is_local, str(owner.url)) == (False, _THERE)
    assert not lookup.owns("o2")


def test_before_the_first_assignment_no_owner_is_named() -> None:
    lookup, _, _ = _lookup({})  # the router knows no partition yet
    with pytest.raises(NotReady, match="no owner known"):
        lookup.owner("o1")
    assert not lookup.owns("o1")


@pytest.mark.parametrize("state", ["moving", "rebalancing", "in_recovery"])
def test_while_partitions_move_or_tables_recover_no_owner_is_named(state: str) -> None:
    lookup, app, _ = _lookup({b"o1": _HERE})
    if state == "moving":
        lookup.mark_moving()
    else:
        setattr(app, state, True)
    assert not lookup.is_ready()
    with pytest.raises(NotReady):
        lookup.owner("o1")
    assert not lookup.owns("o1")  # a nudge or a GET here must not act for it
    assert app.router.asked == []


def test_unready_time_runs_from_the_move_until_the_partitions_settle() -> None:
    lookup, _, clock = _lookup({})
    assert lookup.unready_for() == 0.0
    lookup.mark_moving()
    clock.now += 3
    lookup.mark_moving()  # a second revocation during the move does not restart the count
    clock.now += 2
    assert lookup.unready_for() == 5.0
    lookup.mark_settled()
    assert lookup.unready_for() == 0.0


def test_a_new_lookup_is_unready_until_its_first_settlement() -> None:
    clock = _Clock()
    lookup = OwnerLookup(_App({b"o1": _HERE}), "OrderDB", monotonic=clock)
    clock.now += 4
    assert not lookup.is_ready() and lookup.unready_for() == 4.0
    assert not lookup.owns("o1")


async def test_an_owner_that_did_not_answer_is_suspect_for_a_while() -> None:
    from tests.fakes import FakeRequest

    lookup, _, clock = _lookup({})
    nobody = Owner(is_local=False, url=URL("http://127.0.0.1:1"))  # nothing listens on port 1
    request = FakeRequest(None)
    request.method = "GET"
    try:
        with pytest.raises(NotReady, match="did not answer"):
            await lookup.forward(nobody, request, Forwarding(timeout=5))
        assert lookup.is_suspect(nobody)
        clock.now += SUSPECT_S
        assert not lookup.is_suspect(nobody)
    finally:
        await lookup.close()
