"""The topics that carry payment tokens are created with their retention.ms (issue 9)."""

from __future__ import annotations

from types import SimpleNamespace

from orderflow.faust_glue import topic_retention_ms
from orderflow.topics import DEAD_LETTERS, ORDER_COMMANDS, ORDER_CREATED, PAYMENT_COMPLETED

_DAY = 86400


def test_the_dead_letters_get_their_own_retention_the_commands_the_token_one() -> None:
    app = SimpleNamespace(token_retention_s=float(_DAY), dead_letter_retention_s=30.0 * _DAY)
    assert topic_retention_ms(app, DEAD_LETTERS) == 30 * _DAY * 1000
    assert topic_retention_ms(app, ORDER_COMMANDS) == _DAY * 1000
    assert topic_retention_ms(app, ORDER_CREATED) == _DAY * 1000
    assert topic_retention_ms(app, PAYMENT_COMPLETED) is None
