"""`vpo doctor`, `vpo inspect` and `vpo samples make` with the real tools."""

import json
import re
import subprocess
from pathlib import Path

from tests.helpers import invoke, run_vpo, tool_dir_without
from vpo.db import SCHEMA_VERSION
from vpo.media.hashing import partial_hash
from vpo.media.tracks import TrackType
from vpo.samples import LAYOUTS, SampleFile, make_corrupt_samples


def _version(command: list[str], pattern: str) -> str:
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    match = re.search(pattern, output)
    assert match, output
    return match.group(1)


def test_doctor_reports_tools_and_versions(tmp_path: Path) -> None:
    result = run_vpo("--db", tmp_path / "d.db", "doctor")
    assert result.returncode == 0, result.stderr
    ffprobe = _version(["ffprobe", "-version"], r"ffprobe version (\S+)")
    mkvmerge = _version(["mkvmerge", "--version"], r"mkvmerge (v\S+)")
    assert re.search(rf"ok\s+ffprobe\s+{re.escape(ffprobe)}\s", result.stdout)
    assert re.search(rf"ok\s+mkvmerge\s+{re.escape(mkvmerge)}\s", result.stdout)
    assert "not created yet" in result.stdout
    assert "All required tools found." in result.stdout
    promtool = next(line for line in result.stdout.splitlines() if "promtool" in line)
    assert promtool.startswith("  ok ") and promtool.endswith("(needed by the tests only)")


def test_doctor_sentences_read_right(tmp_path: Path) -> None:
    everything = tool_dir_without(
        tmp_path, "ffprobe", "ffmpeg", "mkvmerge", "mkvpropedit", "promtool"
    )
    result = run_vpo("--db", tmp_path / "d.db", "doctor", env={"PATH": everything})
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert not re.search(r"needed to \w+s\b", result.stdout), result.stdout  # "to edits"
    for tool, purpose in (
        ("mkvpropedit", "needed to edit MKV flags and languages in place"),
        ("ffprobe", "needed to read tracks (scan, inspect)"),
        ("promtool", "needed by the tests only, to check the metrics exposition"),
    ):
        assert any(tool in line and purpose in line for line in lines), (tool, result.stdout)
    assert "promtool" not in result.stderr  # not required: the error names only the rest


def test_doctor_says_how_to_install_a_missing_tool(tmp_path: Path) -> None:
    path = tool_dir_without(tmp_path, "mkvmerge", "mkvpropedit")
    result = run_vpo("--db", tmp_path / "d.db", "doctor", env={"PATH": path})
    assert result.returncode == 1
    assert re.search(
        r"MISSING\s+mkvmerge .*install: sudo apt-get install mkvtoolnix", result.stdout
    )
    assert result.stderr.strip() == (
        "Error: mkvmerge, mkvpropedit missing; run: sudo apt-get install mkvtoolnix"
    )


def test_doctor_shows_the_database_schema(library: Path, db_path: Path) -> None:
    invoke("--db", db_path, "scan", library)
    result = invoke("--db", db_path, "doctor")
    assert f"(schema {SCHEMA_VERSION}, up to date; {len(LAYOUTS)} files)" in result.stdout


def test_inspect_json_matches_the_layout(sample_files: list[SampleFile]) -> None:
    for sample in sample_files:
        result = invoke("inspect", sample.path, "--format", "json")
        assert result.exit_code == 0
        data = json.loads(result.stdout)
        assert data["container"] == sample.layout.container
        assert data["size_bytes"] == sample.path.stat().st_size
        assert [
            (t["track_type"], t["codec"], t["language"], t["is_default"], t["is_forced"])
            for t in data["tracks"]
        ] == [
            (t.track_type.value, t.codec, t.language, t.default, t.forced)
            for t in sample.layout.tracks
        ]


def test_inspect_table_shows_what_a_person_needs(sample_files: list[SampleFile]) -> None:
    sample = next(s for s in sample_files if s.layout.count(TrackType.ATTACHMENT) == 2)
    result = invoke("inspect", sample.path)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == str(sample.path)
    assert lines[1].startswith("mkv · 2.0s · ") and lines[1].endswith(
        f"{len(sample.layout.tracks)} tracks"
    )
    assert re.search(r" · \d+\.\d (KiB|MiB) · ", lines[1])  # binary sizes, labelled so
    digest = partial_hash(sample.path).removeprefix("sha256:")
    assert lines[2] == (f"partial hash {digest[:16]}… (sha256 of the size + first/last MiB)")
    assert not re.search(r"\b(True|False|None)\b|\?", result.stdout)
    row = next(line for line in lines if "Japanese 5.1" in line)
    assert re.search(r"audio\s+│\s+ac3\s+│\s+jpn\s+│\s+Japanese 5.1\s+│\s+│\s+│\s+6 ch", row)
    forced = next(line for line in lines if "Signs" in line)
    assert re.search(r"subtitle\s+│\s+ass\s+│\s+eng\s+│\s+Signs\s+│\s+│\s+yes", forced)


def test_inspect_bad_input(tmp_path: Path, sample_files: list[SampleFile]) -> None:
    missing = run_vpo("inspect", tmp_path / "nope.mkv")
    assert (missing.returncode, missing.stderr.strip()) == (
        64,
        f"Error: Path not found: {tmp_path / 'nope.mkv'}",
    )
    corrupt = make_corrupt_samples(tmp_path, sample_files[0].path)["random-bytes"]
    broken = run_vpo("inspect", corrupt)
    assert broken.returncode == 1
    assert broken.stderr.strip() == (
        f"Error: {corrupt}: ffprobe cannot read the file: Invalid data found when processing input."
    )


def test_samples_make_with_count(tmp_path: Path) -> None:
    target = tmp_path / "made"
    result = run_vpo("samples", "make", target, "--count", "7")
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.strip() == f"Made 7 sample files in {target} (layouts in vpo-samples.json)."
    )
    videos = sorted(p.name for p in target.iterdir() if p.suffix in {".mkv", ".mp4"})
    assert len(videos) == 7
    assert {LAYOUTS[0].filename, f"{LAYOUTS[0].name}-002.mkv", f"{LAYOUTS[1].name}-002.mkv"} <= set(
        videos
    )
    manifest = json.loads((target / "vpo-samples.json").read_text())
    assert sorted(entry["file"] for entry in manifest) == videos
    assert not [p for p in target.iterdir() if p.name.startswith(".")]  # no partial files left


def test_samples_count_must_be_positive(tmp_path: Path) -> None:
    result = run_vpo("samples", "make", tmp_path / "x", "--count", "0")
    assert result.returncode == 2
    assert "--count" in result.stderr


def test_inspect_on_80_columns_wraps_and_cuts_nothing(sample_files: list[SampleFile]) -> None:
    sample = next(s for s in sample_files if s.layout.count(TrackType.ATTACHMENT) == 2)
    result = invoke("inspect", sample.path, env={"COLUMNS": "80"})
    assert result.exit_code == 0
    table = [line for line in result.stdout.splitlines() if "│" in line]
    assert table and max(len(line) for line in table) <= 80
    assert not [line for line in table if "…" in line]
