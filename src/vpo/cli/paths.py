"""Path arguments: a missing path is exit 64 with the path named (docs/cli.md)."""

from pathlib import Path

from vpo.errors import InvalidInputError, PathNotFoundError


def require_paths(paths: tuple[str, ...] | list[str]) -> list[Path]:
    """The paths as `Path`s, every one of which exists."""
    result = [Path(p).expanduser() for p in paths]
    for path in result:
        if not path.exists():
            raise PathNotFoundError(f"Path not found: {path}")
    return result


def require_file(path: str) -> Path:
    """One existing regular file."""
    (file_path,) = require_paths([path])
    if not file_path.is_file():
        raise InvalidInputError(f"{file_path} is a folder, not a file.")
    return file_path
