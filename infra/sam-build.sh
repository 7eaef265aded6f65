#!/usr/bin/env bash
# `sam build` for the deploy, on this machine or a fresh one: the pinned SAM CLI and cargo-lambda
# (with its zig) from the local tools folder (infra/local-dir.sh), the arm64 Rust target, telemetry off, and a cargo target
# directory outside the repository. SAM's build cache hashes the whole CodeUri (./); with
# target/ inside it, parallel builds invalidate each other's cache and can trip over files cargo
# is replacing. Arguments go to `sam build` (e.g. --config-env prod).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/infra/local-dir.sh"
VENV="$LOCAL/venv"
[ -x "$VENV/bin/sam" ] && [ -x "$VENV/bin/cargo-lambda" ] || bash "$ROOT/infra/setup.sh"
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
export PATH="$VENV/bin:$PATH" SAM_CLI_TELEMETRY=0
export CARGO_TARGET_DIR="${SAM_CARGO_TARGET_DIR:-/var/tmp/active-sessions-lambda-target}"
cd "$ROOT"
exec sam build "$@"
