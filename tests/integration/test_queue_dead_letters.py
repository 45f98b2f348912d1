"""Retries and dead letters end to end (issue #14; docs/cli.md, `vpo worker` and `vpo
queue`): a real `redis-server`, a real `vpo serve`, real `vpo worker` subprocesses. A run
that fails is retried `--retries` times, each attempt a failed run recorded on the
server; then its message is a dead letter that `vpo queue dead` shows with VPO's
sentence (not a traceback), `vpo queue retry` puts back, and a worker runs again. A
refused message (changed file) dies at once, with no run."""

import json
from pathlib import Path

from tests.helpers import CLEANUP, invoke, query
from tests.queue_support import (
    dead_letters,
    enqueue,
    kill,
    runs,
    serve,
    start_worker,
    stop,
    until,
    worker_log,
)
from tests.queue_support import messages as waiting
from vpo.cli.output import short_id
from vpo.samples import SampleFile, make_corrupt_samples

FAST_RETRIES = ("--retries", "1", "--retry-delay", "0")  # two attempts, no backoff


def _queue(*args: str) -> tuple[int, str, str]:
    result = invoke("queue", *args)
    return result.exit_code, result.stdout, result.stderr


def _dead(url: str) -> list[dict]:
    code, out, err = _queue("dead", "--queue", url, "--format", "json")
    assert code == 0, err
    items: list[dict] = json.loads(out)["items"]
    return items


def _status(url: str) -> dict[str, int]:
    code, out, err = _queue("status", "--queue", url, "--format", "json")
    assert code == 0, err
    counts: dict[str, int] = json.loads(out)
    return counts


def _failed_runs(server_db: Path) -> list:
    return query(
        server_db,
        "SELECT id, success, error_message, trace_id FROM processing_stats ORDER BY processed_at",
    )


def test_a_failing_run_is_retried_dead_lettered_shown_and_retried_again(
    tmp_path: Path, sample_files: list[SampleFile], library: Path, redis_url: str
) -> None:
    # A real broken file: its header parses (the enqueue's probe takes it), its clusters
    # end early — every run of it fails, the same way each time.
    broken = make_corrupt_samples(tmp_path / "broken", sample_files[0].path)["truncated-tail"]
    changed = library / sorted(p.name for p in library.iterdir())[0]
    server_db = tmp_path / "server.db"
    enqueue(server_db, CLEANUP, redis_url, broken)
    enqueue(server_db, CLEANUP, redis_url, changed)
    trace_of = {m.relative_path: m.trace_id for m in waiting(redis_url)}
    with changed.open("ab") as handle:  # after the enqueue: refused, never run
        handle.write(b"\0" * 4096)
    assert _status(redis_url) == {"waiting": 2, "taken": 0, "delayed": 0, "dead": 0}

    served = serve(server_db, tmp_path)
    first = tmp_path / "first"
    first.mkdir()
    worker = start_worker(redis_url, served.url, first, *FAST_RETRIES)
    second = None
    try:
        until(lambda: dead_letters(redis_url) == 2 and runs(server_db) >= 2, worker)
        assert stop(worker) == [0]
        log = worker_log(first)

        # Two attempts (--retries 1), each a failed run of its own in the message's trace.
        attempts = _failed_runs(server_db)
        assert len(attempts) == 2, log
        assert all(run["success"] == 0 for run in attempts), log
        assert {run["trace_id"] for run in attempts} == {trace_of[broken.name]}
        assert _status(redis_url) == {"waiting": 0, "taken": 0, "delayed": 0, "dead": 2}

        letters = {Path(item["path"]).name: item for item in _dead(redis_url)}
        assert sorted(letters) == sorted([broken.name, changed.name])
        failed = letters[broken.name]
        last = attempts[-1]
        assert failed["path"] == str(broken.resolve())
        assert failed["root"] == str(broken.parent.resolve())
        assert failed["policy"] == "language-cleanup"
        assert failed["attempts"] == 2
        assert failed["trace_id"] == trace_of[broken.name]
        # VPO's sentence, naming the last run (`vpo stats detail` takes its id).
        assert failed["reason"] == f"run {last['id']} failed: {last['error_message']}"
        assert "Traceback" not in failed["reason"]
        assert failed["died_time"].endswith("Z") and failed["enqueued_time"] <= failed["died_time"]
        refused = letters[changed.name]
        assert refused["attempts"] == 1
        assert "changed since it was enqueued" in refused["reason"], refused
        assert refused["trace_id"] == trace_of[changed.name]

        code, table, err = _queue("dead", "--queue", redis_url)
        assert code == 0, err
        words = " ".join(table.split())  # the reason is folded to the width
        assert short_id(failed["id"]) in table and " ".join(failed["reason"].split()) in words
        assert f"(trace {failed['trace_id']})" in words, table
        assert broken.name in table and "language-cleanup" in table

        # Back to the queue by a short id: counted as waiting, no longer dead.
        code, out, err = _queue("retry", "--queue", redis_url, short_id(failed["id"]))
        assert (code, out.strip()) == (0, "Moved 1 dead letter(s) back to the queue."), err
        assert _status(redis_url) == {"waiting": 1, "taken": 0, "delayed": 0, "dead": 1}
        assert [item["id"] for item in _dead(redis_url)] == [refused["id"]]
        [again] = waiting(redis_url)
        assert again.trace_id == trace_of[broken.name]

        # A worker runs it again: its retry count starts over (two more attempts).
        second = tmp_path / "second"
        second.mkdir()
        worker = start_worker(redis_url, served.url, second, *FAST_RETRIES)
        until(lambda: dead_letters(redis_url) == 2 and runs(server_db) >= 4, worker)
        assert stop(worker) == [0]
    finally:
        kill(worker)
        assert served.stop() == 0
    log = worker_log(second)
    attempts = _failed_runs(server_db)
    assert len(attempts) == 4 and not any(run["success"] for run in attempts), log
    assert log.count(f"failed ({attempts[-1]['error_message']})") >= 1, log
    [dead_again] = [item for item in _dead(redis_url) if item["path"] == str(broken.resolve())]
    assert dead_again["attempts"] == 2 and dead_again["id"] != failed["id"]
    assert (
        dead_again["reason"] == f"run {attempts[-1]['id']} failed: {attempts[-1]['error_message']}"
    )
    assert _status(redis_url) == {"waiting": 0, "taken": 0, "delayed": 0, "dead": 2}

    # The refused one deleted for good (asked first: no answer, nothing deleted); --all
    # moves every dead letter left.
    code, out, err = _queue("purge-dead", "--queue", redis_url, refused["id"])
    assert (code, out) == (1, "") and "Nothing deleted: no answer" in err, err
    code, out, _ = _queue("purge-dead", "--queue", redis_url, refused["id"], "--yes")
    assert (code, out.strip()) == (0, "Deleted 1 dead letter(s).")
    code, out, _ = _queue("retry", "--queue", redis_url, "--all")
    assert (code, out.strip()) == (0, "Moved 1 dead letter(s) back to the queue.")
    assert _status(redis_url) == {"waiting": 1, "taken": 0, "delayed": 0, "dead": 0}
    assert [m.relative_path for m in waiting(redis_url)] == [broken.name]


def test_bad_input_is_one_sentence_with_its_exit_code(tmp_path: Path, redis_url: str) -> None:
    code, out, err = _queue("retry", "--queue", redis_url, "0123abcd")
    assert code == 65 and out == ""
    assert err.strip() == (
        "Error: No dead letter with id 0123abcd in the queue (see `vpo queue dead`)."
    )
    code, _, err = _queue("retry", "--queue", redis_url)  # neither ids nor --all
    assert code == 2 and "or --all" in err
    code, _, err = _queue("retry", "--queue", redis_url, "0")
    assert code == 2 and err.startswith("Error: '0' is too short") and len(err.splitlines()) == 1
    code, out, err = _queue("dead", "--queue", redis_url)
    assert (code, out.strip()) == (0, "No dead letters.")
    assert json.loads(_queue("dead", "--queue", redis_url, "--format", "json")[1]) == {"items": []}

    for args in (("status",), ("dead",), ("retry", "--all")):
        code, out, err = _queue(*args, "--queue", "redis://127.0.0.1:1/0")
        assert code == 1 and out == "", err
        assert err.startswith("Error: Cannot reach the queue's Redis:"), err
        assert len(err.strip().splitlines()) == 1, err
    code, _, err = _queue("status", "--queue", "http://127.0.0.1:1/0")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
