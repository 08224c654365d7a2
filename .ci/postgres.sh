# Sourced by .ci/run: a throwaway PostgreSQL server on loopback for tests/search/test_workers.py.
#
# Installs the Debian packages when missing (the CI machine has no server), starts a cluster in a
# temporary folder on a free port, creates the role `ntknas` (may create databases: every test
# makes its own) and the database `ntknas`, and exports
#   NTKNAS_TEST_POSTGRES_URL=postgresql://ntknas@127.0.0.1:PORT/ntknas
# and, for the test that restarts the server under running workers (tests/study/test_faults.py),
#   NTKNAS_TEST_POSTGRES_STOP and NTKNAS_TEST_POSTGRES_START (shell commands).
# The server stops when the sourcing shell exits. Locally: `source .ci/postgres.sh`.

_ntknas_pg_start() {
  local initdb
  initdb=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$initdb" ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    initdb=$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)
  fi
  local bin dir port run
  bin=$(dirname "$initdb")
  dir=$(mktemp -d /tmp/ntknas-pg.XXXXXX)
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  run=()
  if [ "$(id -u)" = 0 ]; then  # initdb and postgres refuse to run as root
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$dir"
    run=(runuser -u postgres --)
  fi
  "${run[@]}" "$bin/initdb" -D "$dir/data" -A trust -U postgres >"$dir/initdb.log"
  local opts="-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off"
  "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -o "$opts" start >/dev/null
  "$bin/psql" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
    -c "CREATE ROLE ntknas LOGIN CREATEDB" -c "CREATE DATABASE ntknas OWNER ntknas"
  export NTKNAS_TEST_POSTGRES_URL="postgresql://ntknas@127.0.0.1:$port/ntknas"
  NTKNAS_PG_STOP=("${run[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast stop)
  export NTKNAS_TEST_POSTGRES_STOP="${run[*]} $bin/pg_ctl -D $dir/data -m fast -w stop"
  export NTKNAS_TEST_POSTGRES_START="${run[*]} $bin/pg_ctl -D $dir/data -l $dir/server.log -w -o '$opts' start"
  NTKNAS_PG_DIR="$dir"
  trap '"${NTKNAS_PG_STOP[@]}" >/dev/null 2>&1 || true; rm -rf "$NTKNAS_PG_DIR"' EXIT
  # the driver Optuna's RDBStorage needs for postgresql:// URLs
  python3 -m pip install --quiet --disable-pip-version-check psycopg2-binary
}

_ntknas_pg_start
