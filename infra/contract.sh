#!/usr/bin/env bash
# The contract: schemathesis over infra/openapi.yaml against a running local stack
# (ST_BASE_URL, e.g. http://127.0.0.1:9000). Sets up the workspace the admin routes act on, then
# runs every route with the settings of infra/schemathesis.toml. Exits non-zero on any failure.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/env.sh"
: "${ST_BASE_URL:?set ST_BASE_URL to the local API, e.g. http://127.0.0.1:9000}"
put_user() {
  curl -sf -o /dev/null -X PUT "$ST_BASE_URL/v1/internal/users/$1" -H 'content-type: application/json' -d "$2"
}
put_user st-admin '{"workspace_id":"st","role":"admin"}'
put_user st-member '{"workspace_id":"st","role":"member"}'
for _ in 1 2 3; do
  curl -sf -o /dev/null -X POST "$ST_BASE_URL/v1/internal/sessions" -H 'content-type: application/json' \
    -d '{"user_id":"st-member","apps":["chatgpt"],"client":"browser","user_agent":"Mozilla/5.0","ip":"198.51.100.78"}'
done
# Run from $LOCAL/run: schemathesis (hypothesis) writes state where it runs, and a new file in the
# workspace would make cargo lambda watch rebuild the functions in the middle of the run.
cd "$LOCAL/run"
export ST_BASE_URL PYTHONDONTWRITEBYTECODE=1
export SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH="$HERE"
"$ST_VENV/bin/st" --config-file "$HERE/schemathesis.toml" run "$HERE/openapi.yaml" --no-color "$@"
