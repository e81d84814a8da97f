"""`python -m indexer`: the command line is indexer/cli.py. This launcher starts the fetch process
first (indexer/spawn.py imports only the standard library), so its imports overlap the writer's."""

import sys

from indexer.spawn import early_child

if __name__ == "__main__":
    child = early_child(sys.argv[1:])
    from indexer.cli import main

    sys.exit(main(child=child))
