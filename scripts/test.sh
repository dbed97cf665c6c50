#!/usr/bin/env bash
# Runs every test of the workspace against real services.
#
# Makes sure what the tests need is there first (idempotent):
#   PostgreSQL on 127.0.0.1:5432, MariaDB on 127.0.0.1:3306, Redis on 127.0.0.1:6379.
# A service that is down is started; one that is missing is installed from Debian's packages when
# running as root (otherwise the script says what to do). Point the tests at other servers with
#   SWITCHYARD_TEST_PG_URL, SWITCHYARD_TEST_MYSQL_URL, SWITCHYARD_TEST_REDIS_URL.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh --test http_api`).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[test.sh] %s\n' "$*" >&2; }
die() { printf '[test.sh] error: %s\n' "$*" >&2; exit 1; }

wait_for() { # name, seconds, command...
  local name=$1 secs=$2; shift 2
  for _ in $(seq 1 "$((secs * 4))"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.25
  done
  die "$name did not become ready within ${secs}s"
}

apt_updated=0
install_pkgs() { # packages...
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    die "missing $*: install it (Debian: apt-get install -y $*) or point the tests at a server (see the top of scripts/test.sh)"
  fi
  if [ "$apt_updated" = 0 ]; then apt-get update -qq >/dev/null; apt_updated=1; fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  [ -n "${SWITCHYARD_TEST_PG_URL:-}" ] && return 0
  command -v pg_ctlcluster >/dev/null || install_pkgs postgresql
  if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    wait_for PostgreSQL 30 pg_isready -h 127.0.0.1 -p 5432 -q
  fi
  psql -h 127.0.0.1 -U postgres -d test -tAc 'SELECT 1' >/dev/null 2>&1 \
    || die "PostgreSQL answers but user postgres cannot open database test over 127.0.0.1 (trust auth expected); set SWITCHYARD_TEST_PG_URL"
}

ensure_mariadb() {
  [ -n "${SWITCHYARD_TEST_MYSQL_URL:-}" ] && return 0
  command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || install_pkgs mariadb-server
  if ! mysqladmin -h 127.0.0.1 -u root ping >/dev/null 2>&1; then
    log "starting MariaDB"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
    wait_for MariaDB 60 mysqladmin -h 127.0.0.1 -u root ping
  fi
  mysql -h 127.0.0.1 -u root -e 'CREATE DATABASE IF NOT EXISTS test' \
    || die "MariaDB answers but root cannot log in without a password over 127.0.0.1; set SWITCHYARD_TEST_MYSQL_URL"
}

ensure_redis() {
  [ -n "${SWITCHYARD_TEST_REDIS_URL:-}" ] && return 0
  command -v redis-server >/dev/null || install_pkgs redis-server
  if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    log "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_for Redis 15 redis-cli -h 127.0.0.1 -p 6379 ping
  fi
}

command -v cargo >/dev/null || die "cargo is missing: install Rust (https://rustup.rs) first"
ensure_postgres
ensure_mariadb
ensure_redis
log "building the WebAssembly plugins"
./scripts/build-plugins.sh
log "services ready; running cargo test --workspace"
exec cargo test --workspace "$@"
