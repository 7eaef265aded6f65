#!/usr/bin/env bash
# Benchmarks (release build) on a local stack of their own: DynamoDB Local, redis-server, the
# stand-in product, cargo lambda watch and the stream poller. Not part of the test command.
#   infra/bench.sh                 # all: handlers, validation (criterion), propagation (up, then fan-out down)
#   infra/bench.sh handlers        # one of: handlers | validation | propagation | fanout | coldstart
#   infra/bench.sh delivery        # not in all (about 25 minutes): delivery at scale, beside a dead and a hanging product
#   infra/bench.sh ttl             # not in all: how soon DynamoDB Local's TTL deletes an expired item
#   infra/bench.sh idp             # not in all: offboarding by the identity provider against an admin's
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/ports.sh"
export DDB_PORT="${BENCH_DDB_PORT:-$(free_port)}" REDIS_PORT="$(free_port)" WATCH_PORT="$(free_port)" FUNCTIONS_PORT="$(free_port)"
export SQS_PORT="$(free_port)"
RECEIVER_PORT="$(free_port)"
source "$HERE/env.sh"
bash "$ROOT/infra/setup.sh"
cd "$ROOT"
which="${1:-all}"
cargo bench -p integration-tests --no-run --quiet
cargo build --workspace --quiet

pids=()
trap 'stop_group "${pids[@]}"' EXIT
ddb="$(start_dynamodb "$DDB_PORT")"
# The retry queue (moto's SQS): the fan-out benches and the local stack deliver through it.
sqs="$(start_sqs "$SQS_PORT")"
pids+=("$ddb" "$sqs")
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
  # Propagation, four variants in one run (tests/benches/propagation.rs says what each prints):
  # the functions as deployed (write-through); the same with WRITE_THROUGH_BUDGET_MS=0 (the stream
  # alone); Redis paused with SIGSTOP during the revokes; the poller stopped (the window alone).
  redis_pid="$(start_redis "$REDIS_PORT")"
  pids+=("$redis_pid")
  logout_key
  pids+=("$(start_receiver "$RECEIVER_PORT")")
  export BACKCHANNEL_ENDPOINTS="[{\"aud\":\"local-product\",\"url\":\"http://127.0.0.1:$RECEIVER_PORT/logout\"}]"
  export E2E_TABLE="bench-$(date +%s)" E2E_BASE_URL="http://127.0.0.1:$WATCH_PORT"
  export WATCH_FLAGS=--release
  retry_queue "$E2E_TABLE"
  poller="$(start_poller "$E2E_TABLE" "$FUNCTIONS_PORT")"
  pids+=("$poller")
  for variant in write-through stream-only redis-paused; do
    budget="${WRITE_THROUGH_BUDGET_MS:-50}"
    [ "$variant" = stream-only ] && budget=0
    stack=("$(WRITE_THROUGH_BUDGET_MS="$budget" start_functions "$FUNCTIONS_PORT" "$E2E_TABLE")")
    stack+=("$(start_gateway "$WATCH_PORT" "$FUNCTIONS_PORT")")
    for f in revoke-session introspect-token revocation-fanout; do
      curl -s -o /dev/null -X POST "http://127.0.0.1:$FUNCTIONS_PORT/2015-03-31/functions/$f/invocations" -d '{}' || true
    done
    sessions="${BENCH_SESSIONS:-1000}"
    [ "$variant" = redis-paused ] && sessions="${BENCH_PAUSED_SESSIONS:-200}"
    # The write-through's failure metric (EMF lines on stdout) is counted, not printed.
    BENCH_VARIANT="$variant" BENCH_SESSIONS="$sessions" BENCH_REDIS_PID="$redis_pid" \
      cargo bench -p integration-tests --bench propagation --quiet \
      | awk '/"WriteThroughFailed"/ { failed++; next } { print } END { if (failed) print "  WriteThroughFailed metric lines: " failed }'
    echo
    stop_group "${stack[@]}"
    while kill -0 -- -"${stack[0]}" 2>/dev/null; do sleep 0.2; done
  done
  # The window alone: no write-through, no fan-out.
  pids+=("$(WRITE_THROUGH_BUDGET_MS=0 start_functions "$FUNCTIONS_PORT" "$E2E_TABLE")")
  pids+=("$(start_gateway "$WATCH_PORT" "$FUNCTIONS_PORT")")
  stop_group "$poller"
  BENCH_VARIANT=fanout-down BENCH_WINDOW_SECONDS="${BENCH_DOWN_WINDOW_SECONDS:-5}" BENCH_SESSIONS="${BENCH_DOWN_SESSIONS:-200}" \
    cargo bench -p integration-tests --bench propagation --quiet
fi
if [ "$which" = idp ]; then
  # The full local stack (release builds), with the stand-in identity provider and product:
  # tests/benches/idp.rs says what it prints.
  pids+=("$(start_redis "$REDIS_PORT")")
  logout_key
  pids+=("$(start_receiver "$RECEIVER_PORT")")
  export BACKCHANNEL_ENDPOINTS="[{\"aud\":\"local-product\",\"url\":\"http://127.0.0.1:$RECEIVER_PORT/logout\"}]"
  IDP_PORT="$(free_port)"
  pids+=("$(start_idp "$IDP_PORT")")
  export E2E_IDP_URL="http://127.0.0.1:$IDP_PORT"
  export E2E_TABLE="bench-idp-$(date +%s)" E2E_BASE_URL="http://127.0.0.1:$WATCH_PORT"
  export WATCH_FLAGS=--release
  retry_queue "$E2E_TABLE"
  pids+=("$(start_functions "$FUNCTIONS_PORT" "$E2E_TABLE")")
  pids+=("$(start_gateway "$WATCH_PORT" "$FUNCTIONS_PORT")")
  pids+=("$(start_poller "$E2E_TABLE" "$FUNCTIONS_PORT")")
  cargo bench -p integration-tests --bench idp --quiet
fi
if [ "$which" = delivery ]; then
  # Delivery at scale: BENCH_SESSIONS (2000) revocations at BENCH_RATE (10/s: what the whole
  # local stack sustains on two cores, DynamoDB Local first; 25/s fell behind even without a bad
  # product) to four
  # stand-in products (healthy-a, healthy-b; dead: refuses connections for the load's first
  # 60 s; hanging: every answer after 3 s), against the same load with the two healthy ones
  # alone, interleaved BENCH_RUNS (3) times; then one run at half the rate, for partition heat at
  # a second load level. Release builds of everything; each run on a fresh table, queue and stack.
  # The deployed retry and breaker settings: backoff 30 s doubling to 10 min, 5 failures in 30 s
  # open a product's breaker for 30 s. (A shorter backoff, 1 s doubling to 30 s, made every owed
  # message come back every 30 s: 3,500 of them kept moto's SQS, whose receive and delete scan
  # every queued message, saturated, and the fan-out's sends waited behind it.)
  export REDIS_PORT="$(free_port)"
  export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"
  pids+=("$(start_redis "$REDIS_PORT")")
  logout_key
  export LOGOUT_RETRY_HORIZON_SECONDS="${BENCH_HORIZON_SECONDS:-3600}"
  export LOGOUT_RETRY_BACKOFF_MS="${BENCH_BACKOFF_MS:-30000}" LOGOUT_RETRY_MAX_BACKOFF_MS="${BENCH_MAX_BACKOFF_MS:-600000}"
  export LOGOUT_BREAKER_COOLDOWN_MS="${BENCH_BREAKER_COOLDOWN_MS:-30000}"
  export WATCH_FLAGS=--release RUN_FLAGS=--release
  cargo build --release --quiet -p local-stack --bins
  receiver_bin="${CARGO_TARGET_DIR:-$ROOT/target}/release/backchannel-receiver"
  receiver() { # receiver PORT AUD [flags]: a stand-in product that verifies what it gets
    local port=$1 aud=$2; shift 2
    (exec setsid "$receiver_bin" --port "$port" --jwks-url "http://127.0.0.1:$WATCH_PORT/.well-known/jwks.json" \
        --aud "$aud" "$@" >"$LOCAL/logs/receiver-$port.log" 2>&1) &
    local pid=$!
    wait_until 30 "receiver $aud" curl -sf "http://127.0.0.1:$port/received" || return 1
    echo "$pid"
  }
  export BENCH_RECEIVER_BIN="$receiver_bin" BENCH_JWKS_URL="http://127.0.0.1:$WATCH_PORT/.well-known/jwks.json"
  results="$LOCAL/logs/delivery-$(date +%s).jsonl"
  runs=()
  for _ in $(seq "${BENCH_RUNS:-3}"); do runs+=(with-bad baseline); done
  runs+=(half-rate)
  for run in "${runs[@]}"; do
    # A fresh DynamoDB Local and SQS for each run: DynamoDB Local slowed run after run as tables
    # accumulated (its raw UpdateItem went from 0.7 ms to 30-43 ms by the fifth run).
    stop_group "$ddb" "$sqs"
    while kill -0 -- -"$ddb" 2>/dev/null || kill -0 -- -"$sqs" 2>/dev/null; do sleep 0.2; done
    ddb="$(start_dynamodb "$DDB_PORT")"; sqs="$(start_sqs "$SQS_PORT")"
    pids+=("$ddb" "$sqs")
    a="$(free_port)"; b="$(free_port)"; dead="$(free_port)"; hanging="$(free_port)"
    stack=("$(receiver "$a" healthy-a)" "$(receiver "$b" healthy-b)")
    endpoints="{\"aud\":\"healthy-a\",\"url\":\"http://127.0.0.1:$a/logout\"},{\"aud\":\"healthy-b\",\"url\":\"http://127.0.0.1:$b/logout\"}"
    export BENCH_RECEIVERS="healthy-a=http://127.0.0.1:$a,healthy-b=http://127.0.0.1:$b"
    rate="${BENCH_RATE:-10}" sessions="${BENCH_SESSIONS:-2000}"
    if [ "$run" = with-bad ]; then
      stack+=("$(receiver "$hanging" hanging --delay-ms 3000)")
      endpoints="$endpoints,{\"aud\":\"dead\",\"url\":\"http://127.0.0.1:$dead/logout\"},{\"aud\":\"hanging\",\"url\":\"http://127.0.0.1:$hanging/logout\"}"
      BENCH_RECEIVERS="$BENCH_RECEIVERS,dead=http://127.0.0.1:$dead,hanging=http://127.0.0.1:$hanging"
    elif [ "$run" = half-rate ]; then
      rate=$(( rate / 2 )); sessions=$(( sessions / 2 ))
    fi
    export BACKCHANNEL_ENDPOINTS="[$endpoints]" BENCH_VARIANT="$run" BENCH_RATE="$rate" BENCH_SESSIONS="$sessions"
    export E2E_TABLE="delivery-$run-$(date +%s)" E2E_BASE_URL="http://127.0.0.1:$WATCH_PORT"
    retry_queue "$E2E_TABLE"
    stack+=("$(start_functions "$FUNCTIONS_PORT" "$E2E_TABLE")")
    stack+=("$(start_gateway "$WATCH_PORT" "$FUNCTIONS_PORT")")
    stack+=("$(start_poller "$E2E_TABLE" "$FUNCTIONS_PORT")")
    pids+=("${stack[@]}")
    # Build and start every function before the clock starts (cargo lambda watch builds on first use).
    for f in revocation-fanout logout-retry revoke-session get-jwks; do
      curl -s -o /dev/null -X POST "http://127.0.0.1:$FUNCTIONS_PORT/2015-03-31/functions/$f/invocations" -d '{}' || true
    done
    run_log="$LOCAL/logs/delivery-$run-$(date +%s).log"
    cargo bench -p integration-tests --bench delivery --quiet >"$run_log" 2>&1 || { cat "$run_log"; exit 1; }
    grep -v '^RESULT ' "$run_log"
    grep '^RESULT ' "$run_log" | sed 's/^RESULT //' >>"$results"
    stop_group "${stack[@]}"
    cp "$LOCAL/logs/watch-$FUNCTIONS_PORT.log" "${run_log%.log}-functions.log"
    sleep 1
  done
  python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(variant, key):
    xs = [r[key] for r in rows if r["variant"] == variant and r[key] is not None and r[key] >= 0]
    return statistics.median(xs) if xs else None
bad, base = med("with-bad", "healthy_p99_ms"), med("baseline", "healthy_p99_ms")
print("== delivery, summary (medians over runs)")
for v in ("with-bad", "baseline", "half-rate"):
    n = sum(1 for r in rows if r["variant"] == v)
    print(f"  {v:<9} runs {n}: healthy p50 {med(v, 'healthy_p50_ms')} ms, p99 {med(v, 'healthy_p99_ms')} ms, raw UpdateItem {med(v, 'raw_ms'):.2f} ms, hottest key {med(v, 'hottest_key_writes_per_s'):.2f} writes/s of all keys' {med(v, 'all_writes_per_s'):.1f} writes/s (busiest minute)")
if bad and base:
    print(f"  healthy p99 with a dead and a hanging product / without: {bad / base:.2f}x (target <= 1.2), p99 {bad} ms (target <= 1000)")
print(f"  dead product's backlog drained after it came back: {[r['dead_drain_ms'] for r in rows if r['variant'] == 'with-bad']} ms")
print(f"  lost: {sum(r['lost'] for r in rows)} over {len(rows)} runs (must be 0)")
print(f"  repeated jti per product: {[r['repeated_jti'] for r in rows if r['variant'] == 'with-bad']}")
PY
fi
if [ "$which" = ttl ]; then
  # How long DynamoDB Local takes to delete expired items by TTL (docs/configuration.md, Session lifetimes).
  "$MOTO_VENV/bin/python" "$ROOT/infra/ttl_probe.py" "http://127.0.0.1:$DDB_PORT" 20
  "$MOTO_VENV/bin/python" "$ROOT/infra/ttl_probe.py" "http://127.0.0.1:$DDB_PORT" 50
fi
