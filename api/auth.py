"""Sign-In with Ethereum (EIP-4361) → JWT with roles user / creator / admin.

    POST /v1/auth/nonce   → a single-use nonce (PostgreSQL api.siwe_nonces, expires)
    POST /v1/auth/verify  {message, signature} → parse the EIP-4361 message, check domain, chain
                           id, nonce (consumed), times; recover the signer (EIP-191 personal_sign)
                           and compare with the message's address → {token, roles, expiresAt}

Roles: every signer is `user`; `creator` when the address created a market or has a share curve;
`admin` when listed in api.admin_addresses — checked against the running configuration on every
request, so removing an address revokes its admin tokens at once. Tokens live `api.jwt_ttl_s`
(15 minutes by default); POST /v1/auth/refresh trades a valid token for a new one.

The message parser is ours (the `siwe` package is not installed here and pulls pydantic-based
parsing we do not need); verification uses eth_account.

Errors: SiweError(message) — turned into 401 with the reason by the route.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import secrets
import time
from typing import TYPE_CHECKING, Any

import jwt
from eth_account import Account
from eth_account.messages import encode_defunct

from api.settings import Settings
from core.contracts import is_address
from core.numbers import whole_number

if TYPE_CHECKING:
    from api.context import Conn

ISSUER = "guesslyfe-api"


class SiweError(ValueError):
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    address: str  # lowercase 0x hex
    roles: frozenset[str]
    expires_at: int = 0  # the token's exp (unix seconds) when decoded from one; 0 when made to issue one
    jti: str = ""  # the token's id, when decoded from one (a refresh retires it)
    auth_time: int = 0  # when the signer signed in (SIWE verify): a refresh keeps it, a session ends by it

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


@dataclasses.dataclass(frozen=True, slots=True)
class SiweMessage:
    domain: str
    address: str
    statement: str | None
    uri: str
    version: str
    chain_id: int
    nonce: str
    issued_at: dt.datetime
    expiration_time: dt.datetime | None
    not_before: dt.datetime | None
    request_id: str | None
    resources: tuple[str, ...]


_HEADER = re.compile(r"^(?P<domain>[^\s]+) wants you to sign in with your Ethereum account:$")
_FIELDS = {
    "URI": "uri",
    "Version": "version",
    "Chain ID": "chain_id",
    "Nonce": "nonce",
    "Issued At": "issued_at",
    "Expiration Time": "expiration_time",
    "Not Before": "not_before",
    "Request ID": "request_id",
}
_ORDER = list(_FIELDS)


def _time(value: str, name: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SiweError(f"{name} is not an RFC 3339 timestamp") from None
    if t.tzinfo is None:
        raise SiweError(f"{name} needs a time zone")
    return t


_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def parse_siwe(text: str) -> SiweMessage:
    """Parses an EIP-4361 message (pure). Printable text only, lines split by "\n": a CR or a Unicode
    line separator in the statement could show the signer a fake `URI:` or `Chain ID:` line (review h3)."""
    if _CONTROL.search(text):
        raise SiweError("the message must be printable text: no control characters or Unicode line separators")
    lines = text.split("\n")
    if len(lines) < 8:
        raise SiweError("not an EIP-4361 message")
    header = _HEADER.fullmatch(lines[0])
    if header is None:
        raise SiweError("first line must be '<domain> wants you to sign in with your Ethereum account:'")
    address = lines[1]
    if not is_address(address):
        raise SiweError("second line must be the 0x address")
    if lines[2] != "":
        raise SiweError("a blank line must follow the address")
    i = 3
    statement = None
    if not lines[i].startswith("URI: "):
        statement = lines[i]
        if i + 1 >= len(lines) or lines[i + 1] != "":
            raise SiweError("a blank line must follow the statement")
        i += 2
    values: dict[str, str] = {}
    resources: list[str] = []
    last = -1
    while i < len(lines):
        line = lines[i]
        i += 1
        if line == "Resources:":
            resources = [r[2:] for r in lines[i:] if r.startswith("- ")]
            if len(resources) != len(lines[i:]):
                raise SiweError("resources must be '- URI' lines")
            break
        key, sep, value = line.partition(": ")
        if not sep or key not in _FIELDS:
            raise SiweError(f"unexpected line {line[:40]!r}")
        pos = _ORDER.index(key)
        if pos <= last:
            raise SiweError(f"field {key} out of order or repeated")
        last = pos
        values[_FIELDS[key]] = value
    for need in ("uri", "version", "chain_id", "nonce", "issued_at"):
        if need not in values:
            raise SiweError(f"missing field {need}")
    if values["version"] != "1":
        raise SiweError("Version must be 1")
    chain_id = whole_number(values["chain_id"])
    if chain_id is None:
        raise SiweError("Chain ID must be a whole number (ASCII digits)")
    if not re.fullmatch(r"[A-Za-z0-9]{8,64}", values["nonce"]):
        raise SiweError("Nonce must be 8+ alphanumeric characters")
    return SiweMessage(
        domain=header["domain"],
        address=address,
        statement=statement,
        uri=values["uri"],
        version="1",
        chain_id=chain_id,
        nonce=values["nonce"],
        issued_at=_time(values["issued_at"], "Issued At"),
        expiration_time=_time(values["expiration_time"], "Expiration Time") if "expiration_time" in values else None,
        not_before=_time(values["not_before"], "Not Before") if "not_before" in values else None,
        request_id=values.get("request_id"),
        resources=tuple(resources),
    )


def check_siwe(msg: SiweMessage, signature: str, settings: Settings, now: dt.datetime) -> str:
    """Checks everything but the nonce; returns the signer's lowercase address (pure but for ecrecover)."""
    if msg.domain != settings.api.siwe_domain:
        raise SiweError(f"domain must be {settings.api.siwe_domain}")
    if msg.uri != settings.api.siwe_uri:  # the relying party the nonce answer names (review h3)
        raise SiweError(f"URI must be {settings.api.siwe_uri}")
    if msg.chain_id not in settings.chains:
        raise SiweError(f"Chain ID must be one of {', '.join(map(str, settings.chains))}")
    if msg.address != msg.address.lower() and msg.address != _checksum(msg.address):
        raise SiweError("address checksum is wrong")
    if msg.issued_at > now + dt.timedelta(minutes=5):
        raise SiweError("Issued At is in the future")
    if msg.expiration_time is not None and msg.expiration_time <= now:
        raise SiweError("message expired")
    if msg.not_before is not None and msg.not_before > now:
        raise SiweError("message not yet valid")
    if not re.fullmatch(r"0x[0-9a-fA-F]{130}", signature):
        raise SiweError("signature must be 65 bytes of 0x hex")
    return msg.address.lower()


def recover_signer(text: str, signature: str) -> str:
    try:
        signer: str = Account.recover_message(encode_defunct(text=text), signature=signature)
    except Exception as exc:  # eth_keys raises several types for bad signatures
        raise SiweError("signature does not verify") from exc
    return signer.lower()


def _checksum(address: str) -> str:
    from eth_utils.address import to_checksum_address

    return str(to_checksum_address(address))


# ------------------------------------------------------------------ nonces (PostgreSQL, single use)


async def issue_nonce(conn: Conn, ttl_s: int) -> tuple[str, dt.datetime]:
    nonce = secrets.token_hex(12)
    expires: dt.datetime = await conn.fetchval(
        """WITH gc AS (DELETE FROM api.siwe_nonces WHERE expires_at < now())
           INSERT INTO api.siwe_nonces (nonce, expires_at) VALUES ($1, now() + make_interval(secs => $2))
           RETURNING expires_at""",
        nonce,
        ttl_s,
    )
    return nonce, expires


async def consume_nonce(conn: Conn, nonce: str) -> bool:
    row = await conn.fetchval("DELETE FROM api.siwe_nonces WHERE nonce = $1 AND expires_at >= now() RETURNING 1", nonce)
    return row is not None


ROLES_SQL = """
SELECT EXISTS (SELECT 1 FROM idx.markets WHERE chain_id = $1 AND creator = $2)
    OR EXISTS (SELECT 1 FROM idx.creators WHERE chain_id = $1 AND creator = $2)
"""


async def roles_for(conn: Conn, settings: Settings, address: str, chain_id: int | None = None) -> frozenset[str]:
    roles = {"user"}
    chain = settings.chain_id if chain_id is None else chain_id
    if await conn.fetchval(ROLES_SQL, chain, bytes.fromhex(address[2:])):
        roles.add("creator")
    if address in settings.admins:
        roles.add("admin")
    return frozenset(roles)


# ------------------------------------------------------------------ JWT


def issue_token(settings: Settings, principal: Principal, now: float | None = None) -> tuple[str, int]:
    """A token for `principal`; `auth_time` is its sign-in time (0: now, a fresh sign-in). The token
    never outlives the session (`session_max_s` after sign-in)."""
    iat = int(time.time() if now is None else now)
    auth_time = principal.auth_time or iat
    exp = min(iat + settings.api.jwt_ttl_s, auth_time + settings.api.session_max_s)
    claims: dict[str, Any] = {
        "sub": principal.address,
        "roles": sorted(principal.roles),
        "iat": iat,
        "exp": exp,
        "iss": ISSUER,
        "chain_id": settings.chain_id,
        "jti": secrets.token_hex(16),
        "auth_time": auth_time,
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256"), exp


def decode_token(settings: Settings, token: str) -> Principal | None:
    """The principal of a valid bearer token; None when invalid or expired."""
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=["HS256"],
            issuer=ISSUER,
            options={"require": ["sub", "exp", "iat", "iss"]},
        )
    except jwt.PyJWTError:
        return None
    sub = claims.get("sub")
    roles = claims.get("roles")
    if not isinstance(sub, str) or not is_address(sub) or not isinstance(roles, list):
        return None
    if claims.get("chain_id") not in settings.chains:
        return None
    address = sub.lower()
    # `admin` is decided by the current configuration on every request, never by the token: an
    # address removed from api.admin_addresses loses the role at once, whatever its token says.
    kept = {str(r) for r in roles if r in ("user", "creator")}
    if address in settings.admins:
        kept.add("admin")
    jti, auth_time = claims.get("jti"), claims.get("auth_time", claims["iat"])
    if not isinstance(jti, str) or not isinstance(auth_time, int):
        return None
    return Principal(address, frozenset(kept), int(claims["exp"]), jti, auth_time)


RETIRE_SQL = """
WITH gone AS (DELETE FROM api.refreshed_tokens WHERE expires_at < now())
INSERT INTO api.refreshed_tokens (jti, expires_at) VALUES ($1, to_timestamp($2))
ON CONFLICT (jti) DO NOTHING RETURNING 1
"""


async def retire_token(conn: Conn, principal: Principal) -> bool:
    """Marks the token `principal` came from as refreshed; False if it already was (a reuse: the token
    leaked, or the client sent it twice). Kept until the token's own exp."""
    return await conn.fetchval(RETIRE_SQL, principal.jti, principal.expires_at) is not None


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    return token.strip()
