"""Language tags normalised to ISO 639-2 (bibliographic form), `und` when unknown.

Matroska stores ISO 639-2/B (`ger`, `fre`), MP4 stores 639-2/T (`deu`, `fra`), some
tools write ISO 639-1 or BCP 47 (`de`, `en-US`). VPO stores and compares one form so a
policy saying `fra` matches a track tagged `fre`.
"""

from functools import cache

from vpo.media.iso639_data import LANGUAGES

UNDETERMINED = "und"


@cache
def _aliases() -> dict[str, str]:
    table: dict[str, str] = {}
    for biblio, terminology, two_letter, _name in LANGUAGES:
        table[biblio] = biblio
        table[terminology] = biblio
        if two_letter:
            table[two_letter] = biblio
    return table


@cache
def _names() -> dict[str, str]:
    return {biblio: name.split(";")[0] for biblio, _t, _two, name in LANGUAGES}


def lookup_language(tag: str | None) -> str | None:
    """The canonical ISO 639-2/B code for `tag`, or None when it names no language."""
    if not tag:
        return None
    primary = tag.strip().replace("_", "-").split("-")[0].lower()
    return _aliases().get(primary)


def normalize_language(tag: str | None) -> str:
    """The canonical code for `tag`; `und` for a missing or unrecognised tag."""
    return lookup_language(tag) or UNDETERMINED


def language_name(code: str) -> str:
    """English name of a canonical code (`ger` → `German`), the code itself if unknown."""
    return _names().get(code, code)
