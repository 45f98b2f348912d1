"""Hostile or mistaken input is refused quickly with one clear sentence and exit 2 (or 64
for a missing folder): policies that expand without bound, huge or misshapen policies, a
folder given as the policy, a --db in a folder that does not exist, dates past 9999."""

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.helpers import invoke
from vpo.errors import ExitCode, InvalidInputError
from vpo.policy.loader import MAX_POLICY_BYTES, PolicyError, load_policy
from vpo.timefmt import format_utc

CLEANUP = Path(__file__).parents[2] / "examples" / "policies" / "language-cleanup.yaml"
# Nine levels of nine: 9**9 = 387 million "lol"s once expanded, in 10 short lines.
LAUGHS = "".join(
    [
        'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n',
        *(
            f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n"
            for a, b in zip("abcdefgh", "bcdefghi", strict=True)
        ),
    ]
)
BOUND_SECONDS = 5.0  # a correctness guard (today's refusals take well under a second)


def _refused_quickly(policy: Path) -> PolicyError:
    started = time.monotonic()
    with pytest.raises(PolicyError) as caught:
        load_policy(policy)
    assert time.monotonic() - started < BOUND_SECONDS
    assert caught.value.exit_code == ExitCode.INVALID
    assert len(str(caught.value)) < 1000  # no value is printed whole
    return caught.value


@pytest.mark.parametrize("where", ["schema_version", "name", "phases", "description"])
def test_a_billion_laughs_is_refused_quickly(tmp_path: Path, where: str) -> None:
    policy = tmp_path / "laughs.yaml"
    fields = {"schema_version": "1", "name": "laughs", "phases": "[]", "description": "x"}
    fields[where] = "*i"
    policy.write_text(LAUGHS + "".join(f"{k}: {v}\n" for k, v in fields.items()))
    error = _refused_quickly(policy)
    assert error.problems == [
        "the YAML expands to more than 10000 values (anchors and aliases are counted each "
        "time they are used); a policy needs far fewer"
    ]


def test_a_billion_laughs_through_the_command(tmp_path: Path) -> None:
    policy = tmp_path / "laughs.yaml"
    policy.write_text(LAUGHS + "schema_version: *i\nname: x\nphases: *i\n")
    started = time.monotonic()
    result = invoke("--db", tmp_path / "x.db", "process", "--policy", policy, tmp_path)
    assert time.monotonic() - started < BOUND_SECONDS
    assert result.exit_code == ExitCode.INVALID
    assert "expands to more than 10000 values" in result.stderr
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a: &a [*a]\n", "the YAML expands to more than 10000 values"),  # an endless loop
        ("a: [" + "1, " * 300_000 + "1]\n", "the YAML holds more than 10000 values"),
        ("a: &x 1\nb: [" + "*x, " * 200_000 + "*x]\n", "the YAML holds more than 10000 values"),
        ("a: " + "[" * 900_000 + "\n", "the YAML is nested more than 50 levels deep"),
    ],
    ids=["recursive alias", "long list", "many aliases", "deep nesting"],
)
def test_documents_larger_than_any_policy_are_refused_quickly(
    tmp_path: Path, text: str, problem: str
) -> None:
    policy = tmp_path / "big.yaml"
    policy.write_text(text)
    assert len(text) <= MAX_POLICY_BYTES
    (found,) = _refused_quickly(policy).problems
    assert found.startswith(problem)


def test_a_policy_over_1_mb_is_refused_with_one_sentence(tmp_path: Path) -> None:
    policy = tmp_path / "huge.yaml"
    text = CLEANUP.read_text()
    policy.write_text(text + "#" * (MAX_POLICY_BYTES + 1 - len(text.encode())) + "\n")
    with pytest.raises(InvalidInputError) as caught:
        load_policy(policy)
    size = policy.stat().st_size
    assert str(caught.value) == (
        f"The policy {policy} is larger than 1 MB ({size} bytes); a policy is a short YAML file."
    )
    assert caught.value.exit_code == ExitCode.INVALID
    result = invoke("--db", tmp_path / "x.db", "process", "--policy", policy, tmp_path)
    assert result.exit_code == ExitCode.INVALID
    assert result.stderr.strip() == f"Error: {caught.value}"


def test_a_policy_of_exactly_1_mb_is_read(tmp_path: Path) -> None:
    policy = tmp_path / "padded.yaml"
    text = CLEANUP.read_text()
    policy.write_text(text + "#" * (MAX_POLICY_BYTES - 1 - len(text.encode())) + "\n")
    assert policy.stat().st_size == MAX_POLICY_BYTES
    assert load_policy(policy).name == "language-cleanup"


@pytest.mark.parametrize("name", ["[a, b]", "{first: 1}"], ids=["list", "mapping"])
def test_a_phase_name_that_is_not_text(tmp_path: Path, name: str) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "schema_version: 1\nname: p\nphases:\n"
        f"  - name: {name}\n    filter_attachments: {{remove_all: true}}\n"
        f"  - name: {name}\n    filter_attachments: {{remove_all: true}}\n"
    )
    result = invoke("--db", tmp_path / "x.db", "process", "--policy", policy, tmp_path)
    assert result.exit_code == ExitCode.INVALID
    assert result.stderr.strip() == (
        f"Error: invalid policy {policy}:\n"
        "  phases[0].name: Input should be a valid string (line 4)\n"
        "  phases[1].name: Input should be a valid string (line 6)"
    )


def test_long_values_are_cut_in_messages(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(
        f"schema_version: '{'x' * 200_000}'\nname: p\n{'k' * 1000}: 1\nphases:\n"
        f"  - name: a\n    keep_audio: {{languages: ['{'y' * 100_000}']}}\n"
        f"  - name: b\n    keep_audio: {{languages: [eng], minimum: {'9' * 5000}}}\n"
    )
    error = _refused_quickly(policy)
    (problem,) = error.problems
    assert problem.startswith("a value cannot be read: Exceeds the limit (4300 digits)")
    assert problem.endswith("…") and len(problem) == len("a value cannot be read: ") + 80
    policy.write_text(policy.read_text().replace("9" * 5000, "1"))
    problems = _refused_quickly(policy).problems
    assert problems[0].startswith("schema_version: must be one of 1, not 'xxxxxxxxxx")
    assert all(len(p) < 300 for p in problems), problems
    assert any(p.startswith(f"{'k' * 59}…: unknown key") for p in problems), problems
    assert any(
        p.startswith("phases[0].keep_audio.languages[0]: unknown language code 'yyy")
        for p in problems
    )


def test_a_folder_given_as_the_policy(tmp_path: Path) -> None:
    result = invoke("--db", tmp_path / "x.db", "process", "--policy", tmp_path, tmp_path)
    assert result.exit_code == ExitCode.INVALID
    assert result.stderr.strip() == (
        f"Error: The policy {tmp_path} is a folder; give the policy's YAML file."
    )


# --- A --db in a folder that does not exist -------------------------------------------


def _media(tmp_path: Path) -> Path:
    folder = tmp_path / "media"
    folder.mkdir()
    (folder / "a.mkv").write_bytes(b"not really a video")
    return folder


@pytest.mark.parametrize("how", ["--db", "VPO_DB"])
@pytest.mark.parametrize("command", ["scan", "process"])
def test_a_database_in_a_missing_folder_is_not_created(
    tmp_path: Path, how: str, command: str
) -> None:
    media = _media(tmp_path)
    missing = tmp_path / "typo" / "deeper"
    db = missing / "library.db"
    args = [command, *(["--policy", str(CLEANUP)] if command == "process" else []), str(media)]
    if how == "--db":
        result = invoke("--db", db, *args, env={"VPO_DB": ""})
    else:
        result = invoke(*args, env={"VPO_DB": str(db)})
    assert result.exit_code == ExitCode.NOT_FOUND, result.output
    assert result.stderr.strip() == (
        f"Error: The folder {missing} does not exist, so there is no database library.db in "
        "it; create the folder first (VPO creates only its default folder, ~/.vpo)."
    )
    assert not (tmp_path / "typo").exists()
    assert (media / "a.mkv").read_bytes() == b"not really a video"


def test_the_default_folder_is_created(tmp_path: Path) -> None:
    media = _media(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    result = invoke("scan", media, env={"HOME": str(home), "VPO_DB": ""})
    assert result.exit_code == 0, result.output
    assert (home / ".vpo" / "library.db").is_file()


# --- Dates past year 9999 ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "option", "value"),
    [
        (["summary", "--until", "9999-12-31"], "--until", "9999-12-31"),
        (["summary", "--since", "99999999w"], "--since", "99999999w"),
        (["summary", "--since", "9" * 5000 + "h"], "--since", "9" * 60 + "…"),
        (["summary", "--since", "0001-01-01T00:00:00+01:00"], "--since", None),
        (["policy", "--until", "9999-12-31T23:00:00-05:00"], "--until", None),
        (["purge", "--before", "9999-12-31"], "--before", "9999-12-31"),
    ],
)
def test_dates_out_of_range_are_usage_errors(
    tmp_path: Path, args: list[str], option: str, value: str | None
) -> None:
    result = invoke("--db", tmp_path / "x.db", "stats", *args)
    assert result.exit_code == ExitCode.INVALID
    assert f"Invalid value for '{option}': " in result.stderr
    assert "is out of range (dates from 0001-01-01 to 9999-12-01)" in result.stderr
    if value is not None:
        assert f"{value!r} is out of range" in result.stderr
    assert len(result.stderr) < 400


def test_stored_times_keep_their_width_before_year_1000() -> None:
    assert format_utc(datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC)) == "0999-01-02T03:04:05.000006Z"
    assert format_utc(datetime(2026, 11, 24, 13, 5, 9, 123456)) == "2026-11-24T13:05:09.123456Z"
