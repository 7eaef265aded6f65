#!/usr/bin/env bash
# Every check and every test, from nothing: installs what is missing, checks formatting, clippy
# and the SAM template (cfn-lint, sam validate --lint), starts DynamoDB Local, Redis, the local SQS
# (moto), the stand-in product, `cargo lambda watch` behind the local API Gateway, and the stream poller on free loopback
# ports, runs the unit, handler, integration and end-to-end tests, then the contract (schemathesis
# over infra/openapi.yaml). Everything it started is stopped on exit.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/ports.sh"
export DDB_PORT="${TEST_DDB_PORT:-$(free_port)}"
export WATCH_PORT="${TEST_WATCH_PORT:-$(free_port)}"
export FUNCTIONS_PORT="${TEST_FUNCTIONS_PORT:-$(free_port)}"
export REDIS_PORT="${TEST_REDIS_PORT:-$(free_port)}"
export SQS_PORT="${TEST_SQS_PORT:-$(free_port)}"
RECEIVER_PORT="${TEST_RECEIVER_PORT:-$(free_port)}"
source "$HERE/env.sh"
bash "$ROOT/infra/setup.sh"
cd "$ROOT"

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== the shared crate's layering (infra/layers.py)"
python3 "$ROOT/infra/layers.py"
echo "== the documentation's links (infra/doclinks.py)"
python3 "$ROOT/infra/doclinks.py"
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
# What the Lambdas link. `sam build` runs `cargo lambda build --bin <name>` from the workspace root,
# which resolves every member's features together, so the whole workspace's graph must hold none
# of the SDK's legacy HTTP/TLS stack (hyper 0.14, rustls 0.21), no second crypto provider (ring)
# beside aws-lc-rs, no SSO client and no OpenSSL. The user-agent parser is declared only where
# sign-in is (the others never reach it, so it is not linked into them).
echo "== the Lambdas' dependency trees"
banned="$(cargo tree --workspace -e normal --target all --prefix none --quiet | sort -u \
  | grep -E '^(hyper v0\.|rustls v0\.(1|2[0-2])\.|ring v|aws-sdk-sso |openssl )' || true)"
for crate in "$ROOT"/functions/*/; do
  name="$(basename "$crate")"
  [ "$name" = create-session ] && continue
  if cargo tree -p "$name" -e normal --prefix none --quiet | grep -q '^woothee v'; then banned+=" woothee in $name"; fi
done
if [ -n "$banned" ]; then
  echo "the Lambdas' dependency graph holds what it must not: $banned" >&2
  exit 1
fi
# The deploy template, offline and without credentials (each silenced rule would carry its
# reason in template.yaml; none is silenced today).
echo "== cfn-lint template.yaml"
env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY "$VENV/bin/cfn-lint" template.yaml
echo "== cfn-lint template.yaml -a cfn_lint_serverless.rules"
env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY "$VENV/bin/cfn-lint" template.yaml -a cfn_lint_serverless.rules
echo "== sam validate --lint"
env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY SAM_CLI_TELEMETRY=0 "$VENV/bin/sam" validate --lint --region "$AWS_REGION"
echo "== build"
cargo build --workspace --all-targets --quiet
build_functions

pids=()
trap 'stop_group "${pids[@]}"' EXIT
pids+=("$(start_dynamodb "$DDB_PORT")")
echo "== DynamoDB Local on 127.0.0.1:$DDB_PORT"
pids+=("$(start_redis "$REDIS_PORT")")
echo "== redis-server on 127.0.0.1:$REDIS_PORT"
pids+=("$(start_sqs "$SQS_PORT")")
echo "== moto (SQS) on 127.0.0.1:$SQS_PORT"
logout_key
pids+=("$(start_receiver "$RECEIVER_PORT")")
export BACKCHANNEL_ENDPOINTS="[{\"aud\":\"local-product\",\"url\":\"http://127.0.0.1:$RECEIVER_PORT/logout\"}]"
export E2E_RECEIVER_URL="http://127.0.0.1:$RECEIVER_PORT"
echo "== backchannel-receiver on 127.0.0.1:$RECEIVER_PORT"
# Traces: the functions export their spans to a stand-in collector (the end-to-end tests read
# them back to check what a span may carry).
COLLECTOR_PORT="$(free_port)"
pids+=("$(start_collector "$COLLECTOR_PORT")")
export OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$COLLECTOR_PORT" E2E_COLLECTOR_URL="http://127.0.0.1:$COLLECTOR_PORT"
echo "== trace-collector on 127.0.0.1:$COLLECTOR_PORT"
# Retries on the test stack: the first after 1 s (SQS's shortest delay), given up after 8 s (the
# end-to-end tests wait for both outcomes).
export LOGOUT_RETRY_BACKOFF_MS=1000 LOGOUT_RETRY_MAX_BACKOFF_MS=2000 LOGOUT_RETRY_HORIZON_SECONDS=8
# The stand-in identity provider: the end-to-end tests and the contract set it as a workspace's.
IDP_PORT="$(free_port)"
pids+=("$(start_idp "$IDP_PORT")")
export E2E_IDP_URL="http://127.0.0.1:$IDP_PORT"
echo "== stand-in-idp on 127.0.0.1:$IDP_PORT"
E2E_TABLE="e2e-$(date +%s)"
cargo run --quiet -p local-stack --bin local-setup -- --table "$E2E_TABLE"
retry_queue "$E2E_TABLE"
echo "== retry queue $LOGOUT_RETRY_QUEUE_URL"
pids+=("$(start_functions "$FUNCTIONS_PORT" "$E2E_TABLE")")
echo "== cargo lambda watch on 127.0.0.1:$FUNCTIONS_PORT"
pids+=("$(start_gateway "$WATCH_PORT" "$FUNCTIONS_PORT")")
echo "== local-gateway (the API) on 127.0.0.1:$WATCH_PORT"
pids+=("$(start_poller "$E2E_TABLE" "$FUNCTIONS_PORT")")
echo "== stream poller on $E2E_TABLE"

echo "== cargo test"
E2E_BASE_URL="http://127.0.0.1:$WATCH_PORT" E2E_TABLE="$E2E_TABLE" E2E_FUNCTIONS_LOG="$LOCAL/logs/watch-$FUNCTIONS_PORT.log" cargo test --workspace --no-fail-fast "$@"

# The pages in a real browser (Debian's Chromium, playwright-core, axe-core) against the same
# stack. Screenshots go to $LOCAL/screenshots while cargo lambda watch runs (a new file in the
# workspace would make it rebuild), then to docs/screenshots at the end.
echo "== browser tests (node --test infra/browser/)"
E2E_BASE_URL="http://127.0.0.1:$WATCH_PORT" BROWSER_NODE_MODULES="$BROWSER_PKG_DIR/node_modules" \
  SCREENSHOT_DIR="$LOCAL/screenshots" node --test --test-concurrency=1 "$ROOT/infra/browser/"

# The contract: every route of infra/openapi.yaml against the same local stack (after the tests,
# which it would otherwise race for the functions, one request at a time each).
echo "== schemathesis (infra/contract.sh)"
ST_BASE_URL="http://127.0.0.1:$WATCH_PORT" ST_IDP_URL="$E2E_IDP_URL" bash "$ROOT/infra/contract.sh"

mkdir -p "$ROOT/docs/screenshots" && cp "$LOCAL/screenshots/"*.png "$ROOT/docs/screenshots/"
