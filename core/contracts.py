"""Contract artifacts (abi/, artifacts/) and deployment files (deployments/<chain_id>.json).

Event topics are computed from the ABIs, never pasted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

from eth_utils.crypto import keccak

ROOT = Path(__file__).resolve().parent.parent
ABI_DIR = ROOT / "abi"
ARTIFACT_DIR = ROOT / "artifacts"
CONTRACT_NAMES = ("OpinionMarket", "CreatorShares", "MockUSDC", "MockPriceFeed")


@cache
def load_abi(name: str) -> list[dict[str, Any]]:
    with open(ABI_DIR / f"{name}.json") as f:
        abi: list[dict[str, Any]] = json.load(f)
    return abi


@cache
def load_artifact(name: str) -> dict[str, Any]:
    with open(ARTIFACT_DIR / f"{name}.json") as f:
        artifact: dict[str, Any] = json.load(f)
    return artifact


def abi_hash(name: str) -> str:
    """sha256 of the canonical ABI JSON, recorded in deployment files to catch stale ABIs."""
    canonical = json.dumps(load_abi(name), sort_keys=True, separators=(",", ":")).encode()
    return "0x" + hashlib.sha256(canonical).hexdigest()


def event_signature(event_abi: dict[str, Any]) -> str:
    return f"{event_abi['name']}({','.join(_canonical_type(i) for i in event_abi['inputs'])})"


def event_topic(event_abi: dict[str, Any]) -> bytes:
    return bytes(keccak(text=event_signature(event_abi)))


def _canonical_type(param: dict[str, Any]) -> str:
    t: str = param["type"]
    if t.startswith("tuple"):
        return "(" + ",".join(_canonical_type(c) for c in param["components"]) + ")" + t[5:]
    return t


# Access-control roles of OpinionMarket and CreatorShares (ids are keccak256 of the names, as the
# contracts define them; DEFAULT_ADMIN_ROLE is zero).
ROLE_NAMES: dict[str, str] = {
    "0x" + "00" * 32: "DEFAULT_ADMIN_ROLE",
    **{"0x" + keccak(text=n).hex(): n for n in ("RESOLVER_ROLE", "KEEPER_ROLE", "ARBITER_ROLE")},
}


@dataclasses.dataclass(frozen=True, slots=True)
class Deployment:
    chain_id: int
    opinion_market: str
    creator_shares: str
    usdc: str
    price_feed: str | None
    deploy_block: int
    abi_hashes: dict[str, str]


def load_deployment(path: str | Path) -> Deployment:
    try:
        with open(path) as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"deployment file {path} not found: run `make deploy` (scripts/deploy)") from None
    c = raw["contracts"]
    return Deployment(
        chain_id=int(raw["chain_id"]),
        opinion_market=c["OpinionMarket"].lower(),
        creator_shares=c["CreatorShares"].lower(),
        usdc=c["USDC"].lower(),
        price_feed=(c.get("MockPriceFeed") or None) and c["MockPriceFeed"].lower(),
        deploy_block=int(raw["deploy_block"]),
        abi_hashes=dict(raw.get("abi_hashes", {})),
    )
