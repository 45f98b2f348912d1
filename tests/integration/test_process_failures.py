"""Failures never cost the original: each leaves it byte-identical (full sha256), no
temporary file behind, and a failed run recorded with its error."""

import hashlib
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import CLEANUP, EXAMPLES, SLOW_TRANSCODE, invoke, query, read_only
from vpo.db.interrupted import marker_path
from vpo.executor.phase import PhaseExecutor
from vpo.policy.loader import load_policy
from vpo.samples import SampleFile, make_corrupt_samples
from vpo.telemetry.setup import build_telemetry
from vpo.workflow.library_store import LibraryStore
from vpo.workflow.processor import FileProcessor


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".vpo-" in p.name)


def _runs(db_path: Path) -> list:
    return query(db_path, "SELECT * FROM processing_stats ORDER BY processed_at")


def test_corrupt_input(tmp_path: Path, db_path: Path, sample_files: list[SampleFile]) -> None:
    folder = tmp_path / "broken"
    corrupt = make_corrupt_samples(folder, sample_files[0].path)
    digests = {name: _sha(path) for name, path in corrupt.items()}
    result = invoke("--db", db_path, "process", "--policy", CLEANUP, folder)
    assert result.exit_code == 1
    assert "Processed 3 file(s): 0 succeeded, 3 failed." in result.stdout
    assert {name: _sha(path) for name, path in corrupt.items()} == digests
    assert _temporaries(folder) == []
    runs = _runs(db_path)
    assert len(runs) == 3 and all(r["success"] == 0 for r in runs)
    errors = sorted(r["error_message"] for r in runs)
    assert any("Invalid data found when processing input" in e for e in errors)
    assert any("is truncated" in e for e in errors)
    assert all(r["size_before"] == r["size_after"] for r in runs)


def _limit_file_size() -> None:
    limit = 64 * 1024  # the tool may write 64 KiB, then the kernel stops it (SIGXFSZ)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_tool_failing_mid_write(library: Path, db_path: Path) -> None:
    movie = library / "movie-h264-multilang.mkv"  # a remux must write ~700 KB
    digest = _sha(movie)
    telemetry = build_telemetry(db_path)
    store = LibraryStore(db_path)
    processor = FileProcessor(
        load_policy(CLEANUP),
        store,
        telemetry.tracer,
        telemetry.metrics,
        PhaseExecutor(preexec_fn=_limit_file_size),
    )
    result = processor.process(movie)
    store.close()
    assert telemetry.shutdown() == []
    assert not result.success
    assert "mkvmerge was killed by SIGXFSZ" in result.error
    assert _sha(movie) == digest
    assert _temporaries(library) == []
    (run,) = _runs(db_path)
    assert run["success"] == 0 and "SIGXFSZ" in run["error_message"]
    assert (run["phases_completed"], run["total_changes"]) == (0, 0)
    actions = query(db_path, "SELECT success, message FROM action_results")
    assert actions and all(a["success"] == 0 and "SIGXFSZ" in a["message"] for a in actions)


def test_killed_mid_remux_then_the_next_run_cleans_up(
    library: Path, db_path: Path, tmp_path: Path
) -> None:
    movie = library / "movie-h264-multilang.mkv"
    digest, original_size = _sha(movie), movie.stat().st_size
    slow = tmp_path / "slow.yaml"
    slow.write_text(SLOW_TRANSCODE)
    vpo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vpo",
            "--db",
            str(db_path),
            "process",
            "--policy",
            str(slow),
            str(movie),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not _temporaries(library) and time.monotonic() < deadline and vpo.poll() is None:
        time.sleep(0.005)
    assert _temporaries(library), "the transcode never started writing"
    os.killpg(vpo.pid, signal.SIGKILL)  # VPO and its ffmpeg die mid-write, like a power cut
    vpo.wait()
    assert _sha(movie) == digest
    assert len(_temporaries(library)) == 1  # left behind by the dead process
    assert query(marker_path(db_path), "SELECT count(*) FROM runs_in_progress")[0][0] == 1

    result = invoke("--db", db_path, "process", "--policy", CLEANUP, movie)

    assert result.exit_code == 0, result.stderr
    assert _temporaries(library) == []
    interrupted, second = _runs(db_path)
    assert interrupted["success"] == 0
    assert interrupted["error_message"].startswith(f"interrupted: the VPO process (pid {vpo.pid})")
    assert interrupted["policy_name"] == "slow"
    assert interrupted["size_before"] == interrupted["size_after"] == original_size
    assert interrupted["audio_tracks_before"] == 4
    assert second["success"] == 1 and second["policy_name"] == "language-cleanup"


def test_read_only_directory(library: Path, db_path: Path) -> None:
    movie = library / "movie-h264-multilang.mkv"
    digest = _sha(movie)
    with read_only(library):
        result = invoke("--db", db_path, "process", "--policy", CLEANUP, movie)
    assert result.exit_code == 1
    assert _sha(movie) == digest
    assert _temporaries(library) == []
    (run,) = _runs(db_path)
    assert run["success"] == 0
    # VPO creates the temporary file itself (to own it by a lock), so it is VPO that says so.
    problem = f"cannot create a temporary file in {library}: Operation not permitted"
    assert run["error_message"] == problem
    assert f"failed: {movie}: {problem}" in result.stdout


def test_on_error_fail_stops_the_batch(
    library: Path, db_path: Path, tmp_path: Path, sample_files: list[SampleFile]
) -> None:
    make_corrupt_samples(library / "000-broken", sample_files[0].path)  # sorts first
    policy = tmp_path / "strict.yaml"
    policy.write_text(CLEANUP.read_text().replace("phases:", "config: {on_error: fail}\nphases:"))
    result = invoke("--db", db_path, "process", "--policy", policy, library)
    assert result.exit_code == 1
    assert "Stopped after the first failure (on_error: fail)" in result.stdout
    (run,) = _runs(db_path)
    assert run["success"] == 0 and "ffprobe cannot read the file" in run["error_message"]
    (path,) = query(db_path, "SELECT path FROM files WHERE id = ?", (run["file_id"],))[0]
    assert path.endswith("000-broken/random-bytes.mkv")


def test_parallel_jobs_record_every_run(library: Path, db_path: Path) -> None:
    result = invoke(
        "--db",
        db_path,
        "process",
        "--policy",
        EXAMPLES / "hevc-transcode.yaml",
        "--jobs",
        "2",
        library,
    )
    assert result.exit_code == 0, result.stderr
    files = len(list(library.glob("*.m*")))
    assert len(_runs(db_path)) == files
    assert query(db_path, "SELECT count(DISTINCT file_id) FROM processing_stats")[0][0] == files
