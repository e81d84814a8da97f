#!/usr/bin/env bash
# Starts and stops the local services by pid: PostgreSQL (cluster under .data/pg), Redis and anvil.
#   scripts/services.sh start [pg] [redis] [anvil] [anvil2]   (no names = pg redis anvil; anvil2 = chain 1337)
#   scripts/services.sh stop  [pg] [redis] [anvil]
#   scripts/services.sh status
# Ports come from config/local.toml ([services]); GL_CONFIG points at another file.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CONFIG=${GL_CONFIG:-config/local.toml}
DATA=$ROOT/.data
mkdir -p "$DATA/run" "$DATA/log"

port() { python3 -c "import tomllib,sys; print(tomllib.load(open('$CONFIG','rb'))['services']['$1'])"; }
log() { printf '[services] %s\n' "$*" >&2; }

pg_bin() {
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/pg_ctl" ] && { echo "$d"; return; }; done
  dirname "$(command -v pg_ctl)"
}

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# PostgreSQL refuses to run as root, so as root the cluster belongs to the postgres user. When
# that user cannot reach .data (e.g. a clone under a private mktemp dir) the cluster lives
# under /var/tmp and .data/pg links to it.
pg_dir() {
  if [ -e "$DATA/pg" ]; then readlink -f "$DATA/pg"; return; fi
  if [ "$(id -u)" != 0 ] || runuser -u postgres -- test -x "$DATA"; then
    mkdir -p "$DATA/pg"
  else
    local alt="/var/tmp/guesslyfe-$(echo "$ROOT" | sha1sum | cut -c1-12)/pg"
    mkdir -p "$alt" && ln -sfn "$alt" "$DATA/pg"
  fi
  [ "$(id -u)" = 0 ] && chown -R postgres "$(readlink -f "$DATA/pg")"
  readlink -f "$DATA/pg"
}

start_pg() {
  local bin dir p; bin=$(pg_bin); dir=$(pg_dir); p=$(port pg_port)
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    log "initdb $dir/data"
    as_pg mkdir -p "$dir/data" "$dir/sock"
    as_pg "$bin/initdb" -D "$dir/data" -A trust -U guesslyfe --no-sync -E UTF8 --locale=C.UTF-8 >"$DATA/log/initdb.log"
  fi
  if as_pg "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then log "pg already running on $p"; return; fi
  if "$bin/pg_isready" -q -h 127.0.0.1 -p "$p"; then
    log "pg: another cluster (another checkout's) already serves 127.0.0.1:$p; using it"; return
  fi
  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $p -k $dir/sock -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 -c shared_buffers=512MB" start >/dev/null
  for _ in $(seq 50); do "$bin/pg_isready" -q -h 127.0.0.1 -p "$p" && break; sleep 0.2; done
  psql -q -h 127.0.0.1 -p "$p" -U guesslyfe -d postgres -tAc "select 1 from pg_database where datname='guesslyfe'" | grep -q 1 \
    || psql -q -h 127.0.0.1 -p "$p" -U guesslyfe -d postgres -c "create database guesslyfe"
  log "pg running on 127.0.0.1:$p (data $dir/data)"
}

stop_pg() {
  local bin dir; bin=$(pg_bin); [ -e "$DATA/pg" ] || return 0; dir=$(readlink -f "$DATA/pg")
  as_pg "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1 && as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null && log "pg stopped"
  return 0
}

redis_bin() {
  command -v redis-server && return
  [ -x "$ROOT/.venv/bin/redis-server-fallback" ] && { echo "$ROOT/.venv/bin/redis-server-fallback"; return; }
  echo "redis-server not found: run scripts/bootstrap.sh" >&2; exit 1
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
listening() { python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.5)" 2>/dev/null; }

start_redis() {
  local p; p=$(port redis_port)
  if alive "$DATA/run/redis.pid"; then log "redis already running on $p"; return; fi
  if listening "$p"; then log "redis: another server (another checkout's) already serves 127.0.0.1:$p; using it"; return; fi
  mkdir -p "$DATA/redis"
  "$(redis_bin)" --bind 127.0.0.1 --port "$p" --daemonize yes --dir "$DATA/redis" \
    --pidfile "$DATA/run/redis.pid" --logfile "$DATA/log/redis.log" --save "" --appendonly no
  for _ in $(seq 50); do alive "$DATA/run/redis.pid" && break; sleep 0.1; done
  log "redis running on 127.0.0.1:$p"
}

anvil_bin() { find "$ROOT/node_modules/@foundry-rs" -path '*/bin/anvil' -type f | head -1; }

# run_anvil NAME PORT CHAIN_ID: one local chain, its state kept in .data/NAME-state.json
run_anvil() {
  local name=$1 p=$2 chain=$3 bt; bt=$(port block_time)
  if alive "$DATA/run/$name.pid"; then log "$name already running on $p"; return; fi
  # --state keeps the chain across restarts so `make run` resumes where it was; historical states stay
  # in memory (the last 500), not in ~/.foundry/anvil/tmp, which anvil leaves behind when killed.
  nohup "$(anvil_bin)" --port "$p" --block-time "$bt" --chain-id "$chain" --accounts 20 --balance 1000000 \
    --max-persisted-states 0 --state "$DATA/$name-state.json" --state-interval 10 >"$DATA/log/$name.log" 2>&1 &
  echo $! >"$DATA/run/$name.pid"
  for _ in $(seq 100); do
    curl -s -H 'Content-Type: application/json' -d '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}' "http://127.0.0.1:$p" >/dev/null && break
    sleep 0.1
  done
  log "$name running on 127.0.0.1:$p (chain id $chain, block time ${bt}s)"
}

start_anvil() { run_anvil anvil "$(port anvil_port)" 31337; }
# the second local chain of `make run CHAINS=2`: the next port, chain id 1337
start_anvil2() { run_anvil anvil2 "$(( $(port anvil_port) + 1 ))" 1337; }

stop_pidfile() {
  local f=$DATA/run/$1.pid
  if alive "$f"; then
    kill "$(cat "$f")"; for _ in $(seq 100); do alive "$f" || break; sleep 0.1; done
    alive "$f" && kill -9 "$(cat "$f")"; log "$1 stopped"
  fi
  rm -f "$f"
}

USAGE="usage: $0 start|stop|status [pg] [redis] [anvil] [anvil2]"
cmd=${1:-status}; shift || true
names=${*:-pg redis anvil}
for n in "$@"; do  # every name checked before anything starts or stops
  case $n in pg|redis|anvil|anvil2) ;; *) echo "$0: unknown service '$n': choose from pg, redis, anvil, anvil2" >&2; echo "$USAGE" >&2; exit 2 ;; esac
done
case $cmd in
  start) for n in $names; do "start_$n"; done ;;
  stop) for n in ${*:-pg redis anvil anvil2}; do case $n in pg) stop_pg ;; *) stop_pidfile "$n" ;; esac; done ;;
  status)
    for n in redis anvil anvil2; do alive "$DATA/run/$n.pid" && echo "$n: running (pid $(cat "$DATA/run/$n.pid"))" || echo "$n: stopped"; done
    [ -e "$DATA/pg" ] && as_pg "$(pg_bin)/pg_ctl" -D "$(readlink -f "$DATA/pg")/data" status >/dev/null 2>&1 && echo "pg: running" || echo "pg: stopped" ;;
  *) echo "$USAGE" >&2; exit 2 ;;
esac
