"""GET /v1/admin/roles on a database filled by the real indexer: the deployment's role grants, a
revocation and a scheduled two-step admin transfer, as operators see them (issue 15)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from api.app import create_app
from api.auth import Principal, issue_token
from core.contracts import load_abi
from tests.api.conftest import ADMIN, make_settings
from tests.indexer.helpers import Node, index_to_head
from tests.indexer.helpers import make_settings as indexer_settings

pytestmark = [pytest.mark.anvil, pytest.mark.pg, pytest.mark.redis]


@pytest.fixture
def node() -> Iterator[Node]:
    n = Node()
    yield n
    n.stop()


def test_roles_endpoint_shows_members_and_every_role_change(
    node: Node, db_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    """Members are the deployment's grants minus a revocation; events list the revocation and the
    scheduled admin transfer newest first; only admins may read it."""
    w3 = node.w3
    c = node.deployment["contracts"]
    om = w3.eth.contract(address=c["OpinionMarket"], abi=load_abi("OpinionMarket"))
    cs = w3.eth.contract(address=c["CreatorShares"], abi=load_abi("CreatorShares"))
    admin, keeper, heir = w3.eth.accounts[0], w3.eth.accounts[1], w3.eth.accounts[7]
    resolver_role = om.functions.RESOLVER_ROLE().call()
    for fn in (om.functions.revokeRole(resolver_role, keeper), cs.functions.beginDefaultAdminTransfer(heir)):
        assert w3.eth.wait_for_transaction_receipt(fn.transact({"from": admin}))["status"] == 1
    assert index_to_head(indexer_settings(node.url, node.deployment, db_dsn, tmp_path)) == 0

    settings = make_settings(db_dsn, redis_url)
    token, _ = issue_token(settings, Principal(ADMIN, frozenset({"user", "admin"})))
    with TestClient(create_app(settings, serve_feed=False), raise_server_exceptions=False) as client:
        assert client.get("/v1/admin/roles").status_code == 401
        r = client.get("/v1/admin/roles", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        data = r.json()["data"]
    members = {(m["contract"], m["role"], m["account"]) for m in data["members"]}
    assert members == {
        ("OpinionMarket", "DEFAULT_ADMIN_ROLE", admin.lower()),
        ("OpinionMarket", "ARBITER_ROLE", admin.lower()),
        ("CreatorShares", "DEFAULT_ADMIN_ROLE", admin.lower()),
    }
    first, second = data["events"][:2]
    assert (first["contract"], first["event"], first["account"]) == (
        "CreatorShares",
        "DefaultAdminTransferScheduled",
        heir.lower(),
    )
    assert int(first["args"]["acceptSchedule"]) > 0
    assert (second["contract"], second["event"], second["role"], second["account"], second["sender"]) == (
        "OpinionMarket",
        "RoleRevoked",
        "RESOLVER_ROLE",
        keeper.lower(),
        admin.lower(),
    )
