"""Operator input refused clearly, the same way by every process: config sections, ports, log levels,
the deployment file (one loader, core/contracts.py), the indexer's --config default, and the
scripts.* tools. Each refusal is one line naming the input, with the documented exit code and no
traceback (docs/operations.md "Configuration", docs/indexer.md, docs/keeper.md)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import SECTIONS, ChainSettings, ConfigError, load_config
from core.contracts import deployment_path, load_chain_deployment
from indexer.settings import build_settings
from keeper.settings import settings_from
from tests.chain import ROOT

LOCAL = ROOT / "config" / "local.toml"
DB_DOWN = "postgresql://nobody@127.0.0.1:1/none"
RPC_DOWN = "http://127.0.0.1:1"
FAKE_DEPLOYMENT = {
    "chain_id": 31337,
    "deploy_block": 1,
    "contracts": {"OpinionMarket": "0x" + "11" * 20, "CreatorShares": "0x" + "22" * 20, "USDC": "0x" + "33" * 20},
}


@pytest.fixture
def fake_deployment(tmp_path: Path) -> str:
    """A well-formed deployment file of chain 31337 (its contracts exist nowhere)."""
    p = tmp_path / "deployment.json"
    p.write_text(json.dumps(FAKE_DEPLOYMENT))
    return str(p)


def cli(args: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Runs `python ARGS` (or a script) with only the given GL_* variables (the caller's are dropped),
    nothing on stdin, and services pointed nowhere unless `env` says otherwise."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("GL_")}
    full = {
        **base,
        "PYTHONPATH": str(ROOT),
        "GL_DATABASE__DSN": DB_DOWN,
        "GL_CHAIN__RPC_URLS": RPC_DOWN,
        **(env or {}),
    }
    cmd = args if args[0].endswith(".sh") else [sys.executable, *args]
    return subprocess.run(
        cmd, cwd=cwd, env=full, capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL
    )


def refused(out: subprocess.CompletedProcess[str], code: int, *fragments: str) -> None:
    """Exit `code`, no traceback, and every fragment on one line of stderr."""
    text = out.stderr + out.stdout
    assert out.returncode == code, f"exit {out.returncode}, wanted {code}:\n{text[-3000:]}"
    assert "Traceback" not in text, text[-3000:]
    lines = [line for line in out.stderr.splitlines() if all(f in line for f in fragments)]
    assert lines, f"no stderr line holds {fragments}:\n{out.stderr[-3000:]}"


# ------------------------------------------------------------------ sections


def test_misspelled_section_in_a_file_is_refused(tmp_path: Path) -> None:
    """[keepr] would drop every key in it without a word (dry_run silently off): refused, with the list."""
    p = tmp_path / "c.toml"
    p.write_text(LOCAL.read_text() + "\n[keepr]\ndry_run = true\n")
    with pytest.raises(ConfigError) as err:
        load_config(p, environ={})
    assert "unknown section(s) [keepr]" in str(err.value)
    assert "known sections: [services], [database], [redis], [chain], [deploy], [indexer], [keeper], [api]" in str(
        err.value
    )


def test_misspelled_section_in_the_environment_is_refused() -> None:
    """GL_KEEPR__DRY_RUN=true names the variable and the known sections."""
    with pytest.raises(ConfigError, match=r"environment variable GL_KEEPR__DRY_RUN: unknown section \[keepr\]"):
        load_config(LOCAL, environ={"GL_KEEPR__DRY_RUN": "true"})
    load_config(LOCAL, environ={"GL_KEEPER__DRY_RUN": "true", "GL_API_JWT_SECRET": "x"})  # one "_": not a key


def test_every_shipped_config_loads_and_sections_match_the_reference() -> None:
    """Each config/*.toml holds only known sections (and the keeper's settings validate); the list is
    the one the generated reference in docs/operations.md documents."""
    from scripts.config_reference import SECTIONS as DOCUMENTED

    assert SECTIONS == tuple(name for name, _, _ in DOCUMENTED)
    files = sorted((ROOT / "config").glob("*.toml"))
    assert len(files) >= 4
    for p in files:
        settings_from(load_config(p, environ={}))


@pytest.mark.parametrize(
    "cli_args",
    [
        ["-m", "keeper", "status"],
        ["-m", "indexer", "migrate"],
        ["-m", "scripts.deploy", "--dry-run"],
        ["-m", "scripts.operator"],
        ["-m", "scripts.simulate", "--events", "1"],
        ["-m", "scripts.run"],
    ],
)
def test_misspelled_section_stops_every_cli(cli_args: list[str]) -> None:
    """Every process started on the config refuses GL_KEEPR__DRY_RUN before connecting to anything."""
    refused(cli(cli_args, {"GL_KEEPR__DRY_RUN": "true"}), 2, "GL_KEEPR__DRY_RUN", "known sections")


# ------------------------------------------------------------------ ports and log levels


@pytest.mark.parametrize(
    ("var", "value", "key"),
    [
        ("GL_KEEPER__HTTP_PORT", "99999", "keeper.http_port"),
        ("GL_KEEPER__HTTP_PORT", "-2", "keeper.http_port"),
        ("GL_INDEXER__METRICS_PORT", "70000", "indexer.metrics_port"),
        ("GL_SERVICES__KEEPER_METRICS_PORT", "0", "services.keeper_metrics_port"),
        ("GL_SERVICES__PG_PORT", "65536", "services.pg_port"),
    ],
)
def test_ports_are_checked_at_load(var: str, value: str, key: str, fake_deployment: str) -> None:
    """A port outside 1..65535 (0 and -1 where they mean something) is refused naming the key; before,
    the event loop wrapped it modulo 65536 or failed at bind with a traceback."""
    config = load_config(LOCAL, environ={var: value, "GL_CHAIN__DEPLOYMENT": fake_deployment})
    build = settings_from if var.startswith(("GL_KEEPER", "GL_SERVICES")) else build_settings
    with pytest.raises(ConfigError, match=rf"{key} must be a TCP port from 1 to 65535.*got {value}"):
        build(config)  # type: ignore[operator]


def test_port_special_values_still_load(fake_deployment: str) -> None:
    for value in ("0", "-1", "65535"):
        env = {
            "GL_KEEPER__HTTP_PORT": value,
            "GL_INDEXER__METRICS_PORT": value,
            "GL_CHAIN__DEPLOYMENT": fake_deployment,
        }
        config = load_config(LOCAL, environ=env)
        assert settings_from(config).keeper.http_port == int(value)
        assert build_settings(config).options.metrics_port == int(value)


def test_log_level_is_checked_at_load(fake_deployment: str) -> None:
    """GL_INDEXER__LOG_LEVEL=verbose is a config error naming the key (was a KeyError traceback, exit 1)."""
    bad = load_config(LOCAL, environ={"GL_INDEXER__LOG_LEVEL": "verbose", "GL_CHAIN__DEPLOYMENT": fake_deployment})
    with pytest.raises(ConfigError, match=r"indexer\.log_level must be one of debug, info, warning, error, critical"):
        build_settings(bad)
    good = load_config(LOCAL, environ={"GL_INDEXER__LOG_LEVEL": "WARNING", "GL_CHAIN__DEPLOYMENT": fake_deployment})
    assert build_settings(good).options.log_level == "warning"
    refused(
        cli(
            ["-m", "indexer", "migrate"], {"GL_INDEXER__LOG_LEVEL": "verbose", "GL_CHAIN__DEPLOYMENT": fake_deployment}
        ),
        2,
        "indexer.log_level",
        "verbose",
    )


@pytest.mark.parametrize(
    ("var", "value", "fragment"),
    [
        ("GL_INDEXER__TIP_BLOCKS", "-1", "indexer.tip_blocks must be from 0 to 10,000,000 blocks, got -1"),
        ("GL_INDEXER__REQUEST_TIMEOUT", "inf", "indexer.request_timeout must be a finite number, got inf"),
        ("GL_INDEXER__STALL_SECONDS", "inf", "indexer.stall_seconds must be a finite number, got inf"),
        ("GL_INDEXER__RETRY_SECONDS", "nan", "indexer.retry_seconds must be a finite number, got nan"),
        ("GL_INDEXER__REQUEST_TIMEOUT", "0", "indexer.request_timeout must be more than 0 and at most 600 seconds"),
        ("GL_INDEXER__READY_MAX_LAG", "-1", "indexer.ready_max_lag must be from 0 to 10,000,000 blocks, got -1"),
        ("GL_INDEXER__CONCURRENCY", "100000", "indexer.concurrency must be from 1 to 64 ranges, got 100000"),
        ("GL_INDEXER__MAX_RESPONSE_MB", "0", "indexer.max_response_mb must be from 1 to 4,096 MB, got 0"),
        ("GL_INDEXER__READY_MAX_IDLE", "0", "indexer.ready_max_idle must be more than 0"),
        ("GL_CHAIN__CONFIRMATIONS", "1000000", "chain.confirmations must be from 1 to 100,000 blocks"),
        ("GL_DATABASE__POOL_MAX", "0", "database.pool_max must be from 1 to 1,000 connections, got 0"),
    ],
)
def test_numeric_keys_are_finite_and_in_their_documented_range(
    var: str, value: str, fragment: str, fake_deployment: str
) -> None:
    """Every numeric key is finite and in the range its comment documents (docs/operations.md): one
    ConfigError naming the key, the value and the range. Before, tip_blocks = -1 (deferred indexes
    never rebuilt), request_timeout = inf and stall_seconds = inf (no timeout, no watchdog), a negative
    ready_max_lag and any concurrency were accepted."""
    config = load_config(LOCAL, environ={var: value, "GL_CHAIN__DEPLOYMENT": fake_deployment})
    with pytest.raises(ConfigError) as err:
        build_settings(config)
    assert fragment in str(err.value)


def test_a_numeric_key_out_of_range_stops_the_indexer_with_exit_2(fake_deployment: str) -> None:
    refused(
        cli(["-m", "indexer", "migrate"], {"GL_INDEXER__TIP_BLOCKS": "-1", "GL_CHAIN__DEPLOYMENT": fake_deployment}),
        2,
        "indexer.tip_blocks",
        "-1",
        "from 0 to 10,000,000",
    )


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port some other process listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_indexer_port_in_use_is_one_line_naming_the_key(held_port: int, fake_deployment: str) -> None:
    """The indexer's HTTP server cannot bind: exit 2 and the key, not `indexer_crashed` with a traceback."""
    env = {"GL_INDEXER__METRICS_PORT": str(held_port), "GL_CHAIN__DEPLOYMENT": fake_deployment}
    out = cli(["-m", "indexer", "--no-migrate"], env)
    refused(out, 2, f"indexer.metrics_port = {held_port}: cannot listen on 127.0.0.1:{held_port}")


@pytest.mark.pg
def test_keeper_port_in_use_is_one_line_naming_the_key(held_port: int, fake_deployment: str, db_dsn: str) -> None:
    """The keeper reaches its HTTP server (database up, node down) and cannot bind: exit 2, the key named."""
    env = {"GL_SERVICES__KEEPER_METRICS_PORT": str(held_port), "GL_CHAIN__DEPLOYMENT": fake_deployment}
    out = cli(["-m", "keeper", "run"], {**env, "GL_DATABASE__DSN": db_dsn})
    refused(out, 2, f"services.keeper_metrics_port = {held_port}: cannot listen on 127.0.0.1:{held_port}")


# ------------------------------------------------------------------ the deployment file


def test_deployment_path_is_one_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ "" = deployments/<chain_id>.json; a relative path is from the repository root whatever the cwd."""
    monkeypatch.chdir(tmp_path)
    chain = ChainSettings(chain_id=31337, rpc_urls=(RPC_DOWN,))
    assert deployment_path(chain) == ROOT / "deployments" / "31337.json"
    rel = ChainSettings(chain_id=31337, rpc_urls=(RPC_DOWN,), deployment=".data/deployments/1337.json")
    assert deployment_path(rel) == ROOT / ".data" / "deployments" / "1337.json"
    absolute = ChainSettings(chain_id=31337, rpc_urls=(RPC_DOWN,), deployment=str(tmp_path / "d.json"))
    assert deployment_path(absolute) == tmp_path / "d.json"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "not found: deploy with `python -m scripts.deploy --config FILE`"),
        ("not json", "is not a JSON deployment record"),
        ('{"chain_id": 31337}', "has no field 'contracts'"),
        (
            json.dumps({**FAKE_DEPLOYMENT, "contracts": {**FAKE_DEPLOYMENT["contracts"], "USDC": "0x12"}}),  # type: ignore[dict-item]
            "a malformed field ('0x12' is not a 0x address",
        ),
        (  # int(x, 16) takes underscores: the address passed the load and failed every job later
            json.dumps({**FAKE_DEPLOYMENT, "contracts": {**FAKE_DEPLOYMENT["contracts"], "USDC": "0x" + "1_" * 20}}),  # type: ignore[dict-item]
            "is not a 0x address (0x and 40 hex digits)",
        ),
        (json.dumps({**FAKE_DEPLOYMENT, "chain_id": 8453}), "is for chain 8453, chain.chain_id is 31337"),
    ],
)
def test_deployment_problems_name_chain_deployment(tmp_path: Path, content: str | None, fragment: str) -> None:
    p = tmp_path / "d.json"
    if content is not None:
        p.write_text(content)
    chain = ChainSettings(chain_id=31337, rpc_urls=(RPC_DOWN,), deployment=str(p))
    with pytest.raises(ConfigError) as err:
        load_chain_deployment(chain)
    assert str(err.value).startswith("chain.deployment: ")
    assert fragment in str(err.value)


def test_one_address_check_for_every_wing() -> None:
    """core.contracts.is_address, used by the deployment loader and the API's SIWE and token checks (whose
    `^…$` with match() also took a trailing newline): 0x and exactly 40 hex digits, any case."""
    from core.contracts import is_address

    good = "0x" + "aB" * 20
    assert is_address(good)
    assert not any(is_address(v) for v in (good + "\n", good[:-1], good + "0", "0X" + good[2:], " " + good, None, 1))


DEPLOYMENT_READERS = [
    ["-m", "keeper", "run", "--once", "--dry-run"],
    ["-m", "keeper", "resolve", "1", "yes", "--reason", "x"],
    ["-m", "indexer", "reset"],  # (migrate reads no deployment: tests/test_schema_checks.py)
    ["-m", "scripts.operator"],
    ["-m", "scripts.simulate", "--events", "1"],
]


@pytest.mark.parametrize("cli_args", DEPLOYMENT_READERS)
def test_default_deployment_is_the_same_for_every_process(cli_args: list[str]) -> None:
    """chain.deployment = "" means deployments/<chain_id>.json for the keeper too (it opened the file "",
    FileNotFoundError traceback): a missing one is exit 2 naming the key and how to deploy."""
    assert not (ROOT / "deployments" / "1337.json").exists()  # chain 1337 (local) has no file in the repo
    out = cli(cli_args, {"GL_CHAIN__DEPLOYMENT": "", "GL_CHAIN__CHAIN_ID": "1337"})
    refused(out, 2, "chain.deployment (empty: the default deployments/1337.json)", "python -m scripts.deploy")


@pytest.mark.parametrize("cli_args", DEPLOYMENT_READERS)
def test_malformed_deployment_is_exit_2_naming_the_key(cli_args: list[str], tmp_path: Path) -> None:
    """A deployment file without `contracts` was KeyError 'contracts' (a traceback, exit 1) everywhere."""
    p = tmp_path / "bad.json"
    p.write_text('{"chain_id": 31337}')
    refused(cli(cli_args, {"GL_CHAIN__DEPLOYMENT": str(p)}), 2, f"chain.deployment: {p} has no field 'contracts'")


# ------------------------------------------------------------------ the indexer's command line


def test_indexer_config_defaults_to_gl_config(tmp_path: Path) -> None:
    """Without --config the indexer reads $GL_CONFIG, as the keeper and the API do (it required --config)."""
    p = tmp_path / "c.toml"
    p.write_text(LOCAL.read_text().replace("[indexer]\n", "[indexer]\nbogus = 1\n", 1))
    refused(cli(["-m", "indexer", "migrate"], {"GL_CONFIG": str(p)}), 2, "indexer.bogus")


def test_indexer_database_down_is_one_line(fake_deployment: str) -> None:
    """No --config, no $GL_CONFIG: config/local.toml; PostgreSQL unreachable at start is one line naming
    [database].dsn and exit 1 (3 is ReorgTooDeep, which supervisors do not restart), not a traceback."""
    for args in (["-m", "indexer", "migrate"], ["-m", "indexer", "reset"], ["-m", "indexer"]):
        env = {"GL_CHAIN__DEPLOYMENT": fake_deployment, "GL_INDEXER__METRICS_PORT": "-1"}
        out = cli(args, env)
        refused(out, 1, "database_unreachable", "cannot reach the database", "check [database].dsn")


def test_indexer_misspelled_option_is_named() -> None:
    """`--confg FILE` was reported as FILE being an invalid command."""
    out = cli(["-m", "indexer", "--confg", "config/local.toml"])
    refused(out, 2, "unrecognized argument(s): --confg (did you mean --config?)")
    refused(cli(["-m", "indexer", "migrte"]), 2, "unknown command 'migrte': choose from run, migrate, reset")


# ------------------------------------------------------------------ scripts.*


@pytest.mark.parametrize("module", ["scripts.deploy", "scripts.run", "scripts.simulate", "scripts.operator"])
def test_scripts_missing_config_is_one_line(module: str) -> None:
    refused(cli(["-m", module, "--config", "/nonexistent.toml"]), 2, "config file /nonexistent.toml not found")


@pytest.mark.parametrize(
    ("args", "env", "code", "fragment"),
    [
        (["--keeper", "0x12"], {}, 2, "--keeper: '0x12' is not an address"),
        (["--usdc", "0xZZ"], {}, 2, "--usdc: '0xZZ' is not an address"),
        # the file is checked before the password is asked for (no terminal here: it was EOFError)
        (["--keystore", "/nonexistent.json"], {}, 2, "--keystore: /nonexistent.json not found"),
        (["--keystore", "{dir}/ks.json"], {"GL_DEPLOYER_PASSWORD": "x"}, 2, "is not a V3 keystore"),
        ([], {}, 3, "cannot reach the node at chain.rpc_urls[0] of config/local.toml"),
        (["--rpc-url", RPC_DOWN], {}, 3, "cannot reach the node at --rpc-url"),
    ],
)
def test_deploy_bad_input_is_one_line(
    args: list[str], env: dict[str, str], code: int, fragment: str, tmp_path: Path
) -> None:
    """scripts.deploy --dry-run with a bad option, keystore or a node down: exit 2 (3: unreachable)."""
    (tmp_path / "ks.json").write_text("{}")
    args = [a.replace("{dir}", str(tmp_path)) for a in args]
    refused(cli(["-m", "scripts.deploy", "--dry-run", *args], env), code, fragment)


def test_services_sh_unknown_name_is_a_usage_error() -> None:
    """`start pgg` was "start_pgg: command not found", exit 127; `stop pgg` did nothing and exited 0."""
    for cmd in ("start", "stop"):
        out = cli([str(ROOT / "scripts" / "services.sh"), cmd, "pgg"])
        refused(out, 2, "unknown service 'pgg': choose from pg, redis, anvil, anvil2")
        assert "usage:" in out.stderr
        assert "[anvil2]" in out.stderr


def test_missing_deployment_hint_fits_every_config(tmp_path: Path) -> None:
    """`make deploy` deploys config/local.toml only: the hint names scripts.deploy with the config."""
    chain = ChainSettings(chain_id=8453, rpc_urls=(RPC_DOWN,), deployment=str(tmp_path / "none.json"))
    with pytest.raises(ConfigError) as err:
        load_chain_deployment(chain)
    assert "python -m scripts.deploy --config FILE` (`make deploy` for config/local.toml)" in str(err.value)
