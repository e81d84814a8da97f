"""Admin request bodies: a bad time is a 400 naming the field (review h5: an offset taking the time
outside years 1..9999 in UTC answered 500)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from api.app import create_app
from api.auth import Principal, issue_token
from tests.api.conftest import ADMIN, make_settings

pytestmark = [pytest.mark.pg, pytest.mark.redis]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"startsAt": "9999-12-31T23:59:59-23:59"}, "startsAt"),
        ({"startsAt": "0001-01-01T00:00:00+23:59"}, "startsAt"),
        ({"endsAt": "not a time"}, "endsAt"),
        ({"endsAt": 1700000000}, "endsAt"),  # the schema's type is a string
        ({"startsAt": "2030-01-01T02:00:00Z", "endsAt": "2030-01-01T01:00:00Z"}, "endsAt"),
    ],
)
def test_maintenance_bad_time_is_a_400_naming_it(
    db_dsn: str, redis_url: str, body: dict[str, object], field: str
) -> None:
    s = make_settings(db_dsn, redis_url)
    token, _ = issue_token(s, Principal(ADMIN, frozenset({"user", "admin"})))
    with TestClient(create_app(s, serve_feed=False), raise_server_exceptions=False) as c:
        r = c.post(
            "/v1/admin/maintenance", json={"message": "upgrade", **body}, headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 400, (r.status_code, r.text)
        assert [e["field"] for e in r.json()["errors"]] == [field]
