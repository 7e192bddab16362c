"""Static group membership (``ORDERFLOW_INSTANCE_ID``, Kafka's ``group.instance.id``).

A static worker that comes back within the session timeout (same instance id, same canonical
URL, same data dir) gets its own partitions back and the other workers see no rebalance at all:
no revocation, no new generation, no table recovery, never unready. A static worker that does
not come back keeps its partitions until the session timeout, then they move (it sends no
LeaveGroup when it stops: that is what lets it come back without a rebalance), unless
`orderflow leave-group` takes it out. A static worker moved to another URL, or a second worker
given the same id by mistake, is another member (the id carries a fingerprint of the URL).

The group is read from outside with DescribeGroups (member ids and each member's assignment,
whose Faust user data names the worker's URL); a rebalance seen by a worker is a new
"Successfully synced group" line in its log (aiokafka). Each test runs its own broker: a static
member outlives its process by the session timeout, and would disturb the next test's group.
Figures (seconds) are printed, not asserted.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from orderflow.tools.localkafka import KafkaCluster
from orderflow.topics import APP_ID
from tests.gateway_audit import check_gateway
from tests.harness import (
    ManagedProcess,
    http_json,
    poll_until,
    start_sandbox,
    start_worker,
    wait_worker_ready,
)
from tests.invariants import assert_orders_settled_once
from tests.orders_client import get_terminal, order_body, place, set_faults

# Short gateway deadlines and stall detection so that faults play out in seconds. The session
# timeout leaves a loaded 2-core machine time to restart a worker within it.
SESSION_TIMEOUT_S = 20
_ENV = {
    "ORDERFLOW_GATEWAY_DEADLINE": "3",
    "ORDERFLOW_GATEWAY_TIMEOUT": "1",
    "ORDERFLOW_STALL_AFTER": "4",
    "ORDERFLOW_SESSION_TIMEOUT": str(SESSION_TIMEOUT_S),
}
_SYNCED = "Successfully synced group"


@dataclass(frozen=True)
class Member:
    """One member of the workers' consumer group, as the broker describes it."""

    member_id: str
    url: str
    partitions: frozenset[tuple[str, int]]


async def _describe(bootstrap: str) -> tuple[str, dict[str, Member]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = (await admin.describe_consumer_groups([APP_ID]))[0]
    finally:
        await admin.close()
    _error, _group, state, _ptype, _protocol, members, *_ = response.groups[0]
    found: dict[str, Member] = {}
    for member_id, _client, _host, _metadata, raw in members:
        if not raw:  # rebalancing: no assignment yet
            continue
        assignment = ConsumerProtocolMemberAssignment.decode(raw)
        url = orjson.loads(zlib.decompress(assignment.user_data))["url"]
        partitions = frozenset((t, p) for t, ps in assignment.assignment for p in ps)
        found[url] = Member(member_id, url, partitions)
    return state, found


def describe_group(bootstrap: str) -> tuple[str, dict[str, Member]]:
    """The group's state and its members by worker URL (members without an assignment left out)."""
    return asyncio.run(_describe(bootstrap))


def _stable_with(bootstrap: str, urls: set[str]) -> dict[str, Member] | None:
    state, members = describe_group(bootstrap)
    if state == "Stable" and set(members) == urls and all(m.partitions for m in members.values()):
        return members
    return None


def syncs(worker: ManagedProcess) -> int:
    """How many assignments (generations) the worker has synced so far, from its log."""
    return worker.log_path.read_text(errors="replace").count(_SYNCED)


class Readiness:
    """Polls a worker's /ready in a thread; counts the time it answered anything but 200."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.unready_s = 0.0
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            try:
                ok = http_json("GET", f"{self.url}/ready", timeout=2)[0] == 200
            except OSError:
                ok = False
            now = time.monotonic()
            if not ok:
                self.failures += 1
                self.unready_s += now - last
            last = now
            self._stop.wait(0.1)

    @contextmanager
    def watching(self) -> Iterator[Readiness]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(10)


def _place_many(url: str, count: int, prefix: str) -> set[str]:
    tokens = ["tok_visa", "tok_visa", "tok_chargeDeclined"]
    with ThreadPoolExecutor(8) as pool:
        placed = pool.map(
            lambda i: place(url, order_body(tokens[i % 3]), f"{prefix}-{i}"), range(count)
        )
        return {order["order_id"] for order in placed}


def _assert_all_settled_once(url: str, gateway: str, bootstrap: str, order_ids: set[str]) -> None:
    for order_id in order_ids:
        get_terminal(url, order_id)
    check_gateway(bootstrap, gateway, order_ids)  # at most one charge each, none after settled
    assert_orders_settled_once(bootstrap, order_ids)


def _two_workers(
    tmp: Path, bootstrap: str, gateway: str, static: bool
) -> tuple[ManagedProcess, ManagedProcess, dict[str, Member]]:
    workers = []
    for name in ("a", "b"):
        instance = {"ORDERFLOW_INSTANCE_ID": f"orderflow-{name}" if static else ""}
        workers.append(start_worker(tmp, bootstrap, gateway, name=name, extra={**_ENV, **instance}))
    urls = {w.meta["url"] for w in workers}
    members = poll_until(lambda: _stable_with(bootstrap, urls), 90, 0.5, "both workers assigned")
    for worker in workers:
        wait_worker_ready(worker)
    return workers[0], workers[1], members


# The dynamic control (one stop kind is enough, each case starts its own broker): the test sees
# a rebalance when there is one.
@pytest.mark.parametrize(
    ("membership", "stop"), [("static", "sigterm"), ("static", "sigkill"), ("dynamic", "sigterm")]
)
def test_worker_restarted_within_the_session_timeout_gets_its_partitions_back_without_a_rebalance(
    own_broker: KafkaCluster, tmp_path: Path, stop: str, membership: str
) -> None:
    """Static: the survivor sees no rebalance. Dynamic (the control): it sees one or two."""
    static = membership == "static"
    bootstrap = own_broker.bootstrap
    sandbox = start_sandbox(tmp_path)
    gateway = sandbox.meta["url"]
    victim, survivor, before = _two_workers(tmp_path, bootstrap, gateway, static)
    restarted: ManagedProcess | None = None
    try:
        set_faults(gateway, latency_ms=300, latency_jitter_ms=200)  # payments in flight at stop
        orders = _place_many(victim.meta["url"], 20, f"before-{stop}-{membership}")
        synced = syncs(survivor)
        with Readiness(survivor.meta["url"]).watching() as readiness:
            started = time.monotonic()
            if stop == "sigkill":
                victim.kill()
            else:
                assert victim.stop() == 0, victim.log_tail()
            # The same worker again: same instance id, canonical URL and data dir.
            restarted = start_worker(
                tmp_path,
                bootstrap,
                gateway,
                name=f"{victim.name}-again",
                port=victim.meta["port"],
                data_dir=victim.meta["data_dir"],
                extra=dict(victim.env),
                wait_ready=False,
            )
            wait_worker_ready(restarted, timeout=120)
            ready_after = time.monotonic() - started
            set_faults(gateway)
            orders |= _place_many(restarted.meta["url"], 10, f"after-{stop}-{membership}")
            orders |= _place_many(survivor.meta["url"], 10, f"via-b-{stop}-{membership}")
        after = poll_until(lambda: _stable_with(bootstrap, set(before)), 60, 0.5, "stable group")
        rebalances = syncs(survivor) - synced
        print(
            f"\n{membership}/{stop}: restarted worker ready {ready_after:.1f}s after the stop; "
            f"survivor unready {readiness.unready_s:.1f}s ({readiness.failures} probes), "
            f"{rebalances} rebalance(s) seen by the survivor"
        )
        url_a, url_b = victim.meta["url"], survivor.meta["url"]
        if static:
            assert rebalances == 0, survivor.log_tail()
            assert readiness.failures == 0, "the survivor went unready"
            assert after[url_b].member_id == before[url_b].member_id  # never rejoined
            assert after[url_a].partitions == before[url_a].partitions
            assert after[url_a].member_id != before[url_a].member_id  # a new process
        else:  # the control: the test sees a rebalance when there is one
            assert rebalances >= 1, survivor.log_tail()
        _assert_all_settled_once(url_b, gateway, bootstrap, orders)
    finally:
        for proc in (restarted, victim, survivor):
            if proc is not None:
                proc.stop()
        sandbox.stop()


def test_worker_stopped_for_good_hands_its_partitions_over_static_only_after_the_session_timeout(
    own_broker: KafkaCluster, tmp_path: Path
) -> None:
    """The price of static membership: a SIGTERM'd static worker stays in the group (no
    LeaveGroup), so its partitions move only when its session times out (a dynamic one hands
    them over at once: the other tests of this file and the rest of the suite)."""
    static, membership = True, "static"
    bootstrap = own_broker.bootstrap
    sandbox = start_sandbox(tmp_path)
    gateway = sandbox.meta["url"]
    victim, survivor, before = _two_workers(tmp_path, bootstrap, gateway, static)
    url_a, url_b = victim.meta["url"], survivor.meta["url"]
    try:
        orders = _place_many(victim.meta["url"], 20, f"before-gone-{membership}")
        started = time.monotonic()
        assert victim.stop() == 0, victim.log_tail()
        stopped_after = time.monotonic() - started
        _, members = describe_group(bootstrap)
        if static:  # still a member, with its partitions, until its session times out
            assert members.get(url_a) == before[url_a], members
        everything = before[url_a].partitions | before[url_b].partitions
        poll_until(
            lambda: (m := _stable_with(bootstrap, {url_b})) and m[url_b].partitions == everything,
            SESSION_TIMEOUT_S * 3,
            0.2,
            "the survivor to own every partition",
        )
        moved_after = time.monotonic() - started
        wait_worker_ready(survivor)
        ready_after = time.monotonic() - started
        print(
            f"\n{membership}: stop took {stopped_after:.1f}s; partitions moved "
            f"{moved_after:.1f}s and the survivor was ready {ready_after:.1f}s after the "
            f"SIGTERM (session timeout {SESSION_TIMEOUT_S}s)"
        )
        orders |= _place_many(url_b, 10, f"after-gone-{membership}")
        _assert_all_settled_once(url_b, gateway, bootstrap, orders)
    finally:
        for proc in (victim, survivor):
            proc.stop()
        sandbox.stop()


def _same_id(worker: ManagedProcess) -> dict[str, str]:
    return {**_ENV, "ORDERFLOW_INSTANCE_ID": worker.env["ORDERFLOW_INSTANCE_ID"]}


def test_static_worker_restarted_with_another_url_or_a_duplicate_id_is_not_wedged(
    own_broker: KafkaCluster, tmp_path: Path
) -> None:
    """The broker hands a static member back its previous incarnation's assignment, whose Faust
    user data names the previous URL; Faust's assignor asserted it was ours and the worker's
    coordinator died on it: alive, never ready, consuming nothing. A worker moved to another
    URL (or a second worker given the same ORDERFLOW_INSTANCE_ID by mistake) must still work."""
    bootstrap = own_broker.bootstrap
    sandbox = start_sandbox(tmp_path)
    gateway = sandbox.meta["url"]
    victim, survivor, _ = _two_workers(tmp_path, bootstrap, gateway, static=True)
    moved: ManagedProcess | None = None
    twin: ManagedProcess | None = None
    try:
        orders = _place_many(victim.meta["url"], 10, "before-move")
        victim.kill()
        # Same instance id and data dir, another port: another canonical URL.
        moved = start_worker(
            tmp_path,
            bootstrap,
            gateway,
            name="a-moved",
            data_dir=victim.meta["data_dir"],
            extra=_same_id(victim),
            wait_ready=False,
        )
        wait_worker_ready(moved, timeout=SESSION_TIMEOUT_S * 4)
        urls = {moved.meta["url"], survivor.meta["url"]}
        poll_until(lambda: _stable_with(bootstrap, urls), 60, 0.5, "the moved worker assigned")
        # A mistake: a third worker with the survivor's instance id (its own URL and data dir).
        twin = start_worker(
            tmp_path, bootstrap, gateway, name="b-twin", extra=_same_id(survivor), wait_ready=False
        )
        wait_worker_ready(twin, timeout=SESSION_TIMEOUT_S * 4)
        urls.add(twin.meta["url"])
        poll_until(lambda: _stable_with(bootstrap, urls), 60, 0.5, "three workers assigned")
        orders |= _place_many(survivor.meta["url"], 10, "after-move")
        _assert_all_settled_once(survivor.meta["url"], gateway, bootstrap, orders)
    finally:
        for proc in (twin, moved, victim, survivor):
            if proc is not None:
                proc.stop()
        sandbox.stop()


def _leave_group(instance_id: str, bootstrap: str) -> subprocess.CompletedProcess[str]:
    """``orderflow leave-group INSTANCE_ID`` as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "orderflow", "leave-group", instance_id, "--bootstrap", bootstrap],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_leave_group_command_hands_a_static_worker_s_partitions_over_without_the_session_wait(
    own_broker: KafkaCluster, tmp_path: Path
) -> None:
    """For a final stop (scale-down): `orderflow leave-group ID` after the worker stopped."""
    bootstrap = own_broker.bootstrap
    sandbox = start_sandbox(tmp_path)
    gateway = sandbox.meta["url"]
    victim, survivor, before = _two_workers(tmp_path, bootstrap, gateway, static=True)
    url_a, url_b = victim.meta["url"], survivor.meta["url"]
    try:
        orders = _place_many(url_a, 10, "before-leave")
        started = time.monotonic()
        assert victim.stop() == 0, victim.log_tail()
        assert describe_group(bootstrap)[1].get(url_a) == before[url_a]  # still a member
        left = _leave_group(victim.env["ORDERFLOW_INSTANCE_ID"], bootstrap)
        assert left.returncode == 0, left.stdout + left.stderr
        assert before[url_a].member_id in left.stdout
        _, members = describe_group(bootstrap)
        assert before[url_a].member_id not in {m.member_id for m in members.values()}
        everything = before[url_a].partitions | before[url_b].partitions
        poll_until(
            lambda: (m := _stable_with(bootstrap, {url_b})) and m[url_b].partitions == everything,
            SESSION_TIMEOUT_S * 3,
            0.2,
            "the survivor to own every partition",
        )
        print(
            f"\nleave-group: partitions moved {time.monotonic() - started:.1f}s after the "
            f"SIGTERM (session timeout {SESSION_TIMEOUT_S}s)"
        )
        # Nobody left by that id now: the command says so and fails.
        again = _leave_group(victim.env["ORDERFLOW_INSTANCE_ID"], bootstrap)
        assert again.returncode == 1, again.stdout + again.stderr
        orders |= _place_many(url_b, 10, "after-leave")
        _assert_all_settled_once(url_b, gateway, bootstrap, orders)
    finally:
        for proc in (victim, survivor):
            proc.stop()
        sandbox.stop()
