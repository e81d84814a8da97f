"""One config file (TOML) per deployment, read once, validated at start.

Each daemon declares a frozen dataclass per section it reads; `section()` builds it from the
file plus environment overrides and rejects unknown keys and wrong types with an error that
names the key. Environment overrides: ``GL_<SECTION>__<KEY>=value`` (lists comma-separated).

Every top-level table must be one of SECTIONS, in the file and in GL_<SECTION>__<KEY> variables: a
misspelled section ([keepr], GL_KEEPR__DRY_RUN) would otherwise drop each of its keys without a word.

Errors:  ConfigError (ValueError) — the message says which key, what was expected, what to do.
"""

from __future__ import annotations

import dataclasses
import errno
import math
import os
import tomllib
import types
import typing
import urllib.parse
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
ENV_PREFIX = "GL_"
# Every [section] a config file may hold (scripts/config_reference.py documents each, in this order).
SECTIONS = ("services", "database", "redis", "chain", "deploy", "indexer", "keeper", "api")
PORT_MAX = 65_535


class ConfigError(ValueError):
    """A config file or key is missing or malformed."""


def load_config(
    path: str | Path, environ: Mapping[str, str] | None = None, sections: Collection[str] = SECTIONS
) -> dict[str, dict[str, Any]]:
    """Reads the TOML file and applies GL_SECTION__KEY overrides from the environment; a section
    not in `sections` (file or environment) is a ConfigError listing the known ones."""
    env = os.environ if environ is None else environ
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found: pass --config FILE or create it") from None
    except OSError as exc:  # a directory, no permission: name the file, never a traceback
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror}): pass --config FILE") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:  # a UTF-16 file, as some editors save it (review s21 hu)
        raise ConfigError(f"config file {path} is not UTF-8 text: save it as UTF-8") from None
    known = ", ".join(f"[{s}]" for s in sections)
    unknown = [name for name in raw if name not in sections]
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown section(s) {', '.join(f'[{n}]' for n in unknown)}; known sections:"
            f" {known} (a misspelled section would drop every key in it: fix the name)"
        )
    for name, value in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        sec, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        if sec not in sections:
            raise ConfigError(
                f"environment variable {name}: unknown section [{sec}]; known sections: {known}"
                f" (GL_<SECTION>__<KEY>: fix the name or unset it)"
            )
        table = raw.setdefault(sec, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{sec}] must be a table in {path} (environment variable {name} sets a key in it)")
        table[key] = _EnvValue(value)
    return raw


Ranges = Mapping[str, tuple[float, float, str, bool]]  # key -> (low, high, unit, low excluded)


def check_range(key: str, value: float, low: float, high: float, unit: str = "", above_low: bool = False) -> None:
    """ConfigError naming `key`, its value and the range unless low <= value <= high (low < value with
    `above_low`) and finite: the range checks of the indexer's, the API's and the chain's keys (the
    keeper's have their own loop, with messages operators and tests rely on)."""
    ok = math.isfinite(value) and (value > low if above_low else value >= low) and value <= high
    if not ok:
        span = f"more than {low:,} and at most {high:,}" if above_low else f"from {low:,} to {high:,}"
        raise ConfigError(f"{key} must be {span}{' ' + unit if unit else ''}, got {value!r}")


def check_ranges(section_name: str, values: object, ranges: Ranges) -> None:
    """check_range for every key of `ranges` on a settings section, named `section_name.key`."""
    for key, (low, high, unit, above_low) in ranges.items():
        check_range(f"{section_name}.{key}", getattr(values, key), low, high, unit, above_low)


def check_port(key: str, value: int, special: Mapping[int, str] | None = None) -> None:
    """ConfigError naming `key` unless `value` is a TCP port (1..65535) or one of `special`'s values
    (e.g. {0: "[services].keeper_metrics_port", -1: "no HTTP server"}). Checked at load: a port out of
    range would otherwise fail only at bind, or be wrapped modulo 65536 by the event loop."""
    special = special or {}
    if value in special or 1 <= value <= PORT_MAX:
        return
    also = "".join(f", or {k} = {meaning}" for k, meaning in special.items())
    raise ConfigError(f"{key} must be a TCP port from 1 to {PORT_MAX}{also}; got {value}")


def listen_failed(key: str, host: str, port: int, exc: OSError, hint: str = "", host_key: str = "") -> ConfigError:
    """The ConfigError for a server that cannot listen on (host, port): it names `key` (the port's
    config key) and what to do, instead of an OSError traceback. `hint`: another way out, appended.
    A host that does not resolve or is not this machine's names `host_key` instead (review s20 hi)."""
    why = exc.strerror or str(exc) or type(exc).__name__
    # socket.gaierror (the host does not resolve) carries a negative EAI_* code; not imported here: the pure
    # stages import this module and no I/O module (tests/indexer/test_structure.py)
    unresolved = exc.errno is not None and exc.errno < 0
    if host_key and (unresolved or exc.errno == errno.EADDRNOTAVAIL):
        return ConfigError(
            f"{host_key} = {host!r}: cannot listen on it ({why}); set it to an address of this machine"
            " (127.0.0.1 for this host only, 0.0.0.0 for every interface)"
        )
    return ConfigError(
        f"{key} = {port}: cannot listen on {host}:{port} ({why}); stop what holds the port or set {key} to a"
        f" free one{hint}"
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _EnvValue:
    text: str


def section(config: Mapping[str, Any], name: str, cls: type[T]) -> T:
    """Builds dataclass `cls` from config[name]; unknown keys and bad types raise ConfigError."""
    raw = config.get(name, {})
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(f'{name}.{k}' for k in unknown)}; "
            f"valid keys in [{name}]: {', '.join(sorted(fields))}"
        )
    values: dict[str, Any] = {}
    for key, f in fields.items():
        if key in raw:
            values[key] = _coerce(f"{name}.{key}", raw[key], hints[key])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key {name}.{key}")
    return cls(**values)


def _coerce(key: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if isinstance(value, _EnvValue):
        value = _from_env(key, value.text, hint)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(key, value, args[0])
    if origin is tuple:
        (item,) = typing.get_args(hint)[:1]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key} must be a list, got {type(value).__name__}")
        return tuple(_coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        if not math.isfinite(value):  # TOML and float() take inf and nan: a timeout that never fires
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    return value


def _from_env(key: str, text: str, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
        origin = typing.get_origin(hint)
    if origin is tuple:
        (item,) = typing.get_args(hint)[:1]
        parts = [s.strip() for s in text.split(",") if s.strip()]
        return [_from_env(f"{key}[{i}]", p, item) for i, p in enumerate(parts)]
    if hint is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key} (from environment) must be true/false, got {text!r}")
    if hint is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{key} (from environment) must be an integer, got {text!r}") from None
    if hint is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{key} (from environment) must be a number, got {text!r}") from None
    return text


@dataclasses.dataclass(frozen=True, slots=True)
class DatabaseSettings:
    dsn: str  # postgresql://user:password@host:port/db (the indexer needs a writer role; the API reads)
    read_dsn: str = ""  # optional read replica for the API's queries; "" = dsn
    pool_min: int = 1  # connections kept open per process (0 to pool_max)
    pool_max: int = 10  # connections at most per process (1 to 1,000)

    def __post_init__(self) -> None:
        if not self.dsn.strip():  # libpq would fill it from PG* variables: a database no config names
            raise ConfigError(
                "database.dsn is empty: set it to postgresql://user:password@host:port/db (or GL_DATABASE__DSN)"
            )
        check_range("database.pool_max", self.pool_max, 1, 1_000, "connections")
        check_range("database.pool_min", self.pool_min, 0, self.pool_max, "connections (at most database.pool_max)")

    def __repr__(self) -> str:  # DSNs may hold passwords
        return "DatabaseSettings(dsn=<redacted>)"


@dataclasses.dataclass(frozen=True, slots=True)
class RedisSettings:
    url: str = "redis://127.0.0.1:56379/0"  # redis://[:password@]host:port/db; rediss:// for TLS

    def __repr__(self) -> str:
        return "RedisSettings(url=<redacted>)"


FINALITY_DEPTH_MAX = 100_000  # blocks (a week of 6 s blocks): beyond, nothing would ever be final


def node_identity(url: str) -> str:
    """What makes two RPC URLs the same node: scheme and host in lower case, the credentials, the port
    (the scheme's default when none), the path without a trailing "/", the query; not the fragment.
    ValueError for a port that is not one."""
    parts = urllib.parse.urlsplit(url.strip())
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)  # ValueError: not a port
    who = f"{parts.username}:{parts.password}@" if parts.username or parts.password else ""
    return f"{scheme}://{who}{(parts.hostname or '').lower()}:{port}{parts.path.rstrip('/')}?{parts.query}"


@dataclasses.dataclass(frozen=True, slots=True)
class ChainSettings:
    # the indexer and the keeper check every rpc_urls node reports it (eth_chainId) at start (1 to 2^63 - 1)
    chain_id: int
    rpc_urls: tuple[str, ...]  # JSON-RPC URLs (GL_CHAIN__RPC_URLS): the indexer uses all, the keeper fails over
    name: str = ""  # label for logs
    ws_url: str = ""  # websocket URL for newHeads; "" = poll over HTTP
    # the file scripts.deploy wrote; "" = deployments/<chain_id>.json; a relative path is from the repository root
    deployment: str = ""
    finality_depth: int = 64  # blocks behind the head treated as final where the node has no `finalized` tag
    confirmations: int = 1  # blocks on top before the keeper counts its transaction confirmed (1 to 100,000)

    def __post_init__(self) -> None:
        if not self.rpc_urls:
            raise ConfigError("chain.rpc_urls is empty: list at least one URL or set GL_CHAIN__RPC_URLS=url1,url2")
        seen: dict[str, int] = {}
        for i, url in enumerate(self.rpc_urls):
            # never the URL itself in the message: a provider's key is often in its path (review s20 hi)
            if not url.lower().startswith(("http://", "https://")):
                raise ConfigError(
                    f"chain.rpc_urls[{i}] must start with http:// or https://; a websocket URL goes in chain.ws_url"
                )
            if not urllib.parse.urlsplit(url).hostname:
                raise ConfigError(f"chain.rpc_urls[{i}] has no host: write it as http(s)://host[:port][/path]")
            # one node counted twice skews the scores and the failover, and a second provider's
            # confirmation (re-scan, deep reorg) would ask the same node (review h9: spellings differed)
            try:
                same = node_identity(url)
            except ValueError:
                raise ConfigError(f"chain.rpc_urls[{i}] has a port that is not 1..65535") from None
            if same in seen:  # indexes, not the URLs: a provider's key is often in its path or query
                raise ConfigError(
                    f"chain.rpc_urls[{i}] is the same node as chain.rpc_urls[{seen[same]}]: list each node once"
                )
            seen[same] = i
        if self.ws_url:
            ws = urllib.parse.urlsplit(self.ws_url)
            if ws.scheme.lower() not in ("ws", "wss") or not ws.hostname:
                # a wrong one was retried for ever without a word, the indexer polling instead (review s20 hi)
                raise ConfigError('chain.ws_url must be ws:// or wss:// with a host, or "" to poll over HTTP')
        if not 1 <= self.finality_depth <= FINALITY_DEPTH_MAX:
            # 0 or less treats the head as final (no undo data, a one-block reorg becomes "too deep");
            # a huge depth means nothing is ever final (undo data and the outbox never pruned)
            raise ConfigError(
                f"chain.finality_depth must be between 1 and {FINALITY_DEPTH_MAX} blocks, got {self.finality_depth}"
            )
        check_range("chain.chain_id", self.chain_id, 1, 2**63 - 1)
        check_range("chain.confirmations", self.confirmations, 1, FINALITY_DEPTH_MAX, "blocks")

    def __repr__(self) -> str:  # RPC URLs often embed API keys
        return f"ChainSettings(name={self.name!r}, chain_id={self.chain_id}, rpc_urls=<{len(self.rpc_urls)} redacted>)"


@dataclasses.dataclass(frozen=True, slots=True)
class ServicesSettings:
    pg_port: int = 55432  # local PostgreSQL cluster under .data/pg
    redis_port: int = 56379  # local redis-server
    anvil_port: int = 58545  # local anvil node
    indexer_metrics_port: int = 59101  # indexer /health /ready /metrics when indexer.metrics_port = 0
    keeper_metrics_port: int = 59102  # keeper /health /ready /metrics when keeper.http_port = 0
    block_time: int = 1  # anvil block time in seconds (1 to 3,600)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.name.endswith("_port"):
                check_port(f"services.{f.name}", getattr(self, f.name))
        check_range("services.block_time", self.block_time, 1, 3_600, "seconds")
