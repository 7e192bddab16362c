"""The dead-letter topic: events no agent could process, kept byte for byte, with the reason."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiokafka.errors import KafkaError, KafkaTimeoutError
from faust.exceptions import ProducerSendError

from orderflow.domain.backoff import Backoff
from orderflow.domain.errors import (
    ChargeMismatchError,
    DomainError,
    PaymentTokenGoneError,
    RefundMismatchError,
)
from orderflow.domain.events import rfc3339
from orderflow.domain.tokens import mask_text
from orderflow.ports import Handler, InboundEvent, InboundMessage, RecordSink
from orderflow.wire import dead_letters as header

__all__ = ["DeadLetters", "is_retriable"]

log = logging.getLogger(__name__)

# Sending again while the broker is away: 0.1 s doubling to 5 s, no jitter (one sender per agent).
_SEND_AGAIN = Backoff(base=0.1, cap=5.0)


def is_retriable(exc: BaseException) -> bool:
    """Whether sending again can succeed: the broker or the topic's metadata may come back.

    Faust wraps errors raised while enqueuing (``ProducerSendError``); delivery errors come
    bare. A record too large for the topic, a refused authorization or an invalid topic never
    succeed; a timeout (broker away, topic not there yet) may.
    """
    cause = exc.__cause__ if isinstance(exc, ProducerSendError) and exc.__cause__ else exc
    if isinstance(cause, KafkaTimeoutError):
        return True
    if isinstance(cause, KafkaError):
        return bool(cause.retriable)
    return True  # not a Kafka verdict (producer restarting...): keep trying, /health shows it


class DeadLetters:
    """Sends a failed event to the dead-letter topic; the agent then moves on."""

    def __init__(
        self,
        topic: RecordSink,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        before_send: Callable[[], None] | None = None,
        on_sent: Callable[[str], None] | None = None,
    ) -> None:
        self.topic = topic
        self.sleep = sleep
        # Called first; may raise to refuse the dead letter (the worker's fence: see app.py).
        self.before_send = before_send
        self.count = 0
        # Dead letters the broker refused for good (logged with their coordinates): the last
        # resort, so that one unsendable record never stalls every partition of an agent.
        self.undeliverable = 0
        self.on_sent = on_sent  # (reason) the app's metrics

    async def send(
        self, event: InboundEvent, reason: str, error: BaseException | None = None
    ) -> None:
        """Park ``event`` (its key and value untouched) with ``reason``; retried until Kafka
        takes it, except what the broker refuses for good (logged and counted)."""
        if self.before_send is not None:
            self.before_send()
        message = event.message
        # A reason can quote what failed (a value, a gateway message): never a raw token.
        reason = mask_text(reason)
        log.warning(
            "dead-lettering %s[%s]@%s: %s", message.topic, message.partition, message.offset, reason
        )
        headers = header.dead_letter_headers(
            reason=reason,
            error_type=type(error).__name__ if error else "",
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            failed_at=rfc3339(time.time()),
            original=message.headers or (),
        )
        attempt = 0
        while True:  # a dead letter is the only copy of a failed event: it must reach Kafka
            try:
                delivery = await self.topic.send(
                    key=message.key, value=message.value, headers=headers
                )
                await delivery
                break
            except (KafkaError, ProducerSendError) as exc:
                if not is_retriable(exc):
                    self._give_up(message, headers, reason, exc)
                    return
                delay = _SEND_AGAIN.delay(attempt)
                log.error("dead letter not delivered (%r); retrying in %.1fs", exc, delay)
                await self.sleep(delay)
                attempt += 1
        self.count += 1
        if self.on_sent is not None:
            self.on_sent(reason)

    def _give_up(
        self,
        message: InboundMessage,
        headers: list[tuple[str, bytes]],
        reason: str,
        exc: BaseException,
    ) -> None:
        """Log where the event was and how big (never its bytes: they may hold a payment token)."""
        self.undeliverable += 1
        log.error(
            "dead letter given up, the broker refuses it for good (%r): %s[%s]@%s, key %d bytes, "
            "value %d bytes, headers %d bytes; reason: %s",
            exc,
            message.topic,
            message.partition,
            message.offset,
            len(message.key or b""),
            len(message.value or b""),
            sum(len(k) + len(v) for k, v in headers),
            reason[:300],
        )

    async def guard(self, event: InboundEvent, handle: Handler) -> None:
        """Run ``handle(event)``; whatever it raises parks the event here and the agent goes on.

        An exception escaping an agent's loop would ack and skip the event (Faust), losing it.
        Except a send the broker may still take (it is away): the event is fine, so the handler
        (idempotent) runs again until it goes through; ``/health`` tells if that lasts.
        """
        attempt = 0
        while True:
            try:
                await handle(event)
                return
            except (ChargeMismatchError, RefundMismatchError) as exc:  # money disagrees: alert
                await self.send(event, f"inconsistent: {exc}", exc)
                return
            except PaymentTokenGoneError as exc:  # nothing to charge with: an operator must
                await self.send(event, str(exc), exc)
                return
            except DomainError as exc:  # malformed or contradictory input: the data is the problem
                await self.send(event, f"malformed: {exc}", exc)
                return
            except (KafkaError, ProducerSendError) as exc:
                message = event.message
                if is_retriable(exc):
                    delay = _SEND_AGAIN.delay(attempt)
                    log.warning(
                        "handler could not send on %s[%s]@%s (%r); again in %.1fs",
                        message.topic,
                        message.partition,
                        message.offset,
                        exc,
                        delay,
                    )
                    await self.sleep(delay)
                    attempt += 1
                    continue
                log.exception(
                    "handler failed on %s[%s]@%s", message.topic, message.partition, message.offset
                )
                await self.send(event, f"unexpected: {exc!r}", exc)
                return
            except Exception as exc:  # a bug must not stop the partition
                message = event.message
                log.exception(
                    "handler failed on %s[%s]@%s", message.topic, message.partition, message.offset
                )
                await self.send(event, f"unexpected: {exc!r}", exc)
                return
