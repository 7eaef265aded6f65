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
put_user st-member '{"workspace_id":"st","role":"member","email":"st-member@st.example"}'
# Workspace st's identity provider: the stand-in (ST_IDP_URL), whose requests the hooks sign.
: "${ST_IDP_URL:?set ST_IDP_URL to the stand-in identity provider, e.g. http://127.0.0.1:9300}"
ST_IDP_AUDIENCE="$ST_BASE_URL/v1/workspaces/st/global-token-revocation"
curl -sf -o /dev/null -X PUT "$ST_BASE_URL/v1/internal/workspaces/st/identity-provider" -H 'content-type: application/json' \
  -d "{\"issuer\":\"$ST_IDP_URL\",\"jwks_url\":\"$ST_IDP_URL/jwks.json\",\"audience\":\"$ST_IDP_AUDIENCE\",\"subject_format\":\"email\"}"
for _ in 1 2 3; do
  curl -sf -o /dev/null -X POST "$ST_BASE_URL/v1/internal/sessions" -H 'content-type: application/json' \
    -d '{"user_id":"st-member","apps":["chatgpt"],"client":"browser","user_agent":"Mozilla/5.0","ip":"198.51.100.78"}'
done
# Run from $LOCAL/run: schemathesis (hypothesis) writes state where it runs, and a new file in the
# workspace would make cargo lambda watch rebuild the functions in the middle of the run.
cd "$LOCAL/run"
export ST_BASE_URL ST_IDP_URL ST_IDP_AUDIENCE PYTHONDONTWRITEBYTECODE=1
export SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH="$HERE"
"$ST_VENV/bin/st" --config-file "$HERE/schemathesis.toml" run "$HERE/openapi.yaml" --no-color "$@"
