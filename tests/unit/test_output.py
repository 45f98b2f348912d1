import pytest

from vpo.cli.output import human_duration, human_size


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KB"),
        (1_572_864, "1.5 MB"),
        (-3 * 1024**3, "-3.0 GB"),
        (5 * 1024**4, "5.0 TB"),
        (None, "-"),
    ],
)
def test_human_size(size: int | None, text: str) -> None:
    assert human_size(size) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(2.34, "2.3s"), (245, "4m 05s"), (15 * 3600 + 28 * 60, "15h 28m"), (90000, "1d 1h")],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text
