"""File names as text: how a path is stored in the database and shown to people.

Linux file names are bytes. Most are UTF-8 and are stored as they are; one that is not
(`caf\\xe9.mkv` written by an old Latin-1 tool) cannot go into SQLite's UTF-8 text as
Python holds it (with lone surrogates), so its undecodable bytes are written as `\\xNN`
escapes. `path_from_text` turns that text back into the path on disk.
"""

import os
import re

_ESCAPE = re.compile(r"\\x([89a-f][0-9a-f])")  # only bytes >= 0x80 are ever escaped


def path_text(path: str | os.PathLike[str]) -> str:
    """`path` as valid UTF-8 text: itself when it is UTF-8, else with `\\xNN` escapes."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", errors="backslashreplace")
    return text


def path_from_text(text: str) -> str:
    """The path on disk that `path_text` stored as `text`."""
    if "\\x" not in text:
        return text
    candidate = _ESCAPE.sub(lambda m: chr(0xDC00 + int(m.group(1), 16)), text)
    # Only names path_text escaped are turned back (a real name may hold a literal "\x").
    return candidate if path_text(candidate) == text and candidate != text else text
