"""The partial content hash (docs/statistics.md, "Partial hash").

sha256 over the decimal size, the first MiB and (for files over 2 MiB) the last MiB:
it reads at most 2 MiB, so a 50 GB remux costs the same to fingerprint as a 50 MB one,
and still changes when a remux rewrites the header, the tail or the length.
"""

import hashlib
import io
import os
from pathlib import Path

CHUNK = 1024 * 1024
PREFIX = "sha256:"


def partial_hash(path: str | os.PathLike[str]) -> str:
    """`sha256:<hex>` of size + first MiB + last MiB (when larger than 2 MiB)."""
    with Path(path).open("rb", buffering=0) as handle:
        size = os.fstat(handle.fileno()).st_size
        digest = hashlib.sha256(str(size).encode("ascii"))
        digest.update(_read_exactly(handle, CHUNK))
        if size > 2 * CHUNK:
            handle.seek(size - CHUNK)
            digest.update(_read_exactly(handle, CHUNK))
    return PREFIX + digest.hexdigest()


def _read_exactly(handle: io.RawIOBase, count: int) -> bytes:
    """Read up to `count` bytes, looping over short reads (network filesystems)."""
    parts: list[bytes] = []
    remaining = count
    while remaining > 0:
        block = handle.read(remaining)
        if not block:
            break
        parts.append(block)
        remaining -= len(block)
    return b"".join(parts)
