"""`python -m keeper …`: the entry point. The commands are in keeper/cli.py, the daemon in
keeper/daemon.py (docs/keeper.md)."""

import sys

from keeper.cli import main

if __name__ == "__main__":
    sys.exit(main())
