"""The worker's log lines: JSON objects with the order they are about (issue 9 §4, Logs)."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from collections.abc import Iterator

import pytest

from orderflow.logs import logging_config, order_context

_ID = "ord_" + "ab" * 16


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _capture(fmt: str, level: str = "info") -> tuple[logging.Logger, io.StringIO]:
    config = logging_config(level, fmt)
    stream = io.StringIO()
    config["handlers"]["default"]["stream"] = stream
    logging.config.dictConfig(config)
    return logging.getLogger("orderflow.test"), stream


def test_json_lines_carry_time_level_logger_message_and_the_order_handled() -> None:
    log, out = _capture("json")
    with order_context(_ID.encode()):
        log.warning("charging %s", "it")
    log.info("no order here")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["order_id"] == _ID and first["message"] == "charging it"
    assert {"time", "level", "logger"} <= set(first) and first["level"] == "WARNING"
    assert "order_id" not in second


def test_a_line_naming_one_order_outside_any_handler_gets_its_id() -> None:
    log, out = _capture("json")
    log.info("send: k=b'%s'", _ID)
    log.info("two orders %s %s", _ID, "ord_" + "cd" * 16)
    one, two = (json.loads(line) for line in out.getvalue().splitlines())
    assert one["order_id"] == _ID and "order_id" not in two


def test_the_level_is_applied_to_every_logger() -> None:
    _, out = _capture("text", "warning")
    logging.getLogger("aiokafka.consumer").info("hidden")
    logging.getLogger("faust.worker").warning("shown")
    assert out.getvalue().count("\n") == 1 and "shown" in out.getvalue()
