#!/usr/bin/env bash
# Runs every test of the workspace against real services.
#
# Makes sure what the tests need is there first (idempotent):
#   PostgreSQL on 127.0.0.1:5432, MariaDB on 127.0.0.1:3306, Redis on 127.0.0.1:6379, and a
#   MongoDB-wire test server (SecantusDB from PyPI, in .cache/secantus, started on a free port for
#   this run and stopped afterwards), and the `prometheus` binary (Debian package) that the
#   scrape test starts on a free loopback port; `docker compose config` (or Debian's
#   docker-compose) validates docker-compose.yml.
# A service that is down is started; one that is missing is installed from Debian's packages when
# running as root (otherwise the script says what to do). Point the tests at other servers with
#   SWITCHYARD_TEST_PG_URL, SWITCHYARD_TEST_MYSQL_URL, SWITCHYARD_TEST_REDIS_URL,
#   SWITCHYARD_TEST_MONGODB_URL.
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
  # psql answers as the reference in the differential suite.
  command -v psql >/dev/null || install_pkgs postgresql-client
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

mongo_pid=""
ensure_mongodb() {
  [ -n "${SWITCHYARD_TEST_MONGODB_URL:-}" ] && return 0
  if [ ! -x .cache/secantus/bin/secantusd-py ]; then
    command -v python3 >/dev/null || die "python3 is missing: install it (Debian: apt-get install -y python3 python3-venv) or set SWITCHYARD_TEST_MONGODB_URL"
    log "installing the MongoDB-wire test server (SecantusDB) into .cache/secantus"
    rm -rf .cache/secantus
    python3 -m venv .cache/secantus || die "python3 -m venv failed (Debian: apt-get install -y python3-venv)"
    .cache/secantus/bin/pip install -q SecantusDB==0.7.0b3 || die "pip install SecantusDB failed"
  fi
  mkdir -p .cache
  local log_file=.cache/secantus.log
  .cache/secantus/bin/secantusd-py --host 127.0.0.1 --port 0 --storage-path ':memory:' >"$log_file" 2>&1 &
  mongo_pid=$!
  local port=""
  for _ in $(seq 1 120); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log_file" | head -n1)
    [ -n "$port" ] && break
    kill -0 "$mongo_pid" 2>/dev/null || die "the MongoDB-wire test server exited: $(tail -n 5 "$log_file")"
    sleep 0.25
  done
  [ -n "$port" ] || die "the MongoDB-wire test server did not start within 30s"
  export SWITCHYARD_TEST_MONGODB_URL="mongodb://127.0.0.1:$port"
  log "MongoDB-wire test server on 127.0.0.1:$port"
}
stop_mongodb() { [ -n "$mongo_pid" ] && kill "$mongo_pid" 2>/dev/null || true; }
trap stop_mongodb EXIT

# Prometheus (Debian package) for the real scrape test; SWITCHYARD_TEST_PROMETHEUS names another binary.
ensure_prometheus() {
  [ -n "${SWITCHYARD_TEST_PROMETHEUS:-}" ] && return 0
  command -v prometheus >/dev/null && return 0
  log "installing Prometheus (Debian package prometheus) for the scrape test"
  install_pkgs --no-install-recommends prometheus
  command -v prometheus >/dev/null || die "prometheus is missing: apt-get install -y prometheus, or set SWITCHYARD_TEST_PROMETHEUS"
}

# The compose stack users start: validated (there is no container engine to run it here).
check_compose() {
  if docker compose version >/dev/null 2>&1; then
    docker compose -f docker-compose.yml config -q || die "docker-compose.yml is invalid (see above)"
    return 0
  fi
  command -v docker-compose >/dev/null || install_pkgs --no-install-recommends docker-compose
  docker-compose -f docker-compose.yml config -q || die "docker-compose.yml is invalid (see above)"
}

command -v cargo >/dev/null || die "cargo is missing: install Rust (https://rustup.rs) first"
check_compose
log "docker-compose.yml is valid"
ensure_prometheus
ensure_postgres
ensure_mariadb
ensure_redis
ensure_mongodb
log "building the WebAssembly plugins"
./scripts/build-plugins.sh
log "services ready; running cargo test --workspace"
cargo test --workspace "$@"
