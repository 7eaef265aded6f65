#!/usr/bin/env bash
# Benchmarks (release build), on a DynamoDB Local of their own. Not part of the test command.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export DDB_PORT="${BENCH_DDB_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
source "$HERE/env.sh"
bash "$ROOT/infra/setup.sh"
cd "$ROOT"
cargo bench -p integration-tests --no-run --quiet
pids=()
trap 'stop_group "${pids[@]}"' EXIT
pids+=("$(start_dynamodb "$DDB_PORT")")
cargo bench -p integration-tests --bench handlers --quiet
