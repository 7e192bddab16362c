"""A real Apache Kafka (KRaft) that the project starts itself, from Maven Central jars.

No Docker and no Kafka download site are needed: the broker's jars are published on Maven Central,
so we resolve them once with Maven into a cache folder and run ``kafka.Kafka`` on the JDK.

    orderflow kafka up [--nodes 3 [--controllers 3]]   fetch if needed, format, start, wait
    orderflow kafka down                                SIGTERM, wait, no orphan JVM
    orderflow kafka status | logs

Environment (read here only, the launcher is a developer tool separate from the service):
``ORDERFLOW_KAFKA_VERSION`` (default 4.1.2; 3.9.x works too), ``KAFKA_HOME`` (use an installed
distribution's ``libs/``), ``ORDERFLOW_CACHE_DIR`` (jar cache, default ~/.cache/orderflow),
``ORDERFLOW_KAFKA_STATE_DIR`` (data, logs and pid files, default ./.run/kafka),
``ORDERFLOW_KAFKA_BOOTSTRAP`` (when it answers, nothing is started).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DEFAULT_KAFKA_VERSION",
    "KafkaCluster",
    "KafkaLauncherError",
    "broker_is_reachable",
    "ensure_jars",
    "maven_pom",
    "resolve_jars",
    "run_checked",
    "wait_for_brokers",
]

DEFAULT_KAFKA_VERSION = "4.1.2"
# Pinned so a jar cache is reproducible; copy-dependencies is all we use of it.
DEPENDENCY_PLUGIN_VERSION = "3.8.1"
# Kafka 4.x logs through log4j2 and its POMs bring no SLF4J binding: without one the broker runs
# and dies silently. 3.9.x still uses reload4j.
LOG4J2_VERSION = "2.25.3"
HEAP = "-Xmx512m"
CONTROLLER_HEAP = "-Xmx256m"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 45.0


# A cluster of several nodes notices a dead one in about a second instead of nine: until the
# controller fences a broker (broker.session.timeout.ms after its last heartbeat), it stays the
# leader of its partitions and a member of every ISR, so each acks=all write of a replicated topic
# waits for it. A leader also drops a follower that stopped fetching from the ISR by itself after
# replica.lag.time.max.ms (30 s by default). With combined broker/controller nodes a dead node can
# be the active controller: the quorum elects another one first (fetch timeout, then election).
# Fine on one machine's loopback; on real networks, weigh false fencing (GC pauses, busy hosts)
# against failover time, and prefer dedicated controller nodes (docs/guarantees.md, section 7).
_FAST_FAILOVER = (
    "broker.heartbeat.interval.ms=250",
    "broker.session.timeout.ms=1200",
    "replica.lag.time.max.ms=2000",
    # A follower whose fetch failed (its leader died) waits this long before fetching again, from
    # the new leader too: acks=all writes there wait for it (1 s by default).
    "replica.fetch.backoff.ms=100",
    "controller.quorum.fetch.timeout.ms=1000",
    "controller.quorum.election.timeout.ms=500",
    "controller.quorum.election.backoff.max.ms=500",
)


class KafkaLauncherError(RuntimeError):
    """The local broker could not be fetched, started or stopped; the message names the fix."""


def _is_kafka_3(version: str) -> bool:
    return version.split(".")[0] == "3"


def _cache_root() -> Path:
    configured = os.environ.get("ORDERFLOW_CACHE_DIR")
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "orderflow"


def _require(tool: str, fix: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise KafkaLauncherError(f"`{tool}` was not found on PATH. {fix}")
    return path


def maven_pom(artifact_id: str, version: str, dependencies: Sequence[tuple[str, str, str]]) -> str:
    """A POM that only lists ``dependencies`` (group, artifact, version), for ``resolve_jars``."""
    listed = "".join(
        f"""
    <dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>
      <version>{dep_version}</version></dependency>"""
        for group, artifact, dep_version in dependencies
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>orderflow.local</groupId>
  <artifactId>{artifact_id}</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>{listed}
  </dependencies>
  <build><plugins><plugin>
    <groupId>org.apache.maven.plugins</groupId><artifactId>maven-dependency-plugin</artifactId>
    <version>{DEPENDENCY_PLUGIN_VERSION}</version>
  </plugin></plugins></build>
</project>
"""


def _pom(version: str) -> str:
    if _is_kafka_3(version):
        logging_deps = [
            ("org.slf4j", "slf4j-reload4j", "1.7.36"),
            ("ch.qos.reload4j", "reload4j", "1.2.25"),
        ]
    else:
        logging_deps = [("org.apache.logging.log4j", "log4j-slf4j-impl", LOG4J2_VERSION)]
    return maven_pom(
        "kafka-runtime", version, [("org.apache.kafka", "kafka_2.13", version), *logging_deps]
    )


def ensure_jars(version: str | None = None) -> Path:
    """Return a folder of broker jars: ``$KAFKA_HOME/libs``, or the Maven-resolved cache."""
    kafka_home = os.environ.get("KAFKA_HOME")
    if kafka_home:
        libs = Path(kafka_home) / "libs"
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise KafkaLauncherError(f"KAFKA_HOME={kafka_home} has no libs/kafka_2.13-*.jar")
        return libs
    version = version or os.environ.get("ORDERFLOW_KAFKA_VERSION", DEFAULT_KAFKA_VERSION)
    home = _cache_root() / "kafka" / version
    return resolve_jars(
        home / "libs", home / "pom.xml", _pom(version), f"org.apache.kafka:kafka_2.13:{version}"
    )


def resolve_jars(libs: Path, pom_file: Path, pom: str, what: str) -> Path:
    """The runtime dependencies of ``pom`` (written to ``pom_file``), copied by Maven into
    ``libs`` once: a complete copy is marked and reused. ``what`` names them in messages."""
    if (libs / ".complete").exists():
        return libs
    mvn = _require(
        "mvn",
        "Install Maven (Debian: apt-get install maven), or set KAFKA_HOME to a Kafka "
        "distribution, or ORDERFLOW_KAFKA_BOOTSTRAP to a running broker.",
    )
    pom_file.parent.mkdir(parents=True, exist_ok=True)
    pom_file.write_text(pom)
    staging = libs.with_name(libs.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)  # a stale copy would mix versions
    print(f"localkafka: resolving {what} from Maven Central ...", file=sys.stderr)
    run_checked(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom_file),
            f"org.apache.maven.plugins:maven-dependency-plugin:{DEPENDENCY_PLUGIN_VERSION}"
            ":copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
            "-Dmdep.prependGroupId=true",
        ],
        f"Maven could not resolve {what}",
        tails=(3000, 2000),
    )
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    (libs / ".complete").write_text(what)
    return libs


def run_checked(
    args: list[str],
    failure: str,
    tails: tuple[int, int] | None = None,
    timeout: float | None = None,
) -> str:
    """Run a JVM or Maven tool to completion and return its stdout; its output is in the error
    when it fails (exit status other than 0).

    ``tails``: keep only the last characters of stdout and stderr (Maven is verbose).
    """
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        out, err = result.stdout, result.stderr
        if tails is not None:
            out, err = out[-tails[0] :], err[-tails[1] :]
        raise KafkaLauncherError(f"{failure} ({result.returncode}):\n{out}{err}")
    return result.stdout


@dataclass(frozen=True)
class NodePorts:
    """The listeners of one KRaft node (a dedicated controller uses only ``controller``)."""

    node_id: int
    broker: int
    controller: int
    is_broker: bool = True
    is_controller: bool = True

    @property
    def roles(self) -> str:
        return ",".join(
            r for r, on in (("broker", self.is_broker), ("controller", self.is_controller)) if on
        )


@dataclass
class KafkaCluster:
    """``nodes`` KRaft brokers on 127.0.0.1: each also a controller (combined mode), or, with
    ``controllers`` > 0, beside that many dedicated controller nodes (ids after the brokers').

    Node ``n`` listens on ``base_port + 2(n-1)`` (clients) and the next port (controller).
    """

    state_dir: Path
    nodes: int = 1
    base_port: int = 9092
    controllers: int = 0
    version: str = field(
        default_factory=lambda: os.environ.get("ORDERFLOW_KAFKA_VERSION", DEFAULT_KAFKA_VERSION)
    )
    partitions: int = 8

    def __post_init__(self) -> None:
        self.state_dir = self.state_dir.absolute()  # the JVM's command line names it

    @property
    def members(self) -> list[NodePorts]:
        """Every node: the brokers, then the dedicated controllers."""
        combined = self.controllers == 0
        return [
            NodePorts(
                n,
                self.base_port + 2 * (n - 1),
                self.base_port + 2 * (n - 1) + 1,
                is_broker=n <= self.nodes,
                is_controller=combined or n > self.nodes,
            )
            for n in range(1, self.nodes + self.controllers + 1)
        ]

    @property
    def ports(self) -> list[NodePorts]:
        """The brokers (what clients connect to, and what a broker fault picks from)."""
        return [p for p in self.members if p.is_broker]

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{p.broker}" for p in self.ports)

    def node_dir(self, node_id: int) -> Path:
        return self.state_dir / f"node-{node_id}"

    def pid_file(self, node_id: int) -> Path:
        return self.node_dir(node_id) / "kafka.pid"

    def log_file(self, node_id: int) -> Path:
        return self.node_dir(node_id) / "broker.log"

    # -- configuration -------------------------------------------------------------------------

    def _server_properties(self, ports: NodePorts) -> str:
        voters = ",".join(
            f"{p.node_id}@127.0.0.1:{p.controller}" for p in self.members if p.is_controller
        )
        common = [
            *(_FAST_FAILOVER if self.nodes > 1 else ()),
            f"process.roles={ports.roles}",
            f"node.id={ports.node_id}",
            f"controller.quorum.voters={voters}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={self.node_dir(ports.node_id) / 'data'}",
        ]
        if not ports.is_broker:
            return "\n".join([*common, f"listeners=CONTROLLER://127.0.0.1:{ports.controller}", ""])
        listeners = [f"PLAINTEXT://127.0.0.1:{ports.broker}"]
        if ports.is_controller:
            listeners.append(f"CONTROLLER://127.0.0.1:{ports.controller}")
        replication = min(self.nodes, 3)
        min_isr = 2 if self.nodes >= 3 else 1
        return "\n".join(
            [
                *common,
                f"listeners={','.join(listeners)}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{ports.broker}",
                "inter.broker.listener.name=PLAINTEXT",
                f"num.partitions={self.partitions}",
                f"default.replication.factor={replication}",
                f"min.insync.replicas={min_isr}",
                f"offsets.topic.replication.factor={replication}",
                f"transaction.state.log.replication.factor={replication}",
                f"transaction.state.log.min.isr={min_isr}",
                "group.initial.rebalance.delay.ms=0",
                # Topics are created explicitly by the service; a typo must not invent one.
                "auto.create.topics.enable=false",
                # Lets the log cleaner (compacted changelogs) live in a 512 MiB heap.
                "log.cleaner.dedupe.buffer.size=2097152",
                "",
            ]
        )

    def _logging_config(self, node_id: int) -> tuple[str, Path]:
        log = self.log_file(node_id)
        if _is_kafka_3(self.version):
            path = self.node_dir(node_id) / "log4j.properties"
            path.write_text(
                "log4j.rootLogger=INFO, stdout\n"
                "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
                "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
                "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
                "log4j.logger.org.apache.kafka.clients=WARN\n"
                "log4j.logger.kafka.log.LogCleaner=WARN\n"
            )
            return f"-Dlog4j.configuration=file:{path}", log
        path = self.node_dir(node_id) / "log4j2.properties"
        path.write_text(
            "status=warn\n"
            "appender.console.type=Console\n"
            "appender.console.name=STDOUT\n"
            "appender.console.layout.type=PatternLayout\n"
            "appender.console.layout.pattern=[%d] %p %m (%c)%n\n"
            "rootLogger.level=INFO\n"
            "rootLogger.appenderRef.stdout.ref=STDOUT\n"
            "logger.clients.name=org.apache.kafka.clients\n"
            "logger.clients.level=WARN\n"
        )
        return f"-Dlog4j2.configurationFile={path}", log

    # -- lifecycle -----------------------------------------------------------------------------

    def _java(self) -> str:
        return _require(
            "java",
            "Install a JDK 17+ (Debian: apt-get install openjdk-17-jdk-headless), or point "
            "ORDERFLOW_KAFKA_BOOTSTRAP at a running broker, or use docker-compose.kafka.yml.",
        )

    def _format(self, libs: Path) -> None:
        id_file = self.state_dir / "cluster.id"
        if not id_file.exists():
            self.state_dir.mkdir(parents=True, exist_ok=True)
            # Kafka wants a base64 UUID; uuid4's 16 bytes encoded the same way are valid. One in
            # 64 starts with "-": given as --cluster-id=ID, it is never taken for an option.
            import base64

            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            id_file.write_text(cluster_id)
        cluster_id = id_file.read_text().strip()
        for ports in self.members:
            node = self.node_dir(ports.node_id)
            node.mkdir(parents=True, exist_ok=True)
            props = node / "server.properties"
            props.write_text(self._server_properties(ports))
            if (node / "data" / "meta.properties").exists():
                continue
            run_checked(
                [
                    self._java(),
                    "-cp",
                    f"{libs}/*",
                    "kafka.tools.StorageTool",
                    "format",
                    f"--cluster-id={cluster_id}",
                    "-c",
                    str(props),
                    "--ignore-formatted",
                ],
                "StorageTool format failed",
            )

    def running_pid(self, node_id: int) -> int | None:
        """The pid of this node's JVM if it is alive (and really ours), else None."""
        try:
            pid = int(self.pid_file(node_id).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        # A recycled pid must never be signalled: check it is our broker.
        props = str(self.node_dir(node_id) / "server.properties").encode()
        return pid if b"kafka.Kafka" in cmdline and props in cmdline else None

    def start_node(self, node_id: int, libs: Path | None = None) -> None:
        """Start one node's JVM (already formatted) in its own session; returns immediately."""
        if self.running_pid(node_id) is not None:
            return
        libs = libs or ensure_jars(self.version)
        node = self.node_dir(node_id)
        log_opt, log = self._logging_config(node_id)
        # A dedicated controller holds only the cluster's metadata log.
        heap = (HEAP, "-Xms256m") if node_id <= self.nodes else (CONTROLLER_HEAP, "-Xms128m")
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [
                    self._java(),
                    *heap,
                    "-XX:+UseG1GC",
                    "-Djava.awt.headless=true",
                    log_opt,
                    "-cp",
                    f"{libs}/*",
                    "kafka.Kafka",
                    str(node / "server.properties"),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives the launcher; `down` stops it by pid
            )
        self.pid_file(node_id).write_text(str(proc.pid))
        # Between fork and exec /proc shows the launcher's own command line: wait for the JVM.
        deadline = time.monotonic() + 10
        while self.running_pid(node_id) is None and proc.poll() is None:
            if time.monotonic() > deadline:
                raise KafkaLauncherError(f"Kafka node {node_id} did not exec java")
            time.sleep(0.02)

    def start(self, timeout: float = READY_TIMEOUT_S) -> float:
        """Fetch, format, start every node and wait until all brokers answer; returns seconds."""
        began = time.monotonic()
        busy = [
            port
            for p in self.members
            for port in ((p.broker,) if p.is_broker else ()) + (p.controller,)
            if _port_in_use(port)
        ]
        if busy and not self.is_running():
            raise KafkaLauncherError(
                f"port {busy[0]} on 127.0.0.1 is taken by another process; stop it, or point "
                "ORDERFLOW_KAFKA_BOOTSTRAP at that broker"
            )
        libs = ensure_jars(self.version)
        self._format(libs)
        for ports in self.members:
            self.start_node(ports.node_id, libs)
        self.wait_ready(timeout)
        return time.monotonic() - began

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while True:
            dead = [p.node_id for p in self.members if self.running_pid(p.node_id) is None]
            if dead:
                tail = self.log_file(dead[0]).read_text(errors="replace")[-4000:]
                raise KafkaLauncherError(f"Kafka node {dead[0]} exited during start:\n{tail}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise KafkaLauncherError(
                    f"Kafka at {self.bootstrap} was not ready within {timeout:.0f}s; "
                    f"see {self.log_file(1)}"
                )
            if asyncio.run(wait_for_brokers(self.bootstrap, self.nodes, min(remaining, 5.0))):
                return

    def stop_node(self, node_id: int, sig: signal.Signals = signal.SIGTERM) -> None:
        """Signal one node and wait for its JVM to exit (SIGKILL after a grace period)."""
        self._stop_nodes([node_id], sig)

    def stop(self) -> None:
        """Stop every node together: one by one, the last ones would wait for a lost quorum."""
        self._stop_nodes([p.node_id for p in self.members], signal.SIGTERM)

    def _stop_nodes(self, node_ids: list[int], sig: signal.Signals) -> None:
        pids = {n: pid for n in node_ids if (pid := self.running_pid(n)) is not None}
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while any(self.running_pid(n) is not None for n in pids):
            if time.monotonic() > deadline:
                for pid in pids.values():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 10
            time.sleep(0.1)
            for pid in pids.values():
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)  # reap it when we are its parent
        for n in pids:
            self.pid_file(n).unlink(missing_ok=True)

    def is_running(self) -> bool:
        return any(self.running_pid(p.node_id) is not None for p in self.members)


async def wait_for_brokers(bootstrap: str, expected: int, timeout: float) -> bool:
    """True once a metadata request lists ``expected`` brokers, False at the deadline."""
    import logging

    from aiokafka.admin import AIOKafkaAdminClient  # imported late: `status` runs without it
    from aiokafka.errors import KafkaError

    # Refused connections are the expected answer while the broker boots: not worth a line each.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await asyncio.wait_for(admin.start(), timeout=max(0.5, deadline - time.monotonic()))
            cluster = await admin.describe_cluster()
            if len(cluster.get("brokers", [])) >= expected:
                return True
        except (KafkaError, OSError, TimeoutError):
            pass
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        await asyncio.sleep(0.25)
    return False


def _port_in_use(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def broker_is_reachable(bootstrap: str, timeout: float = 3.0) -> bool:
    return asyncio.run(wait_for_brokers(bootstrap, 1, timeout))


def _default_state_dir(nodes: int, controllers: int = 0) -> Path:
    root = Path(os.environ.get("ORDERFLOW_KAFKA_STATE_DIR", ".run/kafka"))
    if nodes == 1 and controllers == 0:
        return root
    # A cluster's data is formatted for its layout: another layout gets its own folder.
    suffix = f"-{nodes}nodes" + (f"-{controllers}controllers" if controllers else "")
    return root.with_name(root.name + suffix)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orderflow kafka", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "logs", "fetch"])
    parser.add_argument("--nodes", type=int, choices=[1, 3], default=1, help="brokers")
    parser.add_argument(
        "--controllers",
        type=int,
        choices=[0, 1, 3],
        default=0,
        help="dedicated controller nodes (0: every broker is also a controller)",
    )
    parser.add_argument("--base-port", type=int, default=9092)
    parser.add_argument("--state-dir", type=Path, default=None)
    return parser


def _up(cluster: KafkaCluster) -> int:
    configured = os.environ.get("ORDERFLOW_KAFKA_BOOTSTRAP")
    if cluster.is_running():
        cluster.wait_ready()
        print(f"localkafka: already running at {cluster.bootstrap}")
    elif configured and broker_is_reachable(configured):
        print(f"localkafka: using the broker at {configured}; starting nothing")
    elif configured and configured != cluster.bootstrap:
        raise KafkaLauncherError(
            f"ORDERFLOW_KAFKA_BOOTSTRAP={configured} does not answer; start it or unset it"
        )
    else:
        took = cluster.start()
        print(
            f"localkafka: Kafka {cluster.version} ready at {cluster.bootstrap} "
            f"in {took:.1f}s ({cluster.nodes} node(s), state in {cluster.state_dir})"
        )
    return 0


def _fetch(cluster: KafkaCluster) -> int:
    print(ensure_jars(cluster.version))
    return 0


def _down(cluster: KafkaCluster) -> int:
    cluster.stop()
    print("localkafka: stopped")
    return 0


def _status(cluster: KafkaCluster) -> int:
    for ports in cluster.members:
        pid = cluster.running_pid(ports.node_id)
        state = f"running (pid {pid})" if pid else "stopped"
        port = ports.broker if ports.is_broker else ports.controller
        print(f"node {ports.node_id} ({ports.roles}) 127.0.0.1:{port}: {state}")
    return 0 if cluster.is_running() else 3


def _logs(cluster: KafkaCluster) -> int:
    for ports in cluster.members:
        log = cluster.log_file(ports.node_id)
        if log.exists():
            print(f"==> {log} <==")
            print(log.read_text(errors="replace")[-20000:])
    return 0


_ACTIONS = {"up": _up, "down": _down, "status": _status, "logs": _logs, "fetch": _fetch}


def main(argv: Sequence[str] | None = None) -> int:
    """``orderflow kafka up|down|status|logs|fetch``: returns the exit status."""
    args = _parser().parse_args(argv)
    cluster = KafkaCluster(
        state_dir=args.state_dir or _default_state_dir(args.nodes, args.controllers),
        nodes=args.nodes,
        base_port=args.base_port,
        controllers=args.controllers,
    )
    try:
        return _ACTIONS[args.command](cluster)
    except KafkaLauncherError as exc:
        print(f"localkafka: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
