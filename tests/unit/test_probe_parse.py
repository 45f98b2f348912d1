"""Turning ffprobe JSON into tracks: the cases real samples do not cover."""

from pathlib import Path

import pytest

from vpo.media.probe import ProbeError, container_name, parse_probe_output
from vpo.media.tracks import TrackType


def _stream(index: int, codec_type: str, **extra: object) -> dict[str, object]:
    return {"index": index, "codec_type": codec_type, "disposition": {}, **extra}


def test_cover_art_is_an_attachment_and_data_streams_are_skipped() -> None:
    data = {
        "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "12.5"},
        "streams": [
            _stream(0, "video", codec_name="h264", width=1920, height=1080, bit_rate="5000000"),
            _stream(1, "audio", codec_name="aac", channels=6, tags={"language": "deu"}),
            _stream(2, "data", codec_name="bin_data"),
            _stream(3, "video", codec_name="mjpeg", disposition={"attached_pic": 1}),
        ],
    }
    media = parse_probe_output(data, Path("/x/movie.m4v"), 123)
    assert media.container == "m4v"
    assert media.duration_seconds == 12.5
    assert [(t.index, t.track_type) for t in media.tracks] == [
        (0, TrackType.VIDEO),
        (1, TrackType.AUDIO),
        (3, TrackType.ATTACHMENT),
    ]
    assert media.tracks[0].bitrate == 5_000_000
    assert media.tracks[1].language == "ger"
    assert media.tracks[1].channels == 6
    assert media.count(TrackType.ATTACHMENT) == 1
    assert media.video_codec == "h264"


def test_bitrate_falls_back_to_matroska_statistics_tags() -> None:
    data = {
        "format": {"format_name": "matroska,webm"},
        "streams": [_stream(0, "video", codec_name="hevc", tags={"BPS": "812345"})],
    }
    media = parse_probe_output(data, Path("/x/a.mkv"), 1)
    assert media.tracks[0].bitrate == 812345
    assert media.duration_seconds is None


def test_attachment_codec_and_title_come_from_mimetype_and_filename() -> None:
    data = {
        "format": {"format_name": "matroska,webm"},
        "streams": [
            _stream(0, "attachment", tags={"filename": "Font.otf", "mimetype": "font/otf"}),
        ],
    }
    (track,) = parse_probe_output(data, Path("/x/a.mkv"), 1).tracks
    assert (track.codec, track.title, track.language) == ("otf", "Font.otf", "und")


def test_nothing_probed_is_an_error() -> None:
    with pytest.raises(ProbeError, match="no streams"):
        parse_probe_output({}, Path("/x/a.mkv"), 1)


@pytest.mark.parametrize(
    ("format_name", "name", "expected"),
    [
        ("matroska,webm", "a.mkv", "mkv"),
        ("matroska,webm", "a.webm", "webm"),
        ("mov,mp4,m4a,3gp,3g2,mj2", "a.mp4", "mp4"),
        ("mov,mp4,m4a,3gp,3g2,mj2", "a.mov", "mov"),
        ("mov,mp4,m4a,3gp,3g2,mj2", "a.bin", "mp4"),
        ("mpegts", "a.m2ts", "ts"),
        ("avi", "a.avi", "avi"),
        ("", "a.xyz", "xyz"),
    ],
)
def test_container_names(format_name: str, name: str, expected: str) -> None:
    assert container_name(format_name, Path(name)) == expected


def test_a_quick_probe_is_complete_only_with_what_policies_read() -> None:
    from vpo.media.probe import _complete
    from vpo.media.tracks import MediaInfo, Track

    def media(*tracks: Track, duration: float | None = 5.0) -> MediaInfo:
        return MediaInfo("/x/a.mkv", "mkv", duration, 1, tracks)

    video = Track(0, TrackType.VIDEO, "h264", width=1920, height=1080)
    audio = Track(1, TrackType.AUDIO, "ac3", channels=6)
    assert _complete(media(video, audio))
    assert not _complete(media(Track(0, TrackType.VIDEO, "h264"), audio))  # no size yet
    assert not _complete(media(video, Track(1, TrackType.AUDIO, "dts")))  # no channels yet
    assert not _complete(media(video, Track(1, TrackType.AUDIO, "none", channels=2)))
    assert not _complete(media(video, audio, duration=None))
