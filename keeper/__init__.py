"""The keeper daemon: resolves due markets and distributes dividends, exactly once.

Modules: settings (config) · keys (signer) · decide (pure decisions) · rpc (JSON-RPC client) ·
abi (calldata) · store (PostgreSQL ledger) · leader (advisory lock + fencing epoch) ·
tx (transaction manager) · jobs (scheduled work) · metrics · __main__ (CLI, scheduler, HTTP).

Errors (each module defines its own, all subclass KeeperError):
    KeeperError
    ├── ConfigError (core.config, a ValueError)   bad or unknown config key
    ├── KeyLoadError                               keystore/password/raw key problem (never shows the key)
    ├── RpcError                                   the node answered with an error or is unreachable
    ├── FencedError                                this process is no longer the leader: stop writing
    └── TxError                                    a transaction could not be built or signed
"""


class KeeperError(Exception):
    """Base of the keeper's errors."""
