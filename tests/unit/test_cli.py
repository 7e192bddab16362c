"""The ``orderflow`` command: one click group over the one list of subcommands."""

from __future__ import annotations

import click
import pytest

from orderflow.cli import COMMANDS, main, orderflow


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_listed_command_resolves_to_a_command(name: str) -> None:
    with click.Context(orderflow) as ctx:
        command = orderflow.get_command(ctx, name)
    assert isinstance(command, click.Command)
    assert command.name == name


def test_the_help_lists_every_command_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    listing = capsys.readouterr().out.split("Commands:")[1]
    assert [line.split()[0] for line in listing.strip().splitlines()] == list(COMMANDS)


def test_arguments_reach_an_argparse_command_untouched(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["kafka", "--help"])  # argparse's own --help, not click's
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("usage: orderflow kafka")


def test_a_usage_error_of_a_debugging_command_is_status_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["replay", "--capture", "f.db", "--dry-run"]) == 2
    assert "--capture and --dry-run cannot be combined" in capsys.readouterr().err
