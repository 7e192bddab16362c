"""Every topic orderflow uses, in one place: name, key, value, who writes and who reads.

All keys are the order id (UTF-8), and every topic has the same partition count
(ORDERFLOW_PARTITIONS), so one order's events, its OrderDB entry and its PaymentDB entry all live
on the same partition number, owned by one worker (Faust co-partitions topics of equal partition
count). That single-writer-per-order rule is what makes the agents' idempotency checks race-free.

``TOPICS`` below is the table a newcomer reads; the agents subscribe with ``sources(agent)``, so
"who consumes topic X" is answered here and nowhere else. The two tables' names are written once
(``ORDER_TABLE``, ``PAYMENT_TABLE``); their changelogs are topics too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "APP_ID",
    "COMPACTED_TOPICS",
    "DEAD_LETTERS",
    "DOWNSTREAM_OF_COMMANDS",
    "EVENT_TOPICS",
    "INPUT_TOPICS",
    "ORDER_AGENT",
    "ORDER_CANCELLED",
    "ORDER_CHANGELOG",
    "ORDER_COMMANDS",
    "ORDER_CREATED",
    "ORDER_TABLE",
    "PAYMENT_AGENT",
    "PAYMENT_CHANGELOG",
    "PAYMENT_COMPLETED",
    "PAYMENT_FAILED",
    "PAYMENT_RECONCILE",
    "PAYMENT_REFUNDED",
    "PAYMENT_TABLE",
    "REFUND_FAILED",
    "REFUND_REQUESTED",
    "TOKEN_TOPICS",
    "TOPICS",
    "WEBHOOK_ATTEMPTS",
    "WEBHOOK_CHANGELOG",
    "WEBHOOK_ENDPOINTS",
    "WEBHOOK_TABLE",
    "WORKER_TOPICS",
    "TopicSpec",
    "all_topic_names",
    "changelog_topic",
    "sources",
]

APP_ID = "orderflow"

ORDER_COMMANDS = "orderflow.order-commands"
ORDER_CREATED = "order.created"
PAYMENT_COMPLETED = "payment.completed"
PAYMENT_FAILED = "payment.failed"
ORDER_CANCELLED = "order.cancelled"
REFUND_REQUESTED = "refund.requested"
PAYMENT_REFUNDED = "payment.refunded"
REFUND_FAILED = "refund.failed"
PAYMENT_RECONCILE = "orderflow.payment-reconcile"
WEBHOOK_ATTEMPTS = "orderflow.webhook-attempts"
WEBHOOK_ENDPOINTS = "orderflow.webhook-endpoints"
DEAD_LETTERS = "orderflow.dead-letters"

# Topics that carry work into an agent (re-publishing into one re-runs side effects).
INPUT_TOPICS = (
    ORDER_COMMANDS,
    ORDER_CREATED,
    PAYMENT_COMPLETED,
    PAYMENT_FAILED,
    PAYMENT_RECONCILE,
    ORDER_CANCELLED,
    REFUND_REQUESTED,
    PAYMENT_REFUNDED,
    REFUND_FAILED,
    WEBHOOK_ATTEMPTS,
)
# What an order's progress passes through after its command, stage by stage (the stall nudge
# waits for them: agents/downstream.py).
DOWNSTREAM_OF_COMMANDS = ((ORDER_CREATED,), (PAYMENT_COMPLETED, PAYMENT_FAILED))

# Topics whose records carry payment tokens: the command and ``order.created`` (the charge needs
# the token) and the dead letters (kept byte for byte for a redrive). The worker creates them
# with ``retention.ms`` = ORDERFLOW_TOKEN_TOPIC_RETENTION (7 days by default; the dead letters:
# ORDERFLOW_DEAD_LETTER_RETENTION, 30 days), so a token lives there no longer; topics created beforehand by a cluster's operators need it set there. Nothing
# else keeps a token: OrderDB never, PaymentDB only until the payment is settled.
TOKEN_TOPICS = frozenset({ORDER_COMMANDS, ORDER_CREATED, DEAD_LETTERS})


def changelog_topic(table_name: str) -> str:
    return f"{APP_ID}-{table_name}-changelog"


# The tables (orderflow.tables), keyed by order id like every topic; Faust names their changelogs.
ORDER_TABLE = "OrderDB"
PAYMENT_TABLE = "PaymentDB"
WEBHOOK_TABLE = "WebhookDB"
ORDER_CHANGELOG = changelog_topic(ORDER_TABLE)
PAYMENT_CHANGELOG = changelog_topic(PAYMENT_TABLE)
WEBHOOK_CHANGELOG = changelog_topic(WEBHOOK_TABLE)

# The agents (orderflow.agents), by the name Faust knows them by (its consumer group's members
# report it, and the in-flight view of /health names it).
ORDER_AGENT = "order-service"
PAYMENT_AGENT = "payment-service"


@dataclass(frozen=True)
class TopicSpec:
    """One topic: what it carries, who writes it and who reads it."""

    name: str
    value: str  # what a record's value is (the key is always the order id)
    writers: tuple[str, ...]
    readers: tuple[str, ...]
    key: str = "order id (UTF-8)"
    partitions: str = "ORDERFLOW_PARTITIONS"  # the same for every topic: co-partitioning
    carries_tokens: bool = False
    compacted: bool = False  # cleanup.policy=compact: the latest value per key is kept forever


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(
        ORDER_COMMANDS,
        "PlaceOrder (order.place), CancelOrder (order.cancel), RefundOrder (order.refund)",
        ("POST /orders", "POST /orders/{id}/cancel", "POST /orders/{id}/refunds"),
        (ORDER_AGENT,),
        carries_tokens=True,
    ),
    TopicSpec(ORDER_CREATED, "OrderCreated", (ORDER_AGENT,), (PAYMENT_AGENT,), carries_tokens=True),
    TopicSpec(PAYMENT_COMPLETED, "PaymentCompleted", (PAYMENT_AGENT,), (ORDER_AGENT,)),
    TopicSpec(PAYMENT_FAILED, "PaymentFailed", (PAYMENT_AGENT,), (ORDER_AGENT,)),
    TopicSpec(PAYMENT_RECONCILE, '{"order_id"} (internal)', (PAYMENT_AGENT,), (PAYMENT_AGENT,)),
    TopicSpec(ORDER_CANCELLED, "OrderCancelled", (ORDER_AGENT,), (PAYMENT_AGENT,)),
    TopicSpec(REFUND_REQUESTED, "RefundRequested", (ORDER_AGENT,), (PAYMENT_AGENT,)),
    TopicSpec(PAYMENT_REFUNDED, "PaymentRefunded", (PAYMENT_AGENT,), (ORDER_AGENT,)),
    TopicSpec(REFUND_FAILED, "RefundFailed", (PAYMENT_AGENT,), (ORDER_AGENT,)),
    TopicSpec(
        WEBHOOK_ATTEMPTS,
        "WebhookAttempt (a POST's outcome), WebhookResend (internal)",
        ("webhook dispatcher", "POST /orders/{id}/webhooks/resend"),
        (ORDER_AGENT,),
    ),
    TopicSpec(
        WEBHOOK_ENDPOINTS,
        "Endpoint (a client's webhook endpoint; null: deleted)",
        ("POST /webhooks", "DELETE /webhooks/{id}"),
        ("every worker (EndpointDirectory)",),
        key="endpoint id (UTF-8)",
        compacted=True,
    ),
    TopicSpec(
        DEAD_LETTERS,
        "the original bytes + headers",
        (ORDER_AGENT, PAYMENT_AGENT),
        ("dlq commands",),
        carries_tokens=True,
    ),
    TopicSpec(ORDER_CHANGELOG, "Order (OrderDB changelog)", ("Faust",), ("Faust recovery",)),
    TopicSpec(
        PAYMENT_CHANGELOG, "PaymentRecord (PaymentDB changelog)", ("Faust",), ("Faust recovery",)
    ),
    TopicSpec(
        WEBHOOK_CHANGELOG,
        "OrderWebhooks (WebhookDB changelog)",
        ("Faust",),
        ("Faust recovery",),
    ),
)

# Where the services publish each event, by event type: named here, not derived from the event
# type, so a topic and an event type can be renamed apart (orderflow.publisher sends by it).
EVENT_TOPICS: Mapping[str, str] = {
    "order.created": ORDER_CREATED,
    "payment.completed": PAYMENT_COMPLETED,
    "payment.failed": PAYMENT_FAILED,
    "order.cancelled": ORDER_CANCELLED,
    "refund.requested": REFUND_REQUESTED,
    "payment.refunded": PAYMENT_REFUNDED,
    "refund.failed": REFUND_FAILED,
}


# Topics kept compacted (the latest value per key, forever): the worker creates them so.
COMPACTED_TOPICS = frozenset(t.name for t in TOPICS if t.compacted)

# The topics the worker creates itself (Faust creates the changelogs with their tables).
WORKER_TOPICS = tuple(
    t.name for t in TOPICS if t.name not in (ORDER_CHANGELOG, PAYMENT_CHANGELOG, WEBHOOK_CHANGELOG)
)


def sources(agent: str) -> tuple[str, ...]:
    """The topics ``agent`` consumes, in ``TOPICS`` order (its subscription)."""
    return tuple(t.name for t in TOPICS if agent in t.readers)


def all_topic_names() -> list[str]:
    return [t.name for t in TOPICS]
