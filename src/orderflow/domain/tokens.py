"""Payment tokens are secrets: how one is shown (masked) and how it is compared (keyed hash).

A token lets whoever holds it charge the card, so it travels only where a charge needs it (the
PlaceOrder command and ``order.created``, and PaymentDB until the payment is settled). Everything
shown to people (CLI output, logs, dead-letter reasons, admin endpoints) shows ``mask_token``'s
form: enough to tell two tokens apart in an investigation, not enough to charge.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

__all__ = [
    "MASK",
    "SECRET_FIELDS",
    "mask_secrets",
    "mask_text",
    "mask_token",
    "token_digest",
]

MASK = "…"
# JSON fields that hold a payment token wherever orderflow or a gateway writes one.
SECRET_FIELDS = frozenset({"token", "payment_token", "source"})
_SHOWN_TAIL = 3
_MAX_PREFIX = 8  # "tok_", "card_", "pm_": a type prefix, not part of the secret
_MIN_MASKED_LENGTH = 8  # shorter: nothing of it is shown

# `"token": "x"` / `'token': 'x'` (JSON, repr; an unterminated one: a truncated value) and `token=x`.
_FIELD = "|".join(sorted(SECRET_FIELDS))
_QUOTED = re.compile(rf"""(?P<head>(?P<q>["'])(?:{_FIELD})(?P=q)\s*:\s*(?P=q))(?P<tok>[^"'\\]*)""")
_ASSIGNED = re.compile(rf"(?P<head>\b(?:{_FIELD})=)(?P<tok>[A-Za-z0-9_\-{MASK}]+)")
# A token named by no field (a gateway's "No such token: 'tok_…'", a value in a log line): the
# gateways' token prefixes. ``card_`` only before a digit or capital: ``card_declined`` is a
# decline code, ``card_1Nq…`` a card id.
_BARE = re.compile(r"\b(?:tok_|pm_|src_|card_(?=[0-9A-Z]))[A-Za-z0-9_\-]{4,}")


def mask_token(token: str) -> str:
    """``tok_visa`` -> ``tok_…isa``: the type prefix, an ellipsis, the last 3 characters.

    A token too short to hide anything by that rule is masked whole; an empty one stays empty
    (there is nothing to hide, and "no token" is worth seeing), a masked one stays as it is.
    """
    if not token or MASK in token:
        return token  # nothing to hide, or masked already (masking twice changes nothing)
    if len(token) < _MIN_MASKED_LENGTH:
        return MASK
    cut = token.find("_") + 1
    prefix = token[:cut] if 0 < cut <= _MAX_PREFIX else ""
    rest = token[len(prefix) :]
    if len(rest) <= _SHOWN_TAIL:
        return f"{prefix}{MASK}"
    return f"{prefix}{MASK}{rest[-_SHOWN_TAIL:]}"


def mask_text(text: str) -> str:
    """Mask every token in free text (raw values, reasons, messages): written as a known field,
    or bare with a gateway's token prefix."""
    text = _QUOTED.sub(lambda m: m["head"] + mask_token(m["tok"]), text)
    text = _ASSIGNED.sub(lambda m: m["head"] + mask_token(m["tok"]), text)
    return _BARE.sub(lambda m: mask_token(m[0]), text)


def mask_secrets(value: Any) -> Any:
    """A copy of decoded JSON with every token field (at any depth) masked."""
    if isinstance(value, dict):
        return {
            k: mask_token(v) if k in SECRET_FIELDS and isinstance(v, str) else mask_secrets(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def token_digest(token: str, key: bytes) -> str:
    """A keyed hash (HMAC-SHA256) of a token, for comparing without storing it.

    A plain hash of a low-entropy token (``tok_visa``, a short card reference) is reversed by
    trying the candidates; without the key, a stored digest tells nothing.
    """
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


def fingerprint_key(cluster_secret: bytes) -> bytes:
    """The key of ``token_digest`` in stored request fingerprints, derived from the cluster
    secret: the same on every worker that can serve the cluster, and no second secret to keep
    in step (a worker with another key would answer a client's honest retry 422)."""
    return hmac.new(cluster_secret, b"orderflow request fingerprint v1", hashlib.sha256).digest()
