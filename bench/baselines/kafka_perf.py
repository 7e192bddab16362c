"""Baseline: Kafka's own producer and consumer performance tools against our broker.

``org.apache.kafka.tools.ProducerPerformance`` and ``ConsumerPerformance`` come from the
``org.apache.kafka:kafka-tools`` jar on Maven Central, at the broker's version, resolved with Maven
once into ``<cache>/kafka/<version>/tools-libs`` exactly as ``orderflow.tools.localkafka`` resolves
the broker's jars (a Kafka distribution named by ``KAFKA_HOME`` already has them in ``libs/``).
They give the broker's own ceiling on this machine: records/s and MB/s for small records, acks=all.

    python -m bench.baselines.kafka_perf --bootstrap 127.0.0.1:22092 [--records 500000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from orderflow.tools.localkafka import (
    DEFAULT_KAFKA_VERSION,
    LOG4J2_VERSION,
    KafkaLauncherError,
    ensure_jars,
    maven_pom,
    resolve_jars,
    run_checked,
)
from tests.kafka_helpers import create_topic

__all__ = [
    "PARTITIONS",
    "RECORD_SIZE",
    "PerfResult",
    "consumer_perf",
    "ensure_tools_jars",
    "parse_consumer_output",
    "parse_producer_output",
    "producer_perf",
]

RECORD_SIZE = 300  # bytes: about the size of an orderflow event
PARTITIONS = 8  # of the topic the tools write and read


def ensure_tools_jars(version: str | None = None) -> Path:
    """A folder holding ``kafka-tools`` and its runtime dependencies (resolved once, cached)."""
    version = version or os.environ.get("ORDERFLOW_KAFKA_VERSION", DEFAULT_KAFKA_VERSION)
    broker_libs = ensure_jars(version)
    if os.environ.get("KAFKA_HOME"):
        if not any(broker_libs.glob("kafka-tools-*.jar")):
            raise KafkaLauncherError(f"{broker_libs} has no kafka-tools-*.jar")
        return broker_libs
    home = broker_libs.parent
    # The tools' POM, like the broker's, brings no SLF4J binding (4.x logs through log4j2).
    pom = maven_pom(
        "kafka-tools-runtime",
        version,
        [
            ("org.apache.kafka", "kafka-tools", version),
            ("org.apache.logging.log4j", "log4j-slf4j-impl", LOG4J2_VERSION),
        ],
    )
    return resolve_jars(
        home / "tools-libs",
        home / "tools" / "pom.xml",
        pom,
        f"org.apache.kafka:kafka-tools:{version}",
    )


@dataclass(frozen=True)
class PerfResult:
    """One run of a perf tool: records/s and MB/s (MB = 2**20 bytes, as the tools print)."""

    records: int
    records_per_s: float
    mb_per_s: float


def _java_tool(libs: Path, main_class: str, args: list[str], timeout: float) -> str:
    java = shutil.which("java")
    if java is None:
        raise KafkaLauncherError("`java` was not found on PATH (a JDK 17+ is needed)")
    return run_checked(
        [java, "-Xmx512m", "-cp", f"{libs}/*", main_class, *args],
        f"{main_class} failed",
        tails=(2000, 2000),
        timeout=timeout,
    )


# "500000 records sent, 181818.2 records/sec (52.02 MB/sec), 120.5 ms avg latency, ..."
_PRODUCER_LINE = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\)", re.MULTILINE
)


def producer_perf(
    libs: Path, bootstrap: str, topic: str, records: int, record_size: int = RECORD_SIZE
) -> PerfResult:
    """``ProducerPerformance`` at full speed, acks=all; the summary line's figures."""
    out = _java_tool(
        libs,
        "org.apache.kafka.tools.ProducerPerformance",
        [
            "--topic",
            topic,
            "--num-records",
            str(records),
            "--record-size",
            str(record_size),
            "--throughput",
            "-1",
            "--producer-props",
            f"bootstrap.servers={bootstrap}",
            "acks=all",
        ],
        timeout=600,
    )
    return parse_producer_output(out)


def parse_producer_output(out: str) -> PerfResult:
    """The figures of ProducerPerformance's summary line (its last line of that shape)."""
    # The tool prints a line every 5 s, then the summary: the last match is the summary.
    matches = _PRODUCER_LINE.findall(out)
    if not matches:
        raise KafkaLauncherError(f"ProducerPerformance printed no summary:\n{out[-2000:]}")
    sent, per_s, mb_s = matches[-1]
    return PerfResult(int(sent), float(per_s), float(mb_s))


def consumer_perf(libs: Path, bootstrap: str, topic: str, records: int) -> PerfResult:
    """``ConsumerPerformance`` reading ``records`` from the start with a fresh group.

    The rate is the tool's fetch rate (``fetch.nMsg.sec``): the group's join time excluded.
    """
    out = _java_tool(
        libs,
        "org.apache.kafka.tools.ConsumerPerformance",
        [
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--messages",
            str(records),
            "--group",
            f"bench-perf-{uuid.uuid4().hex[:8]}",
            "--timeout",
            "60000",
        ],
        timeout=600,
    )
    return parse_consumer_output(out)


def parse_consumer_output(out: str) -> PerfResult:
    """The figures of ConsumerPerformance's CSV line: the fetch rate (the group's join excluded)."""
    lines = [line for line in out.splitlines() if line.strip()]
    header_at = next((i for i, line in enumerate(lines) if "nMsg.sec" in line), None)
    if header_at is None or header_at + 1 >= len(lines):
        raise KafkaLauncherError(f"ConsumerPerformance printed no figures:\n{out[-2000:]}")
    names = [n.strip() for n in lines[header_at].split(",")]
    values = dict(zip(names, (v.strip() for v in lines[header_at + 1].split(",")), strict=False))
    return PerfResult(
        int(values["data.consumed.in.nMsg"]),
        float(values["fetch.nMsg.sec"]),
        float(values["fetch.MB.sec"]),
    )


def main(argv: list[str] | None = None) -> int:
    """Run both tools once against a running broker and print their figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.baselines.kafka_perf")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--record-size", type=int, default=RECORD_SIZE)
    args = parser.parse_args(argv)
    libs = ensure_tools_jars()
    topic = f"bench-perf-{uuid.uuid4().hex[:8]}"
    asyncio.run(create_topic(args.bootstrap, topic, partitions=PARTITIONS))
    produced = producer_perf(libs, args.bootstrap, topic, args.records, args.record_size)
    print(f"producer: {produced.records_per_s:,.0f} records/s, {produced.mb_per_s:.1f} MB/s")
    consumed = consumer_perf(libs, args.bootstrap, topic, args.records)
    print(f"consumer: {consumed.records_per_s:,.0f} records/s, {consumed.mb_per_s:.1f} MB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
