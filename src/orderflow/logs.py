"""The worker's logging: ``ORDERFLOW_LOG_LEVEL``, ``ORDERFLOW_LOG_FORMAT`` and ``order_id`` fields.

Faust's worker (mode) replaces the whole logging configuration at start with the ``-l`` level of
its command line; ``logging_config`` below is handed to the app (``faust.App(logging_config=)``),
which the worker then uses instead, so our level and format apply to every line: ours, Faust's,
mode's and aiokafka's (they all log through the root logger's handler configured here).

The order a line is about comes from a context variable that the agents and views set for the
order they handle (``order_context``); ``OrderIdFilter`` copies it onto each record (a line
logged with ``extra={"order_id": ...}`` keeps its own). Asyncio tasks inherit the variable, so the
gateway calls made for an order log its id too. A line logged outside any order's handling that
names exactly one order id (Faust's producer, our timers) gets that one.

Payment tokens never reach a line: the loggers that print whole record values at DEBUG are held
at INFO whatever the level (``VALUE_LOGGERS``), and ``SecretsFilter`` masks any token-shaped
string left in a line or its traceback (``domain.tokens.mask_text``), a second net.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from orderflow.domain.tokens import mask_text

__all__ = [
    "VALUE_LOGGERS",
    "JsonFormatter",
    "OrderIdFilter",
    "SecretsFilter",
    "current_order",
    "logging_config",
    "order_context",
]

current_order: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "orderflow_current_order", default=None
)

# mode's own default line (the text format keeps today's lines).
TEXT_FORMAT = "[%(asctime)s] [%(process)s] [%(levelname)s] %(message)s"


@contextlib.contextmanager
def order_context(order_id: str | bytes | None) -> Iterator[None]:
    """Log lines inside the block are about ``order_id`` (an event's key, or a URL's id)."""
    if isinstance(order_id, bytes):
        order_id = order_id.decode(errors="replace")
    token = current_order.set(order_id or None)
    try:
        yield
    finally:
        current_order.reset(token)


# Our order ids (web/orders.py): lines logged outside an order's handling (Faust's producer
# task, a timer, a POST before its order exists) are about the one order their text names.
_ORDER_ID = re.compile(r"\bord_[0-9a-f]{32}\b")


class OrderIdFilter(logging.Filter):
    """Adds ``order_id`` (or None) to every record: the order being handled, or named."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "order_id", None) is None:
            order_id = current_order.get()
            if order_id is None:
                named = set(_ORDER_ID.findall(record.getMessage()))
                order_id = named.pop() if len(named) == 1 else None
            record.order_id = order_id
        return True


# Loggers that print every record's value at DEBUG (PlaceOrder and order.created carry the card's
# token): aiokafka's producer ("Sending (key=%s value=%s) to %s") and Faust's topics
# ("send: topic=%r k=%r v=%r ..."). Held at INFO whatever ORDERFLOW_LOG_LEVEL says.
VALUE_LOGGERS = ("aiokafka.producer.producer", "faust.topics")


class SecretsFilter(logging.Filter):
    """Masks token-shaped strings in a record's message and traceback (``mask_text``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            # Formatters show exc_text when it is set (ours and the standard one).
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and order_id when known."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        order_id = getattr(record, "order_id", None)
        if order_id is not None:
            line["order_id"] = order_id
        if record.exc_text:  # set (masked) by SecretsFilter
            line["exc_info"] = record.exc_text
        elif record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def logging_config(level: str, fmt: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the worker: ``level`` for every logger, ``fmt`` lines."""
    formatter: dict[str, Any] = {"()": JsonFormatter} if fmt == "json" else {"format": TEXT_FORMAT}
    value_level = max(logging.INFO, logging.getLevelName(level.upper()))
    return {
        "version": 1,
        "disable_existing_loggers": False,  # loggers made at import time must keep logging
        "filters": {"order_id": {"()": OrderIdFilter}, "secrets": {"()": SecretsFilter}},
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "default",
                "filters": ["order_id", "secrets"],
                "level": level.upper(),
            }
        },
        "loggers": {name: {"level": logging.getLevelName(value_level)} for name in VALUE_LOGGERS},
        "root": {"level": level.upper(), "handlers": ["default"]},
    }
