#!/usr/bin/env bash
# Every test: Python for the Hugging Face cross-checks, a PostgreSQL server
# for the database tests (SQLite needs nothing), then `cargo test --release`.
# Extra arguments go to cargo test, e.g. `scripts/test.sh --test api feedback`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CANDOR_PYTHON="${CANDOR_PYTHON:-$(scripts/python-env.sh)}"
export CANDOR_TEST_DATABASE_URL="${CANDOR_TEST_DATABASE_URL:-$(scripts/postgres.sh)}"
exec cargo test --release "$@"
