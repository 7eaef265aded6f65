#!/usr/bin/env bash
# The local stack, from nothing: installs what is missing, starts DynamoDB Local (in memory,
# 127.0.0.1:$DDB_PORT), redis-server (the token cache, 127.0.0.1:$REDIS_PORT) and moto (SQS, the
# back-channel retry queue, 127.0.0.1:$SQS_PORT), creates the table and the queues, runs the functions with `cargo lambda watch` (127.0.0.1:$FUNCTIONS_PORT) behind the local API
# Gateway on 127.0.0.1:$WATCH_PORT, polls the table's stream into revocation-fanout (the local event source
# mapping), sends the functions' spans to a stand-in trace collector (127.0.0.1:$COLLECTOR_PORT),
# runs a stand-in identity provider for workspace acme (127.0.0.1:$IDP_PORT), loads demo data, and
# prints curl commands. Ctrl-C stops it all.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$ROOT/infra/setup.sh"

TABLE_NAME="${TABLE_NAME:-active-sessions-local}"
IDP_PORT="${IDP_PORT:-9300}"
for port in "$DDB_PORT" "$WATCH_PORT" "$FUNCTIONS_PORT" "$REDIS_PORT" "$SQS_PORT" "${RECEIVER_PORT:-9100}" "${COLLECTOR_PORT:-9200}" "$IDP_PORT"; do
  if curl -s -o /dev/null "http://127.0.0.1:$port" 2>/dev/null; then
    echo "error: port $port is in use (another local stack?). Stop it, or set DDB_PORT / WATCH_PORT / FUNCTIONS_PORT / REDIS_PORT / SQS_PORT / RECEIVER_PORT / COLLECTOR_PORT / IDP_PORT." >&2
    exit 1
  fi
done

pids=()
cleanup() { echo; echo "stopping the local stack"; stop_group "${pids[@]}"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "building the workspace (the first build takes a few minutes)"
(cd "$ROOT" && cargo build --workspace --quiet)
build_functions

pids+=("$(start_dynamodb "$DDB_PORT")")
echo "DynamoDB Local on 127.0.0.1:$DDB_PORT"
pids+=("$(start_redis "$REDIS_PORT")")
echo "redis-server (token cache) on 127.0.0.1:$REDIS_PORT"
pids+=("$(start_sqs "$SQS_PORT")")
echo "moto (SQS: the back-channel retry queue) on 127.0.0.1:$SQS_PORT"
RECEIVER_PORT="${RECEIVER_PORT:-9100}"
logout_key
pids+=("$(start_receiver "$RECEIVER_PORT")")
export BACKCHANNEL_ENDPOINTS="[{\"aud\":\"local-product\",\"url\":\"http://127.0.0.1:$RECEIVER_PORT/logout\"}]"
echo "backchannel-receiver (a stand-in product) on 127.0.0.1:$RECEIVER_PORT: curl http://127.0.0.1:$RECEIVER_PORT/received"
COLLECTOR_PORT="${COLLECTOR_PORT:-9200}"
pids+=("$(start_collector "$COLLECTOR_PORT")")
export OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$COLLECTOR_PORT"
echo "trace-collector (a stand-in for the collector layer) on 127.0.0.1:$COLLECTOR_PORT: curl http://127.0.0.1:$COLLECTOR_PORT/spans"
pids+=("$(start_idp "$IDP_PORT")")
echo "stand-in-idp (workspace acme's identity provider) on 127.0.0.1:$IDP_PORT: curl http://127.0.0.1:$IDP_PORT/jwks.json"
(cd "$ROOT" && cargo run --quiet -p local-stack --bin local-setup -- --table "$TABLE_NAME")
retry_queue "$TABLE_NAME"
echo "retry queue: $LOGOUT_RETRY_QUEUE_URL"

echo "starting cargo lambda watch (the functions) on 127.0.0.1:$FUNCTIONS_PORT"
pids+=("$(start_functions "$FUNCTIONS_PORT" "$TABLE_NAME")")
echo "starting the local API Gateway on 127.0.0.1:$WATCH_PORT"
pids+=("$(start_gateway "$WATCH_PORT" "$FUNCTIONS_PORT")")
echo "starting the stream poller (table stream -> revocation-fanout, retry queue -> logout-retry)"
pids+=("$(start_poller "$TABLE_NAME" "$FUNCTIONS_PORT")")

(cd "$ROOT" && cargo run --quiet -p local-stack --bin local-setup -- --table "$TABLE_NAME" --demo \
    --base-url "http://127.0.0.1:$WATCH_PORT" --tokens-file "$LOCAL/demo-tokens.json" --receiver-url "http://127.0.0.1:$RECEIVER_PORT" \
    --idp-issuer "http://127.0.0.1:$IDP_PORT" --idp-jwks-url "http://127.0.0.1:$IDP_PORT/jwks.json" \
    --idp-audience "http://127.0.0.1:$WATCH_PORT/v1/workspaces/acme/global-token-revocation")
GTR_URL="http://127.0.0.1:$WATCH_PORT/v1/workspaces/acme/global-token-revocation"
echo
echo "# acme's identity provider offboards sso-member (Universal Logout: every session ends, 204):"
echo "curl -i -X POST $GTR_URL \\"
echo "  -H \"authorization: Bearer \$(curl -s 'http://127.0.0.1:$IDP_PORT/sign/gtr?audience=$GTR_URL')\" \\"
echo "  -H 'content-type: application/json' -d '{\"sub_id\":{\"format\":\"email\",\"email\":\"sso-member@acme.example\"}}'"
echo "# or through Shared Signals (CAEP session-revoked, 202):"
echo "curl -i -X POST http://127.0.0.1:$WATCH_PORT/v1/workspaces/acme/ssf/events -H 'content-type: application/secevent+jwt' \\"
echo "  --data-binary \"\$(curl -s 'http://127.0.0.1:$IDP_PORT/sign/set?audience=$GTR_URL&event=session-revoked&email=sso-member@acme.example')\""
echo
echo "The local API is up on http://127.0.0.1:$WATCH_PORT (logs in $LOCAL/logs). Ctrl-C stops it."
# The servers run in their own process groups; stay up while all are alive.
while kill -0 "${pids[@]}" 2>/dev/null; do sleep 1; done
echo "a server stopped; see $LOCAL/logs" >&2
exit 1
