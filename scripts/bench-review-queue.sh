#!/usr/bin/env bash
# The review queue at scale: fills a SQLite file and, when a URL is given, a
# fresh database on that PostgreSQL server with ROWS predictions (default
# 1,000,000), then times the first page, a page ROWS/10 items deep, the
# query used before review_items, and the insert throughput with and
# without keeping the queue (see benches/review_queue.rs).
# Usage: scripts/bench-review-queue.sh [ROWS] [POSTGRES_URL]
#   e.g. scripts/bench-review-queue.sh 1000000 "$(scripts/postgres.sh)"
set -euo pipefail
cd "$(dirname "$0")/.."
export CANDOR_BENCH_ROWS="${1:-1000000}"
if [ -n "${2:-}" ]; then export CANDOR_BENCH_DATABASE_URL="$2"; fi
exec cargo bench --quiet --bench review_queue
