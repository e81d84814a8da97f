"""The shared config loader: TOML + env overrides, unknown keys and bad types named."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from core.config import ChainSettings, ConfigError, DatabaseSettings, load_config, section


@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    port: int
    urls: tuple[str, ...] = ()
    enabled: bool = False
    name: str = "x"


S = ("s",)  # the sections these tests' files may hold (load_config refuses any other)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_section_builds_dataclass_from_toml(tmp_path: Path) -> None:
    """Values of the right types land in the frozen dataclass; lists become tuples."""
    cfg = load_config(write(tmp_path, '[s]\nport = 5\nurls = ["a", "b"]\nenabled = true\n'), environ={}, sections=S)
    assert section(cfg, "s", Sample) == Sample(port=5, urls=("a", "b"), enabled=True)


def test_unknown_key_is_named_with_valid_keys(tmp_path: Path) -> None:
    """A typo in a key fails at start and the message names the key and lists the valid ones."""
    cfg = load_config(write(tmp_path, "[s]\nport = 5\nprot = 6\n"), environ={}, sections=S)
    with pytest.raises(ConfigError, match=r"s\.prot.*valid keys in \[s\]: enabled, name, port, urls"):
        section(cfg, "s", Sample)


def test_wrong_type_is_named(tmp_path: Path) -> None:
    """A string where an integer belongs names the key and the value."""
    cfg = load_config(write(tmp_path, '[s]\nport = "5"\n'), environ={}, sections=S)
    with pytest.raises(ConfigError, match=r"s\.port must be an integer, got '5'"):
        section(cfg, "s", Sample)


def test_missing_required_key(tmp_path: Path) -> None:
    """A required key without a default is reported by name."""
    cfg = load_config(write(tmp_path, "[s]\n"), environ={}, sections=S)
    with pytest.raises(ConfigError, match=r"missing required key s\.port"):
        section(cfg, "s", Sample)


def test_env_overrides_file(tmp_path: Path) -> None:
    """GL_SECTION__KEY overrides the file, with lists comma-separated and booleans spelled out."""
    env = {"GL_S__PORT": "7", "GL_S__URLS": "http://a, http://b", "GL_S__ENABLED": "yes"}
    cfg = load_config(write(tmp_path, "[s]\nport = 5\n"), environ=env, sections=S)
    assert section(cfg, "s", Sample) == Sample(port=7, urls=("http://a", "http://b"), enabled=True)


def test_env_list_of_integers(tmp_path: Path) -> None:
    """A comma-separated override of a list of integers gives integers (GL_API__CHAIN_IDS=31337,1337)."""
    from api.settings import ApiSection

    cfg = load_config(write(tmp_path, "[api]\n"), environ={"GL_API__CHAIN_IDS": "31337, 1337"})
    assert section(cfg, "api", ApiSection).chain_ids == (31337, 1337)
    bad = load_config(write(tmp_path, "[api]\n"), environ={"GL_API__CHAIN_IDS": "31337,base"})
    with pytest.raises(ConfigError, match=r"api\.chain_ids\[1\] \(from environment\) must be an integer"):
        section(bad, "api", ApiSection)


def test_bad_env_value_is_named(tmp_path: Path) -> None:
    """An environment override that is not a number says which key came from the environment."""
    cfg = load_config(write(tmp_path, "[s]\nport = 5\n"), environ={"GL_S__PORT": "five"}, sections=S)
    with pytest.raises(ConfigError, match=r"s\.port \(from environment\) must be an integer"):
        section(cfg, "s", Sample)


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    """A missing file is an error that says how to pass one."""
    with pytest.raises(ConfigError, match="--config"):
        load_config(tmp_path / "nope.toml", environ={})


def test_secrets_stay_out_of_reprs() -> None:
    """DSNs and RPC URLs (which carry passwords and API keys) never appear in a repr."""
    db = DatabaseSettings(dsn="postgresql://u:hunter2@h/db")
    chain = ChainSettings(chain_id=1, rpc_urls=("https://eth.example/v2/SECRETKEY",))
    assert "hunter2" not in repr(db)
    assert "SECRETKEY" not in repr(chain)


def test_shipped_local_config_is_valid() -> None:
    """config/local.toml parses and its shared sections validate."""
    cfg = load_config(Path(__file__).resolve().parent.parent / "config" / "local.toml", environ={})
    assert section(cfg, "chain", ChainSettings).chain_id == 31337
    assert section(cfg, "database", DatabaseSettings).dsn.startswith("postgresql://")


@pytest.mark.parametrize(
    "urls",
    [
        ("http://127.0.0.1:8545", "http://127.0.0.1:8545/"),
        ("https://base-mainnet.example.com/v2/KEY", "https://BASE-MAINNET.example.com/v2/KEY"),
        ("http://localhost:8545", "http://localhost:8545/#second"),
        ("http://localhost", "http://localhost:80"),
    ],
)
def test_one_node_spelled_twice_in_rpc_urls_is_refused(urls: tuple[str, str]) -> None:
    """Review h9: only equal strings were refused; a trailing slash, an upper-case host or a fragment
    made one node two providers (the re-scan's second-provider confirmation then asked it twice)."""
    with pytest.raises(ConfigError, match=r"rpc_urls\[1\] is the same node as chain.rpc_urls\[0\]: list"):
        ChainSettings(chain_id=31337, rpc_urls=urls)


def test_rpc_urls_of_other_nodes_and_an_upper_case_scheme_are_accepted() -> None:
    chain = ChainSettings(chain_id=31337, rpc_urls=("HTTP://127.0.0.1:8545", "http://127.0.0.1:8546", "http://h/a?k=2"))
    assert len(chain.rpc_urls) == 3


def test_rpc_urls_two_accounts_on_one_gateway_are_two_nodes_and_a_bad_port_is_named() -> None:
    """Review h10: credentials were left out of a node's identity (two accounts refused as one), two
    unparsable ports compared equal, and the duplicate error printed the URL (a key in its path)."""
    chain = ChainSettings(chain_id=1, rpc_urls=("https://alice:k1@gw/rpc", "https://bob:k2@gw/rpc"))
    assert len(chain.rpc_urls) == 2
    with pytest.raises(ConfigError, match=r"rpc_urls\[0\] has a port that is not 1\.\.65535"):
        ChainSettings(chain_id=1, rpc_urls=("http://h:99999", "http://h:70000"))
    with pytest.raises(ConfigError) as err:
        ChainSettings(chain_id=1, rpc_urls=("https://eth.example/v2/SECRETKEY", "https://eth.example/v2/SECRETKEY/"))
    assert "SECRETKEY" not in str(err.value)
