"""A run whose process dies is recorded as a failed, interrupted run the next time the
database is opened — with the before values known at its start, the after values of the
phases it completed, and a duration that reaches its last heartbeat — and only when its
process is really gone (its lease, not its PID, says so); a database that cannot be
written fails the export loudly."""

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import query, read_only
from tests.synthetic import emit, ten_action_run
from vpo.db import open_database
from vpo.db.interrupted import marker_path
from vpo.ownership import locks_dir
from vpo.samples import SampleFile
from vpo.telemetry.setup import build_telemetry

HASH_BEFORE = "sha256:" + "c" * 64
HASH_AFTER = "sha256:" + "d" * 64

CHILD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from vpo.telemetry import attributes as attr
    from vpo.telemetry.setup import build_telemetry

    db, stats_id, path, mode = sys.argv[1:5]
    telemetry = build_telemetry(db)
    tracer = telemetry.tracer
    start = {attr.STATS_ID: stats_id, attr.FILE_ID: 1, attr.FILE_PATH: path,
             attr.POLICY_NAME: "anime", attr.PHASES_TOTAL: 3}
    if mode != "late_before":  # the workflow measures these before the root starts
        start |= {attr.SIZE_BEFORE: 4096, attr.HASH_BEFORE: "sha256:" + "c" * 64}
    with tracer.start_as_current_span(attr.PROCESS_FILE, attributes=start) as root:
        root.set_attributes({attr.AUDIO_BEFORE: 3, attr.SUBTITLE_BEFORE: 2,
                             attr.ATTACHMENT_BEFORE: 1, attr.VIDEO_SOURCE_CODEC: "h264"})
        if mode in ("before_phase", "late_before"):
            print("ready", flush=True)
            time.sleep(120)
        with tracer.start_as_current_span(attr.PHASE, attributes={attr.PHASE_NAME: "cleanup"}):
            with tracer.start_as_current_span(attr.ACTION, attributes={attr.ACTION_TYPE: "remove"}):
                pass
            # the phase changed the file: its after values go on the root before it ends
            root.set_attributes({attr.SIZE_AFTER: 3000, attr.HASH_AFTER: "sha256:" + "d" * 64,
                                 attr.AUDIO_AFTER: 1, attr.SUBTITLE_AFTER: 2,
                                 attr.ATTACHMENT_AFTER: 0, attr.PHASES_COMPLETED: 1,
                                 attr.CHANGES_TOTAL: 3})
        with tracer.start_as_current_span(attr.PHASE, attributes={attr.PHASE_NAME: "transcode"}):
            exec(os.environ.get("IN_SECOND_PHASE", ""))  # e.g. an in-place edit cut short
            print("ready", flush=True)
            if mode == "finish_on_go":
                while not Path(path + ".go").exists():
                    time.sleep(0.05)
            else:
                time.sleep(120)
        root.set_attributes({attr.PHASES_COMPLETED: 2})
    problems = telemetry.shutdown()
    print("problems:", problems, flush=True)
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


def _start(
    db: Path, stats_id: str, video: Path, mode: str, prefix: tuple[str, ...] = ()
) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [*prefix, sys.executable, "-c", CHILD, str(db), stats_id, str(video), mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    return child


def _kill(child: subprocess.Popen[str]) -> None:
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL


def _reconcile_elsewhere(db: Path) -> None:
    """Open the database in another process, as the next VPO command would."""
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from vpo.db import open_database; open_database(sys.argv[1]).close()",
            str(db),
        ],
        check=True,
        timeout=60,
    )


def _runs(db: Path) -> list[sqlite3.Row]:
    return query(db, "SELECT * FROM processing_stats")


def _markers(db: Path) -> int:
    return query(marker_path(db), "SELECT count(*) FROM runs_in_progress")[0][0]


def test_a_killed_run_is_recorded_with_what_it_applied(library_db: tuple[Path, Path]) -> None:
    db, video = library_db
    stats_id = str(uuid.uuid4())
    child = _start(db, stats_id, video, "mid_run")
    try:
        (marker,) = query(marker_path(db), "SELECT * FROM runs_in_progress")
        assert (marker["stats_id"], marker["pid"]) == (stats_id, child.pid)
        assert marker["lease_token"]
        known = json.loads(marker["attributes"])  # written when the first phase ended
        assert (known["size_after"], known["phases_completed"]) == (3000, 1)
        open_database(db).close()  # the process is alive: its run is left alone
        assert _runs(db) == []
        time.sleep(2.5)  # the run goes on inside its second phase; heartbeats mark it alive
    finally:
        _kill(child)
    lease = locks_dir(db.resolve()) / f"owner-{marker['lease_token']}.lock"
    assert lease.exists()  # left by the killed process
    video.write_bytes(b"\0" * 5000)  # a later run changed the file: not this run's doing

    _reconcile_elsewhere(db)

    (run,) = _runs(db)
    assert run["id"] == stats_id
    assert run["success"] == 0
    assert run["error_message"].startswith(
        f"interrupted: the VPO process (pid {child.pid}) ended before the run finished, "
        "after 1 of 3 phase(s)"
    )
    assert (run["file_id"], run["policy_name"]) == (1, "anime")
    assert (run["phases_completed"], run["phases_total"], run["total_changes"]) == (1, 3, 3)
    assert (run["size_before"], run["size_after"], run["size_change"]) == (4096, 3000, 1096)
    assert (run["hash_before"], run["hash_after"]) == (HASH_BEFORE, HASH_AFTER)
    counts = ("audio_tracks", "subtitle_tracks", "attachments")
    assert [run[f"{k}_before"] for k in counts] == [3, 2, 1]
    assert [run[f"{k}_after"] for k in counts] == [1, 2, 0]
    assert [run[f"{k}_removed"] for k in counts] == [2, 0, 1]
    assert run["video_source_codec"] == "h264"
    assert run["processed_at"] == marker["started_at"]
    assert run["trace_id"] == marker["trace_id"] and len(run["trace_id"]) == 32
    assert run["duration_seconds"] >= 2.0  # its last heartbeat, not its last phase start
    assert _markers(db) == 0
    assert not lease.exists()  # the dead process's lease file is swept
    _reconcile_elsewhere(db)  # a second open records nothing twice
    assert len(_runs(db)) == 1


@pytest.mark.parametrize("mode", ["before_phase", "late_before"])
def test_a_run_killed_before_its_first_phase_saves_nothing(
    library_db: tuple[Path, Path], mode: str
) -> None:
    db, video = library_db
    stats_id = str(uuid.uuid4())
    _kill(_start(db, stats_id, video, mode))
    video.write_bytes(b"\0" * 100)

    _reconcile_elsewhere(db)

    (run,) = _runs(db)
    assert (run["size_before"], run["size_after"], run["size_change"]) == (4096, 4096, 0)
    assert (run["phases_completed"], run["total_changes"]) == (0, 0)
    assert run["hash_after"] == run["hash_before"]
    if mode == "late_before":  # not measured before the kill: the library's size, said so
        assert "the library's last known size is used" in run["error_message"]
        assert run["hash_before"] is None
    else:
        assert run["hash_before"] == HASH_BEFORE


def _in_pid_namespace() -> tuple[str, ...]:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare to make a PID namespace")
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot make a PID namespace here: {probe.stderr.decode().strip()}")
    return ("unshare", "--pid", "--mount-proc", "--kill-child=SIGKILL")


def test_a_live_run_in_another_pid_namespace_is_left_alone(
    library_db: tuple[Path, Path],
) -> None:
    db, video = library_db
    namespace = _in_pid_namespace()
    stats_id = str(uuid.uuid4())
    child = _start(db, stats_id, video, "finish_on_go", namespace)
    (marker,) = query(marker_path(db), "SELECT pid, host FROM runs_in_progress")
    assert marker["pid"] != child.pid  # a PID from another namespace, meaningless here

    _reconcile_elsewhere(db)
    open_database(db).close()

    assert _runs(db) == [] and _markers(db) == 1
    Path(str(video) + ".go").touch()  # the run finishes and records its real row
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0 and "problems: []" in out
    (run,) = _runs(db)
    assert (run["id"], run["success"], run["phases_completed"]) == (stats_id, 1, 2)

    # The same, killed: recorded once as interrupted when its lease is gone.
    killed_id = str(uuid.uuid4())
    child = _start(db, killed_id, video, "mid_run", namespace)
    _reconcile_elsewhere(db)
    assert len(_runs(db)) == 1
    _kill(child)  # unshare dies; --kill-child takes the run with it
    deadline = time.monotonic() + 10
    while len(_runs(db)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)  # until the kernel has dropped the dead run's lease
        _reconcile_elsewhere(db)
    killed = query(db, "SELECT * FROM processing_stats WHERE id = ?", (killed_id,))
    assert [(r["success"], r["phases_completed"], r["size_after"]) for r in killed] == [
        (0, 1, 3000)
    ]
    _reconcile_elsewhere(db)
    assert len(_runs(db)) == 2


def test_old_markers_without_a_lease_fall_back_to_the_pid(
    library_db: tuple[Path, Path],
) -> None:
    db, _video = library_db
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a PID that no longer runs
    path = marker_path(db)
    conn = sqlite3.connect(path)  # a marker file as the release before leases wrote it
    conn.executescript(
        """
        CREATE TABLE runs_in_progress (
            stats_id TEXT PRIMARY KEY, file_id INTEGER, file_path TEXT,
            policy_name TEXT NOT NULL, started_at TEXT NOT NULL, last_seen_at TEXT NOT NULL,
            trace_id TEXT, host TEXT NOT NULL, pid INTEGER NOT NULL, pid_started TEXT,
            attributes TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(attributes)));
        """
    )
    rows = [
        (str(uuid.uuid4()), gone.pid, '{"size_before": 4096, "phases_total": 1}'),
        (str(uuid.uuid4()), os.getpid(), '{"size_before": 4096, "phases_total": 1}'),
    ]
    conn.executemany(
        "INSERT INTO runs_in_progress VALUES (?, 1, NULL, 'p', '2026-01-01T00:00:00.000000Z', "
        "'2026-01-01T00:00:01.000000Z', NULL, ?, ?, NULL, ?)",
        [(stats_id, socket.gethostname(), pid, attrs) for stats_id, pid, attrs in rows],
    )
    conn.commit()
    conn.close()

    open_database(db).close()

    assert [r["id"] for r in _runs(db)] == [rows[0][0]]  # the living pid is left alone
    columns = [r[1] for r in query(path, "PRAGMA table_info(runs_in_progress)")]
    assert "lease_token" in columns  # the old file was upgraded


def test_an_in_place_edit_cut_short_is_rolled_back_before_recording(
    tmp_path: Path, sample_files: list[SampleFile]
) -> None:
    journal = pytest.importorskip("vpo.media.edit_journal")
    source = next(
        (s.path for s in sample_files if s.path.suffix == ".mkv" and journal.edit_regions(s.path)),
        None,
    )
    if source is None:
        pytest.skip("no sample has a journaled layout")
    video = tmp_path / source.name
    shutil.copy2(source, video)
    original = video.read_bytes()
    db = tmp_path / "vpo.db"
    conn = open_database(db)
    conn.execute(
        "INSERT INTO files (id, path, size_bytes, mtime, scanned_at) VALUES (1, ?, ?, 1, 'x')",
        (str(video), len(original)),
    )
    conn.close()
    edit = textwrap.dedent(
        """
        from vpo.media.edit_journal import begin
        held = begin(Path(path))  # journaled, then cut short mid-edit
        with open(path, "r+b") as f:
            f.write(b"\\0" * 64)
            f.seek(0, 2)
            f.write(b"half a track list")
        """
    )
    stats_id = str(uuid.uuid4())
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), stats_id, str(video), "mid_run"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "IN_SECOND_PHASE": edit},
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    assert video.read_bytes() != original
    _kill(child)

    _reconcile_elsewhere(db)

    assert video.read_bytes() == original
    (run,) = _runs(db)
    assert run["id"] == stats_id and run["success"] == 0
    # what the recovery did is said after the usual sentence
    assert re.fullmatch(r"interrupted: .*; last seen \S+; \S.*", run["error_message"])


def test_a_read_only_database_fails_the_export_loudly(library_db: tuple[Path, Path]) -> None:
    db, _video = library_db
    with read_only(db):
        telemetry = build_telemetry(db, max_export_batch_size=2)
        run = ten_action_run(file_id=1)
        emit(telemetry.tracer, None, run)
        telemetry.flush()
        problem = telemetry.recording_problem()
        problems = telemetry.shutdown()

    assert problem is not None and "readonly database" in problem
    assert problems, "a run that could not be written must be reported"
    assert any("1 run(s) could not be recorded" in p and "readonly" in p for p in problems)
    assert query(db, "SELECT count(*) FROM processing_stats")[0][0] == 0


TWO_PHASES = """\
schema_version: 1
name: two-phases
phases:
  - name: cleanup
    keep_audio: {languages: [eng]}
  - name: compress
    transcode:
      video: {to: hevc, crf: 28, preset: ultrafast}
"""


def test_vpo_process_killed_mid_transcode_records_its_first_phase(
    tmp_path: Path, sample_files: list[SampleFile]
) -> None:
    """A real `vpo process`: the first phase's remux is applied, the second phase's
    ffmpeg (delayed by a wrapper) is running when VPO is SIGKILLed."""
    from tests.helpers import tool_dir_without
    from vpo.media.hashing import partial_hash

    source = next(s.path for s in sample_files if s.path.name == "movie-h264-multilang.mkv")
    video = tmp_path / "library" / source.name
    video.parent.mkdir()
    shutil.copy2(source, video)
    size_before, hash_before = video.stat().st_size, partial_hash(video)
    policy = tmp_path / "policy.yaml"
    policy.write_text(TWO_PHASES)
    tools = Path(tool_dir_without(tmp_path, "ffmpeg"))
    started = tmp_path / "ffmpeg-started"
    (tools / "ffmpeg").write_text(
        "#!/bin/sh\n"  # only the transcode waits: other ffmpeg calls go straight through
        f'case "$*" in *libx265*) {shutil.which("touch")} "{started}"; '
        f"{shutil.which('sleep')} 60;; esac\n"
        f'exec "{shutil.which("ffmpeg")}" "$@"\n'
    )
    (tools / "ffmpeg").chmod(0o755)
    db = tmp_path / "vpo.db"
    vpo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vpo",
            "--db",
            str(db),
            "process",
            "--policy",
            str(policy),
            str(video.parent),
        ],
        env={**os.environ, "PATH": str(tools)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert vpo.poll() is None and time.monotonic() < deadline, "no transcode began"
            time.sleep(0.05)
        time.sleep(2.2)  # heartbeats while the tool runs
    finally:
        os.killpg(vpo.pid, signal.SIGKILL)
        vpo.wait()
    size_after, hash_after = video.stat().st_size, partial_hash(video)  # phase 1's result
    assert size_after != size_before
    video.write_bytes(b"\0" * 1000)  # a later change: never read as this run's result

    _reconcile_elsewhere(db)

    (run,) = _runs(db)
    assert run["success"] == 0 and run["error_message"].startswith("interrupted:")
    assert (run["size_before"], run["hash_before"]) == (size_before, hash_before)
    assert (run["phases_completed"], run["phases_total"]) == (1, 2)
    assert (run["size_after"], run["hash_after"]) == (size_after, hash_after)
    assert run["size_change"] == size_before - size_after
    assert run["audio_tracks_removed"] > 0 and run["total_changes"] > 0
    assert run["duration_seconds"] >= 2.0


EDITED_AND_RECORDED = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from vpo.media.edit_journal import begin
    from vpo.media.hashing import partial_hash
    from vpo.telemetry import attributes as attr
    from vpo.telemetry.setup import build_telemetry
    db, stats_id, path = sys.argv[1:4]
    telemetry = build_telemetry(db)
    tracer = telemetry.tracer
    start = {attr.STATS_ID: stats_id, attr.FILE_ID: 1, attr.FILE_PATH: path,
             attr.POLICY_NAME: "flags", attr.PHASES_TOTAL: 1,
             attr.SIZE_BEFORE: Path(path).stat().st_size, attr.HASH_BEFORE: partial_hash(path)}
    with tracer.start_as_current_span(attr.PROCESS_FILE, attributes=start) as root:
        with tracer.start_as_current_span(attr.PHASE, attributes={attr.PHASE_NAME: "flags"}):
            journal = begin(Path(path))
            with open(path, "r+b") as f:  # the whole edit, done
                f.seek(0, 2)
                f.write(b"a new track list")
            root.set_attributes({attr.SIZE_AFTER: Path(path).stat().st_size,
                                 attr.HASH_AFTER: partial_hash(path),
                                 attr.PHASES_COMPLETED: 1, attr.CHANGES_TOTAL: 1})
        # the phase is recorded in the marker; the process dies before settling the journal
        print("ready", flush=True)
        time.sleep(120)
    """
)


def test_a_recorded_in_place_edit_is_kept_not_rolled_back(
    tmp_path: Path, sample_files: list[SampleFile]
) -> None:
    """Killed between recording its edit and dropping the journal, a run's file is the
    completely edited file its record says — kept, not restored behind the record."""
    journal = pytest.importorskip("vpo.media.edit_journal")
    source = next(s.path for s in sample_files if s.path.suffix == ".mkv")
    video = tmp_path / source.name
    shutil.copy2(source, video)
    original_size = video.stat().st_size
    db = tmp_path / "vpo.db"
    conn = open_database(db)
    conn.execute(
        "INSERT INTO files (id, path, size_bytes, mtime, scanned_at) VALUES (1, ?, ?, 1, 'x')",
        (str(video), original_size),
    )
    conn.close()
    stats_id = str(uuid.uuid4())
    child = subprocess.Popen(
        [sys.executable, "-c", EDITED_AND_RECORDED, str(db), stats_id, str(video)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    edited = video.read_bytes()
    assert journal.find_stale(tmp_path) == []  # still held by the live run
    _kill(child)
    assert len(journal.find_stale(tmp_path)) == 1

    _reconcile_elsewhere(db)

    assert video.read_bytes() == edited
    assert journal.find_stale(tmp_path) == []
    (run,) = _runs(db)
    assert run["size_after"] == len(edited) != run["size_before"] == original_size
    assert run["total_changes"] == 1
    assert run["error_message"].endswith(
        f"kept the completed in-place edit of {video.name}, as recorded"
    )
