"""What a settled payment publishes: PaymentDB's outcome -> ``payment.completed`` or ``.failed``;
and a settled refund: ``payment.refunded`` or ``refund.failed``.

Deterministic, no I/O: the payment service publishes this event for a settled record, and
``replay --dry-run`` re-checks recorded events against it (the gateway's answer itself is taken
from the recorded history, never asked again).
"""

from __future__ import annotations

from orderflow.domain.events import (
    PaymentCompleted,
    PaymentFailed,
    PaymentRefunded,
    RefundFailed,
    rfc3339,
)
from orderflow.domain.payment import PaymentRecord, PaymentStatus
from orderflow.domain.refund import RefundAttempt, RefundStatus

__all__ = ["outcome_event", "refund_event"]


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


def refund_event(
    record: PaymentRecord, refund: RefundAttempt
) -> PaymentRefunded | RefundFailed | None:
    """The event a settled ``refund`` of ``record`` publishes; None while it is not settled."""
    at = rfc3339(refund.updated_at)
    common = (record.order_id, refund.refund_id, refund.amount, record.currency)
    if refund.status is RefundStatus.COMPLETED and refund.gateway_refund_id is not None:
        return PaymentRefunded(
            *common, refund.gateway_refund_id, at, refund.compensation, record.charge_id
        )
    if refund.status is RefundStatus.FAILED and refund.decline is not None:
        return RefundFailed(*common, refund.decline, at, refund.compensation)
    return None
