"""``POST /orders/{id}/cancel`` and ``POST /orders/{id}/refunds``: ask the order's single writer.

Like ``POST /orders``, neither writes a table: each sends a command (CancelOrder, RefundOrder)
on the command topic, keyed by the order id, after the order's PlaceOrder, and waits in process
until the order service has decided it. The request is served by the worker that owns the
order's partition (any other forwards it), which reads the decision from the order service
(``CommandAnswers``) and the order as stored. Durable but not decided in time: 202, and the
same request again answers the decision (cancel is idempotent; a refund's ``Idempotency-Key``
names the refund). A worker that cannot reach the owner answers 503: retry, nothing is lost.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from typing import Protocol

from orderflow.domain.events import CancelOrder, RefundOrder
from orderflow.domain.order import Answer, Order
from orderflow.domain.refund import refund_id_for
from orderflow.domain.responses import order_to_public, refund_to_public
from orderflow.domain.validation import (
    Problem,
    validate_cancel_request,
    validate_refund_request,
)
from orderflow.ports import HttpRequest
from orderflow.web.auth import Caller
from orderflow.web.orders import (
    ApiResponse,
    OrderApi,
    command_time,
    is_order_id,
    key_problems,
    problems_response,
    send_confirmed,
    unavailable,
)
from orderflow.web.routing import NotReady
from orderflow.wire import encode_event

__all__ = ["AnswerReader", "OrderChanges"]

log = logging.getLogger(__name__)

# What builds the command for a stored order: (order, request id, time) -> command.
BuildCommand = Callable[[Order, str, str], CancelOrder | RefundOrder]
# How a decision is answered: (decision, the order as stored now) -> the response.
Render = Callable[["Decision", Order], ApiResponse]


class Decision(Protocol):
    """What the order service recorded for one command (``agents.orders.CommandAnswer``)."""

    @property
    def answer(self) -> Answer: ...
    @property
    def reason(self) -> str: ...
    @property
    def field(self) -> str: ...


class AnswerReader(Protocol):
    """The order service's answers to cancel and refund commands, by request id."""

    def get(self, request_id: str) -> Decision | None: ...


class OrderChanges:
    """The HTTP behaviour of cancels and refunds, over the order API's routing and reading."""

    def __init__(self, api: OrderApi, answers: AnswerReader) -> None:
        self.api = api
        self.answers = answers

    async def cancel(self, request: HttpRequest, order_id: str) -> ApiResponse:
        read = await self.api.caller_and_body(request, optional_body=True)
        if isinstance(read, ApiResponse):
            return read
        caller, body = read
        validated = validate_cancel_request(body)
        if isinstance(validated, list):
            return problems_response(400, "invalid_request", validated)

        def build(order: Order, request_id: str, at: str) -> CancelOrder:
            return CancelOrder(order.order_id, request_id, validated.reason, at, caller.client_id)

        return await self._change(request, order_id, caller, build, _cancel_answer)

    async def refund(self, request: HttpRequest, order_id: str) -> ApiResponse:
        read = await self.api.caller_and_body(request, optional_body=False)
        if isinstance(read, ApiResponse):
            return read
        caller, body = read
        key = request.headers.get("Idempotency-Key")
        problems: list[Problem] = key_problems(key)
        if key is None:
            problems.append(
                Problem("Idempotency-Key", "missing", "a refund needs one: it names the refund")
            )
        validated = validate_refund_request(body)
        if isinstance(validated, list):
            problems.extend(validated)
        if problems or key is None or isinstance(validated, list):
            return problems_response(400, "invalid_request", problems)
        canonical = {
            "amount": validated.amount,
            "currency": validated.currency,
            "reason": validated.reason,
        }
        fingerprint = hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()
        refund_id = refund_id_for(order_id, key)

        def build(order: Order, request_id: str, at: str) -> RefundOrder:
            return RefundOrder(
                order.order_id,
                refund_id,
                validated.amount,
                validated.currency or order.currency,
                request_id,
                fingerprint,
                validated.reason,
                at,
                caller.client_id,
            )

        def render(decision: Decision, order: Order) -> ApiResponse:
            return _refund_answer(decision, order, refund_id)

        return await self._change(request, order_id, caller, build, render)

    async def _change(
        self,
        request: HttpRequest,
        order_id: str,
        caller: Caller,
        build: BuildCommand,
        render: Render,
    ) -> ApiResponse:
        api = self.api
        if not is_order_id(order_id):
            return _not_found(order_id)
        try:
            answered = await api.at_owner(request, order_id, caller)
            if answered is not None:
                return answered
        except NotReady as exc:
            return unavailable(f"{exc}; retry: nothing was changed")
        order: Order | ApiResponse | None = api.visible(api.orders.get(order_id), caller)
        if order is None:  # (a cancel right after the order's 202: not stored yet)
            order = await self._absent(order_id, caller)
        if isinstance(order, ApiResponse):
            return order
        request_id = str(uuid.uuid4())
        command = build(order, request_id, command_time()[0])
        if not await self._send_durably(order_id, encode_event(command)):
            return unavailable(
                "the broker did not confirm the request in time; the same request again is safe"
            )
        decision = await api.watch.wait_for(
            order_id,
            lambda: self.answers.get(request_id),
            lambda answer: answer is not None or not api.routing.owns(order_id),
            api.store_wait_s,
        )
        current = api.visible(api.orders.get(order_id), caller)
        if decision is None or current is None:  # not decided in time, or moved away meanwhile
            return _accepted(order_id)
        return render(decision, current)

    async def _absent(self, order_id: str, caller: Caller) -> Order | ApiResponse:
        """The order, once read (its POST was answered a moment ago), or what a GET answers:
        503 while its POST is unconfirmed or the owner has not read every command, 404 after."""
        found = await self.api.not_stored(order_id, caller)
        if isinstance(found, ApiResponse) and found.status == 202:  # in Kafka, not stored yet
            return unavailable("the order is accepted but not stored yet; retry: nothing changed")
        return found

    async def _send_durably(self, order_id: str, command: bytes) -> bool:
        """Send the command and wait for the broker's ack (acks=all), within the POST wait."""
        return await send_confirmed(
            self.api.commands,
            order_id.encode(),
            command,
            self.api.post_wait_s,
            f"command for {order_id}",
        )


def _not_found(order_id: str) -> ApiResponse:
    return ApiResponse(404, {"error": "not_found", "order_id": order_id})


def _accepted(order_id: str) -> ApiResponse:
    body = {
        "order_id": order_id,
        "status": "ACCEPTED",
        "message": "accepted durably; not decided yet: the same request again answers it",
    }
    return ApiResponse(202, body, {"Location": f"/orders/{order_id}", "Retry-After": "1"})


def _conflict(order: Order, reason: str) -> ApiResponse:
    body = {
        "error": "conflict",
        "message": reason,
        "order_id": order.order_id,
        "status": str(order.status),
    }
    return ApiResponse(409, body)


def _replayed(decision: Decision) -> dict[str, str]:
    return {"Idempotent-Replayed": "true"} if decision.answer is Answer.REPLAYED else {}


def _cancel_answer(decision: Decision, order: Order) -> ApiResponse:
    if decision.answer is Answer.REFUSED:
        return _conflict(order, decision.reason)
    return ApiResponse(200, order_to_public(order), _replayed(decision))


def _refund_answer(decision: Decision, order: Order, refund_id: str) -> ApiResponse:
    if decision.answer is Answer.CONFLICT:
        reused = Problem("Idempotency-Key", "reused", f"{decision.reason}; nothing was changed")
        return problems_response(422, "idempotency_key_reused", [reused])
    if decision.answer is Answer.REFUSED:
        if decision.field:
            problem = Problem(decision.field, "range", decision.reason)
            return problems_response(422, "invalid_request", [problem])
        return _conflict(order, decision.reason)
    refund = order.refund(refund_id)
    if refund is None:  # (the order moved on meanwhile: another worker's now)
        return _accepted(order.order_id)
    body = {"refund": refund_to_public(refund), "order": order_to_public(order)}
    status = 201 if decision.answer is Answer.ACCEPTED else 200
    headers = {"Location": f"/orders/{order.order_id}", **_replayed(decision)}
    return ApiResponse(status, body, headers)
