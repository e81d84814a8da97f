"""The keeper daemon: resolves due markets and distributes dividends, exactly once.

Modules: settings (config) · keys (signer) · decide (pure decisions) · rpc (JSON-RPC client) ·
abi (calldata) · store (PostgreSQL ledger) · leader (advisory lock + fencing epoch) ·
tx (transaction manager) · jobs (resolve, distribute) · aggregate (agg.* tables) ·
notify (ending-soon notifications) · metrics · daemon (scheduler, leadership, HTTP) · cli (operator
commands; `__main__` is only its entry). Shared with the API through core/ (resolution, warm,
outbox, notifications); the keeper never imports the api package. docs/keeper.md.

Errors (each module defines its own; core.config.ConfigError, a ValueError, names bad config keys):
    KeeperError
    ├── keys.KeyLoadError     keystore/password/raw key problem (never shows the key or password)
    ├── keys.TxSignError      a transaction dict eth_account refused to sign
    ├── rpc.RpcError          the node answered with an error or is unreachable (`transient`)
    ├── store.FencedError     this process is no longer the leader: stop writing (and so sending)
    ├── daemon.DistributionDeferred  due creators the node did not answer for: the run fails, the day is retried
    ├── tx.TxError            the ledger lost a row it was following
    └── Unreachable           the database or every node did not answer at start (CLI exit 3)
    store.DatabaseUnreachable (an OSError; store.PoolTimeout also a TimeoutError): no pooled connection could be had
A job failing `max_consecutive_failures` times in a row with a systemic fault (database or every RPC
URL unreachable, signer unusable) halts the daemon (exit 1) for its supervisor to restart; one bad
item is marked failed and skipped, and other failures are retried on the next tick. `database_unreachable`
is only the database's own connection errors; an OSError from elsewhere (the API the warm job asks) is not.
"""


class KeeperError(Exception):
    """Base of the keeper's errors."""


class Unreachable(KeeperError):
    """The database or the chain did not answer when a command started: nothing was recorded."""
