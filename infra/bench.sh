#!/usr/bin/env bash
# Benchmarks (release build) on a local stack of their own: DynamoDB Local, redis-server, the
# stand-in product, cargo lambda watch and the stream poller. Not part of the test command.
#   infra/bench.sh                 # all: handlers, validation (criterion), propagation (up, then fan-out down)
#   infra/bench.sh handlers        # one of: handlers | validation | propagation | fanout | coldstart | receipts
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/ports.sh"
export DDB_PORT="${BENCH_DDB_PORT:-$(free_port)}" REDIS_PORT="$(free_port)" WATCH_PORT="$(free_port)" FUNCTIONS_PORT="$(free_port)"
RECEIVER_PORT="$(free_port)"
source "$HERE/env.sh"
bash "$ROOT/infra/setup.sh"
cd "$ROOT"
which="${1:-all}"
cargo bench -p integration-tests --no-run --quiet
cargo build --workspace --quiet

pids=()
trap 'stop_group "${pids[@]}"' EXIT
pids+=("$(start_dynamodb "$DDB_PORT")")
if [ "$which" = all ] || [ "$which" = handlers ]; then
  cargo bench -p integration-tests --bench handlers --quiet
fi
if [ "$which" = all ] || [ "$which" = coldstart ]; then
  cargo build --release --workspace --bins --quiet
  cargo bench -p integration-tests --bench coldstart --quiet
fi
if [ "$which" = all ] || [ "$which" = fanout ]; then
  cargo bench -p integration-tests --bench fanout --quiet
fi
if [ "$which" = all ] || [ "$which" = validation ]; then
  cargo bench -p integration-tests --bench validation --quiet -- --noplot 2>&1 | grep -vE "^(Benchmarking|Gnuplot|Found|  [0-9]+ \(|Warning)"
fi
if [ "$which" = all ] || [ "$which" = propagation ]; then
  pids+=("$(start_redis "$REDIS_PORT")")
  logout_key
  pids+=("$(start_receiver "$RECEIVER_PORT")")
  export BACKCHANNEL_ENDPOINTS="[{\"aud\":\"local-product\",\"url\":\"http://127.0.0.1:$RECEIVER_PORT/logout\"}]"
  export E2E_TABLE="bench-$(date +%s)" E2E_BASE_URL="http://127.0.0.1:$WATCH_PORT"
  cargo run --quiet -p local-stack --bin local-setup -- --table "$E2E_TABLE"
  pids+=("$(start_functions "$FUNCTIONS_PORT" "$E2E_TABLE")")
  pids+=("$(start_gateway "$WATCH_PORT" "$FUNCTIONS_PORT")")
  poller="$(start_poller "$E2E_TABLE" "$FUNCTIONS_PORT")"
  pids+=("$poller")
  cargo bench -p integration-tests --bench propagation --quiet
  echo
  stop_group "$poller"
  BENCH_FANOUT=down BENCH_WINDOW_SECONDS="${BENCH_DOWN_WINDOW_SECONDS:-5}" BENCH_SESSIONS="${BENCH_DOWN_SESSIONS:-200}" \
    cargo bench -p integration-tests --bench propagation --quiet
fi
if [ "$which" = all ] || [ "$which" = receipts ]; then
  # Three stand-in products (fast; every answer after 2 s; 503 to each session's first two
  # deliveries), then the same without the slow one: the fast product's times should not move.
  export REDIS_PORT="$(free_port)"
  export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"
  pids+=("$(start_redis "$REDIS_PORT")")
  logout_key
  export LOGOUT_RETRY_HORIZON_SECONDS="${BENCH_HORIZON_SECONDS:-60}" LOGOUT_RETRY_BACKOFF_MS="${LOGOUT_RETRY_BACKOFF_MS:-500}"
  export BENCH_HORIZON_SECONDS="$LOGOUT_RETRY_HORIZON_SECONDS"
  receiver() { # receiver PORT AUD [flags]: a stand-in product that verifies what it gets
    local port=$1 aud=$2; shift 2
    (cd "$ROOT" && exec setsid cargo run --release --quiet -p local-stack --bin backchannel-receiver -- --port "$port" \
        --jwks-url "http://127.0.0.1:$WATCH_PORT/.well-known/jwks.json" --aud "$aud" "$@" \
        >"$LOCAL/logs/receiver-$port.log" 2>&1) &
    local pid=$!
    wait_until 120 "receiver $aud" curl -sf "http://127.0.0.1:$port/received" || return 1
    echo "$pid"
  }
  # Release builds, as deployed: a debug build's ES256 signing and verifying would be the bottleneck.
  export WATCH_FLAGS=--release
  cargo build --release --quiet -p local-stack --bins
  fast_port="$(free_port)"; slow_port="$(free_port)"; flaky_port="$(free_port)"
  pids+=("$(receiver "$fast_port" fast)" "$(receiver "$slow_port" slow --delay-ms 2000)" "$(receiver "$flaky_port" flaky --fail-first 2)")
  endpoint() { echo "{\"aud\":\"$1\",\"url\":\"http://127.0.0.1:$2/logout\"}"; }
  for run in ${BENCH_RECEIPTS_RUNS:-with-slow without-slow}; do
    if [ "$run" = with-slow ]; then
      export BACKCHANNEL_ENDPOINTS="[$(endpoint fast "$fast_port"),$(endpoint slow "$slow_port"),$(endpoint flaky "$flaky_port")]" BENCH_PRODUCTS=fast,slow,flaky
    else
      export BACKCHANNEL_ENDPOINTS="[$(endpoint fast "$fast_port"),$(endpoint flaky "$flaky_port")]" BENCH_PRODUCTS=fast,flaky
    fi
    export E2E_TABLE="receipts-$run-$(date +%s)" E2E_BASE_URL="http://127.0.0.1:$WATCH_PORT"
    cargo run --quiet -p local-stack --bin local-setup -- --table "$E2E_TABLE"
    stack=("$(start_functions "$FUNCTIONS_PORT" "$E2E_TABLE")")
    stack+=("$(start_gateway "$WATCH_PORT" "$FUNCTIONS_PORT")")
    stack+=("$(start_poller "$E2E_TABLE" "$FUNCTIONS_PORT")")
    pids+=("${stack[@]}")
    # Build every function before the clock starts (cargo lambda watch builds on first invocation).
    for f in revocation-fanout logout-retry revoke-session; do
      curl -s -o /dev/null -X POST "http://127.0.0.1:$FUNCTIONS_PORT/2015-03-31/functions/$f/invocations" -d '{}' || true
    done
    echo "== receipts, $run"
    cargo bench -p integration-tests --bench receipts --quiet
    stop_group "${stack[@]}"
    cp "$LOCAL/logs/watch-$FUNCTIONS_PORT.log" "$LOCAL/logs/receipts-$run.log"
    sleep 1
  done
fi
