"""Review of 070aabe (keeper.api_base_url refused at load without a scheme or host): a URL whose port is not
a port passes the same check (urlsplit's hostname does not read the port), and every warm run then fails
on it instead of the load naming the key."""

from __future__ import annotations

import urllib.parse

import pytest

from keeper.settings import ConfigError, KeeperSettings


@pytest.mark.parametrize("url", ["http://127.0.0.1:80800", "http://127.0.0.1:api"])
def test_an_api_base_url_with_an_unusable_port_is_refused_at_load(url: str) -> None:
    with pytest.raises(ValueError, match="Port"):
        _ = urllib.parse.urlsplit(url).port  # what aiohttp will meet on the first warm run
    with pytest.raises(ConfigError, match=r"keeper\.api_base_url"):
        KeeperSettings(api_base_url=url)
