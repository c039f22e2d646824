#!/usr/bin/env bash
# Every test: Python for the Hugging Face cross-checks, a PostgreSQL server
# for the database tests (SQLite needs nothing), headless Chromium for the
# playground's browser test, then `cargo test --release`,
# then the container tests against the Docker engine (scripts/container-tests.sh).
# Extra arguments go to cargo test and skip the container tests, e.g.
# `scripts/test.sh --test api feedback`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CANDOR_PYTHON="${CANDOR_PYTHON:-$(scripts/python-env.sh)}"
export CANDOR_TEST_DATABASE_URL="${CANDOR_TEST_DATABASE_URL:-$(scripts/postgres.sh)}"
export CANDOR_CHROMEDRIVER="${CANDOR_CHROMEDRIVER:-$(scripts/chromium.sh)}"
cargo test --release "$@"
[ $# -eq 0 ] || exit 0
if docker info >/dev/null 2>&1; then
    scripts/container-tests.sh
elif [ -n "${CANDOR_REQUIRE_DOCKER:-}" ]; then
    echo "the container tests need a Docker engine, and none is reachable" >&2
    exit 1
else
    echo "SKIPPED the container tests: no Docker engine reachable"
fi
