"""Contract artifacts (abi/, artifacts/) and deployment files (deployments/<chain_id>.json).

Event topics are computed from the ABIs, never pasted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from functools import cache
from pathlib import Path
from typing import Any, TypeGuard

from eth_utils.crypto import keccak

from core.config import ChainSettings, ConfigError

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


DEPLOY_HINT = "deploy with `python -m scripts.deploy --config FILE` (`make deploy` for config/local.toml)"


def deployment_path(chain: ChainSettings) -> Path:
    """[chain].deployment as a path: "" = deployments/<chain_id>.json; a relative path is from the
    repository root (whatever the current directory), as for every process that reads it."""
    path = Path(chain.deployment or f"deployments/{chain.chain_id}.json")
    return path if path.is_absolute() else ROOT / path


def load_chain_deployment(chain: ChainSettings) -> Deployment:
    """The deployment file of [chain] (deployment_path), checked: it exists, is a deployment record
    and is for chain.chain_id. ConfigError naming chain.deployment otherwise."""
    path = deployment_path(chain)
    key = "chain.deployment" + ("" if chain.deployment else f" (empty: the default deployments/{chain.chain_id}.json)")
    dep = load_deployment(path, key)
    if dep.chain_id != chain.chain_id:
        raise ConfigError(
            f"{key}: {path} is for chain {dep.chain_id}, chain.chain_id is {chain.chain_id}: point chain.deployment"
            " at this chain's file"
        )
    return dep


def load_deployment(path: str | Path, key: str = "deployment file") -> Deployment:
    """Reads a deployment record (scripts/deploy writes it). ConfigError, starting with `key`, when the
    file is missing, unreadable, not JSON or lacks a field."""
    try:
        with open(path) as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{key}: {path} not found: {DEPLOY_HINT}, or set chain.deployment to its file") from None
    except OSError as exc:
        raise ConfigError(f"{key}: {path} cannot be read ({exc.strerror}): set chain.deployment to a file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{key}: {path} is not a JSON deployment record ({exc}): restore the file scripts.deploy wrote"
        ) from None
    try:
        c = raw["contracts"]
        return Deployment(
            chain_id=int(raw["chain_id"]),
            opinion_market=_address(c["OpinionMarket"]),
            creator_shares=_address(c["CreatorShares"]),
            usdc=_address(c["USDC"]),
            price_feed=_address(c["MockPriceFeed"]) if c.get("MockPriceFeed") else None,
            deploy_block=int(raw["deploy_block"]),
            abi_hashes=dict(raw.get("abi_hashes", {})),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        what = f"no field {exc}" if isinstance(exc, KeyError) else f"a malformed field ({exc})"
        raise ConfigError(
            f"{key}: {path} has {what}; a deployment record holds chain_id, deploy_block and contracts"
            " {OpinionMarket, CreatorShares, USDC} with 0x addresses: restore the file scripts.deploy wrote"
        ) from None


ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")  # any case: checksums are the caller's to check


def is_address(value: object) -> TypeGuard[str]:
    """0x and 40 hex digits, nothing else (fullmatch: `$` alone would also let a trailing newline in)."""
    return isinstance(value, str) and ADDRESS_RE.fullmatch(value) is not None


def _address(value: Any) -> str:
    """A 0x address (40 hex digits, nothing else: int(value, 16) also took '_' and spaces, which then
    failed every job at bytes.fromhex)."""
    if not is_address(value):
        raise ValueError(f"{value!r} is not a 0x address (0x and 40 hex digits)")
    return value.lower()
