"""The reference pages in docs/ cover what the code has, so they cannot silently fall behind.

Each list is taken from the code itself — the metric families a real exposition serves,
the attribute module, the tables of a new database, the pydantic models of the policy,
the click commands — never from a hand-written copy of it.
"""

import re
import typing
from pathlib import Path
from typing import Any

import click
import pytest
from pydantic import BaseModel

from vpo.cli import cli
from vpo.db.connection import open_database
from vpo.errors import ExitCode
from vpo.media.tracks import MediaInfo, Track, TrackType
from vpo.policy.loader import parse_policy
from vpo.policy.planner import plan
from vpo.policy.schema import OPERATIONS, Policy
from vpo.telemetry import attributes
from vpo.telemetry.instruments import RunMetrics, RunOutcome
from vpo.telemetry.serving import render_metrics
from vpo.telemetry.setup import build_telemetry

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = ("policies.md", "statistics.md", "metrics.md", "cli.md")
SPEC_FILES = ("POLICY.md", "DATA-MODEL.md", "METRICS.md", "API.md", "CLI.md", "QUALITY.md")


def _page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _quoted(text: str, word: str) -> bool:
    """`word` appears in backticks, alone or followed by a space, `|`, `=` or `{`."""
    return re.search("`" + re.escape(word) + r"[`\s|={]", text) is not None


# -- metrics ------------------------------------------------------------------------------


class _RecordingMeter:
    """A meter that notes the name of every instrument created through it."""

    def __init__(self, meter: Any) -> None:
        self._meter = meter
        self.names: list[str] = []

    def __getattr__(self, attribute: str) -> Any:
        create = getattr(self._meter, attribute)
        if not attribute.startswith("create_"):
            return create

        def created(name: str, *args: Any, **kwargs: Any) -> Any:
            self.names.append(name)
            return create(name, *args, **kwargs)

        return created


@pytest.fixture(scope="module")
def exposition(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str]]:
    """The text of a real /metrics after every recording method has been used, and the
    OpenTelemetry names of the instruments the live metrics create."""
    db = tmp_path_factory.mktemp("metrics") / "vpo.db"
    open_database(db).close()
    telemetry = build_telemetry(db, otlp=False)
    try:
        meter = _RecordingMeter(telemetry.meter_provider.get_meter("vpo-docs-test"))
        metrics = RunMetrics(meter)  # type: ignore[arg-type]
        metrics.run_started()
        metrics.phase_finished("p", "cleanup", 0.5, 1000, 900)
        metrics.action_finished("remove", "audio", True, 0.5)
        metrics.transcode_finished("hevc", 42.0)
        for success in (True, False):
            metrics.run_finished(
                RunOutcome(
                    policy="p",
                    success=success,
                    size_before=1000,
                    size_after=900,
                    duration_seconds=1.0,
                    tracks_removed={"audio": 1, "subtitle": 1, "attachment": 1},
                    video_transcoded=True,
                    audio_transcoded=1,
                    audio_preserved=1,
                )
            )
        body, _content_type = render_metrics(telemetry.registry)
    finally:
        telemetry.shutdown()
    return body.decode(), meter.names


def _families(text: str) -> dict[str, str]:
    """Family name (as the `# TYPE` line gives it) → type."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))


def test_every_instrument_is_in_the_exposition(exposition: tuple[str, list[str]]) -> None:
    text, created = exposition
    served = _families(text)
    assert len(created) >= 10
    for name in created:
        base = name.replace(".", "_")
        assert any(family.startswith(base) for family in served), (
            f"instrument {name} is not in the exposition: record it in this test's fixture"
        )


def test_every_served_metric_is_documented(exposition: tuple[str, list[str]]) -> None:
    text, _created = exposition
    page = _page("metrics.md")
    served = _families(text)
    assert any(name.startswith("vpo_library_") for name in served)  # the collector too
    missing = [name for name in served if not _quoted(page, name)]
    assert not missing, f"docs/metrics.md does not describe: {missing}"


def test_every_label_is_documented(exposition: tuple[str, list[str]]) -> None:
    text, _created = exposition
    page = _page("metrics.md")
    labels = {
        label
        for line in text.splitlines()
        if line.startswith("vpo_")
        for label in re.findall(r'([a-z_]+)="', line)
    } - {"le"}
    assert labels
    missing = sorted(label for label in labels if not _quoted(page, label))
    assert not missing, f"docs/metrics.md does not describe the labels: {missing}"


def test_metric_types_match_the_page(exposition: tuple[str, list[str]]) -> None:
    """Each metric's row in the page's tables names the type the exposition serves."""
    text, _created = exposition
    page = _page("metrics.md")
    for name, kind in _families(text).items():
        rows = [line for line in page.splitlines() if line.startswith(f"| `{name}` |")]
        if name == "target_info":
            continue
        assert rows, f"docs/metrics.md has no table row for {name}"
        assert f"| {kind} |" in rows[0], f"{name} is a {kind}: {rows[0]}"


# -- statistics -----------------------------------------------------------------------------


def test_every_span_attribute_is_documented() -> None:
    page = _page("statistics.md")
    names = [
        value
        for key, value in vars(attributes).items()
        if not key.startswith("_") and isinstance(value, str) and value.startswith("vpo.")
    ]
    assert len(names) > 30
    missing = [name for name in names if not _quoted(page, name)]
    assert not missing, f"docs/statistics.md does not describe: {missing}"


def test_every_table_and_column_is_documented(tmp_path: Path) -> None:
    page = _page("statistics.md")
    conn = open_database(tmp_path / "vpo.db")
    try:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        columns = {
            table: [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
            for table in tables
        }
    finally:
        conn.close()
    assert "processing_stats" in tables
    missing = [t for t in tables if not _quoted(page, t)]
    missing += [f"{t}.{c}" for t, cs in columns.items() for c in cs if not _quoted(page, c)]
    assert not missing, f"docs/statistics.md does not describe: {missing}"


# -- policies -------------------------------------------------------------------------------


def _models_and_values(model: type[BaseModel]) -> tuple[set[str], set[str]]:
    """Every field name (as written in YAML) and every fixed value under `model`."""
    keys: set[str] = set()
    values: set[str] = set()
    seen: set[type] = set()

    def walk_type(annotation: Any) -> None:
        if typing.get_origin(annotation) is typing.Literal:
            values.update(str(v) for v in typing.get_args(annotation))
            return
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            walk_model(annotation)
            return
        for arg in typing.get_args(annotation):
            walk_type(arg)

    def walk_model(current: type[BaseModel]) -> None:
        if current in seen:
            return
        seen.add(current)
        for name, field in current.model_fields.items():
            keys.add(field.alias or name)
            walk_type(field.annotation)

    walk_model(model)
    return keys, values


def _yaml_blocks(text: str) -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def test_every_policy_key_and_value_is_documented() -> None:
    page = _page("policies.md")
    keys, values = _models_and_values(Policy)
    assert {"keep_audio", "skip_if", "from", "preserve_forced"} <= keys
    missing = sorted(k for k in keys if not _quoted(page, k))
    missing += sorted(f"value {v}" for v in values if not _quoted(page, v))
    assert not missing, f"docs/policies.md does not describe: {missing}"


def test_every_operation_has_a_section() -> None:
    page = _page("policies.md")
    for operation in OPERATIONS:
        assert re.search(rf"^#+ `{operation}`$", page, re.MULTILINE), operation


def test_every_yaml_example_is_a_valid_policy() -> None:
    blocks = _yaml_blocks(_page("policies.md"))
    assert len(blocks) >= len(OPERATIONS)
    used: set[str] = set()
    for number, block in enumerate(blocks, start=1):
        policy = parse_policy(block, Path(f"docs/policies.md YAML block {number}"))
        for phase in policy.phases:
            used.update(op for op in OPERATIONS if getattr(phase, op))
    assert used == set(OPERATIONS), f"no example uses {set(OPERATIONS) - used}"


def test_every_action_the_planner_makes_is_documented() -> None:
    """The complete example planned on a file that needs everything: each action type
    it produces is in the page's table of actions."""
    page = _page("policies.md")
    example = parse_policy(_yaml_blocks(page)[-1])
    t = TrackType
    media = MediaInfo(
        path="/library/film.mkv",
        container="mkv",
        duration_seconds=5400.0,
        size_bytes=10**10,
        tracks=(
            Track(0, t.VIDEO, "h264", width=1920, height=1080),
            Track(1, t.AUDIO, "ac3", "eng", is_default=True, channels=6),
            Track(2, t.AUDIO, "dts", "fre", channels=6),
            Track(3, t.AUDIO, "aac", "und", channels=2),
            Track(4, t.SUBTITLE, "subrip", "ger", is_default=True),
            Track(5, t.SUBTITLE, "subrip", "eng"),
            Track(6, t.SUBTITLE, "ass", "spa", is_forced=True),
            Track(7, t.ATTACHMENT, "ttf", title="font.ttf"),
        ),
    )
    kinds = {action.action_type for action in plan(media, example).actions}
    assert len(kinds) >= 6, kinds
    first_cells = [line.split("|")[1] for line in page.splitlines() if line.startswith("| `")]
    missing = sorted(k for k in kinds if not any(f"`{k}`" in cell for cell in first_cells))
    assert not missing, f"the table of actions in docs/policies.md lacks {missing}"


# -- command line -----------------------------------------------------------------------------


def _commands(group: click.Group, prefix: str = "vpo") -> list[tuple[str, click.Command]]:
    ctx = click.Context(group)
    found: list[tuple[str, click.Command]] = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        path = f"{prefix} {name}"
        found.append((path, command))
        if isinstance(command, click.Group):
            found += _commands(command, path)
    return found


def test_every_command_and_option_is_documented() -> None:
    page = _page("cli.md")
    commands = [("vpo", cli), *_commands(cli)]
    assert len(commands) > 10
    missing = []
    for path, command in commands:
        if path != "vpo" and f"`{path}`" not in page:
            missing.append(path)
        for param in command.params:
            if isinstance(param, click.Option):
                missing += [
                    f"{path} {opt}"
                    for opt in [*param.opts, *param.secondary_opts]
                    if not _quoted(page, opt)
                ]
    assert not missing, f"docs/cli.md does not describe: {missing}"


def test_every_exit_code_is_documented() -> None:
    page = _page("cli.md")
    for code in ExitCode:
        assert f"| {int(code)} |" in page, code


# -- the pages as a whole --------------------------------------------------------------------


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def test_links_between_pages_resolve() -> None:
    headings = {
        name: {_anchor(h) for h in re.findall(r"^#+ (.+)$", _page(name), re.MULTILINE)}
        for name in PAGES
    }
    broken = []
    for name in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", _page(name)):
            if target.startswith(("http://", "https://")):
                continue
            file, _, anchor = target.partition("#")
            file = file or name
            if file not in headings:
                if not (DOCS / file).exists():
                    broken.append(f"{name}: {target}")
                continue
            if anchor and anchor not in headings[file]:
                broken.append(f"{name}: {target}")
    assert not broken, broken


def test_the_pages_stand_on_their_own() -> None:
    """Users have the repository, not the design documents it was built from."""
    for name in (*PAGES, "../README.md"):
        text = (DOCS / name).read_text(encoding="utf-8")
        cited = [spec for spec in SPEC_FILES if spec in text]
        assert not cited, f"{name} cites {cited}; cite docs/ instead"
        assert "specification" not in text.lower(), name


def test_code_cites_the_repository_docs() -> None:
    """Comments and docstrings point to docs/, which users of the repository have."""
    root = DOCS.parent
    offenders = []
    for folder in ("src", "tests", "benchmarks"):
        for path in (root / folder).rglob("*.py"):
            if path.name == Path(__file__).name:
                continue
            text = path.read_text(encoding="utf-8")
            offenders += [f"{path.relative_to(root)}: {s}" for s in SPEC_FILES if s in text]
    for name in ("benchmarks.md",):
        text = (DOCS / name).read_text(encoding="utf-8")
        offenders += [f"docs/{name}: {s}" for s in SPEC_FILES if s in text]
    assert not offenders, offenders
