"""The ``orderflow`` command.

    orderflow worker [faust worker options]     the service (same as faust -A orderflow.app worker)
    orderflow sandbox-gateway --port P --db F   the sandbox payment gateway on its own
    orderflow kafka up|down|status|logs         the local development broker
    orderflow leave-group INSTANCE_ID           a static worker stopped for good leaves the group
    orderflow api-key new CLIENT_ID             an API key for a client (printed once, stored hashed)
    orderflow replay|trace|dlq ...              debugging: re-read events, trace an order,
                                                dead letters (``orderflow.tools.replay``)
    orderflow <any faust command>               e.g. `orderflow agents`, app commands

The worker and app commands are Faust's own CLI with ``-A orderflow.app`` filled in; the sandbox,
Kafka and debugging commands do not import the app (so they start fast and need no worker).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "sandbox-gateway":
        from orderflow.tools.sandbox.gateway import main as sandbox_main

        return sandbox_main(args[1:])
    if args and args[0] == "kafka":
        from orderflow.tools.localkafka import main as kafka_main

        return kafka_main(args[1:])
    if args and args[0] == "leave-group":
        from orderflow.membership import main as leave_main

        return leave_main(args[1:])
    if args and args[0] == "api-key":
        from orderflow.apikeys import main as api_key_main

        return api_key_main(args[1:])
    if args and args[0] in ("replay", "trace", "dlq"):
        from orderflow.tools.replay.cli import main as debug_main

        return debug_main(args)
    from orderflow.config import ConfigError, Settings

    try:
        Settings.from_env()  # the app reads it at import: refuse here, cleanly, not mid-import
    except ConfigError as exc:
        print(f"orderflow: configuration refused: {exc}", file=sys.stderr)
        return 2
    from faust.cli.faust import cli

    try:
        cli.main(args=["-A", "orderflow.app", *args], prog_name="orderflow")
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0
