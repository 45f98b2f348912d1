"""The /metrics exposition after synthetic runs: fetched over HTTP, parsed with
prometheus_client's parser, every name and label of docs/metrics.md with the values the runs
imply, and `promtool check metrics` clean."""

import subprocess
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import query
from tests.synthetic import emit, ten_action_run
from vpo.db import open_database
from vpo.telemetry.instruments import DURATION_BUCKETS_S, FPS_BUCKETS, SIZE_BUCKETS_BYTES
from vpo.telemetry.serving import render_metrics, start_metrics_server
from vpo.telemetry.setup import Telemetry, build_telemetry

# docs/metrics.md: name → (type, label names)
LIVE = {
    "vpo_files_processed": ("counter", {"policy", "status"}),
    "vpo_file_input_bytes": ("counter", {"policy"}),
    "vpo_file_output_bytes": ("counter", {"policy"}),
    "vpo_file_size_bytes": ("histogram", {"policy", "stage"}),
    "vpo_processing_duration_seconds": ("histogram", {"policy", "status"}),
    "vpo_phase_duration_seconds": ("histogram", {"policy", "phase"}),
    "vpo_actions": ("counter", {"action_type", "track_type", "status"}),
    "vpo_action_duration_seconds": ("histogram", {"action_type"}),
    "vpo_tracks_removed": ("counter", {"policy", "track_type"}),
    "vpo_transcodes": ("counter", {"policy", "kind", "outcome"}),
    "vpo_io_bytes": ("counter", {"direction"}),
    "vpo_encoding_fps": ("histogram", {"codec"}),
    "vpo_files_in_progress": ("gauge", set()),
}
LIBRARY = {
    "vpo_library_files": {"container"},
    "vpo_library_size_bytes": set(),
    "vpo_library_tracks": {"track_type", "codec"},
    "vpo_library_video_files": {"video_codec", "resolution"},
    "vpo_history_runs": {"policy", "status"},
    "vpo_history_saved_bytes": {"policy"},
}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Telemetry, str, Path]]:
    db = tmp_path / "vpo.db"
    conn = open_database(db)
    conn.execute(
        "INSERT INTO files (id, path, size_bytes, mtime, container, scanned_at, video_codec, "
        "video_width, video_height) "
        "VALUES (1, '/l/a.mkv', 123456, 1, 'mkv', 'x', 'h264', 1920, 1080)"
    )
    conn.execute(
        "INSERT INTO tracks (file_id, track_index, track_type, codec) VALUES "
        "(1, 0, 'video', 'h264'), (1, 1, 'audio', 'aac'), (1, 2, 'audio', 'aac')"
    )
    conn.close()
    telemetry = build_telemetry(db, max_export_batch_size=2)
    for policy in ("anime", "anime", "movies"):
        emit(telemetry.tracer, telemetry.metrics, ten_action_run(1, policy))
    failing = ten_action_run(1, "movies")
    failing.fail_with = RuntimeError("boom")
    emit(telemetry.tracer, telemetry.metrics, failing)
    telemetry.flush()
    server, _thread = start_metrics_server(telemetry.registry, 0)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        yield telemetry, url, db
    finally:
        server.shutdown()
        telemetry.shutdown()


def _samples(text: str) -> dict[str, dict[frozenset, float]]:
    values: dict[str, dict[frozenset, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name][frozenset(sample.labels.items())] = sample.value
    return values


def test_exposition_has_every_name_label_and_value(served: tuple[Telemetry, str, Path]) -> None:
    _telemetry, url, db = served
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our http URL
        assert response.status == 200
        text = response.read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, (kind, labels) in LIVE.items():
        assert families[name].type == kind, name
        for sample in families[name].samples:
            assert set(sample.labels) - {"le"} == labels, (name, sample.labels)
    for name, labels in LIBRARY.items():
        assert families[name].type == "gauge"
        for sample in families[name].samples:
            assert set(sample.labels) == labels, (name, sample.labels)

    v = _samples(text)
    # Three successful runs (2 anime, 1 movies) and one failed movies run.
    assert v["vpo_files_processed_total"] == {
        frozenset({("policy", "anime"), ("status", "success")}): 2,
        frozenset({("policy", "movies"), ("status", "success")}): 1,
        frozenset({("policy", "movies"), ("status", "failure")}): 1,
    }
    anime_in = v["vpo_file_input_bytes_total"][frozenset({("policy", "anime")})]
    anime_out = v["vpo_file_output_bytes_total"][frozenset({("policy", "anime")})]
    saved = query(db, "SELECT sum(size_change) FROM processing_stats WHERE policy_name = 'anime'")[
        0
    ][0]
    assert anime_in - anime_out == saved == 2 * 2_000_000
    movies_in = v["vpo_file_input_bytes_total"][frozenset({("policy", "movies")})]
    movies_out = v["vpo_file_output_bytes_total"][frozenset({("policy", "movies")})]
    assert movies_in - movies_out == 2_000_000  # the failed run saved nothing
    assert (
        v["vpo_tracks_removed_total"][frozenset({("policy", "anime"), ("track_type", "audio")})]
        == 4
    )
    assert (
        v["vpo_actions_total"][
            frozenset(
                {
                    ("action_type", "clear_default"),
                    ("track_type", "subtitle"),
                    ("status", "failure"),
                }
            )
        ]
        == 3
    )  # phase 2 of the three runs that got there
    assert (
        v["vpo_actions_total"][
            frozenset({("action_type", "remove"), ("track_type", "audio"), ("status", "success")})
        ]
        == 8
    )  # phase 1 of all four runs
    assert (
        v["vpo_transcodes_total"][
            frozenset({("policy", "anime"), ("kind", "video"), ("outcome", "transcoded")})
        ]
        == 2
    )
    assert (
        v["vpo_io_bytes_total"][frozenset({("direction", "read")})] == 10 * 4_000_000
    )  # 10 phases
    assert v["vpo_files_in_progress"][frozenset()] == 0
    assert (
        v["vpo_processing_duration_seconds_count"][
            frozenset({("policy", "movies"), ("status", "failure")})
        ]
        == 1
    )
    assert v["vpo_encoding_fps_count"][frozenset({("codec", "hevc")})] == 3
    size_buckets = sorted(
        float(dict(k)["le"])
        for k in v["vpo_file_size_bytes_bucket"]
        if ("policy", "anime") in k and ("stage", "before") in k and dict(k)["le"] != "+Inf"
    )
    assert size_buckets == [float(b) for b in SIZE_BUCKETS_BYTES]
    duration_buckets = sorted(
        float(dict(k)["le"])
        for k in v["vpo_action_duration_seconds_bucket"]
        if ("action_type", "remove") in k and dict(k)["le"] != "+Inf"
    )
    assert duration_buckets == [float(b) for b in DURATION_BUCKETS_S]
    fps_buckets = sorted(
        float(dict(k)["le"]) for k in v["vpo_encoding_fps_bucket"] if dict(k)["le"] != "+Inf"
    )
    assert fps_buckets == [float(b) for b in FPS_BUCKETS]

    # The library collector reads the database.
    assert v["vpo_library_files"] == {frozenset({("container", "mkv")}): 1}
    assert v["vpo_library_size_bytes"] == {frozenset(): 123456}
    assert v["vpo_library_tracks"][frozenset({("track_type", "audio"), ("codec", "aac")})] == 2
    assert v["vpo_library_video_files"] == {
        frozenset({("video_codec", "h264"), ("resolution", "1080p")}): 1
    }
    assert v["vpo_history_runs"] == {
        frozenset({("policy", "anime"), ("status", "success")}): 2,
        frozenset({("policy", "anime"), ("status", "failure")}): 0,  # a series, not a gap
        frozenset({("policy", "anime"), ("status", "failure")}): 0,  # a series, not a gap
        frozenset({("policy", "movies"), ("status", "success")}): 1,
        frozenset({("policy", "movies"), ("status", "failure")}): 1,
    }
    assert v["vpo_history_saved_bytes"] == {
        frozenset({("policy", "anime")}): 4_000_000,
        frozenset({("policy", "movies")}): 2_000_000,
    }
    assert 'service_name="vpo"' in text


def test_promtool_accepts_the_exposition(served: tuple[Telemetry, str, Path]) -> None:
    telemetry, _url, _db = served
    body, content_type = render_metrics(telemetry.registry)
    assert content_type.startswith("text/plain")
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == b"" and result.stderr.strip() == b""


def test_openmetrics_when_asked(served: tuple[Telemetry, str, Path]) -> None:
    telemetry, _url, _db = served
    body, content_type = render_metrics(
        telemetry.registry, "application/openmetrics-text; version=1.0.0"
    )
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")
