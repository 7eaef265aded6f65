#!/usr/bin/env bash
# Benchmarks (release build) on a local stack of their own: DynamoDB Local, redis-server, the
# stand-in product, cargo lambda watch and the stream poller. Not part of the test command.
#   infra/bench.sh                 # all: handlers, validation (criterion), propagation (up, then fan-out down)
#   infra/bench.sh handlers        # one of: handlers | validation | propagation | fanout | coldstart
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
