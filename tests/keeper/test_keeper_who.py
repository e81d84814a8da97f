"""Review s20 hk: `python -m keeper run` computes the default --by (user@host) before anything else, for the
daemon too, and getpass.getuser() raises where the process's uid has no name."""

from __future__ import annotations

import pwd
from pathlib import Path
from typing import Any

import pytest

from keeper import cli
from tests.keeper.kit import write_config


def test_the_daemon_starts_when_its_uid_has_no_user_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A container run with an arbitrary uid (`docker run --user 10001`, Kubernetes runAsUser) has no
    /etc/passwd entry and, unless the image sets it, no $USER/$LOGNAME: getpass.getuser() raises (KeyError on
    3.11, OSError on 3.13). cli.main calls it for every `run` (the default --by of a job request), so the
    daemon dies with a traceback before it starts, though it never asks another leader anything. It must
    start (or, at worst, refuse with a line naming --by)."""
    cfg = write_config(tmp_path / "k.toml", "http://127.0.0.1:1", "postgresql://x@127.0.0.1:1/x", tmp_path / "d.json")
    for var in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(var, raising=False)

    def no_name(uid: int) -> Any:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", no_name)
    started: list[bool] = []

    class FakeDaemon:  # the real one would connect; only the start-up path before it matters here
        def __init__(self, *_a: Any) -> None:
            pass

        async def main(self, *_a: Any) -> int:
            started.append(True)
            return 0

    monkeypatch.setattr(cli, "Daemon", FakeDaemon)
    try:
        code = cli.main(["run", "--config", str(cfg)])
    except Exception as exc:  # the defect
        pytest.fail(f"`keeper run` raised {type(exc).__name__}: {exc}")
    assert code == 0
    assert started == [True]
