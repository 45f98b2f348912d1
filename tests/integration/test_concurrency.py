"""Commands on one database at the same time — two `vpo process` batches and a `vpo scan`;
`vpo serve --watch`, a batch and purges: no "database is locked", no lost run."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import CLEANUP, assert_statistics_exact, query
from tests.integration.test_server_api import start_server
from vpo.samples import SampleFile

POLICY = Path(__file__).parents[2] / "examples" / "policies" / "cleanup-organize.yaml"


def test_concurrent_commands_share_the_database(
    tmp_path: Path, sample_files: list[SampleFile]
) -> None:
    db = tmp_path / "shared.db"
    folders = []
    for name in ("one", "two", "three"):
        folder = tmp_path / name
        folder.mkdir()
        for copy in range(3):
            for sample in sample_files:
                shutil.copy(sample.path, folder / f"{copy}-{sample.path.name}")
        folders.append(folder)
    vpo = [sys.executable, "-m", "vpo", "--db", str(db)]
    commands = [
        *([*vpo, "process", "--policy", str(POLICY), "--jobs", "2", str(f)] for f in folders[:2]),
        [*vpo, "scan", str(folders[2])],
    ]
    running = [
        subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    outputs = [p.communicate(timeout=300) for p in running]
    for process, (out, err) in zip(running, outputs, strict=True):
        assert process.returncode == 0, out + err
        assert "locked" not in out + err
    per_folder = 3 * len(sample_files)
    assert query(db, "SELECT count(*) FROM processing_stats")[0][0] == 2 * per_folder
    assert (
        query(db, "SELECT count(*) FROM processing_stats WHERE success = 1")[0][0] == 2 * per_folder
    )
    assert query(db, "SELECT count(*) FROM files")[0][0] == 3 * per_folder
    assert (
        query(db, "SELECT count(DISTINCT stats_id) FROM performance_metrics")[0][0]
        == 2 * per_folder
    )


def test_watch_a_batch_and_purges_at_once_lose_nothing(
    tmp_path: Path, sample_files: list[SampleFile]
) -> None:
    """`vpo serve --watch`, a `vpo process` batch and `vpo stats purge`s on one database at
    the same time: no "database is locked", every run recorded once, the purged policy
    gone, and the rollups equal plain SQL afterwards."""
    db = tmp_path / "shared.db"
    copies = 3
    folders = {}
    for name in ("old", "watched", "batch"):
        folder = tmp_path / name
        folder.mkdir()
        for copy in range(copies):
            for sample in sample_files:
                target = folder / f"{copy}-{sample.path.name}"
                shutil.copyfile(sample.path, target)
                os.utime(target, (time.time() - 3600,) * 2)  # long still: watched at once
        folders[name] = folder
    per_folder = copies * len(sample_files)
    old = tmp_path / "old.yaml"
    old.write_text(CLEANUP.read_text().replace("name: language-cleanup", "name: old"))
    vpo = [sys.executable, "-m", "vpo", "--db", str(db)]
    seeded = subprocess.run(
        [*vpo, "process", "--policy", str(old), str(folders["old"])],
        capture_output=True,
        text=True,
        check=False,
    )
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr

    server = start_server(
        db,
        tmp_path,
        options=(
            "--watch",
            str(folders["watched"]),
            "--policy",
            str(CLEANUP),
            "--interval",
            "0.5",
            "--jobs",
            "2",
        ),
    )
    try:
        batch = subprocess.Popen(
            [*vpo, "process", "--policy", str(POLICY), "--jobs", "2", str(folders["batch"])],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        purges = []
        while batch.poll() is None or not purges:  # purge again and again while it runs
            purges.append(
                subprocess.run(
                    [*vpo, "stats", "purge", "--policy", "old", "--yes", "--format", "json"],
                    capture_output=True,
                    text=True,
                    check=False,
                )
            )
        out, err = batch.communicate(timeout=300)
        assert batch.returncode == 0, out + err
        assert "locked" not in out + err
        deadline = time.monotonic() + 120
        while _runs(db, "language-cleanup") < per_folder and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        assert server.stop() == 0
    log = server.log()
    assert "locked" not in log and "Traceback" not in log, log
    for purge in purges:
        assert purge.returncode == 0 and "locked" not in purge.stdout + purge.stderr, purge.stderr
    deleted = sum(json.loads(p.stdout)["deleted_count"] for p in purges)
    assert deleted == per_folder  # every seeded run purged once, none twice
    assert _runs(db, "old") == 0
    assert _runs(db, "cleanup-organize") == per_folder
    assert _runs(db, "language-cleanup") == per_folder  # each watched file once
    assert query(db, "SELECT count(*) FROM watch_files")[0][0] == per_folder
    assert_statistics_exact(db)


def _runs(db: Path, policy: str) -> int:
    rows = query(db, "SELECT count(*) FROM processing_stats WHERE policy_name = ?", (policy,))
    return int(rows[0][0])
