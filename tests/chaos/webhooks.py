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
from tests.chaos.availability import percentile
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
        return [order_id for order_id in self.finals if self.missing_sequences(order_id)]

    def missing_sequences(self, order_id: str) -> list[int]:
        seen = self.events.get(order_id)
        return sorted(set(range(1, max(seen) + 1)) - set(seen)) if seen else []

    def gap_story(self, order_id: str) -> dict[str, Any]:
        """For a result file's example: each missing event's POSTs (answer, attempt, when)."""
        missing = self.missing_sequences(order_id)
        posts: dict[int, list[str]] = defaultdict(list)
        for received in self.received:
            event = received.event
            if event["data"]["order"]["order_id"] == order_id and event["sequence"] in missing:
                number = received.headers.get("Orderflow-Delivery-Attempt")
                posts[event["sequence"]].append(
                    f"{received.answered} #{number} at {received.at:.1f}"
                )
        return {"missing": missing, "posts": {str(k): v for k, v in posts.items()}}

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
            "webhook_duplicates_by_cause": self.duplicate_causes(),
            "webhook_orders_final_state_delivered": len(self.finals) - len(self.undelivered()),
        }

    def duplicate_causes(self) -> dict[str, Any]:
        """How the duplicates came about. Each second acceptance of an event: whether it
        carried the same attempt number as the first (its sender did not know of the first:
        another worker, or one that forgot its POST) or a later one (the first's outcome
        not applied when it was sent again), and the seconds between the two."""
        first: dict[str, Received] = {}
        same = later = 0
        gaps: list[float] = []
        for received in sorted(self.received, key=lambda r: r.at):
            if received.answered != 200:
                continue
            event_id = received.headers.get("Orderflow-Event-Id", "?")
            earlier = first.setdefault(event_id, received)
            if earlier is received:
                continue
            number = received.headers.get("Orderflow-Delivery-Attempt")
            same += number == earlier.headers.get("Orderflow-Delivery-Attempt")
            later += number != earlier.headers.get("Orderflow-Delivery-Attempt")
            gaps.append(received.at - earlier.at)
        return {
            "same_attempt": same,
            "later_attempt": later,
            **{
                f"gap_s_p{p}": round(percentile(gaps, p), 1) if gaps else None for p in (10, 50, 90)
            },
        }

    def failures(self) -> dict[str, list[str]]:
        found = {
            "webhook_final_state_not_delivered": self.undelivered(),
            "webhook_event_missing": self.gaps(),
            "webhook_bad_signature": self.bad_signatures(),
        }
        return {name: ids[:20] for name, ids in found.items() if ids}
