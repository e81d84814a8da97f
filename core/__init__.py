"""Small pieces shared by the indexer, keeper, API and scripts: config loading, contract
artifacts and deployments, logging setup. Nothing here does I/O at import time."""
