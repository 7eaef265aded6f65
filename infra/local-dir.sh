# Sourced by infra/env.sh and infra/sam-build.sh: where this clone's local tools and state live
# (the venvs, npm packages with DynamoDB Local, logs, pids, demo tokens). Outside the repository,
# so that SAM, which hashes the whole CodeUri (./) for each function's build cache, never reads
# a gigabyte of tools. One folder per clone, under the user's cache; ACTIVE_SESSIONS_LOCAL
# overrides it. Expects ROOT (the repository).
LOCAL="${ACTIVE_SESSIONS_LOCAL:-${XDG_CACHE_HOME:-$HOME/.cache}/active-sessions/$(basename "$ROOT")-$(printf %s "$ROOT" | sha256sum | cut -c1-8)}"
export ACTIVE_SESSIONS_LOCAL="$LOCAL"
mkdir -p "$LOCAL"
