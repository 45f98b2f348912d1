"""`vpo samples make DIR`: small real media files for trying VPO out."""

import click

from vpo.cli.context import db_option


@click.group()
@db_option  # unused, but accepted on every command and group
def samples() -> None:
    """Generate sample media (needs ffmpeg and mkvtoolnix)."""


@samples.command("make", short_help="Write small sample MKV and MP4 files into DIR.")
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False))
@click.option(
    "--count",
    "-n",
    type=click.IntRange(min=1, max=100_000),
    default=None,
    help="How many files (default: one per layout; more are copies of the layouts).",
)
@db_option
def make(directory: str, count: int | None) -> None:
    """Write small MKV and MP4 files with several audio languages, subtitles, fonts,
    H.264 and HEVC video into DIR, and their layouts into DIR/vpo-samples.json."""
    from vpo.samples.generator import MANIFEST_NAME, SampleFile, make_samples

    def report(sample: SampleFile) -> None:
        click.echo(f"made {sample.path}  ({sample.layout.description})", err=True)

    made = make_samples(directory, count, on_file=report)
    click.echo(
        f"Made {len(made)} sample file{'s' if len(made) != 1 else ''} in {directory} "
        f"(layouts in {MANIFEST_NAME})."
    )
