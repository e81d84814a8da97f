"""Review hg of d9d1f58 (an index built for one deployment is refused for another, StartupCheckFailed,
exit 2, "run `python -m indexer reset`"): `make run CHAINS=2` redeploys chain 1337 whenever its deployment
is not live (anvil2's state lost, .data/deployments/1337.json removed) but, unlike chain 31337, never
resets the database for it. The database keeps idx.contracts for the old 1337 contracts, so indexer-1337
now exits 2 at every start and the supervisor restarts it for ever (before d9d1f58 it continued)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

import scripts.run as run


class _Sup:
    def __init__(self, children: list[Any], env: dict[str, str]) -> None:
        self.children = children

    def start_all(self) -> None:
        pass

    def stop_all(self) -> None:
        pass


def test_a_redeployed_second_chain_gets_a_fresh_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, ...]] = []

    def record(*argv: Any, **kwargs: Any) -> None:
        env = kwargs.get("env") or {}
        calls.append(
            (
                *(str(a) for a in (argv[0] if len(argv) == 1 and isinstance(argv[0], list) else argv)),
                f"chain={env.get('GL_CHAIN__CHAIN_ID', '')}",
            )
        )

    def live(rpc_url: str, path: Path) -> bool:
        return path.name != "1337.json"  # chain 31337 is live; chain 1337's state was lost: redeployed

    monkeypatch.setattr(run, "DATA", tmp_path / ".data")
    monkeypatch.setattr(run, "sh", record)
    monkeypatch.setattr(run.subprocess, "run", record)
    monkeypatch.setattr(run, "reset_database", lambda services, name: calls.append(("reset_database", name)))
    monkeypatch.setattr(run, "deployment_live", live)
    monkeypatch.setattr(run, "Supervisor", _Sup)
    monkeypatch.setattr(run.asyncio, "run", lambda coro: coro.close())
    monkeypatch.setattr(sys, "argv", ["run", "--config", "config/local.toml", "--chains", "2"])
    assert run.main() == 0
    deployed = next(i for i, c in enumerate(calls) if "scripts.deploy" in c and "--out" in c)
    after = calls[deployed + 1 :]
    resets = [c for c in after if "reset_database" in c or ("reset" in c and "chain=1337" in c)]
    assert resets, (
        "chain 1337 was redeployed and nothing reset its index: indexer-1337 refuses the database at every"
        f" start (StartupCheckFailed, exit 2). Commands after the deploy: {after}"
    )
