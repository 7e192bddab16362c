"""Start-up checks of a worker: refused before it consumes anything, with the reason (issue 9).

``StartupChecks.worker_init`` adds them as the app's first dependencies when the worker starts
(Faust sends ``on_worker_init`` for every CLI command, twice: each is added once, and acts only
when the app service starts, i.e. in ``worker``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mode import Service

from orderflow import faust_glue
from orderflow.config import ConfigError, Settings, cluster_problems
from orderflow.delivery import CHANGELOG
from orderflow.tables.local_state import LocalState, LocalStateGuard
from orderflow.topics import all_topic_names

__all__ = ["ClusterCheck", "ConfigCheck", "StartupChecks", "bootstrap_servers"]

log = logging.getLogger(__name__)


def bootstrap_servers(settings: Settings) -> list[str]:
    return [hp.strip() for hp in settings.kafka_bootstrap.split(",") if hp.strip()]


class ClusterCheck(Service):
    """Refuses to run on a cluster that cannot take our writes (issue 9: fail closed).

    Added as the app's first dependency: it starts before Faust's own services, so before any
    agent runs or topic is created; its error stops the worker with the reason (exit code 1).
    """

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        self.settings = settings
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        from aiokafka.errors import KafkaError

        while True:
            try:
                broker_ids, min_insync, topic_replicas = await self._describe()
                break
            except KafkaError as exc:  # no cluster yet: wait for it, as the worker always did
                log.warning("cluster check: brokers not answering (%r); asking again", exc)
                await self.sleep(2.0)
                if self.should_stop:
                    return
        rf = self.settings.replication_factor
        problems = cluster_problems(rf, broker_ids, min_insync, topic_replicas)
        if problems:
            message = "; ".join(problems)
            log.error("configuration refused: %s", message)
            raise ConfigError(message)
        if rf > len(broker_ids):  # the topics exist (else refused above): a broker is down
            log.warning(
                "cluster check: %d live broker(s), below ORDERFLOW_REPLICATION_FACTOR=%d: "
                "a broker is missing; the topics exist, starting",
                len(broker_ids),
                rf,
            )
        log.info(
            "cluster check: %d broker(s), replication factor %d, min.insync.replicas %s",
            len(broker_ids),
            self.settings.replication_factor,
            sorted(set(min_insync.values())),
        )

    async def _describe(self) -> tuple[list[int], dict[int, int], dict[str, int | None]]:
        """The live brokers' ids, each one's ``min.insync.replicas``, and our topics' replica
        counts (None: the topic does not exist)."""
        from aiokafka.admin import AIOKafkaAdminClient
        from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(self.settings))
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
            broker_ids = [int(b["node_id"]) for b in cluster["brokers"]]
            wanted = {"min.insync.replicas": None}
            resources = [
                ConfigResource(ConfigResourceType.BROKER, str(b), wanted) for b in broker_ids
            ]
            responses = await admin.describe_configs(resources)
            # Every topic: naming ours would let a broker that auto-creates topics create them.
            described = await admin.describe_topics()
        finally:
            await admin.close()
        min_insync: dict[int, int] = {}
        for response in responses:
            for _error, _message, _type, name, config in response.resources:
                for entry in config:
                    if entry[0] == "min.insync.replicas" and entry[1] is not None:
                        min_insync[int(name)] = int(entry[1])
        topic_replicas: dict[str, int | None] = dict.fromkeys(all_topic_names())
        for topic in described:
            partitions = topic.get("partitions") or []
            if topic["topic"] in topic_replicas and topic.get("error_code") == 0 and partitions:
                topic_replicas[topic["topic"]] = min(len(p["replicas"]) for p in partitions)
        return broker_ids, min_insync, topic_replicas


class ConfigCheck(Service):
    """Runs a configuration check when the worker starts (before any store or consumer)."""

    def __init__(self, check: Callable[[], None], **kwargs: Any) -> None:
        self.check = check
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        self.check()


class StartupChecks:
    """What a worker checks before it starts: its API keys, its cluster, its local state."""

    def __init__(self, app: Any, settings: Settings, check_auth: Callable[[], None]) -> None:
        self.app = app
        self.settings = settings
        self.check_auth = check_auth

    def worker_init(self) -> None:
        """Add the checks as dependencies of the app (once; see the module docstring)."""
        app, settings = self.app, self.settings
        # Fail closed: a worker with no API keys (and no explicit ORDERFLOW_API_AUTH=none) or no
        # cluster secret does not start. Checked when the app service starts (`worker`), not at
        # import: CLI commands that import the app (trace, replay) need no keys.
        faust_glue.add_dependency_once(app, ConfigCheck, lambda: ConfigCheck(self.check_auth))
        # First: a worker refused on its cluster leaves its data dir untouched.
        faust_glue.add_dependency_once(app, ClusterCheck, lambda: ClusterCheck(settings))
        # RocksDB is trusted after a clean stop only (local_state).
        if settings.store == "rocksdb":
            faust_glue.add_dependency_once(
                app,
                LocalStateGuard,
                lambda: LocalStateGuard(
                    LocalState(settings.data_dir, app.conf.tabledir), CHANGELOG.unsettled
                ),
            )
