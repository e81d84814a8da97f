"""Keys and settings: V3 keystore + password file/env, the raw-key flag, unknown config keys, and
the key (and password) never in output — logs, reprs, exception texts."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from eth_account import Account

from core.config import ConfigError, load_config
from keeper.keys import KeyLoadError, load_signer
from keeper.settings import settings_from
from tests.keeper.kit import KEEPER, ChainOps, fetch, insert_markets, queue, run_keeper, write_config

KEY_HEX = KEEPER.key.hex().removeprefix("0x")
PASSWORD = "correct horse battery staple 42"


def keystore(tmp_path: Path) -> Path:
    path = tmp_path / "keeper.json"
    path.write_text(json.dumps(Account.encrypt(KEEPER.key, PASSWORD, kdf="pbkdf2", iterations=1_000)))
    return path


def config(tmp_path: Path, **keeper: object) -> dict[str, dict[str, object]]:
    p = write_config(
        tmp_path / "k.toml", "http://127.0.0.1:1", "postgresql://x@127.0.0.1:1/x", tmp_path / "d.json", **keeper
    )
    return load_config(p, environ={})


def test_keystore_with_password_file_loads_and_never_shows_the_key(tmp_path: Path) -> None:
    """The signer exposes its address only: repr, str and the settings' repr hold no key or password."""
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    s = settings_from(
        config(
            tmp_path,
            signer="keystore",
            local_dev_raw_key=False,
            dev_anvil_account=-1,
            keystore=str(keystore(tmp_path)),
            password_file=str(pw),
        )
    )
    signer = load_signer(s, environ={})
    assert signer.address == KEEPER.address
    for text in (repr(signer), str(signer), repr(s)):
        assert KEY_HEX not in text.lower()
        assert PASSWORD not in text
    with pytest.raises(TypeError):
        pickle.dumps(signer)


def test_wrong_password_error_names_the_file_not_the_secret(tmp_path: Path) -> None:
    """A wrong password fails with a message that contains neither the password nor the key."""
    s = settings_from(
        config(
            tmp_path, signer="keystore", local_dev_raw_key=False, dev_anvil_account=-1, keystore=str(keystore(tmp_path))
        )
    )
    with pytest.raises(KeyLoadError) as err:
        load_signer(s, environ={"GL_KEEPER_PASSWORD": "wrong " + PASSWORD})
    assert "keeper.json" in str(err.value)
    assert PASSWORD not in str(err.value)
    assert err.value.__cause__ is None
    assert err.value.__suppress_context__


def test_raw_key_needs_the_local_dev_flag(tmp_path: Path) -> None:
    """signer = raw without local_dev_raw_key is refused, naming the key to set."""
    with pytest.raises(ConfigError, match="local_dev_raw_key"):
        settings_from(config(tmp_path, local_dev_raw_key=False))


def test_raw_key_from_env_is_loaded_and_bad_value_not_echoed(tmp_path: Path) -> None:
    """The raw key comes from the named env var; a malformed value is not echoed back."""
    s = settings_from(config(tmp_path, dev_anvil_account=-1))
    assert load_signer(s, environ={"GL_KEEPER_RAW_KEY": "0x" + KEY_HEX}).address == KEEPER.address
    with pytest.raises(KeyLoadError) as err:
        load_signer(s, environ={"GL_KEEPER_RAW_KEY": "0x" + KEY_HEX[:-2]})
    assert KEY_HEX[:-2] not in str(err.value)


def test_unknown_keeper_key_is_rejected_by_name(tmp_path: Path) -> None:
    """A typo in [keeper] fails at start and names the key."""
    with pytest.raises(ConfigError, match=r"keeper\.resolve_intervall_s"):
        settings_from(config(tmp_path, resolve_intervall_s=60))


def test_bump_below_twelve_and_a_half_percent_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bump_bps"):
        settings_from(config(tmp_path, bump_bps=1_000))


@pytest.mark.pg
@pytest.mark.anvil
@pytest.mark.slow
async def test_keeper_run_with_keystore_never_prints_key_or_password(
    ops: ChainOps, db_dsn: str, deployment_path: Path, tmp_path: Path
) -> None:
    """A full run (decide, simulate, record, send, confirm) with a keystore, and a failed start with a
    wrong password: neither output holds the key or the password."""
    end = ops.now() + 30
    (m,) = ops.create_markets(1, end)
    await insert_markets(db_dsn, [m], end)
    await queue(db_dsn, m, 1)
    ops.advance(60)
    cfg = write_config(
        tmp_path / "keeper.toml",
        ops.anvil.url,
        db_dsn,
        deployment_path,
        signer="keystore",
        local_dev_raw_key=False,
        dev_anvil_account=-1,
        keystore=str(keystore(tmp_path)),
    )
    ok = run_keeper(cfg, "run", "--once", "--jobs", "resolve", env={"GL_KEEPER_PASSWORD": PASSWORD})
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert ops.status(m)[0] == 1
    bad = run_keeper(cfg, "run", "--once", env={"GL_KEEPER_PASSWORD": PASSWORD + "x"})
    assert bad.returncode == 2
    assert "cannot decrypt keystore" in bad.stderr
    for text in (ok.stdout, ok.stderr, bad.stdout, bad.stderr):
        assert KEY_HEX not in text.lower()
        assert PASSWORD not in text
    rows = await fetch(
        db_dsn, "SELECT detail::text AS d FROM keeper.job_runs UNION ALL SELECT coalesce(error, '') FROM keeper.txs"
    )
    assert all(KEY_HEX not in r["d"].lower() for r in rows)
