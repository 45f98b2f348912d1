"""A run whose process dies is recorded as a failed, interrupted run the next time the
database is opened; a database that cannot be written fails the export loudly."""

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from tests.helpers import query, read_only
from tests.synthetic import emit, ten_action_run
from vpo.db import open_database
from vpo.db.interrupted import marker_path
from vpo.telemetry.setup import build_telemetry

CHILD = textwrap.dedent(
    """
    import sys, time
    from vpo.telemetry import attributes as attr
    from vpo.telemetry.setup import configure_telemetry

    db, stats_id, path = sys.argv[1:4]
    telemetry = configure_telemetry(db)
    tracer = telemetry.tracer
    start = {attr.STATS_ID: stats_id, attr.FILE_ID: 1, attr.FILE_PATH: path,
             attr.POLICY_NAME: "anime", attr.PHASES_TOTAL: 3}
    with tracer.start_as_current_span(attr.PROCESS_FILE, attributes=start) as root:
        # before values measured after the run began, as the workflow does
        root.set_attributes({attr.SIZE_BEFORE: 4096, attr.AUDIO_BEFORE: 3,
                             attr.SUBTITLE_BEFORE: 2, attr.ATTACHMENT_BEFORE: 1,
                             attr.HASH_BEFORE: "sha256:" + "c" * 64,
                             attr.VIDEO_SOURCE_CODEC: "h264"})
        with tracer.start_as_current_span(attr.PHASE, attributes={attr.PHASE_NAME: "cleanup"}):
            print("ready", flush=True)
            time.sleep(120)
    """
)


@pytest.fixture
def library_db(tmp_path: Path) -> tuple[Path, Path]:
    video = tmp_path / "movie.mkv"
    video.write_bytes(b"\0" * 4096)
    db = tmp_path / "vpo.db"
    conn = open_database(db)
    conn.execute(
        "INSERT INTO files (id, path, size_bytes, mtime, scanned_at) VALUES (1, ?, 4096, 1, 'x')",
        (str(video),),
    )
    conn.close()
    return db, video


def test_a_killed_run_is_recorded_as_interrupted(library_db: tuple[Path, Path]) -> None:
    db, video = library_db
    stats_id = str(uuid.uuid4())
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), stats_id, str(video)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        (marker,) = query(marker_path(db), "SELECT * FROM runs_in_progress")
        assert (marker["stats_id"], marker["pid"]) == (stats_id, child.pid)
        open_database(db).close()  # the process is alive: its run is left alone
        assert query(db, "SELECT count(*) FROM processing_stats")[0][0] == 0
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    video.write_bytes(b"\0" * 4000)  # whatever is on disk now is the after size

    open_database(db).close()

    (run,) = query(db, "SELECT * FROM processing_stats")
    assert run["id"] == stats_id
    assert run["success"] == 0
    assert run["error_message"].startswith(f"interrupted: the VPO process (pid {child.pid}) ended")
    assert (run["file_id"], run["policy_name"], run["phases_total"]) == (1, "anime", 3)
    assert (run["size_before"], run["size_after"], run["size_change"]) == (4096, 4000, 96)
    assert (
        run["audio_tracks_before"],
        run["subtitle_tracks_before"],
        run["attachments_before"],
    ) == (3, 2, 1)
    assert (run["audio_tracks_after"], run["audio_tracks_removed"]) == (3, 0)
    assert run["hash_before"] == "sha256:" + "c" * 64
    assert run["video_source_codec"] == "h264"
    assert run["processed_at"] == marker["started_at"]
    assert run["trace_id"] == marker["trace_id"] and len(run["trace_id"]) == 32
    assert run["duration_seconds"] >= 0
    assert query(marker_path(db), "SELECT count(*) FROM runs_in_progress")[0][0] == 0
    open_database(db).close()  # a second open records nothing twice
    assert query(db, "SELECT count(*) FROM processing_stats")[0][0] == 1


def test_a_read_only_database_fails_the_export_loudly(library_db: tuple[Path, Path]) -> None:
    db, _video = library_db
    with read_only(db):
        telemetry = build_telemetry(db, max_export_batch_size=2)
        run = ten_action_run(file_id=1)
        emit(telemetry.tracer, None, run)
        problems = telemetry.shutdown()

    assert problems, "a run that could not be written must be reported"
    assert any("readonly database" in p for p in problems)
    assert any("1 run(s) could not be recorded" in p for p in problems)
    assert query(db, "SELECT count(*) FROM processing_stats")[0][0] == 0
