"""The partial hash (docs/statistics.md) on real files, including a sparse 20 GB one."""

import hashlib
import subprocess
from pathlib import Path

import pytest

from vpo.media.hashing import CHUNK, partial_hash

SIZE = 5 * CHUNK + 12345


def _file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture
def content() -> bytes:
    return bytes(range(256)) * (SIZE // 256) + b"x" * (SIZE % 256)


def test_matches_the_formula(tmp_path: Path, content: bytes) -> None:
    expected = hashlib.sha256(str(SIZE).encode() + content[:CHUNK] + content[-CHUNK:]).hexdigest()
    assert partial_hash(_file(tmp_path / "a", content)) == f"sha256:{expected}"


def test_equal_content_equal_hash(tmp_path: Path, content: bytes) -> None:
    assert partial_hash(_file(tmp_path / "a", content)) == partial_hash(
        _file(tmp_path / "b", content)
    )


@pytest.mark.parametrize(
    "offset",
    [0, CHUNK - 1, SIZE - CHUNK, SIZE - 1],
    ids=["first byte", "end of first MiB", "start of last MiB", "last byte"],
)
def test_a_change_in_the_first_or_last_mib_changes_it(
    tmp_path: Path, content: bytes, offset: int
) -> None:
    changed = bytearray(content)
    changed[offset] ^= 0xFF
    assert partial_hash(_file(tmp_path / "a", content)) != partial_hash(
        _file(tmp_path / "b", bytes(changed))
    )


def test_a_change_of_size_changes_it(tmp_path: Path, content: bytes) -> None:
    # Same first and last MiB, one byte longer in the middle.
    longer = content[: SIZE // 2] + b"\0" + content[SIZE // 2 :]
    assert longer[:CHUNK] == content[:CHUNK] and longer[-CHUNK:] == content[-CHUNK:]
    assert partial_hash(_file(tmp_path / "a", content)) != partial_hash(
        _file(tmp_path / "b", longer)
    )


def test_the_middle_is_not_read(tmp_path: Path, content: bytes) -> None:
    middle = bytearray(content)
    middle[SIZE // 2] ^= 0xFF
    assert partial_hash(_file(tmp_path / "a", content)) == partial_hash(
        _file(tmp_path / "b", bytes(middle))
    )


def test_small_files(tmp_path: Path) -> None:
    assert (
        partial_hash(_file(tmp_path / "empty", b"")) == "sha256:" + hashlib.sha256(b"0").hexdigest()
    )
    small = b"tiny video"
    assert (
        partial_hash(_file(tmp_path / "s", small))
        == "sha256:" + hashlib.sha256(b"10" + small).hexdigest()
    )


def _bytes_read_by_this_process() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_sparse_20_gb_file_reads_at_most_2_mib(tmp_path: Path) -> None:
    big = tmp_path / "big.mkv"
    subprocess.run(["truncate", "-s", "20G", str(big)], check=True)
    with big.open("r+b") as handle:  # real bytes at both ends, holes in between
        handle.write(b"HEAD" * 100)
        handle.seek(20 * 1024**3 - 400)
        handle.write(b"TAIL" * 100)
    assert big.stat().st_size == 20 * 1024**3
    partial_hash(big)  # warm-up: anything lazy happens before measuring

    before = _bytes_read_by_this_process()
    digest = partial_hash(big)
    read = _bytes_read_by_this_process() - before

    assert 2 * CHUNK <= read <= 2 * CHUNK + 64 * 1024
    head = b"HEAD" * 100 + b"\0" * (CHUNK - 400)
    tail = b"\0" * (CHUNK - 400) + b"TAIL" * 100
    assert digest == "sha256:" + hashlib.sha256(b"21474836480" + head + tail).hexdigest()
