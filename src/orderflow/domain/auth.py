"""API keys and signed forwarding, pure: parsing, hashing, constant-time checks, HMACs.

Keys are ``ofk_`` + 32 random bytes (urlsafe base64); only their SHA-256 is configured (a keys
file line is ``client_id sha256:<hex>``). A request forwarded from one worker to the owner of an
order carries the client id the first worker authenticated and an HMAC (cluster secret) over
the method, path and query, client id, body hash and a timestamp.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "FORWARD_MAX_AGE_S",
    "ApiKeys",
    "KeysFileError",
    "bearer_token",
    "hash_key",
    "new_api_key",
    "sign_forward",
    "verify_forward",
]

FORWARD_MAX_AGE_S = 30.0
_CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}")
_HASH = re.compile(r"sha256:([0-9a-f]{64})")


class KeysFileError(ValueError):
    """A keys file line we cannot use; the message names the line (never a key)."""


def new_api_key() -> str:
    """A fresh API key: 32 random bytes."""
    return "ofk_" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def hash_key(key: str) -> str:
    """How a key is stored: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


@dataclass(frozen=True)
class ApiKeys:
    """The configured clients: (key digest, client id) pairs."""

    entries: tuple[tuple[bytes, str], ...]

    @classmethod
    def parse(cls, lines: Iterable[str]) -> ApiKeys:
        """Parse ``client_id sha256:<hex>`` lines; ``#`` starts a comment; blank lines skipped."""
        entries: list[tuple[bytes, str]] = []
        seen: set[bytes] = set()
        for number, line in enumerate(lines, 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            parts = text.split()
            if len(parts) != 2 or not _CLIENT_ID.fullmatch(parts[0]):
                raise KeysFileError(f"line {number}: expected 'client_id sha256:<64 hex>'")
            match = _HASH.fullmatch(parts[1])
            if match is None:
                raise KeysFileError(f"line {number}: the key must be given as sha256:<64 hex>")
            digest = bytes.fromhex(match.group(1))
            if digest in seen:
                raise KeysFileError(f"line {number}: the same key is configured twice")
            seen.add(digest)
            entries.append((digest, parts[0]))
        return cls(tuple(entries))

    def client_for(self, key: str | None) -> str | None:
        """The client a presented key belongs to, or None; every entry compared, in constant
        time (no early exit tells how close a guess was)."""
        if key is None:
            return None
        digest = hashlib.sha256(key.encode()).digest()
        found: str | None = None
        for stored, client_id in self.entries:
            if hmac.compare_digest(stored, digest):
                found = client_id
        return found


def _forward_mac(
    secret: bytes, method: str, path_qs: str, client_id: str, body: bytes, timestamp: str
) -> str:
    body_hash = hashlib.sha256(body).hexdigest()
    message = "\n".join((method.upper(), path_qs, client_id, body_hash, timestamp))
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


def sign_forward(
    secret: bytes, method: str, path_qs: str, client_id: str, body: bytes, now: float
) -> tuple[str, str]:
    """(timestamp, signature) for a request forwarded on behalf of ``client_id``."""
    timestamp = f"{now:.3f}"
    return timestamp, _forward_mac(secret, method, path_qs, client_id, body, timestamp)


def verify_forward(
    secret: bytes,
    method: str,
    path_qs: str,
    client_id: str,
    body: bytes,
    timestamp: str,
    signature: str,
    now: float,
    max_age_s: float = FORWARD_MAX_AGE_S,
) -> bool:
    """True for a signature made with ``secret`` over this request less than ``max_age_s`` ago."""
    try:
        sent = float(timestamp)
    except ValueError:
        return False
    if not abs(now - sent) <= max_age_s:  # also refuses nan
        return False
    expected = _forward_mac(secret, method, path_qs, client_id, body, timestamp)
    return hmac.compare_digest(expected.encode(), signature.encode())
