"""Review s20 hk: operator input the keeper accepts at load and then fails on without naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account

from core.config import ConfigError, load_config
from keeper.keys import KeyLoadError, load_signer
from keeper.settings import KeeperSettings, settings_from
from tests.keeper.kit import KEEPER, write_config

PASSWORD = "café au lait"


def _config(tmp_path: Path, **keeper: object) -> dict[str, dict[str, object]]:
    p = write_config(
        tmp_path / "k.toml", "http://127.0.0.1:1", "postgresql://x@127.0.0.1:1/x", tmp_path / "d.json", **keeper
    )
    return load_config(p, environ={})


def test_a_password_file_that_is_not_utf8_is_a_key_load_error_naming_the_file(tmp_path: Path) -> None:
    """A password file written from a Latin-1 terminal (bytes that are not UTF-8): load_signer must refuse it
    with a KeyLoadError naming keeper.password_file (exit 2, one line), not let a UnicodeDecodeError escape as
    a traceback (exit 1) -- whose exception object also carries the password bytes."""
    ks = tmp_path / "keeper.json"
    ks.write_text(json.dumps(Account.encrypt(KEEPER.key, PASSWORD, kdf="pbkdf2", iterations=1_000)))
    pw = tmp_path / "pw"
    pw.write_bytes(PASSWORD.encode("latin-1") + b"\n")
    s = settings_from(
        _config(
            tmp_path,
            signer="keystore",
            local_dev_raw_key=False,
            dev_anvil_account=-1,
            keystore=str(ks),
            password_file=str(pw),
        )
    )
    try:
        load_signer(s, environ={})
    except KeyLoadError as exc:
        message = str(exc)
    except Exception as exc:  # the defect: anything else escapes cli.main's handler
        pytest.fail(f"load_signer raised {type(exc).__name__} instead of KeyLoadError: {exc}")
    else:
        message = "keeper.password_file"  # decrypting with the Latin-1 text is acceptable too
    assert "keeper.password_file" in message


@pytest.mark.parametrize("url", ["localhost:58080", "127.0.0.1:58080/", "api.internal"])
def test_an_api_base_url_without_scheme_is_refused_at_load(url: str) -> None:
    """keeper.api_base_url is only type-checked: a value aiohttp cannot use ('URL should be absolute') passes the
    load, and then every warm run fails with a bare ValueError that names no key (warm never halts, never fails
    /ready), so the cache is never warmed and nothing says which key is wrong."""
    with pytest.raises(ConfigError, match=r"keeper\.api_base_url"):
        KeeperSettings(api_base_url=url)
