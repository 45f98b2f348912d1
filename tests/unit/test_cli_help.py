from click.testing import CliRunner

from vpo import __version__
from vpo.cli import COMMANDS, cli


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert f"  {name} " in result.stdout


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"vpo, version {__version__}"


def test_unknown_option_is_exit_2() -> None:
    result = CliRunner().invoke(cli, ["scan", "--no-such-option", "."])
    assert result.exit_code == 2
    assert "No such option" in result.stderr
