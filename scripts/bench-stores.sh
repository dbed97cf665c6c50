#!/usr/bin/env bash
# The router beside the stores' own tools, on this machine (issue 15's benchmark):
#   - PostgreSQL point lookup: the router over HTTP (wrk + Lua, the lookup as a JSON POST)
#     vs pgbench -M prepared running the same lookup, at 1 and 32 clients: q/s, p50, p99;
#   - Redis key lookup: the router (a json-mode table) vs redis-benchmark GET of the same key;
#   - a statement only the router-side engine runs (CASE + EXISTS subquery), pushed whole to
#     PostgreSQL: the router vs pgbench -M prepared running it directly, at 1 and 32 clients;
#   - 1M rows streamed from PostgreSQL: the router (curl) vs psql.
# Each figure is the median of RUNS runs (default 3) with the spread (min-max); ratios compare
# medians. Uses the local PostgreSQL (127.0.0.1:5432, schema switchyard_bench in database test)
# and Redis (127.0.0.1:6379, keys under switchyard-bench:), dropped afterwards; builds the
# release binary. Needs wrk, pgbench, psql, redis-benchmark, curl (wrk is installed if missing
# and this runs as root on Debian).
#
#   ./scripts/bench-stores.sh            # RUNS=3 DURATION=10 (seconds per run) POOL=10
#   SWITCHYARD_BENCH_BIN=path/to/switchyard ./scripts/bench-stores.sh   # another build
#   TOKIO_WORKER_THREADS=1 ./scripts/bench-stores.sh                    # another runtime layout
#
# pgbench's per-transaction latencies are exact with one client per thread only (with several
# it reuses one clock reading across them), so direct p50/p99 are given at 1 client.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
POOL=${POOL:-10} # the router's PostgreSQL pool (router.toml ships 10)
PG_URL=${SWITCHYARD_BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS_HOST=127.0.0.1
REDIS_PORT=6379
SCHEMA=switchyard_bench
PREFIX=switchyard-bench:

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing wrk"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  else
    die "wrk is missing (Debian: apt-get install -y wrk)"
  fi
fi
for tool in pgbench psql redis-benchmark redis-cli curl; do
  command -v "$tool" >/dev/null || die "$tool is missing"
done

# SWITCHYARD_BENCH_BIN: a binary built otherwise (say, --no-default-features for the system
# allocator) to compare with; by default the release binary is built here.
BIN=${SWITCHYARD_BENCH_BIN:-}
if [ -z "$BIN" ]; then
  log "building the release binary"
  cargo build --release --bin switchyard -q
  BIN=${CARGO_TARGET_DIR:-target}/release/switchyard
fi

work=$(mktemp -d)
router_pid=""
cleanup() {
  [ -n "$router_pid" ] && kill "$router_pid" 2>/dev/null || true
  psql "$PG_URL" -qtAc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
  redis-cli -h $REDIS_HOST -p $REDIS_PORT --scan --pattern "${PREFIX}*" \
    | xargs -r redis-cli -h $REDIS_HOST -p $REDIS_PORT del >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

log "loading 1,000 customers and 1,000,000 stream rows into $SCHEMA"
psql "$PG_URL" -qtA >/dev/null <<SQL
SET client_min_messages TO warning;
DROP SCHEMA IF EXISTS $SCHEMA CASCADE;
CREATE SCHEMA $SCHEMA;
CREATE TABLE $SCHEMA.customers (customer_id text PRIMARY KEY, name text, email text, city text,
  state text, created_at timestamptz);
INSERT INTO $SCHEMA.customers
  SELECT 'c' || lpad(g::text, 6, '0'), 'Customer ' || g, 'c' || g || '@example.com', 'Recife', 'PE',
         now() FROM generate_series(1, 1000) g;
CREATE TABLE $SCHEMA.stream_rows (id bigint PRIMARY KEY, payload text);
INSERT INTO $SCHEMA.stream_rows SELECT g, md5(g::text) FROM generate_series(1, 1000000) g;
ANALYZE;
SQL

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/router.toml" <<TOML
[server]
listen = "127.0.0.1:$port"

[backends.pg]
kind = "postgres"
url = "$PG_URL"
schema = "$SCHEMA"
pool_max_connections = $POOL

[backends.redis]
kind = "redis"
url = "redis://$REDIS_HOST:$REDIS_PORT/0"
key_prefix = "$PREFIX"

[tables.customers]
columns = { customer_id = "text", name = "text", email = "text", city = "text", state = "text", created_at = "timestamp" }
primary_key = ["customer_id"]
placements = [{ backend = "pg", role = "primary" }]

[tables.stream_rows]
columns = { id = "int", payload = "text" }
primary_key = ["id"]
placements = [{ backend = "pg", role = "primary" }]

[tables.sessions]
columns = { session_id = "text", customer_id = "text", data = "json" }
primary_key = ["session_id"]
placements = [{ backend = "redis", role = "primary", key_pattern = "session:{session_id}", mode = "json" }]
TOML

SWITCHYARD_LOG=warn "$BIN" serve --config "$work/router.toml" >"$work/router.log" 2>&1 &
router_pid=$!
for _ in $(seq 1 120); do
  curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  kill -0 "$router_pid" 2>/dev/null || die "the router exited: $(tail -n 5 "$work/router.log")"
  sleep 0.25
done
url="http://127.0.0.1:$port"
curl -fs "$url/v1/query" -H 'content-type: application/json' \
  -d '{"sql": "INSERT INTO sessions (session_id, customer_id, data) VALUES ($1, $2, $3)", "params": ["s000001", "c000001", {"cart": [1, 2, 3]}]}' >/dev/null \
  || die "could not write the Redis session through the router"

# --- measurements; each prints "qps p50_us p99_us" ---------------------------------------------
router_lookup() { # clients, sql, param
  local clients=$1 sql=$2 param=$3
  cat >"$work/lookup.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[{"sql": "$sql", "params": ["$param"]}]]
done = function(summary, latency, requests)
  io.write(string.format("RESULT %.1f %d %d\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99)))
end
LUA
  local threads=$(( clients < 2 ? 1 : 2 ))
  wrk -t "$threads" -c "$clients" -d "${DURATION}s" -s "$work/lookup.lua" "$url/v1/query" \
    | sed -n 's/^RESULT //p'
}

pgbench_lookup() { # clients [statement]
  local clients=$1
  local statement=${2:-"SELECT name, city FROM $SCHEMA.customers WHERE customer_id = 'c000001'"}
  printf "%s;\n" "$statement" >"$work/lookup.sql"
  rm -f "$work"/pgbench_log.*
  local threads=$(( clients < 2 ? 1 : 2 ))
  (cd "$work" && pgbench -n -M prepared -c "$clients" -j "$threads" -T "$DURATION" -f lookup.sql \
      -l --log-prefix=pgbench_log "$PG_URL" >"$work/pgbench.out" 2>&1)
  local tps
  tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$work/pgbench.out" | head -n1)
  # Per-transaction log: column 3 is the latency in microseconds.
  cat "$work"/pgbench_log.* | awk '{print $3}' | sort -n >"$work/lat"
  if [ "$clients" -gt 1 ]; then
    echo "$tps - -"
    return
  fi
  local n p50 p99
  n=$(wc -l <"$work/lat")
  p50=$(sed -n "$(( n * 50 / 100 + 1 ))p" "$work/lat")
  p99=$(sed -n "$(( n * 99 / 100 + 1 ))p" "$work/lat")
  echo "$tps $p50 $p99"
}

redis_direct() { # clients
  redis-benchmark -h $REDIS_HOST -p $REDIS_PORT -c "$1" -n $(( DURATION * 20000 )) --csv \
    GET "${PREFIX}session:s000001" | tail -n1 | tr -d '"' \
    | awk -F, '{ printf "%s %d %d\n", $2, $5 * 1000, $7 * 1000 }'
}

stream_router() {
  local start end
  start=$(date +%s.%N)
  curl -fs "$url/v1/query" -H 'content-type: application/json' \
    -d '{"sql": "SELECT id, payload FROM stream_rows"}' -o /dev/null
  end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}

stream_psql() {
  local start end
  start=$(date +%s.%N)
  psql "$PG_URL" -qtA -c "SELECT id, payload FROM $SCHEMA.stream_rows" >/dev/null
  end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}

# "median (min-max)" of the numbers on stdin.
summary() {
  sort -g | awk '{ v[NR] = $1 } END {
    if (v[1] == "-") printf "-"; else printf "%g (%g-%g)", v[int((NR + 1) / 2)], v[1], v[NR] }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

row() { # label, file of "qps p50 p99" lines (router), file (direct)
  local label=$1 a=$2 b=$3
  local ra rb
  ra=$(awk '{print $1}' "$a" | median)
  rb=$(awk '{print $1}' "$b" | median)
  printf '| %s | %s | %s | %s | %s | %s | %s | %.2f |\n' "$label" \
    "$(awk '{print $1}' "$a" | summary)" "$(awk '{print $1}' "$b" | summary)" \
    "$(awk '{print $2}' "$a" | summary)" "$(awk '{print $2}' "$b" | summary)" \
    "$(awk '{print $3}' "$a" | summary)" "$(awk '{print $3}' "$b" | summary)" \
    "$(echo "$ra / $rb" | bc -l)"
}

lookup_sql='SELECT name, city FROM customers WHERE customer_id = $1'
session_sql='SELECT customer_id, data FROM sessions WHERE session_id = $1'
engine_sql="SELECT c.name, CASE WHEN c.city = 'Recife' THEN 1 ELSE 0 END AS local FROM customers c WHERE c.customer_id = \$1 AND EXISTS (SELECT 1 FROM customers d WHERE d.customer_id = c.customer_id)"
engine_direct="SELECT c.name, CASE WHEN c.city = 'Recife' THEN 1 ELSE 0 END AS local FROM $SCHEMA.customers c WHERE c.customer_id = 'c000001' AND EXISTS (SELECT 1 FROM $SCHEMA.customers d WHERE d.customer_id = c.customer_id)"
for clients in 1 32; do
  : >"$work/engine_router_$clients"; : >"$work/engine_direct_$clients"
  : >"$work/pg_router_$clients"; : >"$work/pg_direct_$clients"
  : >"$work/redis_router_$clients"; : >"$work/redis_direct_$clients"
done
: >"$work/stream_router"; : >"$work/stream_psql"
for run in $(seq 1 "$RUNS"); do
  log "run $run of $RUNS"
  for clients in 1 32; do
    router_lookup "$clients" "$lookup_sql" c000001 >>"$work/pg_router_$clients"
    pgbench_lookup "$clients" >>"$work/pg_direct_$clients"
    router_lookup "$clients" "$session_sql" s000001 >>"$work/redis_router_$clients"
    redis_direct "$clients" >>"$work/redis_direct_$clients"
    router_lookup "$clients" "$engine_sql" c000001 >>"$work/engine_router_$clients"
    pgbench_lookup "$clients" "$engine_direct" >>"$work/engine_direct_$clients"
  done
  stream_router >>"$work/stream_router"
  stream_psql >>"$work/stream_psql"
done

echo
echo "Median (min-max) of $RUNS runs of ${DURATION} s; latencies in microseconds; router pool $POOL."
echo
echo '| what | router q/s | direct q/s | router p50 | direct p50 | router p99 | direct p99 | ratio |'
echo '|---|---|---|---|---|---|---|---|'
for clients in 1 32; do
  row "PostgreSQL lookup, $clients clients (direct: pgbench -M prepared)" "$work/pg_router_$clients" "$work/pg_direct_$clients"
  row "Redis lookup, $clients clients (direct: redis-benchmark GET)" "$work/redis_router_$clients" "$work/redis_direct_$clients"
  row "Engine statement pushed whole, $clients clients (direct: pgbench -M prepared)" "$work/engine_router_$clients" "$work/engine_direct_$clients"
done
sr=$(median <"$work/stream_router"); sp=$(median <"$work/stream_psql")
echo
printf '1M rows from PostgreSQL: router %s s, psql %s s, ratio %.2f\n' \
  "$(summary <"$work/stream_router")" "$(summary <"$work/stream_psql")" "$(echo "$sr / $sp" | bc -l)"
