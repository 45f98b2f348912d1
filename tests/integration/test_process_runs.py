"""Each example policy over every sample layout: the recorded run equals what an
independent measurement of the file says before and after (os.stat, a fresh ffprobe,
the partial hash and a full sha256)."""

import hashlib
import json
from pathlib import Path

import pytest

from tests.helpers import invoke, query
from vpo.media.hashing import partial_hash
from vpo.media.probe import probe
from vpo.media.tracks import MediaInfo, TrackType
from vpo.policy.loader import load_policy
from vpo.policy.planner import plan

EXAMPLES = sorted((Path(__file__).parents[2] / "examples" / "policies").glob("*.yaml"))
KINDS = {
    "audio_tracks": TrackType.AUDIO,
    "subtitle_tracks": TrackType.SUBTITLE,
    "attachments": TrackType.ATTACHMENT,
}


def _full_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _measure(path: Path) -> dict:
    media = probe(path)
    return {
        "size": path.stat().st_size,
        "media": media,
        "partial": partial_hash(path),
        "full": _full_hash(path),
    }


def _counts(media: MediaInfo) -> dict[str, int]:
    return {name: media.count(kind) for name, kind in KINDS.items()}


@pytest.mark.parametrize("policy_path", EXAMPLES, ids=lambda p: p.stem)
def test_recorded_runs_equal_independent_measurement(
    policy_path: Path, library: Path, db_path: Path
) -> None:
    policy = load_policy(policy_path)
    files = sorted(library.glob("*.m*"))
    before = {f: _measure(f) for f in files}
    plans = {f: plan(before[f]["media"], policy) for f in files}

    result = invoke("--db", db_path, "process", "--policy", policy_path, library)

    assert result.exit_code == 0, result.stdout + result.stderr
    assert f"Processed {len(files)} file(s): {len(files)} succeeded, 0 failed." in result.stdout
    for path in files:
        after = _measure(path)
        (run,) = query(
            db_path,
            "SELECT s.* FROM processing_stats s JOIN files f ON f.id = s.file_id WHERE f.path = ?",
            (str(path),),
        )
        expected_plan = plans[path]
        assert run["success"] == 1 and run["error_message"] is None
        assert run["policy_name"] == policy.name
        assert (run["size_before"], run["size_after"]) == (before[path]["size"], after["size"])
        assert run["size_change"] == before[path]["size"] - after["size"]
        for name, count in _counts(before[path]["media"]).items():
            assert run[f"{name}_before"] == count, name
        for name, count in _counts(after["media"]).items():
            assert run[f"{name}_after"] == count, name
            assert run[f"{name}_removed"] == max(run[f"{name}_before"] - count, 0), name
        assert run["hash_before"] == before[path]["partial"]
        assert run["hash_after"] == after["partial"]
        changed = before[path]["full"] != after["full"]
        assert (run["hash_before"] != run["hash_after"]) == changed
        assert changed == (not expected_plan.empty)
        assert run["video_source_codec"] == before[path]["media"].video_codec
        assert (run["phases_completed"], run["phases_total"]) == (len(policy.phases),) * 2
        assert run["total_changes"] == len(expected_plan.actions)

        actions = query(
            db_path, "SELECT * FROM action_results WHERE stats_id = ? ORDER BY id", (run["id"],)
        )
        assert [
            (a["action_type"], a["track_type"], a["track_index"], a["rule_reference"])
            for a in actions
        ] == [(a.action_type, a.track_type, a.track_index, a.rule) for a in expected_plan.actions]
        for row, planned in zip(actions, expected_plan.actions, strict=True):
            assert row["success"] == 1
            assert (
                json.loads(row["before_state"]) if row["before_state"] else None
            ) == planned.before
            assert (json.loads(row["after_state"]) if row["after_state"] else None) == planned.after
            assert row["duration_ms"] >= 0
        phases = query(
            db_path,
            "SELECT * FROM performance_metrics WHERE stats_id = ? ORDER BY id",
            (run["id"],),
        )
        assert [p["phase_name"] for p in phases] == [p.name for p in policy.phases]
        for row, phase_plan in zip(phases, expected_plan.phases, strict=True):
            if phase_plan.actions:  # a tool ran: its I/O is known
                assert row["bytes_read"] > 0 and row["bytes_written"] > 0
            else:
                assert row["bytes_read"] is None and row["bytes_written"] is None

        (file_row,) = query(db_path, "SELECT * FROM files WHERE path = ?", (str(path),))
        assert file_row["size_bytes"] == after["size"]  # the library row was refreshed
        assert file_row["content_hash"] == after["partial"]
        stored = query(
            db_path,
            "SELECT track_type FROM tracks WHERE file_id = ? ORDER BY track_index",
            (file_row["id"],),
        )
        assert [r[0] for r in stored] == [t.track_type.value for t in after["media"].tracks]
