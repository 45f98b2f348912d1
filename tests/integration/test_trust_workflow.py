"""Trust in the batch: claims between processes, one bad entry never ends a batch, every
run that starts is recorded (even when interrupted), odd names and symlinks, signals.

Real `vpo` processes, real tools, the project's sample media.
"""

import hashlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import (
    CLEANUP,
    EXAMPLES,
    SLOW_TRANSCODE,
    dies_soon,
    fill_disk,
    invoke,
    query,
    tool_running,
)
from vpo.ownership import claim
from vpo.policy.loader import load_policy
from vpo.samples import SampleFile
from vpo.telemetry.setup import build_telemetry
from vpo.workflow.batch import process_files
from vpo.workflow.library_store import LibraryStore
from vpo.workflow.processor import FileProcessor

ORGANIZE = EXAMPLES / "cleanup-organize.yaml"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _runs(db: Path) -> list:
    return query(db, "SELECT * FROM processing_stats ORDER BY processed_at")


# Root reads and writes any file: VPO runs without the capabilities that let it, as a
# user's VPO would (setpriv, util-linux).
_NO_OVERRIDE = "-dac_override,-dac_read_search"
_AS_A_USER = (
    ["setpriv", f"--bounding-set={_NO_OVERRIDE}", f"--inh-caps={_NO_OVERRIDE}"]
    if os.geteuid() == 0
    else []
)


def _vpo(db: Path, *args: object) -> list[str]:
    return [sys.executable, "-m", "vpo", "--db", str(db), *[str(a) for a in args]]


# --- 3. two processes on one file ---------------------------------------------------------


def test_a_claimed_file_is_skipped_and_named(library: Path, db_path: Path) -> None:
    movie = (library / "movie-h264-multilang.mkv").resolve()
    digest = _sha(movie)
    with claim(db_path, movie):  # this test process works on the file
        result = invoke("--db", db_path, "process", "--policy", CLEANUP, library)
    assert result.exit_code == 1
    holder = f"being processed by {socket.gethostname()} pid {os.getpid()}"
    assert f"skipped: {movie}: {holder}" in result.stdout
    assert "1 skipped" in result.stdout
    assert _sha(movie) == digest  # untouched
    recorded = {
        row["path"]
        for row in query(
            db_path, "SELECT path FROM files JOIN processing_stats ON files.id = file_id"
        )
    }
    assert str(movie) not in recorded  # no run row for a skip
    assert len(recorded) == len(list(library.iterdir())) - 1
    # Released: the next run takes it.
    again = invoke("--db", db_path, "process", "--policy", CLEANUP, movie)
    assert again.exit_code == 0, again.stdout + again.stderr


def test_two_batches_on_one_folder_never_count_a_saving_twice(
    tmp_path: Path, sample_files: list[SampleFile]
) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    for copy in range(2):
        for sample in sample_files:
            shutil.copy(sample.path, folder / f"{copy}-{sample.path.name}")
    original = {p.name: p.stat().st_size for p in folder.iterdir()}
    db = tmp_path / "library.db"
    invoke("--db", db, "scan", folder)
    running = [
        subprocess.Popen(
            _vpo(db, "process", "--policy", policy, "--jobs", "2", folder),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for policy in (CLEANUP, ORGANIZE)
    ]
    outputs = [p.communicate(timeout=300) for p in running]
    for process, (out, err) in zip(running, outputs, strict=True):
        assert process.returncode in (0, 1), out + err
        assert "unexpected" not in out + err
    runs = _runs(db)
    # Each run started from the file as the other left it: the recorded savings add up
    # exactly to what the folder lost, none is counted twice.
    recorded_saving = sum(r["size_before"] - r["size_after"] for r in runs if r["success"])
    actual_saving = sum(original.values()) - sum(p.stat().st_size for p in folder.iterdir())
    assert recorded_saving == actual_saving
    # And each file's runs chain: one run's size after is the next one's size before.
    by_file: dict[int, list] = {}
    for run in runs:
        by_file.setdefault(run["file_id"], []).append(run)
    for file_runs in by_file.values():
        for earlier, later in itertools.pairwise(file_runs):
            assert later["size_before"] == earlier["size_after"]
    assert len(by_file) == len(original)  # a skipped file was run by the other batch


# --- 6. one bad entry never ends the batch ---------------------------------------------------


def test_bad_entries_become_their_own_lines_and_the_batch_goes_on(
    library: Path, db_path: Path
) -> None:
    (library / "dangling.mkv").symlink_to(library / "gone.mkv")
    (library / "loop-a.mkv").symlink_to(library / "loop-b.mkv")
    (library / "loop-b.mkv").symlink_to(library / "loop-a.mkv")
    files = sorted(p for p in library.iterdir() if not p.is_symlink())
    result = invoke("--db", db_path, "process", "--policy", CLEANUP, library)
    assert result.exit_code == 1
    assert "unexpected" not in result.stdout + result.stderr
    assert "dangling.mkv: is a dangling symlink" in result.stdout
    assert "loop-a.mkv: is a symlink loop" in result.stdout
    assert f"Processed {len(files)} file(s)" in result.stdout
    assert len(_runs(db_path)) == len(files)  # every real file ran and was recorded


def test_a_file_moved_away_mid_batch_is_skipped(library: Path, db_path: Path) -> None:
    files = sorted(library.iterdir())
    victim = files[-1]
    telemetry = build_telemetry(db_path)
    store = LibraryStore(db_path)
    try:
        processor = FileProcessor(load_policy(CLEANUP), store, telemetry.tracer, telemetry.metrics)

        def move_the_last_away(path: Path) -> None:
            if path == files[0]:
                victim.rename(library.parent / victim.name)

        report = process_files(processor, files, on_start=move_the_last_away)
    finally:
        store.close()
        assert telemetry.shutdown() == []
    (skip,) = report.skipped
    assert skip.path == victim and "no longer exists" in (skip.error or "")
    assert len(report.runs) == len(files) - 1
    assert len(_runs(db_path)) == len(files) - 1


@pytest.mark.skipif(
    os.geteuid() == 0 and shutil.which("setpriv") is None,
    reason="root reads every file; setpriv (util-linux) is needed to drop that power",
)
def test_an_unreadable_file_is_a_failed_run_not_the_end(library: Path, db_path: Path) -> None:
    secret = library / "movie-mp4.mp4"
    secret.chmod(0)
    files = len(list(library.iterdir()))
    try:
        result = subprocess.run(
            [*_AS_A_USER, *_vpo(db_path, "process", "--policy", CLEANUP, library)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        secret.chmod(0o644)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "unexpected" not in result.stdout + result.stderr
    assert f"failed: {secret}: cannot read the file: Permission denied" in result.stdout
    runs = _runs(db_path)
    assert len(runs) == files
    (failed,) = [r for r in runs if not r["success"]]
    assert failed["size_before"] == failed["size_after"] == secret.stat().st_size


# --- 8b. any BaseException inside a run is a recorded failure ---------------------------------


@pytest.mark.parametrize(
    ("escape", "recorded"),
    [
        (KeyboardInterrupt, "interrupted (keyboard interrupt)"),
        (SystemExit, "interrupted: the process is exiting"),
    ],
)
def test_a_base_exception_inside_a_run_is_recorded_as_interrupted(
    library: Path, db_path: Path, tmp_path: Path, escape: type[BaseException], recorded: str
) -> None:
    """Raised in the run's own thread mid-transcode (by a signal handler, as Ctrl-C or an
    embedding application would), it fails the run — never a success — and goes on up."""
    movie = library / "movie-h264-multilang.mkv"
    digest = _sha(movie)
    slow = tmp_path / "slow.yaml"
    slow.write_text(SLOW_TRANSCODE)
    telemetry = build_telemetry(db_path)
    store = LibraryStore(db_path)

    def raise_it(_signum: int, _frame: object) -> None:
        raise escape

    def signal_once_ffmpeg_runs() -> None:
        deadline = time.monotonic() + 60
        while not tool_running("ffmpeg", str(movie.parent)) and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGUSR1)

    previous = signal.signal(signal.SIGUSR1, raise_it)
    try:
        processor = FileProcessor(load_policy(slow), store, telemetry.tracer, telemetry.metrics)
        threading.Thread(target=signal_once_ffmpeg_runs, daemon=True).start()
        with pytest.raises(escape):
            processor.process(movie)
    finally:
        signal.signal(signal.SIGUSR1, previous)
        store.close()
        assert telemetry.shutdown() == []
    (run,) = _runs(db_path)
    assert run["success"] == 0
    assert run["error_message"] == recorded
    assert run["size_before"] == run["size_after"] == movie.stat().st_size
    assert _sha(movie) == digest
    assert [p.name for p in library.iterdir() if ".vpo-" in p.name] == []
    deadline = time.monotonic() + 5
    while tool_running("ffmpeg", str(movie.parent)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert tool_running("ffmpeg", str(movie.parent)) == []


# --- 4. signals stop the tools, record the run as interrupted, exit 128 + N ------------------------


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_batch_and_records_the_run(
    library: Path, db_path: Path, tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    movie = library / "movie-h264-multilang.mkv"
    digest, size = _sha(movie), movie.stat().st_size
    slow = tmp_path / "slow.yaml"
    slow.write_text(SLOW_TRANSCODE)
    vpo = subprocess.Popen(
        _vpo(db_path, "process", "--policy", slow, library),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not tool_running("ffmpeg", str(movie.parent)) and time.monotonic() < deadline:
        assert vpo.poll() is None
        time.sleep(0.01)
    (ffmpeg,) = tool_running("ffmpeg", str(movie.parent))
    vpo.send_signal(sig)
    out, err = vpo.communicate(timeout=60)
    assert vpo.returncode == code, out + err
    assert dies_soon(ffmpeg)
    assert _sha(movie) == digest
    assert [p.name for p in library.iterdir() if ".vpo-" in p.name] == []
    runs = _runs(db_path)
    run = runs[-1]  # the files sorted after it were not started
    assert [r["success"] for r in runs] == [1] * (len(runs) - 1) + [0]
    assert run["error_message"] == f"interrupted by {sig.name}"
    assert run["size_before"] == run["size_after"] == size
    assert f"{len(list(library.iterdir())) - len(runs)} file(s) were not started" in out


def test_tools_die_with_a_killed_vpo(library: Path, db_path: Path, tmp_path: Path) -> None:
    movie = library / "movie-h264-multilang.mkv"
    slow = tmp_path / "slow.yaml"
    slow.write_text(SLOW_TRANSCODE)
    vpo = subprocess.Popen(
        _vpo(db_path, "process", "--policy", slow, movie),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not tool_running("ffmpeg", str(movie.parent)) and time.monotonic() < deadline:
        time.sleep(0.01)
    (ffmpeg,) = tool_running("ffmpeg", str(movie.parent))
    vpo.kill()  # VPO alone, not its process group
    vpo.wait()
    deadline = time.monotonic() + 10
    while tool_running("ffmpeg", str(movie.parent)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert tool_running("ffmpeg", str(movie.parent)) == [], "ffmpeg outlived VPO"
    assert dies_soon(ffmpeg)


# --- 12, 13. odd names, symlinks ------------------------------------------------------------


def test_a_name_that_is_not_utf8_is_stored_processed_and_shown(
    library: Path, db_path: Path
) -> None:
    latin1 = Path(os.fsdecode(bytes(library) + b"/caf\xe9.mkv"))
    (library / "movie-h264-multilang.mkv").rename(latin1)
    scanned = invoke("--db", db_path, "scan", library)
    assert scanned.exit_code == 0, scanned.stdout + scanned.stderr
    files = len(list(library.iterdir()))
    assert query(db_path, "SELECT count(*) FROM files")[0][0] == files
    shown = f"{library}/caf\\xe9.mkv"
    assert query(db_path, "SELECT count(*) FROM files WHERE path = ?", (shown,))[0][0] == 1
    result = invoke("--db", db_path, "process", "--policy", CLEANUP, library)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert shown in result.stdout
    assert len(_runs(db_path)) == files
    assert query(db_path, "SELECT count(*) FROM files")[0][0] == files  # no second row


def test_a_file_reached_through_a_symlink_has_one_row(
    library: Path, db_path: Path, tmp_path: Path
) -> None:
    links = tmp_path / "links"
    links.mkdir()
    movie = library / "movie-h264-multilang.mkv"
    (links / "movie.mkv").symlink_to(movie)
    assert invoke("--db", db_path, "scan", links).exit_code == 0
    result = invoke("--db", db_path, "process", "--policy", CLEANUP, links / "movie.mkv")
    assert result.exit_code == 0, result.stdout + result.stderr
    rows = query(db_path, "SELECT path FROM files")
    assert [r["path"] for r in rows] == [str(movie.resolve())]
    assert len(_runs(db_path)) == 1


# --- issue 10: what the batch prints -----------------------------------------------------------


def test_dry_run_counts_only_what_it_planned(
    library: Path, db_path: Path, sample_files: list[SampleFile]
) -> None:
    (library / "broken.mkv").write_bytes(b"\x1a\x45\xdf\xa3 not really matroska")
    result = invoke("--db", db_path, "process", "--policy", CLEANUP, "--dry-run", library)
    assert result.exit_code == 1
    assert f"Dry run: {len(sample_files)} file(s) planned" in result.stdout
    assert "1 file(s) could not be planned:" in result.stdout
    assert f"  {library / 'broken.mkv'}" in result.stdout


def test_a_failure_line_names_the_path_once(library: Path, db_path: Path) -> None:
    broken = library / "broken.mkv"
    broken.write_bytes(b"\x1a\x45\xdf\xa3 not really matroska")
    result = invoke("--db", db_path, "process", "--policy", CLEANUP, library)
    (line,) = [line for line in result.stdout.splitlines() if "failed: " in line]
    assert line.count(str(broken)) == 1


def test_progress_lines_reach_a_log_as_files_finish(library: Path, db_path: Path) -> None:
    log = library.parent / "log.txt"
    with log.open("w") as out:
        vpo = subprocess.Popen(
            _vpo(db_path, "process", "--policy", CLEANUP, library),
            stdout=out,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and vpo.poll() is None:
            if "] ok " in log.read_text():
                break
            time.sleep(0.005)
        first_seen_while_running = vpo.poll() is None and "] ok " in log.read_text()
        vpo.wait(timeout=120)
    assert first_seen_while_running
    lines = log.read_text().splitlines()
    assert sum(1 for line in lines if line.startswith("[")) == len(list(library.glob("*.m*")))


def test_a_rescan_counts_the_known_unreadable_files(
    library: Path, db_path: Path, sample_files: list[SampleFile]
) -> None:
    (library / "broken.mkv").write_bytes(b"\x1a\x45\xdf\xa3 not really matroska")
    invoke("--db", db_path, "scan", library)
    again = invoke("--db", db_path, "scan", library)
    assert again.exit_code == 0
    assert "1 known file is still unreadable" in again.stdout


# --- 5. what killed runs leave is found by doctor and scan, without a later run ---------------


def _leave_work_behind(library: Path, tmp_path: Path) -> tuple[Path, str]:
    """A real in-place edit whose process died before recording it (journal unsettled),
    and a temporary file whose transcode was killed."""
    from vpo.executor.phase import PhaseExecutor
    from vpo.media.probe import probe
    from vpo.policy.planner import plan

    anime = library / "anime-hevc.mkv"
    original = _sha(anime)
    flags = tmp_path / "flags.yaml"
    flags.write_text(
        "schema_version: 1\nname: flags\nconfig: {audio_languages: [eng]}\n"
        "phases:\n  - name: f\n    default_flags: {audio: preferred}\n"
    )
    media = probe(anime)
    (phase,) = plan(media, load_policy(flags)).phases
    assert phase.actions and not phase.structural
    outcome = PhaseExecutor().run(anime, media, {t.index: t.index for t in media.tracks}, phase)
    assert outcome.journal is not None and outcome.journal.held is not None
    outcome.journal.held.release()  # its process "dies" before the run is recorded
    assert _sha(anime) != original
    stale = library / ".movie-h264-multilang.mkv.vpo-0123abcd.mkv"
    stale.write_bytes(b"half a transcode")
    return stale, original


def test_doctor_finds_and_cleans_what_interrupted_runs_left(
    library: Path, db_path: Path, tmp_path: Path
) -> None:
    assert invoke("--db", db_path, "scan", library).exit_code == 0
    stale, original = _leave_work_behind(library, tmp_path)
    report = invoke("--db", db_path, "doctor")
    assert report.exit_code == 1
    assert "Left by interrupted runs: 2 file(s)" in report.stdout
    assert str(stale) in report.stdout
    assert stale.exists()  # reporting changes nothing
    cleaned = invoke("--db", db_path, "doctor", "--clean")
    assert "restored anime-hevc.mkv byte for byte" in cleaned.stdout
    assert f"removed {stale.name}" in cleaned.stdout
    assert not stale.exists()
    assert _sha(library / "anime-hevc.mkv") == original
    assert invoke("--db", db_path, "doctor").stdout.count("Left by interrupted runs: nothing") == 1


def test_scan_cleans_what_interrupted_runs_left(
    library: Path, db_path: Path, tmp_path: Path
) -> None:
    stale, original = _leave_work_behind(library, tmp_path)
    held = library / ".clean-hevc.mkv.vpo-89abcdef.mkv"
    held.write_bytes(b"a transcode in progress elsewhere")
    from vpo.ownership import hold_lock

    lock = hold_lock(held, create=False)  # a live run (here: this test) owns it
    try:
        result = invoke("--db", db_path, "scan", library)
    finally:
        assert lock is not None
        lock.release()
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "Left by an interrupted VPO: restored anime-hevc.mkv byte for byte" in result.stdout
    assert not stale.exists() and held.exists()
    assert _sha(library / "anime-hevc.mkv") == original


def test_a_clean_exit_leaves_no_lock_files(library: Path, db_path: Path) -> None:
    done = subprocess.run(
        _vpo(db_path, "process", "--policy", CLEANUP, library),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    from vpo.ownership import locks_dir

    assert list(locks_dir(db_path).iterdir()) == []  # no claim, no lease left behind


def test_dry_run_names_symlinks_that_lead_nowhere(library: Path, db_path: Path) -> None:
    (library / "loop-a.mkv").symlink_to(library / "loop-b.mkv")
    (library / "loop-b.mkv").symlink_to(library / "loop-a.mkv")
    (library / "dangling.mkv").symlink_to(library / "gone.mkv")
    result = invoke("--db", db_path, "process", "--policy", CLEANUP, "--dry-run", library)
    assert result.exit_code == 1
    assert "unexpected" not in result.stdout + result.stderr
    assert "cannot plan: is a symlink loop" in result.stdout
    assert "cannot plan: is a dangling symlink" in result.stdout
    assert "3 file(s) could not be planned:" in result.stdout


def test_stats_file_finds_a_name_that_is_not_utf8(library: Path, db_path: Path) -> None:
    latin1 = Path(os.fsdecode(bytes(library) + b"/caf\xe9.mkv"))
    (library / "movie-h264-multilang.mkv").rename(latin1)
    assert invoke("--db", db_path, "process", "--policy", CLEANUP, latin1).exit_code == 0
    shown = invoke("--db", db_path, "stats", "file", latin1)
    assert shown.exit_code == 0, shown.stdout + shown.stderr
    assert "caf\\xe9.mkv" in shown.stdout
    inspected = invoke("--db", db_path, "inspect", latin1, "--format", "json")
    assert '"path": "' + f"{library}/caf\\\\xe9.mkv" in inspected.stdout


# --- 10. a database that stops taking writes mid-batch stops the batch ---------------------------


def test_a_full_disk_mid_batch_stops_before_the_next_file(small_disk: Path, library: Path) -> None:
    """The disk holding the database fills up between two files: the batch stops before
    touching the next one, every run so far is recorded, the rest is left as it was."""
    from vpo.cli.process import _unwritable

    db = small_disk / "library.db"
    files = sorted(library.iterdir())
    digests = {f: _sha(f) for f in files}
    telemetry = build_telemetry(db)
    store = LibraryStore(db)
    try:
        processor = FileProcessor(load_policy(CLEANUP), store, telemetry.tracer, telemetry.metrics)

        started: list[Path] = []

        def stop_check() -> str | None:
            if len(started) == 2:
                assert telemetry.flush() == []  # the first two runs are in the database
                fill_disk(small_disk)
            return telemetry.recording_problem() or _unwritable(db)

        report = process_files(processor, files, on_start=started.append, stop_check=stop_check)
    finally:
        store.close()
        (small_disk / "filler").unlink()
        telemetry.shutdown()
    assert report.stopped_early and report.not_started == len(files) - 2
    assert "The disk holding" in (report.stop_reason or "")
    assert [r.path for r in report.runs] == files[:2]
    assert len(_runs(db)) == 2
    for untouched in files[2:]:
        assert _sha(untouched) == digests[untouched]


# --- review: leftovers that resist, cleaners that race, attachments and durations -------------


def test_a_read_only_leftover_is_removed_by_a_scan_without_root_powers(
    library: Path, db_path: Path
) -> None:
    """A temporary file left with the original's 0444 mode (killed between the chmod and
    the rename) is removed: locking it needs no write access to the file itself."""
    stale = library / ".movie-mp4.mp4.vpo-0badf00d.mp4"
    stale.write_bytes(b"half a remux")
    stale.chmod(0o444)
    done = subprocess.run(
        [*_AS_A_USER, *_vpo(db_path, "scan", library)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"removed {stale.name}" in done.stdout
    assert not stale.exists()


def test_cleaners_racing_in_one_folder_never_fail(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from vpo.executor.safe_replace import clean_stale_work

    folder = tmp_path / "many"
    folder.mkdir()
    for number in range(300):
        (folder / f".f{number}.mkv.vpo-{number:08x}.mkv").write_bytes(b"x")
    with ThreadPoolExecutor(max_workers=4) as pool:
        said = list(pool.map(clean_stale_work, [folder] * 4))
    assert sum(len(s) for s in said) == 300  # each removed once, by one of them
    assert list(folder.iterdir()) == []


def test_dropping_the_longest_audio_of_a_file_with_fonts_is_not_a_cut(
    tmp_path: Path, db_path: Path
) -> None:
    """ffprobe gives an attachment the container's length: it must not make a correct
    result (the longer French dub removed) look cut short."""
    parts = tmp_path / "parts"
    parts.mkdir()
    ffmpeg = ["ffmpeg", "-v", "error", "-y"]
    subprocess.run(
        [
            *ffmpeg,
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=160x120:rate=25:duration=4",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=4",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=660:duration=8",
            "-map",
            "0",
            "-map",
            "1",
            "-map",
            "2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            "-metadata:s:a:0",
            "language=eng",
            "-metadata:s:a:1",
            "language=fre",
            str(parts / "av.mkv"),
        ],
        check=True,
    )
    font = next(Path("/usr/share/fonts/truetype/dejavu").glob("*.ttf"))
    movie = tmp_path / "dubbed.mkv"
    subprocess.run(
        [
            "mkvmerge",
            "--quiet",
            "-o",
            str(movie),
            "--attach-file",
            str(font),
            str(parts / "av.mkv"),
        ],
        check=True,
    )
    policy = tmp_path / "english.yaml"
    policy.write_text(
        "schema_version: 1\nname: english\nphases:\n"
        "  - name: clean\n    keep_audio: {languages: [eng]}\n"
    )
    result = invoke("--db", db_path, "process", "--policy", policy, movie)
    assert result.exit_code == 0, result.stdout + result.stderr
    (run,) = _runs(db_path)
    assert (run["success"], run["audio_tracks_removed"], run["attachments_after"]) == (1, 1, 1)


def test_an_in_place_edit_whose_progress_cannot_be_marked_is_undone(
    library: Path, db_path: Path, tmp_path: Path
) -> None:
    """With the run-markers file locked by someone else, a finished in-place edit could
    not be told apart from no edit after a crash: it is undone, and the run says so."""
    import sqlite3

    from vpo.db.interrupted import marker_path
    from vpo.media import edit_journal

    anime = library / "anime-hevc.mkv"
    original = _sha(anime)
    flags = tmp_path / "flags.yaml"
    flags.write_text(
        "schema_version: 1\nname: flags\nconfig: {audio_languages: [eng]}\n"
        "phases:\n  - name: f\n    default_flags: {audio: preferred}\n"
    )
    telemetry = build_telemetry(db_path)
    store = LibraryStore(db_path)
    blocker = sqlite3.connect(marker_path(db_path), isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")  # every marker write now times out
        processor = FileProcessor(load_policy(flags), store, telemetry.tracer, telemetry.metrics)
        result = processor.process(anime)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        store.close()
        assert telemetry.shutdown() == []
    assert not result.success
    assert result.error is not None and result.error.startswith("the in-place edit was undone")
    assert _sha(anime) == original
    assert edit_journal.find_stale(library) == []
    (run,) = _runs(db_path)
    assert (run["success"], run["total_changes"], run["phases_completed"]) == (0, 0, 0)
    assert run["size_after"] == run["size_before"]
