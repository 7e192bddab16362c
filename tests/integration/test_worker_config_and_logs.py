"""A worker fails closed at start, and its logs follow ORDERFLOW_LOG_LEVEL / _FORMAT (issue 9).

Refusals: no gateway chosen (no traceback, the variable named), a replication factor the
cluster cannot give (checked against the real broker before any agent runs). Logs: JSON lines
from every logger (ours, Faust's, aiokafka's), ``order_id`` on the lines about an order, the
level applied even though the worker's command line says ``-l info``; the gateway's key nowhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.harness import http_json, poll_until, start_sandbox, start_worker
from tests.orders_client import get_terminal, order_body, place, set_faults


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ORDERFLOW_")}
    return subprocess.run(
        [sys.executable, *args], env={**clean, **env}, capture_output=True, text=True, timeout=120
    )


def test_a_worker_without_a_gateway_choice_exits_naming_the_variable_without_a_traceback() -> None:
    for args in (["-m", "orderflow", "worker"], ["-m", "faust", "-A", "orderflow.app", "worker"]):
        done = _run(args, {"ORDERFLOW_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
        output = done.stdout + done.stderr
        assert done.returncode != 0, output
        assert "ORDERFLOW_GATEWAY" in output and "Traceback" not in output, output


def test_a_gateway_url_with_credentials_is_refused_without_echoing_them() -> None:
    done = _run(
        ["-m", "orderflow", "worker"],
        {
            "ORDERFLOW_GATEWAY": "http",
            "ORDERFLOW_GATEWAY_API_KEY": "k",
            "ORDERFLOW_GATEWAY_URL": "https://user:hunter2@gw.example/",
        },
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "ORDERFLOW_GATEWAY_URL" in output, output
    assert "hunter2" not in output and "Traceback" not in output, output


def test_replication_factor_above_the_broker_count_stops_the_worker_before_agents_run(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # One broker, replication factor 3: topics could never be created nor written.
    sandbox = start_sandbox(tmp_path)
    try:
        worker = start_worker(
            tmp_path,
            kafka_bootstrap,
            sandbox.meta["url"],
            name="rf3",
            extra={"ORDERFLOW_REPLICATION_FACTOR": "3"},
            wait_ready=False,
        )
        assert worker.proc is not None
        try:
            code = worker.proc.wait(90)
        finally:
            worker.stop()
        log = worker.log_tail(20000)
        assert code != 0, log
        assert "ORDERFLOW_REPLICATION_FACTOR=3" in log and "(1)" in log, log
        assert "Starting..." not in "".join(  # no agent was started
            line for line in log.splitlines() if "AgentManager" in line
        ), log
    finally:
        sandbox.stop()


def _json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_json_logs_carry_the_order_id_and_every_logger_uses_them(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    sandbox = start_sandbox(tmp_path)
    key = sandbox.meta["api_key"]
    gateway = sandbox.meta["url"]
    try:
        worker = start_worker(
            tmp_path,
            kafka_bootstrap,
            gateway,
            name="json",
            extra={
                "ORDERFLOW_LOG_FORMAT": "json",
                "ORDERFLOW_LOG_LEVEL": "debug",
                "ORDERFLOW_GATEWAY_TIMEOUT": "1",
                "ORDERFLOW_GATEWAY_DEADLINE": "2",
            },
        )
        try:
            status, ready, _ = http_json("GET", f"{worker.meta['url']}/ready")
            assert (status, ready["gateway"], ready["gateway_url"]) == (200, "http", gateway)
            set_faults(gateway, error_rate=1.0)  # the charge fails: UNKNOWN, logged per order
            order_id = place(worker.meta["url"], order_body())["order_id"]
            poll_until(
                lambda: f"payment {order_id} UNKNOWN" in worker.log_tail(200000),
                60,
                what="the UNKNOWN payment's log line",
            )
            set_faults(gateway)
            assert get_terminal(worker.meta["url"], order_id)["status"] == "PAID"
        finally:
            assert worker.stop() == 0
        text = worker.log_path.read_text()
    finally:
        sandbox.stop()
    lines = _json_lines(text)
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    loggers = {line["logger"] for line in lines}
    assert any(name.startswith("faust") for name in loggers), loggers
    assert any(name.startswith("aiokafka") for name in loggers), loggers  # debug: applied
    assert "orderflow.lifecycle" in loggers and "orderflow.agents.payments" in loggers, loggers
    about = [line for line in lines if order_id in line["message"]]
    assert about and all(line.get("order_id") == order_id for line in about), about
    # Every log line is JSON: what is not is Faust's start-up banner (printed, not logged).
    stray = [
        ln
        for ln in text.splitlines()
        if ln.strip()
        and not ln.startswith("{")
        and ("INFO" in ln or "WARNING" in ln or "DEBUG" in ln)
    ]
    assert stray == [], stray[:5]
    assert key not in text
    # At debug, aiokafka's producer and faust.topics printed every record's value (the token).
    token = order_body()["payment"]["token"]
    assert token not in text, [line for line in text.splitlines() if token in line][:3]


def test_log_level_applies_to_the_worker_whatever_its_command_line_says(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    sandbox = start_sandbox(tmp_path)
    try:
        worker = start_worker(
            tmp_path,
            kafka_bootstrap,
            sandbox.meta["url"],
            name="quiet",
            extra={"ORDERFLOW_LOG_LEVEL": "warning"},
        )  # `-l info` given
        assert worker.stop() == 0
        text = worker.log_path.read_text()
    finally:
        sandbox.stop()
    assert "[INFO]" not in text and "Ready" not in text, text[-3000:]
