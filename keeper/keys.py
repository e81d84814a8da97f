"""The keeper's signer: a V3 keystore (geth / `ape accounts`) decrypted with a password from a
file or the environment; a raw key only with keeper.local_dev_raw_key on a local chain.

The private key lives in one LocalAccount held by `Signer`; it never appears in a repr, a log
line, a metric or an exception text (errors are re-raised without the original message when it
could echo input, and `from None` drops the chained traceback).

Errors: KeyLoadError.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from keeper import KeeperError
from keeper.settings import Settings


class KeyLoadError(KeeperError):
    """The signer could not be loaded; the message never contains key material or passwords."""


class TxSignError(KeeperError):
    """A transaction could not be signed (invalid fields)."""


class Signer:
    """Signs transactions; exposes only the address."""

    __slots__ = ("_account", "address", "address_bytes")

    def __init__(self, account: LocalAccount) -> None:
        self._account = account
        self.address: str = account.address
        self.address_bytes: bytes = bytes.fromhex(account.address[2:])

    def sign(self, tx: dict[str, Any]) -> tuple[bytes, bytes]:
        """Returns (raw transaction, hash)."""
        try:
            # the parsed key object skips re-deriving the public key on every signature (~40 % faster)
            signed = Account.sign_transaction(tx, self._account._key_obj)
        except Exception as exc:
            # eth_account's messages name the invalid transaction fields (never key material); keep them
            # short and drop the chained traceback, whose frames hold the account object.
            raise TxSignError(f"signing failed: {type(exc).__name__}: {str(exc)[:200]}") from None
        return bytes(signed.raw_transaction), bytes(signed.hash)

    def __repr__(self) -> str:
        return f"Signer(address={self.address})"

    __str__ = __repr__

    def __reduce__(self) -> Any:  # never pickled (would carry the key)
        raise TypeError("Signer cannot be pickled")


def load_signer(settings: Settings, environ: dict[str, str] | None = None) -> Signer:
    env = dict(os.environ) if environ is None else environ
    k = settings.keeper
    if k.signer == "raw":
        if not k.local_dev_raw_key or not settings.is_local_chain:
            raise KeyLoadError("raw keys need keeper.local_dev_raw_key = true and a local chain")
        if k.dev_anvil_account >= 0:
            from core.deploy import anvil_account

            return Signer(anvil_account(k.dev_anvil_account))
        raw = env.get(k.raw_key_env, "").strip()
        if not raw:
            raise KeyLoadError(f"environment variable {k.raw_key_env} (keeper.raw_key_env) is empty")
        try:
            return Signer(Account.from_key(raw))
        except Exception:
            raise KeyLoadError(f"{k.raw_key_env} does not hold a valid private key") from None
    if not k.keystore:
        raise KeyLoadError("keeper.keystore is not set")
    path = Path(k.keystore)
    try:
        keystore = json.loads(path.read_text())
    except FileNotFoundError:
        raise KeyLoadError(f"keystore {path} not found (keeper.keystore)") from None
    except (OSError, ValueError):
        raise KeyLoadError(f"keystore {path} is not readable JSON (keeper.keystore)") from None
    password = _password(settings, env)
    try:
        key = Account.decrypt(keystore, password)
    except Exception:
        raise KeyLoadError(f"cannot decrypt keystore {path}: wrong password or corrupt file") from None
    try:
        return Signer(Account.from_key(key))
    finally:
        del key


def _password(settings: Settings, env: dict[str, str]) -> str:
    k = settings.keeper
    if k.password_file:
        try:
            return Path(k.password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError:
            raise KeyLoadError(f"password file {k.password_file} is not readable (keeper.password_file)") from None
        except UnicodeDecodeError:  # the error carries the file's bytes: not chained (review s20 hk)
            raise KeyLoadError(
                f"password file {k.password_file} is not UTF-8 text (keeper.password_file): save the password as UTF-8"
            ) from None
    if k.password_env in env:
        return env[k.password_env]
    raise KeyLoadError(f"no keystore password: set keeper.password_file or the {k.password_env} variable")
