"""Policy validation: every problem, located by path and YAML line, exit code 2."""

from pathlib import Path

import pytest

from vpo.errors import ExitCode, PathNotFoundError
from vpo.policy.loader import PolicyError, load_policy, parse_policy

VALID = """\
schema_version: 1
name: anime
config:
  audio_languages: [jpn, en]
  subtitle_languages: [fra]
phases:
  - name: cleanup
    keep_audio: {languages: [jpn, eng, und], minimum: 1}
    keep_subtitles: {languages: [eng], preserve_forced: true}
    filter_attachments: {remove_all: true}
  - name: compress
    transcode:
      video: {to: hevc, crf: 20, skip_if: {codec_matches: [h265], resolution_within: 1080p, bitrate_under: 8M}}
      audio: {to: aac, bitrate: 192k, preserve: [aac, flac]}
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text)
    assert caught.value.exit_code == ExitCode.INVALID
    return caught.value.problems


def test_a_valid_policy_is_normalised() -> None:
    policy = parse_policy(VALID)
    assert policy.config.audio_languages == ["jpn", "eng"]
    assert policy.config.subtitle_languages == ["fre"]  # fra and fre are one language
    video = policy.phases[1].transcode.video
    assert video.skip_if.codec_matches == ["hevc"]
    assert video.skip_if.bitrate_under == 8_000_000
    assert policy.phases[1].transcode.audio.bitrate == 192_000
    assert policy.config.on_error == "skip"


def test_a_typo_is_named_with_its_line_and_a_suggestion() -> None:
    problems = _problems(VALID.replace("preserve_forced", "preserve_forcd"))
    assert problems == [
        "phases[0].keep_subtitles.preserve_forcd: unknown key (did you mean 'preserve_forced'?) (line 9)"
    ]


def test_a_wrong_type() -> None:
    assert _problems(VALID.replace("crf: 20", "crf: high")) == [
        "phases[1].transcode.video.crf: Input should be a valid integer, unable to parse string "
        "as an integer (line 13)"
    ]


def test_an_unknown_language_code() -> None:
    assert _problems(VALID.replace("[jpn, eng, und]", "[jpn, english, und]")) == [
        "phases[0].keep_audio.languages[1]: unknown language code 'english' "
        "(use ISO 639 codes like eng, jpn, fre) (line 8)"
    ]


def test_duplicate_phase_names() -> None:
    assert _problems(VALID.replace("name: compress", "name: cleanup")) == [
        "phases[1].name: duplicate phase name 'cleanup' (also phases[0].name) (line 11)"
    ]


def test_every_problem_at_once() -> None:
    text = VALID.replace("schema_version: 1", "schema_version: 2").replace("crf: 20", "crf: 99")
    text = text.replace("on_error", "x") + "  - name: empty\n"
    problems = _problems(text)
    assert "schema_version: must be one of 1, not 2 (line 1)" in problems
    assert (
        "phases[1].transcode.video.crf: Input should be less than or equal to 63 (line 13)"
        in problems
    )
    assert any(
        p.startswith("phases[2]: a phase needs at least one of: keep_audio") for p in problems
    )
    assert len(problems) == 3


def test_missing_required_keys() -> None:
    assert _problems("schema_version: 1\n") == [
        "name: required (line 1)",
        "phases: required (line 1)",
    ]


def test_not_yaml_and_not_a_mapping() -> None:
    (problem,) = _problems("name: [unclosed\n")
    assert problem.startswith("not valid YAML: ") and "line 2" in problem
    assert _problems("- a\n- b\n") == [
        "the file must be a YAML mapping (schema_version, name, phases, …)"
    ]


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(PathNotFoundError) as caught:
        load_policy(tmp_path / "nope.yaml")
    assert caught.value.exit_code == ExitCode.NOT_FOUND


@pytest.mark.parametrize(
    "policy",
    sorted((Path(__file__).parents[2] / "examples" / "policies").glob("*.yaml")),
    ids=lambda p: p.name,
)
def test_the_example_policies_are_valid(policy: Path) -> None:
    assert load_policy(policy).name == policy.stem


def test_crf_beyond_what_x264_and_x265_take_is_refused_at_load() -> None:
    """Not inside ffmpeg, mid-batch: x264/x265 stop at 51, AV1 and VP9 go to 63."""
    phases = "phases:\n  - name: t\n    transcode: {{video: {{to: {codec}, crf: {crf}}}}}\n"
    for codec in ("hevc", "h264"):
        with pytest.raises(PolicyError) as caught:
            parse_policy("schema_version: 1\nname: p\n" + phases.format(codec=codec, crf=52))
        assert f"crf 52 is out of range for {codec} (0 to 51)" in str(caught.value)
        parse_policy("schema_version: 1\nname: p\n" + phases.format(codec=codec, crf=51))
    parse_policy("schema_version: 1\nname: p\n" + phases.format(codec="av1", crf=63))
