"""Two `vpo process` batches and a `vpo scan` on one database at the same time: no
"database is locked", no lost run."""

import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import query
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
