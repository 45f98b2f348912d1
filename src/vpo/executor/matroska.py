"""Matroska specifics: how mkvmerge numbers a file's tracks and attachments, and the
command lines of a mkvmerge remux and a mkvpropedit in-place edit.

ffprobe numbers streams 0..n with attachments last; mkvmerge numbers tracks 0..n and
attachments 1..m separately; mkvpropedit selects tracks by their Matroska track number.
`identify` reads `mkvmerge -J` and checks that both views of the file agree before any
command is built from them.
"""

import json
from dataclasses import dataclass
from typing import Any

from vpo.executor.process import ToolError, run_tool
from vpo.media.tools import require_tool
from vpo.media.tracks import MediaInfo, TrackType
from vpo.policy.planner import TrackState

IDENTIFY_TIMEOUT_SECONDS = 60
_MKVMERGE_TYPES = {
    "video": TrackType.VIDEO,
    "audio": TrackType.AUDIO,
    "subtitles": TrackType.SUBTITLE,
}


@dataclass(frozen=True)
class MatroskaIds:
    """For each ffprobe stream index: mkvmerge's id and (for tracks) the track number."""

    track_id: dict[int, int]
    track_number: dict[int, int]
    attachment_id: dict[int, int]


def identify_json(path: str) -> dict[str, Any]:
    """`mkvmerge -J` of the file (the workflow starts it alongside the first probe)."""
    mkvmerge = require_tool("mkvmerge")
    result = run_tool([mkvmerge, "-J", path], timeout=IDENTIFY_TIMEOUT_SECONDS)
    return json.loads(result.stdout)


def identify(media: MediaInfo, info: dict[str, Any] | None = None) -> MatroskaIds:
    """mkvmerge's numbering of the file `media` describes; `info` is its `mkvmerge -J`
    when already at hand (it must describe the same bytes)."""
    if info is None:
        info = identify_json(media.path)
    tracks = [t for t in media.tracks if t.track_type is not TrackType.ATTACHMENT]
    attachments = [t for t in media.tracks if t.track_type is TrackType.ATTACHMENT]
    mkv_tracks = info.get("tracks", [])
    mkv_attachments = info.get("attachments", [])
    kinds = [_MKVMERGE_TYPES.get(t.get("type")) for t in mkv_tracks]
    if kinds != [t.track_type for t in tracks] or len(mkv_attachments) != len(attachments):
        raise ToolError(
            f"mkvmerge and ffprobe disagree about the tracks of {media.path}; not touching it"
        )
    return MatroskaIds(
        track_id={t.index: m["id"] for t, m in zip(tracks, mkv_tracks, strict=True)},
        track_number={
            t.index: m.get("properties", {}).get("number", m["id"] + 1)
            for t, m in zip(tracks, mkv_tracks, strict=True)
        },
        attachment_id={t.index: m["id"] for t, m in zip(attachments, mkv_attachments, strict=True)},
    )


def remux_args(
    source: str, output: str, ids: MatroskaIds, current: dict[int, int], wanted: list[TrackState]
) -> list[str]:
    """mkvmerge arguments that keep `wanted` (in that order) with their flags and languages.

    `current` maps a track's index before the run to its stream index in `source`."""
    args = [require_tool("mkvmerge"), "--quiet", "--output", output]
    kept = {kind: [] for kind in TrackType}  # type: dict[TrackType, list[int]]
    for ts in wanted:
        stream = current[ts.original_index]
        if ts.kind is TrackType.ATTACHMENT:
            kept[ts.kind].append(ids.attachment_id[stream])
        else:
            kept[ts.kind].append(ids.track_id[stream])
    for kind, keep_flag, none_flag in (
        (TrackType.VIDEO, "--video-tracks", "--no-video"),
        (TrackType.AUDIO, "--audio-tracks", "--no-audio"),
        (TrackType.SUBTITLE, "--subtitle-tracks", "--no-subtitles"),
        (TrackType.ATTACHMENT, "--attachments", "--no-attachments"),
    ):
        args += [keep_flag, ",".join(map(str, kept[kind]))] if kept[kind] else [none_flag]
    order = []
    for ts in wanted:
        if ts.kind is TrackType.ATTACHMENT:
            continue
        track_id = ids.track_id[current[ts.original_index]]
        order.append(f"0:{track_id}")
        args += [
            "--language",
            f"{track_id}:{ts.track.language}",
            "--default-track-flag",
            f"{track_id}:{int(ts.track.is_default)}",
            "--forced-display-flag",
            f"{track_id}:{int(ts.track.is_forced)}",
        ]
    if order:
        args += ["--track-order", ",".join(order)]
    return [*args, source]


def propedit_args(
    path: str, ids: MatroskaIds, current: dict[int, int], wanted: list[TrackState], media: MediaInfo
) -> list[str]:
    """mkvpropedit arguments that give each track of `wanted` its flags and language."""
    args = [require_tool("mkvpropedit"), path]
    by_index = {t.index: t for t in media.tracks}
    for ts in wanted:
        if ts.kind is TrackType.ATTACHMENT:
            continue
        stream = current[ts.original_index]
        now = by_index[stream]
        edits = []
        if now.is_default != ts.track.is_default:
            edits += ["--set", f"flag-default={int(ts.track.is_default)}"]
        if now.is_forced != ts.track.is_forced:
            edits += ["--set", f"flag-forced={int(ts.track.is_forced)}"]
        if now.language != ts.track.language:
            edits += ["--set", f"language={ts.track.language}"]
        if edits:
            args += ["--edit", f"track:@{ids.track_number[stream]}", *edits]
    return args
