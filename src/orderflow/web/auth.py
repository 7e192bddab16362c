"""Who is calling: an API key (``Authorization: Bearer``), or a worker forwarding on a client's
behalf (signed with the cluster secret), and the ids that client's Idempotency-Keys name.

A forwarded request is believed only with a valid, fresh signature over its method, path and
query, client id and body: a client sending the forwarding headers itself gains nothing (its
request is an ordinary one: it needs its own key). This replaces the old peer-address check
(``is_worker_peer``), which trusted any process on a worker's host and any client behind the
same NAT or proxy as a worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from orderflow.config import ConfigError, Settings
from orderflow.domain.auth import (
    ApiKeys,
    KeysFileError,
    bearer_token,
    sign_forward,
    verify_forward,
)

__all__ = [
    "CLIENT_HEADER",
    "FORWARDED_HEADER",
    "MIN_SECRET_BYTES",
    "Authenticator",
    "Caller",
]

log = logging.getLogger(__name__)

FORWARDED_HEADER = "X-Orderflow-Forwarded"  # "<timestamp> <signature>"
CLIENT_HEADER = "X-Orderflow-Client"  # the client the forwarding worker authenticated
MIN_SECRET_BYTES = 32
# Ids of an unauthenticated development setup (ORDERFLOW_API_AUTH=none without a secret).
_DEVELOPMENT_SECRET = b"orderflow-development-only-not-a-secret"


@dataclass(frozen=True)
class Caller:
    """An authenticated request: its client ("" when auth is none) and whether a worker
    forwarded it (signed) on that client's behalf."""

    client_id: str
    forwarded: bool = False


class Authenticator:
    """API keys and forwarding signatures; ``keys`` None: authentication is off."""

    def __init__(
        self,
        keys: ApiKeys | None,
        secret: bytes,
        open_endpoints: tuple[str, ...] = (),
        problem: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.secret = secret
        self.open_endpoints = frozenset(open_endpoints)
        self.problem = problem  # why a worker must not start with this configuration
        self.clock = clock

    @property
    def enabled(self) -> bool:
        return self.keys is not None

    @classmethod
    def disabled(cls, secret: bytes = _DEVELOPMENT_SECRET) -> Authenticator:
        return cls(None, secret, ("health", "metrics", "openapi", "ready"))

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        """Never raises: a configuration that cannot work is kept in ``problem`` and refused
        when the worker starts (``check``), so that CLI commands importing the app still run."""
        secret = settings.cluster_secret.encode()
        if settings.api_auth == "none":
            return cls(None, secret or _DEVELOPMENT_SECRET, settings.open_endpoints)
        problems = []
        keys: ApiKeys | None = ApiKeys(())
        if settings.api_keys_file is None:
            problems.append(
                "ORDERFLOW_API_KEYS_FILE is not set (lines 'client_id sha256:<hex>', "
                "made by `orderflow api-key new CLIENT_ID`), or set "
                "ORDERFLOW_API_AUTH=none for development"
            )
        else:
            try:
                text = settings.api_keys_file.read_text()
                keys = ApiKeys.parse(text.splitlines())
            except OSError as exc:
                problems.append(f"ORDERFLOW_API_KEYS_FILE={settings.api_keys_file}: {exc.strerror}")
            except KeysFileError as exc:
                problems.append(f"ORDERFLOW_API_KEYS_FILE={settings.api_keys_file}: {exc}")
        if len(secret) < MIN_SECRET_BYTES:
            problems.append(
                f"ORDERFLOW_CLUSTER_SECRET must be at least {MIN_SECRET_BYTES} "
                "bytes, the same on every worker (e.g. `openssl rand -hex 32`)"
            )
        return cls(keys, secret, settings.open_endpoints, "; ".join(problems) or None)

    def check(self) -> None:
        """Refuse to serve with a configuration that cannot work (fail closed)."""
        if self.problem is not None:
            raise ConfigError(self.problem)
        if not self.enabled:
            log.warning(
                "ORDERFLOW_API_AUTH=none: the API is OPEN, any caller can place and read "
                "any order; for development only"
            )

    def is_open(self, endpoint: str) -> bool:
        return not self.enabled or endpoint in self.open_endpoints

    def caller(self, request: Any, body: bytes = b"") -> Caller | None:
        """The caller of ``request`` (``body``: the bytes read, for a signed forward), or None."""
        headers: Mapping[str, str] = request.headers
        signed = headers.get(FORWARDED_HEADER)
        if signed:
            client_id = headers.get(CLIENT_HEADER, "")
            timestamp, _, signature = signed.partition(" ")
            path_qs = str(getattr(request, "raw_path", request.path))
            if verify_forward(
                self.secret,
                request.method,
                path_qs,
                client_id,
                body,
                timestamp,
                signature,
                self.clock(),
            ):
                return Caller(client_id, forwarded=True)
            # Not a worker: the headers are ignored, and the request is an ordinary one.
        if self.keys is None:
            return Caller("")
        client = self.keys.client_for(bearer_token(headers.get("Authorization")))
        return None if client is None else Caller(client)

    def forward_headers(
        self, caller: Caller, method: str, path_qs: str, body: bytes
    ) -> dict[str, str]:
        """The headers that make the owner believe this request comes from a worker."""
        timestamp, signature = sign_forward(
            self.secret, method, path_qs, caller.client_id, body, self.clock()
        )
        return {FORWARDED_HEADER: f"{timestamp} {signature}", CLIENT_HEADER: caller.client_id}
