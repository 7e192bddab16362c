"""Validation of the API's request bodies: every problem at once, each with its field path.

``ORDER_REQUEST`` is the one definition of the body of ``POST /orders`` (``CANCEL_REQUEST``,
``REFUND_REQUEST``: of a cancel and a refund): each validates requests here and renders the
request schema of ``/openapi.json`` (``orderflow.domain.shapes``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orderflow.domain.money import CURRENCY_MINOR_UNITS, MAX_AMOUNT
from orderflow.domain.shapes import Array, Field, Integer, Object, Problem, String, check
from orderflow.domain.webhooks import endpoint_url_problem

__all__ = [
    "CANCEL_REQUEST",
    "MAX_ITEMS",
    "MAX_QUANTITY",
    "ORDER_REQUEST",
    "REFUND_REQUEST",
    "WEBHOOK_ENDPOINT_REQUEST",
    "WEBHOOK_RESEND_REQUEST",
    "CancelRequest",
    "LineItem",
    "OrderRequest",
    "Problem",
    "RefundRequestBody",
    "validate_cancel_request",
    "validate_endpoint_request",
    "validate_order_request",
    "validate_refund_request",
    "validate_resend_request",
]

MAX_ITEMS = 100
MAX_QUANTITY = 10_000
MAX_UNIT_AMOUNT = 10**12
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$"
TOKEN_PATTERN = r"^[A-Za-z0-9_\-]{1,128}$"
_MINOR_UNITS = "must be an integer (minor units, no decimals)"

LINE_ITEM = Object(
    (
        Field("sku", String(ID_PATTERN, description="the product's id")),
        Field("quantity", Integer(1, MAX_QUANTITY, _MINOR_UNITS)),
        Field(
            "unit_amount",
            Integer(
                1, MAX_UNIT_AMOUNT, _MINOR_UNITS, "price of one unit in the currency's minor unit"
            ),
        ),
    ),
    closed=True,  # an unknown member is refused by its path (items[0].colour)
    description="one line of the order",
)

ORDER_REQUEST = Object(
    (
        Field("customer_id", String(ID_PATTERN)),
        Field(
            "currency",
            String(
                allowed=frozenset(CURRENCY_MINOR_UNITS),
                not_allowed=("unknown", "must be a supported ISO 4217 code"),
                description="ISO 4217 code",
            ),
        ),
        Field(
            "items",
            Array(
                LINE_ITEM,
                min_items=1,
                max_items=MAX_ITEMS,
                description=f"the order's total must not exceed {MAX_AMOUNT}",
            ),
        ),
        Field(
            "payment",
            Object(
                (Field("token", String(TOKEN_PATTERN, description="the payment method's token")),),
                closed=True,  # an unknown member is refused (payment.cvc)
            ),
        ),
    ),
    type_message="the body must be a JSON object",
    description="An order to place. The server computes the amount; money is in minor units.",
    examples=(
        {
            "customer_id": "c-1",
            "currency": "EUR",
            "items": [{"sku": "SKU-1", "quantity": 2, "unit_amount": 1999}],
            "payment": {"token": "tok_visa"},
        },
    ),
)


@dataclass(frozen=True)
class LineItem:
    """One line of an order; amounts in the currency's minor unit."""

    sku: str
    quantity: int
    unit_amount: int


@dataclass(frozen=True)
class OrderRequest:
    """A validated request to place an order. ``amount`` is computed here, never sent."""

    customer_id: str
    currency: str
    items: tuple[LineItem, ...]
    payment_token: str

    @property
    def amount(self) -> int:
        return sum(item.quantity * item.unit_amount for item in self.items)


def validate_order_request(body: Any) -> OrderRequest | list[Problem]:
    """Return the request, or every problem found (never only the first)."""
    problems = check(ORDER_REQUEST, body)
    if problems:
        return problems
    items = tuple(LineItem(i["sku"], i["quantity"], i["unit_amount"]) for i in body["items"])
    request = OrderRequest(body["customer_id"], body["currency"], items, body["payment"]["token"])
    # A rule across fields, which the schema cannot say: the total must fit.
    if request.amount > MAX_AMOUNT:
        return [Problem("items", "range", f"the total exceeds {MAX_AMOUNT}")]
    return request


# A reason is shown back (GET, events, trace): printable, bounded, never parsed.
REASON_PATTERN = r"^[^\x00-\x1f\x7f]{0,500}$"
_REASON = Field(
    "reason", String(REASON_PATTERN, description="why, in the client's words"), required=False
)

CANCEL_REQUEST = Object(
    (_REASON,),
    type_message="the body must be a JSON object (or empty)",
    description="Cancel a PENDING order (idempotent). The body is optional.",
    examples=({"reason": "ordered twice"},),
)

REFUND_REQUEST = Object(
    (
        Field(
            "amount",
            Integer(
                1,
                MAX_AMOUNT,
                _MINOR_UNITS,
                "what to give back, in the order's currency's minor unit",
            ),
        ),
        Field(
            "currency",
            String(
                allowed=frozenset(CURRENCY_MINOR_UNITS),
                not_allowed=("unknown", "must be a supported ISO 4217 code"),
                description="the order's currency (checked when given)",
            ),
            required=False,
        ),
        _REASON,
    ),
    type_message="the body must be a JSON object",
    description="Refund part or all of what the order's payment captured. Needs an "
    "Idempotency-Key: the same key and body answer the same refund.",
    examples=({"amount": 500, "currency": "EUR", "reason": "one item returned"},),
)


@dataclass(frozen=True)
class CancelRequest:
    """A validated request to cancel an order."""

    reason: str


@dataclass(frozen=True)
class RefundRequestBody:
    """A validated request to refund ``amount`` of an order (``currency``: None, not given)."""

    amount: int
    currency: str | None
    reason: str


def validate_cancel_request(body: Any) -> CancelRequest | list[Problem]:
    """The cancel request (an absent body: no reason), or every problem found."""
    if body is None:
        return CancelRequest("")
    problems = check(CANCEL_REQUEST, body)
    return problems or CancelRequest(body.get("reason", ""))


def validate_refund_request(body: Any) -> RefundRequestBody | list[Problem]:
    """The refund request, or every problem found."""
    problems = check(REFUND_REQUEST, body)
    if problems:
        return problems
    return RefundRequestBody(body["amount"], body.get("currency"), body.get("reason", ""))


ENDPOINT_ID_PATTERN = r"^we_[0-9a-f]{24}$"
EVENT_ID_PATTERN = r"^evt_[0-9a-f]{24}$"

WEBHOOK_ENDPOINT_REQUEST = Object(
    (
        Field(
            "url",
            String(
                r"^https?://[\x21-\x7e]{1,2040}$",
                description="where each change of the client's orders is POSTed (http or https)",
            ),
        ),
    ),
    type_message="the body must be a JSON object",
    description="Register a webhook endpoint for the calling client's orders.",
    examples=({"url": "https://example.com/orderflow-events"},),
)

WEBHOOK_RESEND_REQUEST = Object(
    (
        Field(
            "event_id",
            String(EVENT_ID_PATTERN, description="only this event's deliveries (else all)"),
            required=False,
        ),
    ),
    type_message="the body must be a JSON object (or empty)",
    description="Send an order's webhook deliveries again. The body is optional.",
    examples=({"event_id": "evt_3f1b2c4d5e6f708192a3b4c5"},),
)


def validate_endpoint_request(body: Any, allow_private: bool) -> str | list[Problem]:
    """The endpoint's URL, or every problem found (``allow_private``: see
    ``endpoint_url_problem``)."""
    problems = check(WEBHOOK_ENDPOINT_REQUEST, body)
    if problems:
        return problems
    url: str = body["url"]
    problem = endpoint_url_problem(url, allow_private)
    if problem is not None:
        return [Problem("url", "refused", problem)]
    return url


def validate_resend_request(body: Any) -> str | list[Problem] | None:
    """The event id to resend (None: all of the order's), or every problem found."""
    if body is None:
        return None
    problems = check(WEBHOOK_RESEND_REQUEST, body)
    if problems:
        return problems
    event_id: str | None = body.get("event_id")
    return event_id
