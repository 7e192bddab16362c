"""The ``orderflow`` command: one click group, each subcommand imported only when it runs.

    orderflow worker [faust worker options]     the service (same as faust -A orderflow.app worker)
    orderflow sandbox-gateway --port P --db F   the sandbox payment gateway on its own
    orderflow kafka up|down|status|logs         the local development broker
    orderflow leave-group INSTANCE_ID           a static worker stopped for good leaves the group
    orderflow api-key new CLIENT_ID             an API key for a client (printed once, stored hashed)
    orderflow replay|trace|dlq ...              debugging: re-read events, trace an order,
                                                dead letters (``orderflow.tools.replay``)
    orderflow <any other faust command>         e.g. `orderflow agents`, app commands

``COMMANDS`` is the one list of them. The worker and Faust's other commands are Faust's own CLI
with ``-A orderflow.app`` filled in; the others never import the app (they start fast and need
no worker). A debugging command returns a coroutine: ``main`` runs it with ``asyncio.run``,
``run_async`` awaits it in the caller's loop (in-process tests).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import click

__all__ = ["COMMANDS", "main", "orderflow", "run_async"]


@dataclass(frozen=True)
class Command:
    """Where a subcommand lives (``module:attr``) and its one-line help (shown without importing).

    ``click``: the target is a click command, parsed by this group; otherwise it is a
    ``main(argv) -> int`` that parses its own arguments.
    """

    target: str
    help: str
    click: bool = False


COMMANDS: dict[str, Command] = {
    "worker": Command("orderflow.cli:faust_main", "The service: Faust's worker for orderflow.app."),
    "sandbox-gateway": Command(
        "orderflow.tools.sandbox.gateway:main", "The sandbox payment gateway on its own."
    ),
    "kafka": Command("orderflow.tools.localkafka:main", "The local development broker."),
    "leave-group": Command(
        "orderflow.membership:main", "A static worker stopped for good leaves the group."
    ),
    "api-key": Command("orderflow.apikeys:main", "An API key for a client (printed once)."),
    "replay": Command(
        "orderflow.tools.replay.cli:replay", "Re-read events (no consumer group).", click=True
    ),
    "trace": Command(
        "orderflow.tools.replay.cli:trace", "One order's history and verdict.", click=True
    ),
    "dlq": Command(
        "orderflow.tools.replay.cli:dlq", "Dead letters: list, show, redrive.", click=True
    ),
}


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def faust_main(args: Sequence[str]) -> int:
    """Faust's CLI with ``-A orderflow.app``: ``args`` from the command name on (``worker ...``)."""
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


def _passing(name: str, run: Callable[[list[str]], int], help: str | None) -> click.Command:
    """A subcommand that hands every argument (``--help`` included) to a ``main(argv)``."""

    def callback(args: tuple[str, ...]) -> int:
        return run(list(args))

    return click.Command(
        name,
        callback=callback,
        params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
        help=help,
        short_help=help,
        add_help_option=False,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )


class _LazyGroup(click.Group):
    """Lists ``COMMANDS`` without importing them; imports one when it is invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = COMMANDS.get(cmd_name)
        if spec is None:  # one of Faust's commands (agents, tables, ...) or the app's
            return _passing(cmd_name, lambda args: faust_main([cmd_name, *args]), None)
        if spec.click:
            command: click.Command = _load(spec.target)
            return command
        run = _load(spec.target)
        if cmd_name == "worker":
            return _passing(cmd_name, lambda args: run(["worker", *args]), spec.help)
        return _passing(cmd_name, run, spec.help)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # From the table: ``orderflow --help`` imports none of the commands.
        with formatter.section("Commands"):
            formatter.write_dl([(name, spec.help) for name, spec in COMMANDS.items()])


@click.group(name="orderflow", cls=_LazyGroup)
def orderflow() -> None:
    """Order processing on Faust and Kafka: the worker, its tools and debugging commands."""


def _invoke(args: Sequence[str], prog_name: str) -> int | Awaitable[int]:
    try:
        result = orderflow.main(args=list(args), prog_name=prog_name, standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        return 1
    if inspect.isawaitable(result):
        return result
    return result if isinstance(result, int) else 0  # --help and click's other early exits


async def run_async(args: Sequence[str], prog_name: str = "orderflow") -> int:
    """``orderflow <args>`` in the running loop (a debugging command is awaited here)."""
    result = _invoke(args, prog_name)
    return await result if not isinstance(result, int) else result


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: parse, run, return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    result = _invoke(args or ["--help"], "orderflow")  # no command: the list, and success
    if isinstance(result, int):
        return result
    try:
        return asyncio.run(_await(result))
    except KeyboardInterrupt:
        return 130


async def _await(result: Awaitable[int]) -> int:
    return await result
