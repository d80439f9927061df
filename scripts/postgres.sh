#!/usr/bin/env bash
# PostgreSQL for the tests: the one that runs, else a throwaway cluster in .run/pg.
#
#   scripts/postgres.sh url     print the admin URL the tests should use (HOTLINE_TEST_PG):
#                               $HOTLINE_TEST_PG if it answers, else 127.0.0.1:5432 if
#                               something answers there, else the throwaway cluster
#                               (started, and Debian's postgresql installed, if need be)
#   scripts/postgres.sh up      start the throwaway cluster (idempotent); print its URL
#   scripts/postgres.sh down    stop every throwaway cluster of this checkout (keeps data)
#   scripts/postgres.sh purge   down, then delete their data
#   scripts/postgres.sh status  exit 0 if the throwaway cluster on HOTLINE_PG_PORT runs
#
# The throwaway cluster: user postgres, trust auth, listening on 127.0.0.1 only, port
# $HOTLINE_PG_PORT (default 5433), Unix socket in its own folder, fsync off.  As root it
# runs as the `postgres` user (initdb refuses root).  Messages go to stderr; stdout
# carries only the URL, so `export HOTLINE_TEST_PG=$(scripts/postgres.sh url)` works.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${HOTLINE_PG_PORT:-5433}"
DEFAULT_URL="postgresql://postgres@127.0.0.1:5432/postgres"

log() { echo "postgres.sh: $*" >&2; }
die() { log "$*"; exit 1; }

# Is anything accepting TCP connections on host:port?
answers() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# host and port of a postgresql:// URL (defaults: 127.0.0.1, 5432).
url_host_port() {
  local rest="${1#*://}"
  rest="${rest%%/*}"
  rest="${rest##*@}"
  local host="${rest%%:*}" port=5432
  [[ "$rest" == *:* ]] && port="${rest##*:}"
  echo "${host:-127.0.0.1} ${port:-5432}"
}

# Who runs the cluster: ourselves, or (as root) the postgres user.
run_as() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# Where the clusters live: .run/pg, unless the postgres user cannot reach it (e.g. a
# checkout under /root); then a folder in /tmp named after this checkout.
root_dir() {
  local dir="$REPO/.run/pg"
  if [[ $(id -u) -eq 0 ]] && id postgres >/dev/null 2>&1; then
    mkdir -p "$REPO/.run"
    if ! runuser -u postgres -- test -x "$REPO/.run"; then
      dir="/tmp/hotline-pg-$(echo -n "$REPO" | md5sum | cut -c1-8)"
    fi
  fi
  echo "$dir"
}

pg_bin() {
  local bin
  bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
  [[ -n "$bin" && -x "$bin/initdb" ]] && echo "$bin"
}

install_postgresql() {
  pg_bin >/dev/null && return 0
  [[ $(id -u) -eq 0 ]] || die "PostgreSQL is not installed; run as root, or: apt-get install postgresql"
  log "installing Debian's postgresql package"
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2
  pg_bin >/dev/null || die "postgresql installed, but no initdb under /usr/lib/postgresql"
}

throwaway_url() { echo "postgresql://postgres@127.0.0.1:$PORT/postgres"; }

running() {
  local data="$1/data" bin
  [[ -f "$data/postmaster.pid" ]] || return 1
  bin="$(pg_bin)" || return 1
  run_as "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1
}

up() {
  install_postgresql
  local bin root dir data
  bin="$(pg_bin)"
  root="$(root_dir)"
  dir="$root/$PORT"
  data="$dir/data"
  if running "$dir"; then
    throwaway_url
    return 0
  fi
  if answers 127.0.0.1 "$PORT"; then
    die "port $PORT is taken by something else; choose another with HOTLINE_PG_PORT"
  fi
  mkdir -p "$dir"
  [[ $(id -u) -eq 0 ]] && chown postgres: "$root" "$dir"
  if [[ ! -f "$data/PG_VERSION" ]]; then
    log "initdb $data"
    run_as "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    # Trust, but only from this machine: the Unix socket and 127.0.0.1.
    printf '%s\n' \
      "local all all trust" \
      "host  all all 127.0.0.1/32 trust" | run_as tee "$data/pg_hba.conf" >/dev/null
    printf '%s\n' \
      "listen_addresses = '127.0.0.1'" \
      "port = $PORT" \
      "unix_socket_directories = '$dir'" \
      "fsync = off" \
      "synchronous_commit = off" \
      "full_page_writes = off" \
      "max_connections = 200" | run_as tee -a "$data/postgresql.conf" >/dev/null
  fi
  log "starting PostgreSQL on 127.0.0.1:$PORT ($data)"
  if ! run_as "$bin/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 start >/dev/null; then
    tail -20 "$dir/server.log" >&2 || true
    die "PostgreSQL did not start"
  fi
  throwaway_url
}

down() {
  local root dir bin
  root="$(root_dir)"
  [[ -d "$root" ]] || return 0
  bin="$(pg_bin)" || return 0
  for dir in "$root"/*/; do
    dir="${dir%/}"
    if running "$dir"; then
      log "stopping PostgreSQL in $dir"
      run_as "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
    fi
  done
}

purge() {
  down
  local root
  root="$(root_dir)"
  rm -rf "$root"
}

url() {
  local host port
  if [[ -n "${HOTLINE_TEST_PG:-}" ]]; then
    read -r host port < <(url_host_port "$HOTLINE_TEST_PG")
    if answers "$host" "$port"; then
      echo "$HOTLINE_TEST_PG"
      return 0
    fi
    log "nothing answers at HOTLINE_TEST_PG ($host:$port): using a throwaway cluster"
  elif answers 127.0.0.1 5432; then
    echo "$DEFAULT_URL"
    return 0
  fi
  up
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  purge) purge ;;
  url) url ;;
  status) running "$(root_dir)/$PORT" ;;
  *) echo "usage: $0 up|down|purge|url|status" >&2; exit 2 ;;
esac
