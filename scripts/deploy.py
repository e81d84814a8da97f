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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="config/local.toml")
    p.add_argument("--rpc-url", help="override chain.rpc_urls[0]")
    p.add_argument("--keeper", help="address granted RESOLVER_ROLE and KEEPER_ROLE")
    p.add_argument("--usdc", help="existing USDC token (required off local chains)")
    p.add_argument("--price-feed", help="existing AggregatorV3 feed")
    p.add_argument("--keystore", help="deployer V3 keystore (required off local chains)")
    p.add_argument("--password-file", help="keystore password file (else $GL_DEPLOYER_PASSWORD or a prompt)")
    p.add_argument("--dry-run", action="store_true", help="print the plan, send nothing")
    p.add_argument("--out", default="deployments", help="directory for <chain_id>.json")
    args = p.parse_args()

    config = load_config(args.config)
    chain = section(config, "chain", ChainSettings)
    try:
        windows = section(config, "deploy", DeploySettings)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc} (fix [deploy] in {args.config})", file=sys.stderr)
        return 2
    w3 = Web3(Web3.HTTPProvider(args.rpc_url or chain.rpc_urls[0], request_kwargs={"timeout": 60}))
    chain_id = w3.eth.chain_id
    if chain_id != chain.chain_id:
        print(
            f"error: the node reports chain id {chain_id}, config chain.chain_id is {chain.chain_id}", file=sys.stderr
        )
        return 2
    local = chain_id in LOCAL_CHAIN_IDS
    if args.keystore:
        password = (
            Path(args.password_file).read_text().strip()
            if args.password_file
            else os.environ.get("GL_DEPLOYER_PASSWORD") or getpass.getpass("keystore password: ")
        )
        deployer = Account.from_key(Account.decrypt(json.loads(Path(args.keystore).read_text()), password))
    elif local:
        deployer = anvil_account(0)
    else:
        print("error: off local chains pass --keystore (the deployer's V3 keystore)", file=sys.stderr)
        return 2
    keeper = args.keeper or (anvil_account(1).address if local else None)
    if keeper is None:
        print("error: pass --keeper ADDRESS (the keeper daemon's account)", file=sys.stderr)
        return 2
    params = DeployParams(
        usdc=args.usdc,
        price_feed=args.price_feed,
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
