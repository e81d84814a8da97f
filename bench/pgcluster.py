"""A PostgreSQL cluster owned by one benchmark run: its own data directory and port, removed at the end.

    with Cluster() as pg:            # PostgreSQL's default durability (fsync, synchronous_commit,
        pg.settings(LOCAL_STACK)     #   full_page_writes on); then the local stack's settings
        dsn = pg.create_database("x")

The shared services (`make services`, config/local.toml) run with durability off; benchmarks that
report durable figures start one of these instead of changing a cluster others use. Settings switch
with ALTER SYSTEM + pg_reload_conf() (all three are reloadable), so both modes run on one cluster.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

# What `scripts/services.sh` starts the local stack with (durability off: a crash may lose the last
# commits, and fsync=off can corrupt the cluster on power loss).
LOCAL_STACK = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
# PostgreSQL's defaults, what production must run (docs/operations.md).
DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
# Start-up settings shared by both modes (the local stack's memory).
COMMON = ("-c", "shared_buffers=512MB", "-c", "max_connections=100")


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else name


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.getuid() == 0 else args


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Cluster:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="gl-bench-pg-", dir="/var/tmp"))
        self.data = self.dir / "data"
        self.sock = self.dir / "sock"

    def __enter__(self) -> Cluster:
        self.sock.mkdir()
        if os.getuid() == 0:
            shutil.chown(self.dir, "postgres")
            shutil.chown(self.sock, "postgres")
        subprocess.run(
            _as_postgres([_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "guesslyfe", "-E", "UTF8"]),
            check=True,
            capture_output=True,
            timeout=120,
        )
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sock} " + " ".join(COMMON)
        subprocess.run(
            _as_postgres(
                [
                    _bin("pg_ctl"),
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.dir / "log"),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    opts,
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=90,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(
            _as_postgres([_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.dir, ignore_errors=True)

    def psql(self, sql: str, db: str = "postgres") -> str:
        out = subprocess.run(
            [
                "psql",
                "-X",
                "-q",
                "-At",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "guesslyfe",
                "-d",
                db,
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return out.stdout.strip()

    def settings(self, values: dict[str, str]) -> dict[str, Any]:
        """ALTER SYSTEM each setting, reload, and return what the server now reports."""
        for k, v in values.items():
            self.psql(f"ALTER SYSTEM SET {k} = '{v}'")
        self.psql("SELECT pg_reload_conf()")
        time.sleep(0.5)  # the postmaster signals the backends; new connections read the new values
        return {k: self.psql(f"SHOW {k}") for k in values}

    def create_database(self, name: str) -> str:
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.psql(f"CREATE DATABASE {name}")
        return f"postgresql://guesslyfe@127.0.0.1:{self.port}/{name}"

    def cpu_seconds(self) -> float:
        """CPU seconds of the cluster so far (postmaster, exited backends, live ones)."""
        from bench.indexer_backfill import cpu_seconds, tree_rss

        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        return cpu_seconds(pid, reaped=True) + sum(cpu_seconds(p) for p in tree_rss(pid) if p != pid)
