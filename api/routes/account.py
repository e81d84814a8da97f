"""/v1/auth/*: Sign-In with Ethereum (nonce → verify → JWT) and the token's principal."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from api import auth
from api.context import Ctx, Endpoint
from api.encode import iso
from api.errors import ApiError, FieldError, ValidationFailed
from api.schemas import ADDRESS, INT, STR, TIME, arr, enum, model, obj

ROLE = enum("user", "creator", "admin")

VERIFY_BODY = {
    "type": "object",
    "required": ["message", "signature"],
    "additionalProperties": False,
    "properties": {
        "message": {"type": "string", "minLength": 1, "maxLength": 4000},
        "signature": {"type": "string", "minLength": 1, "maxLength": 200},
    },
}
NONCE_BODY: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": {}}


async def nonce(ctx: Ctx) -> dict[str, Any]:
    """A single-use nonce to put in the EIP-4361 message."""
    if ctx.body:
        raise ValidationFailed([FieldError(k[:64], "unknown field") for k in ctx.body])
    s = ctx.state.settings
    value, expires = await auth.issue_nonce(ctx.conn, s.api.siwe_nonce_ttl_s)
    return {
        "__status__": 201,
        "data": {
            "nonce": value,
            "expiresAt": iso(expires),
            "domain": s.api.siwe_domain,
            "uri": s.api.siwe_uri,
            "chainId": s.chain_id,
            "version": "1",
        },
    }


async def verify(ctx: Ctx) -> dict[str, Any]:
    """Verifies a signed EIP-4361 message and returns a JWT with the signer's roles."""
    body: dict[str, Any] = ctx.body
    errors = [FieldError(k[:64], "unknown field") for k in body if k not in ("message", "signature")]
    for k in ("message", "signature"):
        if not isinstance(body.get(k), str) or not body[k]:
            errors.append(FieldError(k, "is required (string)"))
    if errors:
        raise ValidationFailed(errors)
    message, signature = body["message"], body["signature"]
    if len(message) > 4000:
        raise ValidationFailed([FieldError("message", "at most 4000 characters")])
    if len(signature) > 200:
        raise ValidationFailed([FieldError("signature", "at most 200 characters")])
    settings = ctx.state.settings
    try:
        msg = auth.parse_siwe(message)
        address = auth.check_siwe(msg, signature, settings, dt.datetime.now(dt.UTC))
        signer = auth.recover_signer(message, signature)
    except auth.SiweError as exc:
        raise ApiError(401, "Sign-in failed", [FieldError("message", str(exc))]) from None
    if signer != address:
        raise ApiError(401, "Sign-in failed", [FieldError("signature", "was not made by the message's address")])
    if not await auth.consume_nonce(ctx.conn, msg.nonce):
        raise ApiError(401, "Sign-in failed", [FieldError("message", "nonce unknown, used or expired")])
    return await _token_for(ctx, address, msg.chain_id)


async def _token_for(ctx: Ctx, address: str, chain_id: int, auth_time: int = 0) -> dict[str, Any]:
    """A token for `address`; `creator` is decided on the chain it signed in for. `auth_time`: the sign-in
    a refresh continues (0: a sign-in now)."""
    settings = ctx.state.settings
    roles = await auth.roles_for(ctx.conn, settings, address, chain_id)
    token, exp = auth.issue_token(settings, auth.Principal(address, roles, auth_time=auth_time))
    return {
        "data": {
            "token": token,
            "tokenType": "Bearer",
            "address": address,
            "roles": sorted(roles),
            "expiresAt": iso(dt.datetime.fromtimestamp(exp, dt.UTC)),
        }
    }


async def refresh(ctx: Ctx) -> dict[str, Any]:
    """A new token for the signed-in principal (roles looked up again), before the old one expires.
    The old token cannot be refreshed again, and no token outlives `session_max_s` after sign-in
    (review h3 F1: a leaked token, an admin's too, could be renewed for ever)."""
    if ctx.body:
        raise ValidationFailed([FieldError(k[:64], "unknown field") for k in ctx.body])
    user = ctx.user
    assert user is not None
    settings = ctx.state.settings
    if time.time() >= user.auth_time + settings.api.session_max_s:
        raise ApiError(
            401,
            "Session ended",
            [FieldError("token", f"signed in more than {settings.api.session_max_s} s ago; sign in again")],
        )
    if not await auth.retire_token(ctx.conn, user):
        raise ApiError(
            401, "Token already refreshed", [FieldError("token", "refresh with the newest token, or sign in again")]
        )
    return await _token_for(ctx, user.address, ctx.chain_id, user.auth_time)


async def me(ctx: Ctx) -> dict[str, Any]:
    """The signed-in principal."""
    assert ctx.user is not None
    return {"data": {"address": ctx.user.address, "roles": sorted(ctx.user.roles)}}


TOKEN = model(
    "Token",
    obj(
        {
            "token": STR,
            "tokenType": enum("Bearer"),
            "address": ADDRESS,
            "roles": arr(ROLE),
            "expiresAt": TIME,
        }
    ),
)
NONCE = model(
    "SiweNonce",
    obj({"nonce": STR, "expiresAt": TIME, "domain": STR, "uri": STR, "chainId": INT, "version": enum("1")}),
)
PRINCIPAL = model("Principal", obj({"address": ADDRESS, "roles": arr(ROLE)}))

ENDPOINTS = [
    Endpoint(
        "POST",
        "/v1/auth/nonce",
        nonce,
        "Get a SIWE nonce",
        "auth",
        body=NONCE_BODY,
        db="write",
        status=201,
        response=NONCE,
    ),
    Endpoint(
        "POST",
        "/v1/auth/verify",
        verify,
        "Sign in with Ethereum (EIP-4361)",
        "auth",
        body=VERIFY_BODY,
        db="write",
        response=TOKEN,
        errors=(401,),
    ),
    Endpoint(
        "POST",
        "/v1/auth/refresh",
        refresh,
        "Renew a token before it expires",
        "auth",
        body=NONCE_BODY,
        auth="user",
        db="write",
        description=(
            "Send the current (unexpired) token; the answer is a new token with a fresh lifetime. A token"
            " is refreshed once (its successor is the one to refresh next), and no token outlives"
            " session_max_s after sign-in."
        ),
        response=TOKEN,
        errors=(401,),
    ),
    Endpoint("GET", "/v1/auth/me", me, "The signed-in principal", "auth", auth="user", response=PRINCIPAL),
]
