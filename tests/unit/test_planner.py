"""The planner on hand-made track lists: what each operation decides, and why."""

from vpo.media.tracks import MediaInfo, Track, TrackType
from vpo.policy.loader import parse_policy
from vpo.policy.planner import plan

V, A, S, T = TrackType.VIDEO, TrackType.AUDIO, TrackType.SUBTITLE, TrackType.ATTACHMENT


def _media(*tracks: Track, container: str = "mkv") -> MediaInfo:
    return MediaInfo("/x/a." + container, container, 10.0, 1000, tuple(tracks))


def _policy(phases: str, config: str = "") -> object:
    return parse_policy(f"schema_version: 1\nname: p\n{config}phases:\n{phases}")


MOVIE = _media(
    Track(0, V, "h264", width=1920, height=1080, bitrate=6_000_000, is_default=True),
    Track(1, A, "aac", "eng", is_default=True),
    Track(2, A, "ac3", "fre"),
    Track(3, A, "flac", "jpn"),
    Track(4, A, "dts", "ger"),
    Track(5, S, "subrip", "eng", is_default=True),
    Track(6, S, "subrip", "spa", is_forced=True),
    Track(7, S, "ass", "ger"),
    Track(8, T, "ttf", title="font.ttf"),
)


def _summary(p: object) -> list[tuple[str, str | None, int | None, str]]:
    return [(a.action_type, a.track_type, a.track_index, a.rule) for a in p.actions]


def test_removals_with_minimum_and_preserve_forced() -> None:
    policy = _policy(
        "  - name: c\n    keep_audio: {languages: [kor], minimum: 2}\n"
        "    keep_subtitles: {languages: [eng], preserve_forced: true}\n"
        "    filter_attachments: {remove_all: true}\n"
    )
    result = plan(MOVIE, policy)
    assert _summary(result) == [
        ("remove", "audio", 3, "phases[0].keep_audio.languages"),  # the first two stay: minimum 2
        ("remove", "audio", 4, "phases[0].keep_audio.languages"),
        ("remove", "subtitle", 7, "phases[0].keep_subtitles.languages"),  # spa is forced: kept
        ("remove", "attachment", 8, "phases[0].filter_attachments.remove_all"),
    ]
    first = result.actions[0]
    assert first.before == {"codec": "flac", "language": "jpn", "default": False, "forced": False}
    assert first.after is None
    assert [ts.original_index for ts in result.phases[0].tracks_after] == [0, 1, 2, 5, 6]
    assert result.phases[0].structural


def test_reorder_defaults_and_language_in_a_later_phase() -> None:
    policy = _policy(
        "  - name: cut\n    keep_audio: {languages: [eng, jpn]}\n"
        "  - name: organize\n    track_order: [video, audio, subtitle]\n"
        "    default_flags: {audio: preferred, subtitle: forced}\n"
        "    set_language: [{track_type: subtitle, from: ger, to: deu}]\n",
        config="config: {audio_languages: [jpn, eng], subtitle_languages: [eng]}\n",
    )
    result = plan(MOVIE, policy)
    organize = result.phases[1]
    assert [(a.action_type, a.track_index, a.before, a.after) for a in organize.actions] == [
        ("reorder", 3, {"position": 2}, {"position": 1}),
        ("reorder", 1, {"position": 1}, {"position": 2}),
        ("set_default", 3, {"default": False}, {"default": True}),
        ("clear_default", 1, {"default": True}, {"default": False}),
        ("clear_default", 5, {"default": True}, {"default": False}),
        ("set_default", 6, {"default": False}, {"default": True}),
    ]
    # ger → deu is no change: both are German (ISO 639-2/B and /T)
    assert [ts.original_index for ts in organize.tracks_after] == [0, 3, 1, 5, 6, 7, 8]
    assert organize.structural


def test_metadata_only_phase_is_not_structural() -> None:
    policy = _policy(
        "  - name: tags\n    set_language: [{track_type: audio, from: fre, to: ita}]\n"
    )
    result = plan(MOVIE, policy)
    assert _summary(result) == [("set_language", "audio", 2, "phases[0].set_language[0]")]
    assert result.actions[0].after == {"language": "ita"}
    assert not result.phases[0].structural


def test_video_skip_conditions_in_order() -> None:
    def reason(skip_if: str, video: Track) -> str | None:
        policy = _policy(
            f"  - name: v\n    transcode: {{video: {{to: hevc, skip_if: {skip_if}}}}}\n"
        )
        return plan(_media(video), policy).video_skip_reason

    h264_1080 = Track(0, V, "h264", width=1920, height=1080, bitrate=6_000_000)
    assert reason("{codec_matches: [h264]}", h264_1080) == "codec_matches"
    assert reason("{resolution_within: 1080p}", h264_1080) == "resolution_within"
    assert reason("{resolution_within: 720p}", h264_1080) is None
    assert reason("{bitrate_under: 8M}", h264_1080) == "bitrate_under"
    assert reason("{bitrate_under: 5M}", h264_1080) is None
    assert reason("{bitrate_under: 8M, resolution_within: 2160p}", h264_1080) == "resolution_within"
    hevc = Track(0, V, "hevc", width=3840, height=2160)
    assert reason("{bitrate_under: 8M}", hevc) == "codec_matches"  # already the target codec


def test_transcode_actions_and_audio_preserve() -> None:
    policy = _policy(
        "  - name: v\n    transcode:\n      video: {to: hevc, crf: 21}\n"
        "      audio: {to: aac, preserve: [flac]}\n"
    )
    result = plan(MOVIE, policy)
    assert _summary(result) == [
        ("transcode", "video", 0, "phases[0].transcode.video"),
        ("transcode", "audio", 2, "phases[0].transcode.audio"),
        ("transcode", "audio", 4, "phases[0].transcode.audio"),
    ]
    assert result.actions[0].after == {"codec": "hevc", "crf": 21, "preset": "medium"}
    assert (result.video_target_codec, result.audio_transcoded, result.audio_preserved) == (
        "hevc",
        2,
        2,
    )


def test_a_conforming_file_gets_an_empty_plan() -> None:
    tidy = _media(Track(0, V, "hevc"), Track(1, A, "aac", "eng", is_default=True))
    policy = _policy(
        "  - name: all\n    keep_audio: {languages: [eng]}\n    default_flags: {audio: first}\n"
        "    transcode: {video: {to: hevc}, audio: {to: aac}}\n"
    )
    result = plan(tidy, policy)
    assert result.empty
    assert result.video_skip_reason == "codec_matches"


def test_track_order_keeps_unlisted_types_apart() -> None:
    """Left out of `track_order`, audio and subtitles still form their own groups: an
    English subtitle never lands between audio tracks ranked by language."""
    media = _media(
        Track(0, V, "h264"),
        Track(1, S, "subrip", "eng"),
        Track(2, A, "aac", "fre"),
        Track(3, A, "aac", "eng"),
    )
    policy = _policy(
        "  - name: o\n    track_order: [video]\n",
        "config: {audio_languages: [eng], subtitle_languages: [eng]}\n",
    )
    (phase,) = plan(media, policy).phases
    order = [(ts.kind, ts.track.language) for ts in phase.tracks_after]
    assert order == [(V, "und"), (A, "eng"), (A, "fre"), (S, "eng")]


def test_actions_describe_themselves_in_words() -> None:
    """No Python values (`True`, `None`) in what a person reads."""
    policy = _policy(
        "  - name: t\n    keep_audio: {languages: [eng]}\n"
        "    default_flags: {audio: preferred}\n"
        "    transcode: {video: {to: hevc, crf: 28}}\n",
        "config: {audio_languages: [eng]}\n",
    )
    texts = [a.describe() for a in plan(MOVIE, policy).actions]
    assert texts, "the policy plans actions"
    for text in texts:
        assert "True" not in text and "False" not in text and "None" not in text, text
    assert any("codec h264 → hevc, crf 28" in t for t in texts), texts
