"""The keeper daemon: resolves due markets and distributes dividends, exactly once.

Modules: settings (config) · keys (signer) · decide (pure decisions) · rpc (JSON-RPC client) ·
abi (calldata) · store (PostgreSQL ledger) · leader (advisory lock + fencing epoch) ·
tx (transaction manager) · jobs (resolve, distribute) · aggregate (agg.* tables) ·
notify (ending-soon notifications) · metrics · __main__ (CLI, scheduler, HTTP). docs/keeper.md.

Errors (each module defines its own; core.config.ConfigError, a ValueError, names bad config keys):
    KeeperError
    ├── keys.KeyLoadError     keystore/password/raw key problem (never shows the key or password)
    ├── keys.TxSignError      a transaction dict eth_account refused to sign
    ├── rpc.RpcError          the node answered with an error or is unreachable (`transient`)
    ├── store.FencedError     this process is no longer the leader: stop writing (and so sending)
    └── tx.TxError            the ledger lost a row it was following
A money-moving job failing `max_consecutive_failures` times in a row halts the daemon (exit 1).
"""


class KeeperError(Exception):
    """Base of the keeper's errors."""
