"""The CLI's recording helper: every run is in the database when the command's block
ends; a database that cannot take the rows makes the command fail (exit 1)."""

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.helpers import database_with_files, query, read_only
from vpo.db.interrupted import marker_path

SCRIPT = textwrap.dedent(
    """
    import sys, urllib.request
    sys.path.insert(0, sys.argv[3])
    from tests.synthetic import emit, ten_action_run
    from vpo.cli.context import AppContext
    from vpo.cli.recording import recording
    from vpo.errors import VpoError

    port = int(sys.argv[2]) if sys.argv[2] != "-" else None
    try:
        with recording(AppContext(db_path=sys.argv[1]), metrics_port=port) as telemetry:
            for _ in range(3):
                emit(telemetry.tracer, telemetry.metrics, ten_action_run(1))
            if port is not None:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
                print([l for l in body.splitlines() if l.startswith("vpo_files_processed_total")])
    except VpoError as exc:
        print(f"exit {int(exc.exit_code)}: {exc}")
    """
)
ROOT = Path(__file__).resolve().parents[2]


def _db(tmp_path: Path) -> Path:
    return database_with_files(tmp_path / "vpo.db")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(db: Path, port: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(db), port, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout + result.stderr


def test_every_run_is_recorded_when_the_block_ends(tmp_path: Path) -> None:
    db = _db(tmp_path)
    port = _free_port()
    output = _run(db, str(port))
    assert 'vpo_files_processed_total{policy="synthetic",status="success"} 3.0' in output
    assert f"Serving /metrics on http://127.0.0.1:{port}/metrics" in output
    assert query(db, "SELECT count(*) FROM processing_stats")[0][0] == 3
    assert query(db, "SELECT count(*) FROM action_results")[0][0] == 30
    assert query(marker_path(db), "SELECT count(*) FROM runs_in_progress")[0][0] == 0
    with socket.socket() as sock:  # the metrics server was shut down with the block
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_unrecordable_runs_fail_the_command(tmp_path: Path) -> None:
    db = _db(tmp_path)
    with read_only(db):
        output = _run(db, "-")
    assert "exit 1: " in output
    assert "problem(s) while recording statistics" in output
    assert "readonly database" in output
