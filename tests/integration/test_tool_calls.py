"""One tool call does all of a phase's actions: each action row names that call (`tool`,
`tool_call`), `vpo stats detail` shows the call's time once for all its actions, and the
`vpo.action.duration` histogram adds up to the call's time, not once per action.

Real `vpo process` runs of the sample media with the example policies (docs/statistics.md)."""

import json
import os
import re
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import invoke, query
from vpo.executor.phase import PhaseExecutor
from vpo.policy.loader import load_policy
from vpo.samples import SampleFile
from vpo.telemetry.serving import render_metrics
from vpo.telemetry.setup import Telemetry, build_telemetry
from vpo.workflow.library_store import LibraryStore
from vpo.workflow.processor import FileProcessor

EXAMPLES = Path(__file__).parents[2] / "examples" / "policies"
CLEANUP = EXAMPLES / "language-cleanup.yaml"  # one phase: 4 removes from the multilang movie
CLEANUP_ORGANIZE = EXAMPLES / "cleanup-organize.yaml"  # two remuxing phases
MOVIE = "movie-h264-multilang.mkv"
# A remux, then a metadata-only phase that mkvpropedit does in place.
REMUX_THEN_FLAGS = """\
schema_version: 1
name: remux-then-flags
config: {audio_languages: [jpn, eng]}
phases:
  - name: tidy
    keep_audio: {languages: [eng, jpn, und]}
  - name: flags
    default_flags: {audio: preferred}
"""
ACTIONS_SQL = (
    "SELECT a.* FROM action_results a JOIN processing_stats s ON s.id = a.stats_id "
    "JOIN files f ON f.id = s.file_id WHERE f.path = ? ORDER BY a.id"
)


@pytest.fixture
def movie(tmp_path: Path, sample_files: list[SampleFile]) -> Path:
    """A folder holding only a copy of the multilang movie (4 removes under CLEANUP)."""
    folder = tmp_path / "one"
    folder.mkdir()
    (sample,) = [s for s in sample_files if s.path.name == MOVIE]
    shutil.copy2(sample.path, folder / MOVIE)
    return folder / MOVIE


def _process(db_path: Path, policy: Path, target: Path) -> None:
    result = invoke("--db", db_path, "process", "--policy", policy, target)
    assert result.exit_code == 0, result.stdout + result.stderr


def _stats_id(db_path: Path) -> str:
    (row,) = query(db_path, "SELECT id FROM processing_stats")
    return str(row["id"])


def _phase_of(action: dict) -> int:
    """The policy phase an action came from, read off its rule (`phases[1].…`)."""
    return int(re.match(r"phases\[(\d+)\]", action["rule_reference"]).group(1))


def test_the_removes_of_one_phase_name_their_one_mkvmerge_call(movie: Path, db_path: Path) -> None:
    _process(db_path, CLEANUP, movie.parent)

    actions = query(db_path, ACTIONS_SQL, (str(movie),))
    assert [a["action_type"] for a in actions] == ["remove"] * 4
    assert {(a["tool"], a["tool_call"], a["success"]) for a in actions} == {("mkvmerge", 1, 1)}
    # Each action's span covered the whole call: each row holds the call's time, which
    # fits in the phase once, not four times.
    (phase,) = query(db_path, "SELECT wall_time_seconds FROM performance_metrics")
    assert all(0 < a["duration_ms"] <= phase["wall_time_seconds"] * 1000 + 1 for a in actions)


def test_each_phase_is_a_tool_call_of_its_own(movie: Path, db_path: Path) -> None:
    _process(db_path, CLEANUP_ORGANIZE, movie.parent)

    actions = [dict(a) for a in query(db_path, ACTIONS_SQL, (str(movie),))]
    calls = {(_phase_of(a), a["tool"], a["tool_call"]) for a in actions}
    assert calls == {(0, "mkvmerge", 1), (1, "mkvmerge", 2)}
    assert {_phase_of(a) for a in actions} == {0, 1} and len(actions) > 2


def test_an_in_place_phase_after_a_remux_is_the_second_call(
    movie: Path, db_path: Path, tmp_path: Path
) -> None:
    policy = tmp_path / "remux-then-flags.yaml"
    policy.write_text(REMUX_THEN_FLAGS)
    _process(db_path, policy, movie.parent)

    actions = [dict(a) for a in query(db_path, ACTIONS_SQL, (str(movie),))]
    calls = {(_phase_of(a), a["tool"], a["tool_call"]) for a in actions}
    assert calls == {(0, "mkvmerge", 1), (1, "mkvpropedit", 2)}


def test_detail_shows_the_shared_call_once_with_its_number_of_actions(
    movie: Path, db_path: Path
) -> None:
    _process(db_path, CLEANUP, movie.parent)
    stats_id = _stats_id(db_path)
    actions = query(db_path, ACTIONS_SQL, (str(movie),))

    result = invoke(
        "--db", db_path, "stats", "detail", stats_id[:8], "--show-actions", env={"COLUMNS": "80"}
    )

    assert result.exit_code == 0, result.stderr
    out = result.stdout
    heading = f"mkvmerge: {actions[0]['duration_ms']} ms for 4 actions (tool call 1)"
    assert out.count(heading) == 1, out
    assert len(re.findall(r"^\s+ok\s+remove ", out, re.M)) == 4
    for other in {a["duration_ms"] for a in actions} - {actions[0]["duration_ms"]}:
        assert f"{other} ms" not in out  # the call's time is shown once, not per action
    assert max(len(line) for line in out.splitlines()) <= 80
    data = json.loads(
        invoke("--db", db_path, "stats", "detail", stats_id, "--format", "json").stdout
    )
    assert [(a["tool"], a["tool_call"]) for a in data["action_results"]] == [("mkvmerge", 1)] * 4


def _action_duration(text: str) -> tuple[float, float]:
    """(sum, count) of `vpo_action_duration_seconds` over all its label sets."""
    total = count = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != "vpo_action_duration_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_sum"):
                total += sample.value
            elif sample.name.endswith("_count"):
                count += sample.value
    return total, count


@pytest.fixture
def exposition(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The /metrics text of each command's telemetry, taken just before it shuts down."""
    texts: list[str] = []
    shutdown = Telemetry.shutdown

    def render_then_shut_down(self: Telemetry) -> list[str]:
        if not self.closed:
            texts.append(render_metrics(self.registry)[0].decode())
        return shutdown(self)

    monkeypatch.setattr(Telemetry, "shutdown", render_then_shut_down)
    return texts


@pytest.mark.parametrize(
    ("policy", "phases"), [(CLEANUP, 1), (CLEANUP_ORGANIZE, 2)], ids=["one-call", "two-calls"]
)
def test_action_duration_adds_up_to_the_calls_time(
    movie: Path, db_path: Path, exposition: list[str], policy: Path, phases: int
) -> None:
    _process(db_path, policy, movie.parent)

    (text,) = exposition
    total, count = _action_duration(text)
    actions = query(db_path, ACTIONS_SQL, (str(movie),))
    assert count == len(actions)
    # One call per phase: each call's time once (every action of a phase holds it).
    call_time = {_phase_of(dict(a)): a["duration_ms"] / 1000 for a in actions}
    assert len(call_time) == phases
    calls = sum(call_time.values())
    # Each action records its share of its call; recording the call's time once per
    # action would make this 2-5 times as much.
    assert calls * 0.8 - 0.01 <= total <= calls * 1.2 + 0.01, (total, calls)


def _killed_at_call(number: int, counter: Path) -> Callable[[], None]:
    """Run in each phase tool's child before exec: the `number`th one is killed (SIGKILL)."""

    def setup() -> None:
        with counter.open("a") as handle:
            handle.write("x")
        if counter.stat().st_size == number:
            os.kill(os.getpid(), signal.SIGKILL)

    return setup


@pytest.mark.parametrize(
    ("policy", "killed", "expected"),
    [
        (CLEANUP.read_text(), 1, {(0, "mkvmerge", 1, 0)}),
        (REMUX_THEN_FLAGS, 2, {(0, "mkvmerge", 1, 1), (1, "mkvpropedit", 2, 0)}),
    ],
    ids=["remux-killed", "in-place-edit-killed"],
)
def test_a_failed_call_is_numbered_and_names_its_tool(
    movie: Path,
    db_path: Path,
    tmp_path: Path,
    policy: str,
    killed: int,
    expected: set[tuple[int, str, int, int]],
) -> None:
    policy_path = tmp_path / "policy.yaml"
    policy_path.write_text(policy)
    telemetry = build_telemetry(db_path)
    store = LibraryStore(db_path)
    processor = FileProcessor(
        load_policy(policy_path),
        store,
        telemetry.tracer,
        telemetry.metrics,
        PhaseExecutor(preexec_fn=_killed_at_call(killed, tmp_path / "calls")),
    )
    result = processor.process(movie)
    store.close()
    assert telemetry.shutdown() == []

    assert not result.success and "killed by SIGKILL" in (result.error or "")
    actions = [dict(a) for a in query(db_path, ACTIONS_SQL, (str(movie),))]
    assert {(_phase_of(a), a["tool"], a["tool_call"], a["success"]) for a in actions} == expected
