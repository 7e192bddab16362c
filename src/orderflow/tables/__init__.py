"""State kept by the agents: OrderDB and PaymentDB, changelog-backed Faust tables keyed by order id.

Values are JSON bytes (``orderflow.wire.tables``) so a changelog is readable with any Kafka tool.
WebhookDB (order id -> OrderWebhooks) likewise. All three are co-partitioned with the order topics: entry ``k`` of either table lives on the
partition that ``k``'s events arrive on.
"""

from orderflow.domain.order import Order
from orderflow.domain.payment import PaymentRecord
from orderflow.domain.webhooks import OrderWebhooks
from orderflow.faust_glue import bind_event
from orderflow.tables.base import JsonTable
from orderflow.topics import ORDER_TABLE, PAYMENT_TABLE, WEBHOOK_TABLE
from orderflow.wire import order_from_bytes, order_to_bytes, payment_from_bytes, payment_to_bytes
from orderflow.wire.webhooks import webhooks_from_bytes, webhooks_to_bytes

__all__ = ["OrderTable", "PaymentTable", "WebhookTable", "bind_event"]


class OrderTable(JsonTable[Order]):
    """The ``OrderDB`` Faust table (order id -> Order), written by the order service only."""

    NAME = ORDER_TABLE
    HELP = "Orders by id, owned by the order service."
    encode, decode = staticmethod(order_to_bytes), staticmethod(order_from_bytes)


class PaymentTable(JsonTable[PaymentRecord]):
    """The ``PaymentDB`` Faust table (order id -> PaymentRecord), written by the payment service."""

    NAME = PAYMENT_TABLE
    HELP = "Payment attempts by order id, owned by the payment service."
    encode, decode = staticmethod(payment_to_bytes), staticmethod(payment_from_bytes)


class WebhookTable(JsonTable[OrderWebhooks]):
    """The ``WebhookDB`` Faust table (order id -> OrderWebhooks), written by the order service
    only: the events of an order's changes and their deliveries to its client's endpoints."""

    NAME = WEBHOOK_TABLE
    HELP = "Webhook events and deliveries by order id, owned by the order service."
    encode, decode = staticmethod(webhooks_to_bytes), staticmethod(webhooks_from_bytes)
