from pathlib import Path

import pytest

from vpo.db.connection import resolve_db_path


def test_option_wins_over_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VPO_DB", str(tmp_path / "env.db"))
    assert resolve_db_path(tmp_path / "opt.db") == tmp_path / "opt.db"


def test_environment_wins_over_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VPO_DB", str(tmp_path / "env.db"))
    assert resolve_db_path(None) == tmp_path / "env.db"


def test_default_is_in_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VPO_DB", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_db_path(None) == tmp_path / ".vpo" / "library.db"
