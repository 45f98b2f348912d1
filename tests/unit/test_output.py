import pytest

from vpo.cli.output import (
    column_room,
    human_duration,
    human_partial_hash,
    human_size,
    human_state,
    short_id,
    shorten_path,
)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (120_986, "118.2 KiB"),  # was "118.2 KB": a binary value under a decimal label
        (1_572_864, "1.5 MiB"),
        (1023.99 * 1024**2, "1.0 GiB"),  # never "1024.0 MiB"
        (-3 * 1024**3, "-3.0 GiB"),
        (5 * 1024**4, "5.0 TiB"),
        (None, "—"),
    ],
)
def test_human_size_is_binary_and_labelled_so(size: float | None, text: str) -> None:
    assert human_size(size) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(2.34, "2.3s"), (245, "4m 05s"), (15 * 3600 + 28 * 60, "15h 28m"), (90000, "1d 1h")],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_short_id_is_eight_hex_digits() -> None:
    assert short_id("36a93b69-3c84-4d4e-9a55-0c7c5a1c2d3e") == "36a93b69"


@pytest.mark.parametrize("width", [30, 40, 60])
def test_shorten_path_cuts_the_middle_and_keeps_the_file_name(width: int) -> None:
    path = "/media/nas/video/Series/The Expanse/Season 01/The.Expanse.S01E01.mkv"
    short = shorten_path(path, width)
    assert len(short) <= width
    assert short.endswith("The.Expanse.S01E01.mkv") and "…" in short
    if width >= 40:  # the folders nearest to the file come first, then the top ones
        assert short.endswith("/Season 01/The.Expanse.S01E01.mkv")
    if width >= 60:
        assert short.startswith("/media/…/Series/")


def test_shorten_path_leaves_short_paths_and_cuts_a_long_name_in_its_middle() -> None:
    assert shorten_path("/a/b.mkv", 20) == "/a/b.mkv"
    name = "A.Very.Long.Movie.Name.2049.Remastered.mkv"
    short = shorten_path(f"/m/{name}", 20)
    assert len(short) == 20 and short.startswith("A.Very") and short.endswith("ed.mkv")


def test_column_room_matches_a_rich_table_without_edges() -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_edge=False)
    for name in ("a", "b", "c"):
        table.add_column(name)
    table.add_row("x" * 10, "y" * 4, "z" * column_room(40, [10, 4]))
    console = Console(width=200)
    with console.capture() as captured:
        console.print(table)
    assert {len(line) for line in captured.get().splitlines()} == {40}


def test_states_and_hashes_read_as_words() -> None:
    state = {"codec": "ac3", "language": "fre", "default": True, "forced": False, "channels": 6}
    assert human_state(state) == "ac3, fre, default, 6 ch"
    assert human_state({"default": True, "forced": False}) == "default, not forced"
    assert human_state({"crf": None, "codec": "hevc", "crf_": 28}) == "hevc, crf_ 28"
    assert human_state(None) == "—"
    for value in (state, {"default": False}):
        assert not {"True", "False", "None"} & set(human_state(value).replace(",", "").split())
    assert human_partial_hash("sha256:" + "ab" * 32) == (
        "abababababababab… (sha256 of the size + first/last MiB)"
    )
    assert human_partial_hash(None) == "—"
