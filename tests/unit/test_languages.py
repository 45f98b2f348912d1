import pytest

from vpo.media.languages import language_name, lookup_language, normalize_language


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("eng", "eng"),
        ("en", "eng"),
        ("en-US", "eng"),
        ("EN_gb", "eng"),
        ("deu", "ger"),
        ("ger", "ger"),
        ("de", "ger"),
        ("fra", "fre"),
        ("fre", "fre"),
        ("zho", "chi"),
        ("jpn", "jpn"),
        ("pt-BR", "por"),
        ("zxx", "zxx"),
        ("und", "und"),
    ],
)
def test_known_tags_become_the_bibliographic_code(tag: str, expected: str) -> None:
    assert normalize_language(tag) == expected


@pytest.mark.parametrize("tag", [None, "", "xx", "english", "qaa", "123", "e"])
def test_unknown_tags_become_und(tag: str | None) -> None:
    assert normalize_language(tag) == "und"


def test_lookup_tells_unknown_from_und() -> None:
    assert lookup_language("und") == "und"
    assert lookup_language("klingon") is None


def test_names() -> None:
    assert language_name("ger") == "German"
    assert language_name("eng") == "English"
    assert language_name("nope") == "nope"
