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


def _command_paths() -> list[tuple[str, ...]]:
    """Every group and command below `vpo`, as the words that name it."""
    import click

    paths: list[tuple[str, ...]] = []

    def walk(group: click.Group, prefix: tuple[str, ...]) -> None:
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None
            paths.append((*prefix, name))
            if isinstance(command, click.Group):
                walk(command, (*prefix, name))

    walk(cli, ())
    return paths


def test_every_short_help_fits_an_80_column_terminal() -> None:
    groups = [()] + [p for p in _command_paths() if p in {("stats",), ("samples",)}]
    assert ("samples",) in groups and ("stats",) in groups
    for group in groups:
        result = CliRunner().invoke(cli, [*group, "--help"], env={"COLUMNS": "80"})
        assert result.exit_code == 0
        listing = result.stdout.split("Commands:")[1].splitlines()
        assert listing, group
        for line in listing:
            assert not line.rstrip().endswith(("...", "…")), (group, line)
            assert len(line) <= 80


def test_every_command_and_group_accepts_db_before_or_after_its_name() -> None:
    paths = _command_paths()
    assert ("stats", "summary") in paths and ("samples", "make") in paths
    for path in paths:
        result = CliRunner().invoke(cli, [*path, "--db", "x.db", "--help"])
        assert result.exit_code == 0, (path, result.stderr)


def test_stats_detail_help_offers_only_the_formats_it_has() -> None:
    result = CliRunner().invoke(cli, ["stats", "detail", "--help"])
    assert result.exit_code == 0
    assert "[table|json]" in result.stdout and "csv" not in result.stdout.lower()
    assert "unique start" in result.stdout  # a prefix of the id is enough
