"""Webhooks in the chaos run: a receiver that fails a share of POSTs at random and goes down
for a window of the load, registered before the load; after the drain, every accepted order's
final state must have reached it, signed, with no event of the order missing."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orderflow.domain.webhooks import SIGNATURE_HEADER, verify
from tests.harness import auth_headers, http_json
from tests.webhook_receiver import Received, WebhookReceiver

__all__ = ["FAIL_RATE", "WebhookCheck", "receiver_outage", "register"]

# Share of POSTs the receiver refuses (503) at random, besides its outage window.
FAIL_RATE = 0.1
# The outage: from this share of the load's duration, for this share.
OUTAGE_FROM, OUTAGE_FOR = 0.3, 0.15


def register(worker_url: str, receiver_url: str, deadline_s: float = 60.0) -> str:
    """Register the receiver for the load's client; its secret."""
    deadline = time.monotonic() + deadline_s
    while True:
        status, body, _ = http_json(
            "POST", f"{worker_url}/webhooks", {"url": receiver_url}, auth_headers(), timeout=10
        )
        if status == 201:
            return str(body["secret"])
        if time.monotonic() > deadline:
            raise RuntimeError(f"POST /webhooks kept failing: {status} {body}")
        time.sleep(0.5)


async def receiver_outage(receiver: WebhookReceiver, load_seconds: float) -> dict[str, Any]:
    """Take the receiver down for its window of the load (a fault of its own)."""
    await asyncio.sleep(load_seconds * OUTAGE_FROM)
    receiver.failing = True
    began = time.monotonic()
    try:
        await asyncio.sleep(load_seconds * OUTAGE_FOR)
    finally:
        receiver.failing = False
    return {"down_s": round(time.monotonic() - began, 1)}


def _final_key(state: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """What identifies an order's final public state: status, refunded, updated_at."""
    return (state.get("status"), state.get("refunded", 0), state.get("updated_at"))


@dataclass
class WebhookCheck:
    """The receiver's POSTs judged against the orders' final states (OrderDB's changelog)."""

    received: list[Received]
    secret: str
    finals: dict[str, dict[str, Any]]  # accepted order id -> its last OrderDB value
    now: Callable[[], float] = time.time
    events: dict[str, dict[int, dict[str, Any]]] = field(init=False)

    def __post_init__(self) -> None:
        self.events = defaultdict(dict)
        for received in self.received:
            if received.answered == 200:
                event = received.event
                self.events[event["data"]["order"]["order_id"]][event["sequence"]] = event

    def undelivered(self) -> list[str]:
        """Accepted orders whose final state no accepted POST carried."""
        missing = []
        for order_id, final in self.finals.items():
            delivered = {_final_key(e["data"]["order"]) for e in self.events[order_id].values()}
            if _final_key(final) not in delivered:
                missing.append(order_id)
        return missing

    def gaps(self) -> list[str]:
        """Orders with an event sequence number never delivered (an event lost)."""
        return [
            order_id
            for order_id in self.finals
            if (seen := self.events.get(order_id)) and sorted(seen) != list(range(1, max(seen) + 1))
        ]

    def bad_signatures(self) -> list[str]:
        now = self.now()
        return [
            r.headers.get("Orderflow-Event-Id", "?")
            for r in self.received
            if not verify(self.secret, r.headers.get(SIGNATURE_HEADER, ""), r.body, now, 3600)
        ]

    def figures(self) -> dict[str, Any]:
        accepted = [r for r in self.received if r.answered == 200]
        ids = [r.headers.get("Orderflow-Event-Id") for r in accepted]
        return {
            "webhook_posts": len(self.received),
            "webhook_posts_refused_by_receiver": len(self.received) - len(accepted),
            "webhook_events_delivered": len(set(ids)),
            "webhook_duplicate_deliveries": len(ids) - len(set(ids)),
            "webhook_orders_final_state_delivered": len(self.finals) - len(self.undelivered()),
        }

    def failures(self) -> dict[str, list[str]]:
        found = {
            "webhook_final_state_not_delivered": self.undelivered(),
            "webhook_event_missing": self.gaps(),
            "webhook_bad_signature": self.bad_signatures(),
        }
        return {name: ids[:20] for name, ids in found.items() if ids}
