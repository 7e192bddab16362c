"""State kept by the agents: OrderDB and PaymentDB, changelog-backed Faust tables keyed by order id.

Values are JSON bytes (``orderflow.records``) so a changelog is readable with any Kafka tool.
Both tables are co-partitioned with the order topics: entry ``k`` of either table lives on the
partition that ``k``'s events arrive on.
"""

from orderflow.faust_glue import bind_event
from orderflow.tables.orders import OrderTable
from orderflow.tables.payments import PaymentTable

__all__ = ["OrderTable", "PaymentTable", "bind_event"]
