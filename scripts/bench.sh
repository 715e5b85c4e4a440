#!/usr/bin/env bash
# Reproduces the figures of docs/performance.md on this machine: a release dev server,
# a PostgreSQL role with group-role membership and a MariaDB role, `dbwarden bench creds` and
# `creds-revoke` with --baseline at several concurrency levels, and the lease-scale run.
#
#   scripts/bench.sh [creds|scale|all]      (default: all)
#
# Environment: LEVELS (default 1,4,8,16), DURATION (default 5s per phase and round), ROUNDS
# (default 4: each level's phases repeated, alternating which goes first), PG_URL (default
# postgres://postgres@127.0.0.1:5432), MYSQL_URL (default mysql://root@127.0.0.1:3306),
# SCALE_LEASES (default 10000,100000,1000000), SCALE_EXPIRE (default 10000),
# OUT (results directory, default target/bench-results). OceanBase runs too when the seekdb
# binary of PyPI's pylibseekdb is installed (`pip install pylibseekdb==1.4.0.post1`).
set -euo pipefail

case "${1:-all}" in
  -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  creds|scale|all) what="${1:-all}" ;;
  *) echo "unknown mode: $1 (creds, scale or all)" >&2; exit 2 ;;
esac

cd "$(dirname "$0")/.."
LEVELS=${LEVELS:-1,4,8,16}
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-4}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
MYSQL_URL=${MYSQL_URL:-mysql://root@127.0.0.1:3306}
OUT=${OUT:-target/bench-results}
mkdir -p "$OUT"

cargo build --release --bin dbwarden
BIN=target/release/dbwarden

if [ "$what" = scale ] || [ "$what" = all ]; then
  "$BIN" bench lease-scale --leases "${SCALE_LEASES:-10000,100000,1000000}" \
    --expire "${SCALE_EXPIRE:-10000}" --database-url "$PG_URL/postgres" | tee "$OUT/lease-scale.md"
fi
[ "$what" = scale ] && exit 0

export DBWARDEN_ADDR=http://127.0.0.1:18200
export DBWARDEN_TOKEN="bench-root-$RANDOM$RANDOM"
"$BIN" server --dev --dev-listen-address 127.0.0.1:18200 --dev-root-token-id "$DBWARDEN_TOKEN" \
  >"$OUT/server.out" 2>"$OUT/server.log" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -fsS "$DBWARDEN_ADDR/v1/sys/health" >/dev/null 2>&1 && break
  sleep 0.1
done

api() { # METHOD PATH JSON
  curl -fsS -X "$1" -H "X-Vault-Token: $DBWARDEN_TOKEN" -H 'Content-Type: application/json' \
    "$DBWARDEN_ADDR/v1/$2" -d "$3" >/dev/null
}

# PostgreSQL: a group role holds the grants; each user only joins it (no per-user GRANT,
# which rewrites the table ACL and fails under concurrency with "tuple concurrently updated").
psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS dbwarden_bench" -c "CREATE DATABASE dbwarden_bench"
psql -q "$PG_URL/dbwarden_bench" <<'SQL'
DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dbwarden_bench_ro') THEN
  CREATE ROLE dbwarden_bench_ro NOLOGIN; END IF; END$$;
CREATE TABLE items (id int PRIMARY KEY, v text);
GRANT SELECT ON items TO dbwarden_bench_ro;
SQL
api POST database/config/pg "{\"plugin_name\":\"postgresql-database-plugin\",\"connection_url\":\"$PG_URL/dbwarden_bench\",\"allowed_roles\":\"*\",\"max_open_connections\":16}"
api POST database/roles/pg-group '{"db_name":"pg","default_ttl":"1h","creation_statements":"CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '"'"'{{password}}'"'"' VALID UNTIL '"'"'{{expiration}}'"'"' IN ROLE dbwarden_bench_ro;"}'

# MariaDB: the grant on the schema, as Vault's documentation shows.
mariadb -uroot -e "DROP DATABASE IF EXISTS dbwarden_bench; CREATE DATABASE dbwarden_bench"
api POST database/config/my "{\"plugin_name\":\"mysql-database-plugin\",\"connection_url\":\"$MYSQL_URL/\",\"allowed_roles\":\"*\",\"max_open_connections\":16}"
api POST database/roles/my-ro '{"db_name":"my","default_ttl":"1h","creation_statements":"CREATE USER '"'"'{{name}}'"'"'@'"'"'%'"'"' IDENTIFIED BY '"'"'{{password}}'"'"'; GRANT SELECT ON dbwarden_bench.* TO '"'"'{{name}}'"'"'@'"'"'%'"'"';"}'

for workload in creds creds-revoke; do
  "$BIN" bench "$workload" --role pg-group -c "$LEVELS" -d "$DURATION" --rounds "$ROUNDS" \
    --baseline --baseline-url "$PG_URL/dbwarden_bench" | tee "$OUT/pg-$workload.txt"
  "$BIN" bench "$workload" --role my-ro -c "$LEVELS" -d "$DURATION" --rounds "$ROUNDS" \
    --baseline --baseline-url "$MYSQL_URL/" | tee "$OUT/mariadb-$workload.txt"
done
# OceanBase (seekdb, MySQL mode), when installed: a throwaway server in a temporary directory.
seekdb=$(python3 -c 'import os, pylibseekdb; print(os.path.join(os.path.dirname(pylibseekdb.__file__), "seekdb"))' 2>/dev/null || true)
if [ -n "$seekdb" ] && [ -x "$seekdb" ]; then
  obdir=$(mktemp -d); obport=18881
  "$seekdb" --nodaemon --port $obport --base-dir "$obdir" --parameter datafile_size=256M \
    --parameter log_disk_size=2G --parameter memory_limit=3G >"$obdir/seekdb.out" 2>&1 &
  ob=$!
  trap 'kill $server $ob 2>/dev/null || true; sleep 2; rm -rf "$obdir"' EXIT
  for _ in $(seq 300); do
    mariadb -h127.0.0.1 -P$obport -uroot -e 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.5
  done
  mariadb -h127.0.0.1 -P$obport -uroot -e "CREATE DATABASE IF NOT EXISTS dbwarden_bench"
  api POST database/config/ob "{\"plugin_name\":\"oceanbase-database-plugin\",\"connection_url\":\"mysql://root@127.0.0.1:$obport/\",\"allowed_roles\":\"*\",\"max_open_connections\":16}"
  api POST database/roles/ob-ro '{"db_name":"ob","default_ttl":"1h","creation_statements":"CREATE USER '"'"'{{name}}'"'"'@'"'"'%'"'"' IDENTIFIED BY '"'"'{{password}}'"'"'; GRANT SELECT ON dbwarden_bench.* TO '"'"'{{name}}'"'"'@'"'"'%'"'"';"}'
  "$BIN" bench creds --role ob-ro -c "$LEVELS" -d "$DURATION" --rounds "$ROUNDS" \
    --baseline --baseline-url "mysql://root@127.0.0.1:$obport/" | tee "$OUT/oceanbase-creds.txt"
else
  echo "seekdb not installed: skipping OceanBase (pip install pylibseekdb==1.4.0.post1)" >&2
fi
for workload in lookup renew; do
  "$BIN" bench "$workload" --role pg-group -c "$LEVELS" -d "$DURATION" | tee "$OUT/pg-$workload.txt"
done
