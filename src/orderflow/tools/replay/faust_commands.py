"""The debugging commands under Faust's CLI: ``faust -A orderflow.app replay|trace|dlq ...``.

``register_commands(app)`` declares one Faust app command per name. Each forwards its arguments
untouched to the click commands in ``orderflow.tools.replay.cli``, so both spellings accept the same
options and print the same output. Nothing here starts the app: the commands read Kafka with
their own consumer, outside any group.
"""

from __future__ import annotations

from typing import Any

import click
from faust.cli import argument

__all__ = ["register_commands"]

_HELP = {
    "replay": "Re-read events by time window or offsets (no consumer group); see --help.",
    "trace": "One order's history on every orderflow topic, with a verdict; see --help.",
    "dlq": "Dead letters: list, show, redrive; see --help.",
}


def _make_handler(name: str) -> Any:
    async def handler(self: Any, args: tuple[str, ...]) -> None:
        from orderflow.tools.replay.cli import run_async

        prog = self.prog_name or "faust"
        if getattr(self.state, "app", None):
            prog += f" -A {self.state.app}"  # usage lines then show a command that works
        code = await run_async([name, *args], prog_name=prog)
        if code:
            # Faust's runner turns SystemExit into the process exit status.
            raise SystemExit(code)

    handler.__name__ = handler.__qualname__ = name  # Faust names the command after it
    handler.__doc__ = _HELP[name]
    return handler


def register_commands(app: Any) -> None:
    """Add the ``replay``, ``trace`` and ``dlq`` commands to ``app``'s Faust CLI."""
    for name in _HELP:
        command = app.command(argument("args", nargs=-1, type=click.UNPROCESSED))(
            _make_handler(name)
        )
        # Every option belongs to our click command, --help included: let click pass them
        # through instead of rejecting them as unknown options of the wrapper.
        command._click.context_settings["ignore_unknown_options"] = True
        command._click.add_help_option = False
