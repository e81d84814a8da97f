"""Starting the fetch process (indexer/fetch.py): stdlib only, so `python -m indexer` can start it
before importing the rest. Each process spends ~0.6 s in its interpreter and imports; started
first, the child's imports run beside the writer's on the second core instead of after them."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the child runs `python -m indexer.fetch` from here

Child = tuple[subprocess.Popen[bytes], socket.socket]


def spawn_fetch_child() -> Child:
    """A fresh interpreter (no inherited event loop, sockets or locks) over a socket pair; not
    multiprocessing.Process, whose spawn method also starts a resource-tracker process (12 MB).
    The child waits for its configuration on the socket and exits when the socket closes."""
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen(
        [sys.executable, "-m", "indexer.fetch", str(theirs.fileno())],
        cwd=ROOT,
        pass_fds=[theirs.fileno()],
    )
    theirs.close()
    return proc, ours


def early_child(argv: Sequence[str]) -> Child | None:
    """The fetch process for a `run` command line, started before anything else is imported (None
    for migrate, reset and --help). Whoever does not use it closes its socket and it exits."""
    if {"migrate", "reset", "-h", "--help"} & set(argv):
        return None
    return spawn_fetch_child()


def discard(child: Child | None) -> None:
    """Stops an early child nobody adopted (an adopted one's socket was detached: fileno -1)."""
    if child is not None and child[1].fileno() != -1:
        proc, sock = child
        sock.close()  # the child sees EOF and exits
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=2)
