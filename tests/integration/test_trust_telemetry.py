"""The statistics see every run in full whatever `OTEL_*` says, and a `Telemetry` belongs
to its owner: a real `vpo process` under hostile OpenTelemetry settings records every
run whole, and one command's telemetry shut down leaves another's recording."""

import subprocess
import sys
import threading
import uuid
from pathlib import Path

from tests.helpers import database_with_files, query, run_vpo
from tests.synthetic import emit, ten_action_run
from vpo.cli.context import AppContext
from vpo.cli.recording import recording
from vpo.telemetry import attributes as attr
from vpo.telemetry.setup import build_telemetry

POLICY = Path(__file__).parents[2] / "examples" / "policies" / "cleanup-organize.yaml"

HOSTILE = {
    "OTEL_TRACES_SAMPLER": "always_off",
    "OTEL_SDK_DISABLED": "true",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "32",
    "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT": "8",
    "OTEL_ATTRIBUTE_COUNT_LIMIT": "1",
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "1",
    "OTEL_SPAN_EVENT_COUNT_LIMIT": "0",
    "OTEL_BSP_MAX_QUEUE_SIZE": "1",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "1",
    "OTEL_BSP_SCHEDULE_DELAY": "600000",
}


def test_process_records_every_run_in_full_whatever_otel_says(library: Path, db_path: Path) -> None:
    files = sorted(p for p in library.iterdir() if p.is_file())

    done = run_vpo("--db", db_path, "process", "--policy", POLICY, library, env=HOSTILE)

    assert done.returncode in (0, 1), done.stderr
    runs = query(db_path, "SELECT * FROM processing_stats")
    assert len(runs) == len(files)
    for run in runs:
        assert uuid.UUID(run["id"]).version == 4  # whole, not cut to 32 or 8 characters
        assert run["policy_name"] == "cleanup-organize"
        assert run["size_before"] > 0 and run["phases_total"] == 2
        assert run["hash_before"].startswith("sha256:") and len(run["hash_before"]) == 71
        assert len(run["trace_id"]) == 32
        if run["success"]:
            assert run["phases_completed"] == 2
            assert len(run["hash_after"]) == 71
    changed = [r for r in runs if r["total_changes"]]
    assert changed, "the policy changes some sample"
    actions = query(db_path, "SELECT count(*) FROM action_results")[0][0]
    assert actions == sum(r["total_changes"] for r in runs if r["success"])
    phases = query(db_path, "SELECT count(*) FROM performance_metrics")[0][0]
    assert phases >= sum(r["phases_completed"] for r in runs)


def test_two_commands_in_one_process_do_not_share_telemetry(tmp_path: Path) -> None:
    db = database_with_files(tmp_path / "vpo.db", 2)
    app = AppContext(db_path=str(db))
    first, second = ten_action_run(1), ten_action_run(2)
    with recording(app) as outer:
        with recording(app) as inner:  # another command (a server runs many) ends first
            assert inner is not outer
            emit(inner.tracer, inner.metrics, second)
        assert inner.closed and not outer.closed
        emit(outer.tracer, outer.metrics, first)  # still recording
        assert outer.flush() == []
        stored = {r[0] for r in query(db, "SELECT id FROM processing_stats")}
        assert stored == {first.stats_id, second.stats_id}
    assert outer.closed


def _heartbeats() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "vpo-run-heartbeat")


def test_the_run_heartbeat_lives_and_dies_with_its_telemetry(tmp_path: Path) -> None:
    db = database_with_files(tmp_path / "vpo.db")
    before = _heartbeats()
    telemetry = build_telemetry(db)
    start = {attr.STATS_ID: str(uuid.uuid4()), attr.FILE_ID: 1, attr.POLICY_NAME: "p"}
    with telemetry.tracer.start_as_current_span(attr.PROCESS_FILE, attributes=start):
        assert _heartbeats() == before + 1
        beat = next(t for t in threading.enumerate() if t.name == "vpo-run-heartbeat")
        assert beat.daemon  # never keeps a process alive
    telemetry.shutdown()
    assert _heartbeats() == before

    # A process that never shuts its telemetry down still exits, its runs flushed.
    script = (
        "import sys, uuid\n"
        "from vpo.telemetry import attributes as attr\n"
        "from vpo.telemetry.setup import build_telemetry\n"
        "telemetry = build_telemetry(sys.argv[1])\n"
        "start = {attr.STATS_ID: str(uuid.uuid4()), attr.FILE_ID: 1, attr.POLICY_NAME: 'p'}\n"
        "with telemetry.tracer.start_as_current_span(attr.PROCESS_FILE, attributes=start):\n"
        "    pass\n"
    )
    subprocess.run([sys.executable, "-c", script, str(db)], check=True, timeout=30)
    assert query(db, "SELECT count(*) FROM processing_stats")[0][0] == 2
