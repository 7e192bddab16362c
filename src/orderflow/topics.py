"""Every topic orderflow uses, in one place: name, key, value, who writes and who reads.

All keys are the order id (UTF-8), and every topic has the same partition count, so one order's
events, its OrderDB entry and its PaymentDB entry all live on the same partition number, owned by
one worker (Faust co-partitions topics of equal partition count). That single-writer-per-order
rule is what makes the agents' idempotency checks race-free.

| topic                         | value                         | written by      | read by         |
|-------------------------------|-------------------------------|-----------------|-----------------|
| orderflow.order-commands      | PlaceOrder (internal)         | POST /orders    | order service   |
| order.created                 | OrderCreated                  | order service   | payment service |
| payment.completed             | PaymentCompleted              | payment service | order service   |
| payment.failed                | PaymentFailed                 | payment service | order service   |
| orderflow.payment-reconcile   | {"order_id"} (internal)       | reconciler      | payment service |
| orderflow.dead-letters        | the original bytes + headers  | any agent       | `dlq` commands  |
| orderflow-OrderDB-changelog   | Order (table changelog)       | Faust           | Faust recovery  |
| orderflow-PaymentDB-changelog | PaymentRecord (changelog)     | Faust           | Faust recovery  |
"""

from __future__ import annotations

__all__ = [
    "APP_ID",
    "DEAD_LETTERS",
    "DLQ_HEADER_ERROR",
    "DLQ_HEADER_FAILED_AT",
    "DLQ_HEADER_OFFSET",
    "DLQ_HEADER_PARTITION",
    "DLQ_HEADER_REASON",
    "DLQ_HEADER_TOPIC",
    "INPUT_TOPICS",
    "ORDER_COMMANDS",
    "ORDER_CREATED",
    "PAYMENT_COMPLETED",
    "PAYMENT_FAILED",
    "PAYMENT_RECONCILE",
    "TOKEN_TOPICS",
    "all_topic_names",
    "changelog_topic",
]

APP_ID = "orderflow"

ORDER_COMMANDS = "orderflow.order-commands"
ORDER_CREATED = "order.created"
PAYMENT_COMPLETED = "payment.completed"
PAYMENT_FAILED = "payment.failed"
PAYMENT_RECONCILE = "orderflow.payment-reconcile"
DEAD_LETTERS = "orderflow.dead-letters"

# Topics that carry work into an agent (re-publishing into one re-runs side effects).
INPUT_TOPICS = (ORDER_COMMANDS, ORDER_CREATED, PAYMENT_COMPLETED, PAYMENT_FAILED, PAYMENT_RECONCILE)

# Topics whose records carry payment tokens: the command and ``order.created`` (the charge needs
# the token) and the dead letters (kept byte for byte for a redrive). The worker creates them
# with ``retention.ms`` = ORDERFLOW_TOKEN_TOPIC_RETENTION (7 days by default; the dead letters:
# ORDERFLOW_DEAD_LETTER_RETENTION, 30 days), so a token lives there no longer; topics created beforehand by a cluster's operators need it set there. Nothing
# else keeps a token: OrderDB never, PaymentDB only until the payment is settled.
TOKEN_TOPICS = frozenset({ORDER_COMMANDS, ORDER_CREATED, DEAD_LETTERS})

# A dead letter keeps the original key and value bytes untouched (so it can be redriven as it
# was); why and where it came from travel in these headers.
DLQ_HEADER_REASON = "orderflow-dlq-reason"
DLQ_HEADER_ERROR = "orderflow-dlq-error-type"
DLQ_HEADER_TOPIC = "orderflow-dlq-source-topic"
DLQ_HEADER_PARTITION = "orderflow-dlq-source-partition"
DLQ_HEADER_OFFSET = "orderflow-dlq-source-offset"
DLQ_HEADER_FAILED_AT = "orderflow-dlq-failed-at"


def changelog_topic(table_name: str) -> str:
    return f"{APP_ID}-{table_name}-changelog"


def all_topic_names() -> list[str]:
    return [*INPUT_TOPICS, DEAD_LETTERS, changelog_topic("OrderDB"), changelog_topic("PaymentDB")]
