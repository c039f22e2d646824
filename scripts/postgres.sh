#!/usr/bin/env bash
# Makes sure a PostgreSQL server runs on this machine for the tests, and
# prints the URL of a database the tests may create databases from:
#   export CANDOR_TEST_DATABASE_URL=$(scripts/postgres.sh)
# Installs Debian's postgresql package when it is missing (needs root and the
# package mirror the machine is configured with), starts the first cluster,
# and creates the role and database `candor`/`candor_test` once.
set -euo pipefail
log() { echo "postgres.sh: $*" >&2; }
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  log "installing PostgreSQL from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
fi
if ! pg_lsclusters -h | grep -q .; then
  version=$(ls /usr/lib/postgresql | sort -V | tail -1)
  log "creating cluster $version/main"
  pg_createcluster "$version" main >&2
fi
read -r version cluster port status _ < <(pg_lsclusters -h | head -1)
if [ "$status" != online ]; then
  log "starting cluster $version/$cluster on port $port"
  pg_ctlcluster "$version" "$cluster" start >&2
fi
as_postgres psql -qtA -p "$port" -c "select 1 from pg_roles where rolname = 'candor'" | grep -q 1 ||
  as_postgres psql -q -p "$port" -c "create role candor login createdb password 'candor'" >&2
as_postgres psql -qtA -p "$port" -c "select 1 from pg_database where datname = 'candor_test'" | grep -q 1 ||
  as_postgres createdb -p "$port" -O candor candor_test >&2
echo "postgres://candor:candor@127.0.0.1:$port/candor_test"
