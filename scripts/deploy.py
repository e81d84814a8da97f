"""Deploys the contracts to the configured chain and writes deployments/<chain_id>.json.

    python -m scripts.deploy --config config/local.toml                  # local anvil, dev keys
    python -m scripts.deploy --config config/base-sepolia.toml --usdc 0x… \
        --keystore deployer.json --password-file pw.txt --keeper 0x… --dry-run

On local chains (31337/1337) the deployer is anvil account 0 and the keeper account 1 unless
given. Elsewhere a keystore is required, USDC must be the real token, and --dry-run prints the
plan (addresses, transactions, estimated cost) without sending anything.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

import requests
from eth_account import Account
from web3 import Web3

from core.config import ChainSettings, ConfigError, load_config, section
from core.deploy import (
    LOCAL_CHAIN_IDS,
    DeployError,
    DeployParams,
    DeploySettings,
    anvil_account,
    deploy,
    plan,
    write_deployment,
)

EXIT_REFUSED, EXIT_UNREACHABLE = 2, 3  # as the keeper's: bad input or config; the node cannot be reached


class Refused(Exception):
    """Bad input (an option, the config, the keystore): one line, exit 2, nothing sent."""


def address_arg(option: str, value: str | None) -> str | None:
    """--keeper/--usdc/--price-feed as a checksum address; Refused naming the option otherwise."""
    if value is None:
        return None
    if not Web3.is_address(value):
        raise Refused(
            f"{option}: {value!r} is not an address (0x and 40 hex digits; mixed case must be a valid checksum)"
        )
    return str(Web3.to_checksum_address(value))


def read_keystore(path: str) -> dict[str, Any]:
    """The V3 keystore at `path`, checked before any password is asked for."""
    try:
        keystore = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise Refused(f"--keystore: {path} not found: pass the deployer's V3 keystore file") from None
    except OSError as exc:
        raise Refused(f"--keystore: {path} cannot be read ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Refused(f"--keystore: {path} is not JSON: pass a V3 keystore (geth / `cast wallet new` format)") from None
    if not isinstance(keystore, dict) or ("crypto" not in keystore and "Crypto" not in keystore):
        raise Refused(f"--keystore: {path} is not a V3 keystore (no crypto section)")
    return keystore


def keystore_password(password_file: str | None) -> str:
    if password_file:
        try:
            return Path(password_file).read_text().strip()
        except OSError as exc:
            raise Refused(f"--password-file: {password_file} cannot be read ({exc.strerror})") from None
    password = os.environ.get("GL_DEPLOYER_PASSWORD")
    if password:
        return password
    try:
        return getpass.getpass("keystore password: ")
    except EOFError:  # no terminal to ask on
        raise Refused("--keystore needs a password: pass --password-file FILE or set GL_DEPLOYER_PASSWORD") from None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="config/local.toml")
    p.add_argument("--rpc-url", help="override chain.rpc_urls[0]")
    p.add_argument("--keeper", help="address granted RESOLVER_ROLE (OpinionMarket)")
    p.add_argument("--usdc", help="existing USDC token (required off local chains)")
    p.add_argument("--price-feed", help="existing AggregatorV3 feed")
    p.add_argument("--keystore", help="deployer V3 keystore (required off local chains)")
    p.add_argument("--password-file", help="keystore password file (else $GL_DEPLOYER_PASSWORD or a prompt)")
    p.add_argument("--dry-run", action="store_true", help="print the plan, send nothing")
    p.add_argument("--out", default="deployments", help="directory for <chain_id>.json")
    args = p.parse_args()
    try:
        return deploy_cli(args)
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except requests.RequestException as exc:  # the node is down or unreachable (the URL may hold a key: not shown)
        where = "--rpc-url" if args.rpc_url else f"chain.rpc_urls[0] of {args.config}"
        print(
            f"error: cannot reach the node at {where} ({type(exc).__name__}): start it (local chain:"
            " scripts/services.sh start anvil) or fix the URL",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE


def deploy_cli(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        chain = section(config, "chain", ChainSettings)
    except ConfigError as exc:
        raise Refused(str(exc)) from None
    try:
        windows = section(config, "deploy", DeploySettings)
    except (ConfigError, ValueError) as exc:
        raise Refused(f"{exc} (fix [deploy] in {args.config})") from None
    keeper = address_arg("--keeper", args.keeper)
    usdc = address_arg("--usdc", args.usdc)
    price_feed = address_arg("--price-feed", args.price_feed)
    keystore = read_keystore(args.keystore) if args.keystore else None  # before asking for its password
    w3 = Web3(Web3.HTTPProvider(args.rpc_url or chain.rpc_urls[0], request_kwargs={"timeout": 60}))
    chain_id = w3.eth.chain_id
    if chain_id != chain.chain_id:
        raise Refused(f"the node reports chain id {chain_id}, config chain.chain_id is {chain.chain_id}")
    local = chain_id in LOCAL_CHAIN_IDS
    if keystore is not None:
        try:
            deployer = Account.from_key(Account.decrypt(keystore, keystore_password(args.password_file)))
        except (ValueError, KeyError, TypeError) as exc:  # "MAC mismatch" (wrong password), a field missing
            why = f"no field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise Refused(
                f"--keystore: {args.keystore} cannot be decrypted ({why}): wrong password, or not a V3 keystore"
            ) from None
    elif local:
        deployer = anvil_account(0)
    else:
        raise Refused("off local chains pass --keystore (the deployer's V3 keystore)")
    keeper = keeper or (anvil_account(1).address if local else None)
    if keeper is None:
        raise Refused("pass --keeper ADDRESS (the keeper daemon's account)")
    params = DeployParams(
        usdc=usdc,
        price_feed=price_feed,
        challenge_window=windows.challenge_window_s,
        resolution_window=windows.resolution_window_s,
    )

    try:
        if args.dry_run:
            steps = plan(w3, deployer.address, keeper, params)
            gas = sum(150_000 if s["to"] else 6_000_000 for s in steps)
            fee = w3.eth.gas_price
            print(f"chain {chain_id}, deployer {deployer.address}, keeper {keeper}")
            for s in steps:
                print(f"  {s['purpose']:<45} {s['address']}")
            print(f"gas limit total {gas:,}; at {fee / 1e9:.3f} gwei at most {gas * fee / 1e18:.6f} ETH. Nothing sent.")
            return 0
        record = deploy(w3, deployer, keeper, params)
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    path = write_deployment(record, args.out)
    print(json.dumps(record["contracts"], indent=2))
    print(f"wrote {path} (deploy block {record['deploy_block']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
