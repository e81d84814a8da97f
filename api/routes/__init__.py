"""Route families; each module declares ENDPOINTS (static paths before parameterised ones)."""

from __future__ import annotations

from api.context import Endpoint
from api.routes import account, admin, creators, leaderboards, markets, roles, users

ENDPOINTS: list[Endpoint] = [
    *markets.ENDPOINTS,
    *users.ENDPOINTS,
    *creators.ENDPOINTS,
    *leaderboards.ENDPOINTS,
    *account.ENDPOINTS,
    *admin.ENDPOINTS,
    *roles.ENDPOINTS,
]
