"""``orderflow leave-group INSTANCE_ID``: take a static worker stopped for good out of the group.

A static worker (``ORDERFLOW_INSTANCE_ID``) sends no LeaveGroup when it stops: that is what lets
it come back within the session timeout and get its partitions again without a rebalance. The
price is paid when it does *not* come back (scale-down, host retired): its partitions wait for
the session timeout before they move. This command, run once the worker has stopped for good,
makes the broker forget it now, and the others rebalance at once.

aiokafka speaks LeaveGroup v0/v1 only: by member id, without a group.instance.id. The broker
names a static member ``<group.instance.id>-<uuid>`` and lists it in DescribeGroups; a LeaveGroup
by that member id removes it. Run against a live worker, the worker rejoins (one rebalance).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Iterable, Sequence

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.group import LeaveGroupRequest

from orderflow.config import Settings
from orderflow.topics import APP_ID

__all__ = ["leave_group", "main", "static_members"]


def static_members(member_ids: Iterable[str], instance_id: str) -> list[str]:
    """The member ids the broker gave to ``ORDERFLOW_INSTANCE_ID=instance_id`` (any URL)."""
    # group.instance.id = "<instance id>.<8 hex of the URL>" (Settings.group_instance_id).
    pattern = re.compile(re.escape(instance_id) + r"\.[0-9a-f]{8}-")
    return sorted(m for m in member_ids if pattern.match(m))


async def leave_group(bootstrap: str, instance_id: str, group: str = APP_ID) -> list[str]:
    """Remove the group's members of ``instance_id``; returns the member ids removed."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        coordinator = await admin.find_coordinator(group)
        (response,) = await admin.describe_consumer_groups([group], coordinator)
        members = [member[0] for g in response.groups for member in g[5]]
        removed = static_members(members, instance_id)
        for member_id in removed:
            # (the admin client has no public call for LeaveGroup)
            answer = await admin._client.send(coordinator, LeaveGroupRequest(group, member_id))
            if answer.error_code:
                raise for_code(answer.error_code)(f"LeaveGroup {member_id}")
        return removed
    finally:
        await admin.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="orderflow leave-group",
        description="Take a static worker that stopped for good out of the workers' consumer "
        "group, so that its partitions move now instead of after the session timeout.",
    )
    parser.add_argument("instance_id", help="the worker's ORDERFLOW_INSTANCE_ID")
    parser.add_argument("--bootstrap", help="brokers (default: ORDERFLOW_KAFKA_BOOTSTRAP)")
    args = parser.parse_args(argv)
    bootstrap = args.bootstrap or Settings.from_env(worker=False).kafka_bootstrap
    removed = asyncio.run(leave_group(bootstrap, args.instance_id))
    if not removed:
        print(f"no member of group {APP_ID} has instance id {args.instance_id}", file=sys.stderr)
        return 1
    for member_id in removed:
        print(f"removed {member_id} from group {APP_ID}")
    return 0
