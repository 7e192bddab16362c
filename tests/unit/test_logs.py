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


_PLACE = b'{"command": "PlaceOrder", "payment": {"token": "tok_secretVisa4242"}}'


def test_debug_level_never_logs_record_values_with_payment_tokens() -> None:
    # Regression: ORDERFLOW_LOG_LEVEL=debug printed every PlaceOrder/order.created value.
    _, out = _capture("text", "debug")
    logging.getLogger("aiokafka.producer.producer").debug(
        "Sending (key=%s value=%s) to %s", b"k", _PLACE, "tp"
    )
    logging.getLogger("faust.topics").debug("send: topic=%r k=%r v=%r", "t", b"k", _PLACE)
    logging.getLogger("orderflow.test").debug("still shown")
    assert "tok_secretVisa4242" not in out.getvalue()
    assert "Sending" not in out.getvalue() and "still shown" in out.getvalue()


def test_every_line_has_token_shaped_strings_masked() -> None:
    log, out = _capture("json")
    log.warning("gateway said: No such token: '%s'", "tok_secretVisa4242")
    try:
        raise ValueError('{"payment_token": "tok_secretVisa4242"}')
    except ValueError:
        log.exception("failed")
    assert "tok_secretVisa4242" not in out.getvalue()
    assert "tok_…242" in json.loads(out.getvalue().splitlines()[0])["message"]
