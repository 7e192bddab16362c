"""What a settled payment publishes: PaymentDB's outcome -> ``payment.completed`` or ``.failed``.

Deterministic, no I/O: the payment service publishes this event for a settled record, and
``replay --dry-run`` re-checks recorded events against it (the gateway's answer itself is taken
from the recorded history, never asked again).
"""

from __future__ import annotations

from orderflow.domain.events import PaymentCompleted, PaymentFailed, rfc3339
from orderflow.domain.payment import PaymentRecord, PaymentStatus

__all__ = ["outcome_event"]


def outcome_event(record: PaymentRecord) -> PaymentCompleted | PaymentFailed | None:
    """The event a settled ``record`` publishes; None while it is not settled."""
    at = rfc3339(record.updated_at)
    if record.status is PaymentStatus.COMPLETED and record.charge_id is not None:
        return PaymentCompleted(
            record.order_id, record.amount, record.currency, record.charge_id, at
        )
    if record.status is PaymentStatus.FAILED and record.decline is not None:
        return PaymentFailed(
            record.order_id, record.amount, record.currency, record.decline, at, record.charge_id
        )
    return None
