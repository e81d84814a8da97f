"""Review s21 hu (user surfaces): operator input that gets a traceback instead of one line naming it.

docs/operations.md "Configuration": a config that cannot be used stops the process at start with one line
naming the problem (exit 2), as tests/test_ops_input.py checks for a missing file, bad TOML and unknown
sections. A config file that is not UTF-8 (saved as UTF-16 by a Windows editor: it starts with the BOM
FF FE) is read by tomllib.load, which decodes the bytes itself: UnicodeDecodeError escapes core/config.py
load_config (it catches OSError and TOMLDecodeError only), and every process ends with a traceback, exit 1,
naming neither the file nor what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chain import ROOT
from tests.test_ops_input import cli, refused


@pytest.mark.parametrize(
    "cli_args",
    [
        ["-m", "indexer", "migrate"],
        ["-m", "keeper", "status"],
        ["-m", "api"],
        ["-m", "scripts.deploy", "--dry-run"],
    ],
)
def test_a_config_file_that_is_not_utf8_is_one_line_naming_the_file(cli_args: list[str], tmp_path: Path) -> None:
    """config/local.toml saved as UTF-16: exit 2, no traceback, one line naming the file."""
    bad = tmp_path / "local-utf16.toml"
    bad.write_bytes((ROOT / "config" / "local.toml").read_text().encode("utf-16"))
    refused(cli([*cli_args, "--config", str(bad)]), 2, str(bad))


def test_a_jwt_secret_file_that_is_not_utf8_is_one_line_naming_the_key(tmp_path: Path) -> None:
    """api.jwt_secret_file holding bytes that are not UTF-8 (a binary secret, a UTF-16 file): api/settings.py
    _secret reads it with Path.read_text() and catches OSError only, so `python -m api` ends in a
    UnicodeDecodeError traceback, exit 1 (the keeper's password_file got a KeyLoadError naming its key for
    the same input, review s20 hk). Expected: exit 2, one line naming api.jwt_secret_file."""
    secret = tmp_path / "jwt.secret"
    secret.write_bytes(b"\xff\xfe" + b"s" * 40)
    refused(cli(["-m", "api"], {"GL_API__JWT_SECRET_FILE": str(secret)}), 2, "api.jwt_secret_file")


def test_a_negative_queue_id_is_not_explained_as_a_market_id() -> None:
    """`python -m keeper cancel -1 --reason x`: keeper/cli.py cmd_cancel parses QUEUE_ID with
    core.resolution.parse_market_id, whose refusal reads "QUEUE_ID: must be >= 0, got -1 (market ids are the
    contract's, from 1 up)": it names the input but tells the operator what a market id is, not what a
    queue id is (the `#N` of `keeper queue`), and 0, which no queue row has, passes. Expected: the refusal
    of QUEUE_ID does not describe it as a market id."""
    out = cli(["-m", "keeper", "cancel", "-1", "--reason", "x"])
    refused(out, 2, "QUEUE_ID")
    assert "market id" not in out.stderr, out.stderr
