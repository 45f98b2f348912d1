"""Shared fixtures: sample media made once per session by VPO's own generator."""

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from vpo.samples import SampleFile, make_samples


@pytest.fixture(scope="session")
def sample_files(tmp_path_factory: pytest.TempPathFactory) -> list[SampleFile]:
    """One file per layout, generated once; tests copy them before changing anything."""
    return make_samples(tmp_path_factory.mktemp("samples"))


@pytest.fixture
def library(tmp_path: Path, sample_files: list[SampleFile]) -> Path:
    """A fresh folder holding a copy of every sample (safe to modify)."""
    folder = tmp_path / "library"
    folder.mkdir()
    for sample in sample_files:
        shutil.copy2(sample.path, folder / sample.path.name)
    return folder


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "vpo.db"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration is marked, so `-m "not integration"` runs the
    fast pure tests alone."""
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs of the test's own, unmounted afterwards."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for a full disk: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A throwaway redis-server on a free loopback port (tests/queue_support.py)."""
    from tests.queue_support import redis_server

    with redis_server(tmp_path) as url:
        yield url
