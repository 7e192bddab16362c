"""Baseline: the typical Faust implementation of orderflow's flow, as users write it from the docs.

Not orderflow, and not for production: the peer the bench compares orderflow with. See ``app.py``.
This module imports nothing of Faust: the bench creates the app's topics from here.
"""

from __future__ import annotations

__all__ = ["PARTITIONS", "create_topics", "topic_names"]

PARTITIONS = 8
TABLES = ("orders", "payments")


def topic_names(app_id: str) -> list[str]:
    """The app's source topics."""
    return [f"{app_id}.orders", f"{app_id}.order-created", f"{app_id}.payment-results"]


async def create_topics(bootstrap: str, app_id: str) -> None:
    """Create the app's topics and its tables' changelogs before its first worker starts.

    As the Faust docs advise: topics Faust creates at a worker's first start can be missing from
    that start's metadata (a source topic left out of the subscription, a changelog seen with 0
    partitions: ``PartitionsMismatch``), and the bench's broker does not auto-create topics.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        compacted = {"cleanup.policy": "compact"}
        await admin.create_topics(
            [NewTopic(name, PARTITIONS, 1) for name in topic_names(app_id)]
            + [
                NewTopic(f"{app_id}-{table}-changelog", PARTITIONS, 1, topic_configs=compacted)
                for table in TABLES
            ]
        )
    finally:
        await admin.close()
